"""`nlc view` in a real browser: headless Chromium (Debian's package) driven by Playwright.

Skipped when `playwright` (PyPI) or /usr/bin/chromium is missing (`.ci/run` installs chromium;
Playwright's own browser download is not used). NLC_VIEW_SHOTS=DIR also writes the screenshots
there (docs/img/view-hope.png and view-titans-mac.png were made this way)."""
import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("NLC_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no browser at {CHROMIUM} (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api")

from nlc.view import data as D  # noqa: E402
from nlc.view import page  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = os.environ.get("NLC_VIEW_SHOTS")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page of `nlc view` opened from a file, with every console error and page error kept."""

    def __init__(self, browser, tmp_path, spec, run_dir=None, name="page"):
        self.data = D.build(spec, run_dir=run_dir)
        path = page.write(self.data, tmp_path / f"{name}.html")
        self.errors = []
        self.requests = []
        self.p = browser.new_page(viewport={"width": 1600, "height": 1000})
        self.p.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.p.on("pageerror", lambda e: self.errors.append(str(e)))
        self.p.on("request", lambda r: self.requests.append(r.url))
        self.p.goto(path.as_uri())
        self.p.wait_for_selector("#graph .node")

    def graph(self, i=0):
        return self.data["graphs"][i]

    def shot(self, tmp_path, name):
        out = tmp_path / name
        self.p.mouse.move(2, 2)  # no hover highlight
        self.p.screenshot(path=str(out))
        assert out.stat().st_size > 20_000  # a real picture, not a blank page
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            shutil.copy(out, Path(SHOTS) / name)

    def close(self):
        # nothing but the page itself was loaded: no network at view time
        assert all(u.startswith("file://") for u in self.requests), self.requests
        assert self.errors == []
        self.p.close()


def _levels_drawn(pg, g):
    keys = pg.p.eval_on_selector_all("#graph .node[data-key]", "ns => ns.map(n => n.dataset.key)")
    assert sorted(keys) == sorted(g["levels"]), "every level is drawn, once"
    boxes = pg.p.eval_on_selector_all("#graph .node[data-key] .box", "bs => bs.map(b => b.getBoundingClientRect().width)")
    assert all(w > 20 for w in boxes)


def _timeline_matches(pg, g, n):
    pg.p.fill("#tl-n", str(n))
    assert pg.p.get_attribute("#tl-svg", "data-n") == str(n)
    want = D.timeline(g["timeline"], n)
    got = pg.p.eval_on_selector_all("#tl-body .tl-row", "rs => rs.map(r => [r.dataset.key, +r.dataset.updates, +r.dataset.resets])")
    assert got == [[r["key"], len(want[r["key"]]["updates"]), len(want[r["key"]]["resets"])] for r in g["timeline"]]
    marks = pg.p.eval_on_selector_all("#tl-body .tl-update", "ms => ms.length")
    assert marks == sum(len(v["updates"]) for v in want.values())


def test_hope(browser, tmp_path):
    pg = Page(browser, tmp_path, "hope", name="hope")
    g = pg.graph()
    _levels_drawn(pg, g)
    edges = pg.p.eval_on_selector_all("#graph .edge", "es => es.length")
    assert edges == len(g["views"]["collapsed"]["edges"])
    # hover: the level's flows are highlighted, the rest dimmed
    pg.p.hover('#graph .node[data-key="mk"]')
    hl = pg.p.eval_on_selector_all("#graph .edge.hl", "es => es.map(e => [e.dataset.source, e.dataset.target])")
    want = [[e["source"], e["target"]] for e in g["views"]["collapsed"]["edges"] if "mk" in (e["source"], e["target"])]
    assert sorted(hl) == sorted(want) and pg.p.get_attribute("#graph", "class") == "hovering"
    pg.p.mouse.move(2, 2)
    # one click: the rule as rendered math, the clock in words, the source lines highlighted
    pg.p.click('#graph .node[data-key="memory"]')
    panel = pg.p.locator("#panel")
    assert pg.p.get_attribute("#panel", "data-level") == "memory"
    assert panel.locator("h2").inner_text() == "hope[0..1].memory"
    rule = panel.locator(".sec-rule math")
    assert rule.count() >= 2
    box = rule.first.bounding_box()
    assert box["width"] > 150 and box["height"] > 12  # MathML laid out by the browser
    text = panel.inner_text()
    assert "tokens(64)" in text and "updated every 64 tokens" in text and "chunk-start" in text
    assert "lr = eta" in text and "produced by" in text and "meta-learned" in text
    span = g["levels"]["memory"]["spans"][0]  # the level's own lines (specs/hope.nl: `level memory ... { ... }`)
    head = panel.locator(".sec-source .shead").first.inner_text()
    assert head.endswith(f"hope.nl · lines {span['line']}–{span['end_line']}")
    lines = panel.locator(".sec-source .ln.def").all_inner_texts()
    assert len(lines) == span["end_line"] - span["line"] + 1 > 3
    assert "level memory : Fast per head {" in lines[0] and lines[0].lstrip().startswith(str(span["line"]))
    assert "o = memory(q)" in " ".join(panel.locator(".sec-source .ln.read").all_inner_texts())
    # a bound symbol's producer is one click away
    panel.locator('.chip.link[data-goto="meta"]').first.click()
    assert pg.p.get_attribute("#panel", "data-level") == "meta"
    _timeline_matches(pg, g, 256)
    # zoom, collapse/expand
    vb = pg.p.get_attribute("#graph", "viewBox")
    pg.p.click("#zoom-in")
    assert pg.p.get_attribute("#graph", "viewBox") != vb
    pg.p.click("#zoom-fit")
    pg.p.check("#expand")
    layers = pg.p.eval_on_selector_all("#graph .node[data-layer]", "ns => ns.length")
    assert layers == sum(info["repeat"] for info in g["levels"].values() if info["kind"] != "optimizer")
    pg.p.uncheck("#expand")
    pg.p.click('#graph .node[data-key="memory"]')
    pg.shot(tmp_path, "view-hope.png")
    pg.close()


def test_titans_mac(browser, tmp_path):
    pg = Page(browser, tmp_path, "titans:TitansMAC", name="mac")
    g = pg.graph()
    _levels_drawn(pg, g)
    pg.p.check("#expand")
    pg.p.click('#graph .node[data-key="mem"][data-layer="0"]')
    panel = pg.p.locator("#panel")
    assert panel.locator("h2").inner_text() == "mac[0].mem"
    text = panel.inner_text()
    assert "tokens(16)" in text and "momentum = eta" in text and "context" not in panel.locator("h2").inner_text()
    assert panel.locator(".sec-rule math").count() >= 3  # momentum, update, read
    span = g["levels"]["mem"]["spans"][0]
    assert f"lines {span['line']}–{span['end_line']}" in panel.locator(".sec-source .shead").first.inner_text()
    assert "level mem : Deep per head {" in panel.locator(".sec-source .ln.def").first.inner_text()
    _timeline_matches(pg, g, 64)
    pg.shot(tmp_path, "view-titans-mac.png")
    # the outer optimizer's own graph (AdamW's slot levels) is a tab away
    pg.p.click('#tabs button[data-graph="optimizer:AdamW"]')
    _levels_drawn(pg, pg.graph(1))
    pg.close()


def test_optimizer_file(browser, tmp_path):
    pg = Page(browser, tmp_path, "optim/m3", name="m3")
    g = pg.graph()
    _levels_drawn(pg, g)
    pg.p.click('#graph .node[data-key="m2"]')
    text = pg.p.locator("#panel").inner_text()
    assert "steps(8)" in text and "every 8 optimizer steps" in text and "accumulate" in text
    assert pg.p.locator("#panel .sec-rule math").count() == 2
    assert pg.p.inner_text("#tl-n-label") == "optimizer steps N"
    _timeline_matches(pg, g, 24)
    pg.close()


def test_run_page(browser, tmp_path):
    from nlc.builtin import specs_dir
    r = tmp_path / "run"
    src = specs_dir()
    (r / "spec" / "optim").mkdir(parents=True)
    shutil.copy(src / "hope.nl", r / "spec" / "hope.nl")
    shutil.copy(src / "optim" / "adamw.nl", r / "spec" / "optim" / "adamw.nl")
    (r / "spec.json").write_text(json.dumps({"spec_name": "hope", "spec_hash": "0" * 16, "model": "Hope",
                                             "overrides": {"lr_max": 0.25}, "spec_file": "spec/hope.nl"}))
    rows = [{"step": s, "loss": 5 / s, "bpb": 7 / s, "hope.0.memory/surprise": 1 / s, "hope.1.memory/surprise": 2 / s}
            for s in range(1, 40)]
    (r / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in rows))
    pg = Page(browser, tmp_path, None, run_dir=r, name="run")
    text = pg.p.locator("#panel").inner_text()
    assert "--set lr_max=0.25" in text and "training loss" in text
    assert pg.p.eval_on_selector_all("#panel .plot polyline", "ps => ps.length") >= 2
    pg.p.click('#graph .node[data-key="memory"]')
    assert pg.p.eval_on_selector_all("#panel .plot polyline", "ps => ps.length") == 2  # one line per layer
    pg.close()
