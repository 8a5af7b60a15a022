"""`nlc view`: the page's data against the level graph, for every built-in spec and optimizer file."""
import json
import re
import shutil
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nlc.builtin import builtin_names, specs_dir
from nlc.graph.level_graph import level_rows
from nlc.passes import run
from nlc.view import data as D
from nlc.view import page

MODELS = ["hope", "titans:TitansLMM", "titans:TitansMAC", "titans:TitansMAG", "titans:TitansMAL", "cms",
          "transformer", "hope_attention"]
OPTIM = [n for n in builtin_names() if n.startswith("optim/")]


@pytest.fixture(scope="module")
def pages():
    return {s: (run(s), D.build(s)) for s in MODELS}


def _xml(s: str):
    return ET.fromstring(s)  # well-formed MathML, or a ParseError


def _line(d, span) -> str:
    return d["sources"][span["file"]].splitlines()[span["line"] - 1]


@pytest.mark.parametrize("spec", MODELS)
def test_levels_match_the_level_graph(pages, spec):
    c, d = pages[spec]
    json.dumps(d, allow_nan=False)  # the page embeds it as JSON
    g = d["graphs"][0]
    rows = {r["name"]: r for r in level_rows(c.layout)}
    assert sorted(info["label"] for info in g["levels"].values()) == sorted(rows)
    for key, info in g["levels"].items():
        r = rows[info["label"]]
        assert (info["clock"], info["tier"], info["params"], info["rule"], info["objective"]) == \
            (r["clock"], r["tier"], r["params"], r["rule"], r["objective"])
        assert info["equations"] and all(_xml(e["mathml"]) is not None for e in info["equations"] if e["mathml"])
        assert info["clock_words"] and info["init"]["words"]
        for b in info["bindings"]:
            _xml(b["symbol"])
        # the level's span: the spec lines that define it, in the page's sources
        span = info["spans"][0]
        assert span["role"] == "def" and span["file"] in d["sources"]
        if info["kind"] == "optimizer":
            assert c.plan.optimizer.span.line == span["line"] and info["level"] is None
            assert re.search(rf"\blevel\s+{c.plan.optimizer.name}\b", _line(d, span))
            assert info["init"]["learned_by"] == []
            continue
        lv = next(b for b in c.plan.blocks if b.name == info["block"]).level(info["level"])
        assert (span["line"], span["end_line"]) == (lv.span.line, lv.span.end_line)
        assert (lv.name in _line(d, span)) if lv.role != "cms" else "cms(" in _line(d, span)
        if lv.role == "memory" or (lv.role == "cms" and lv.clock.unit != "frozen"):
            assert info["init"]["learned_by"] == [c.plan.optimizer.name]  # the outer level meta-learns it


@pytest.mark.parametrize("spec", MODELS)
def test_drawing_is_nlc_graphs_layout(pages, spec):
    from nlc import viz
    c, d = pages[spec]
    g = d["graphs"][0]
    draw = g["views"]["collapsed"]
    G = c.graph
    assert {n["id"] for n in draw["nodes"]} == set(G.nodes)
    want = sorted((u, v, a["kind"], a.get("label") or "") for u, v, a in G.edges(data=True))
    assert sorted((e["source"], e["target"], e["kind"], e["label"]) for e in draw["edges"]) == want
    # the same bands as `nlc graph`, bottom (fast) to top: larger y is lower on the page
    assert [b["key"] for b in draw["bands"]] == [b.key for b in viz.bands(G)]
    assert all(a["y"] > b["y"] for a, b in zip(draw["bands"], draw["bands"][1:]))
    pos = {n["id"]: n for n in draw["nodes"]}
    for b in draw["bands"]:
        for n in b["nodes"]:
            assert abs(pos[n]["y"] - b["y"]) < 1 and 0 < pos[n]["x"] < draw["width"]
    tiers = {k: info["tier"] for k, info in g["levels"].items()}
    for a in tiers:
        for b in tiers:
            if tiers[a] < tiers[b]:
                assert pos[a]["y"] > pos[b]["y"], f"{a} (faster) must be drawn below {b}"


@pytest.mark.parametrize("spec", MODELS)
def test_expanded_view_has_one_node_per_layer(pages, spec):
    c, d = pages[spec]
    g = d["graphs"][0]
    exp = g["views"]["expanded"]
    if all(b.repeat == 1 for b in c.plan.blocks):
        assert exp is None
        return
    per = {}
    for n in exp["nodes"]:
        if n["kind"] in ("level", "attention"):
            assert n["key"] in g["levels"] and n["repeat"] == 1
            per.setdefault(n["key"], []).append(n["layer"])
    for key, info in g["levels"].items():
        if info["kind"] != "optimizer":
            assert sorted(per[key]) == list(range(info["repeat"]))
    # layers are chained: something of layer 0 flows into layer 1
    layer = {n["id"]: n["layer"] for n in exp["nodes"]}
    assert any(layer.get(e["source"]) == 0 and layer.get(e["target"]) == 1 for e in exp["edges"])


@pytest.mark.parametrize("spec", MODELS)
def test_timeline_follows_the_clocks(pages, spec):
    c, d = pages[spec]
    g = d["graphs"][0]
    order = [n for tier in c.layout.tiers for n in tier]
    assert [r["key"] for r in g["timeline"]] == order
    n = 200
    tl = D.timeline(g["timeline"], n)
    for r in g["timeline"]:
        info = g["levels"][r["key"]]
        if info["unit"] == "tokens":
            C = int(info["every"])
            assert tl[r["key"]]["updates"] == [t for t in range(1, n + 1) if t % C == 0]
        else:  # frozen (frequency 0) and step clocks: nothing happens inside a sequence
            assert tl[r["key"]]["updates"] == []
        assert tl[r["key"]]["resets"] == []  # no nested chain among the built-ins


def test_hope_memory_symbols_are_bound_to_its_sources(pages):
    c, d = pages["hope"]
    info = d["graphs"][0]["levels"]["memory"]
    b = {x["role"]: x for x in info["bindings"]}
    assert b["keys"]["text"] == "k" and b["keys"]["levels"] == ["mk"]
    assert b["values"]["text"] == "l2norm(self(v), groups = heads)" and "self-generated" in b["values"]["note"]
    assert b["lr"]["text"] == "eta" and b["lr"]["kind"] == "stream" and b["lr"]["levels"] == ["meta"]
    assert b["decay"]["text"] == "alpha" and b["decay"]["levels"] == ["malpha"]
    eta = next(x for x in b["lr"]["defs"] if x["name"] == "eta")
    assert eta["text"].startswith("eta = lr_max * sigmoid(") and _line(d, eta).strip().startswith("eta =")
    eqs = " ".join(e["mathml"] for e in info["equations"])
    assert "θ" in eqs and "<mi>I</mi>" in eqs and "∇" in eqs  # DGD: W((1 - a) I - theta k k^T) - theta grad
    assert info["clock"] == "tokens(64)" and "every 64 tokens" in info["clock_words"]
    assert "chunk-start" in info["clock_words"]
    assert info["params_per_layer"] == 2048 and info["params"] == 4096
    roles = [s["role"] for s in info["spans"]]
    assert roles[0] == "def" and "read" in roles  # `o = memory(q)` is where it is read
    outer = d["graphs"][0]["levels"]["outer"]
    assert outer["optimizer_graph"] == "optimizer:AdamW" and d["graphs"][1]["id"] == "optimizer:AdamW"
    assert outer["params"] == d["spec"]["total_params"] == 169280


def test_titans_mac_attention_and_momentum(pages):
    c, d = pages["titans:TitansMAC"]
    lv = d["graphs"][0]["levels"]
    assert lv["attn"]["kind"] == "attention" and any(b["role"] == "context" and b["text"] == "m"
                                                      for b in lv["attn"]["bindings"])
    mem = {b["role"]: b for b in lv["mem"]["bindings"]}
    assert mem["momentum"]["text"] == "eta" and mem["momentum"]["levels"] == ["attn"]
    assert [e["title"].split(" ")[0] for e in lv["mem"]["equations"]][:2] == ["momentum", "update"]


def test_nested_cms_restarts(tmp_path):
    text = (specs_dir() / "cms.nl").read_text().replace("variant = sequential", "variant = nested")
    (tmp_path / "optim").mkdir()
    shutil.copy(specs_dir() / "optim" / "adamw.nl", tmp_path / "optim" / "adamw.nl")
    (tmp_path / "nested.nl").write_text(text)
    d = D.build(str(tmp_path / "nested.nl"))
    g = d["graphs"][0]
    rows = {r["key"]: r for r in g["timeline"]}
    assert rows["c_cms1"]["resets"] == ["c_cms0"] and sorted(rows["c_cms2"]["resets"]) == ["c_cms0", "c_cms1"]
    tl = D.timeline(g["timeline"], 512)
    assert tl["c_cms0"]["resets"] == [64, 128, 192, 256, 320, 384, 448, 512]  # every slower chunk end
    assert tl["c_cms1"]["resets"] == [256, 512] and tl["c_cms2"]["resets"] == []
    assert "restarted from it whenever a slower stage" in g["levels"]["c_cms0"]["init"]["words"]


@pytest.mark.parametrize("name", OPTIM)
def test_optimizer_files(name):
    from nlc.passes.optimizer import check_file_optimizers
    unit = run(name, until="load").unit
    specs = check_file_optimizers(unit, {})
    d = D.build(name)
    json.dumps(d, allow_nan=False)
    assert [g["title"] for g in d["graphs"]] == [s.name for s in specs]
    for g, spec in zip(d["graphs"], specs):
        assert g["kind"] == "optimizer" and g["unit"] == "steps"
        assert sorted(g["levels"]) == sorted(lv.name for lv in spec.levels)
        _xml(g["step_eq"])
        ids = {n["id"] for n in g["views"]["collapsed"]["nodes"]}
        assert {"grad", "step"} <= ids and set(g["levels"]) <= ids
        for lv in spec.levels:
            info = g["levels"][lv.name]
            assert info["every"] == lv.every and info["spans"][0]["line"] == lv.span.line
            assert f"level {lv.name}" in _line(d, info["spans"][0]) or lv.name in _line(d, info["spans"][0])
            _xml(info["equations"][0]["mathml"])
            assert D.timeline(g["timeline"], 24)[lv.name]["updates"] == list(range(lv.every, 25, lv.every))


def test_m3_two_momentum_levels_at_two_frequencies():
    d = D.build("optim/m3")
    g = d["graphs"][0]
    assert g["title"] == "M3"
    assert (g["levels"]["m1"]["every"], g["levels"]["m2"]["every"]) == (1, 8)
    assert g["levels"]["m2"]["tier"] > g["levels"]["m1"]["tier"]  # a slower band
    bands = g["views"]["collapsed"]["bands"]
    assert [b["label"] for b in bands if b["key"].startswith("tier")] == ["steps(1)", "steps(8)"]
    assert "<mn>5</mn>" in g["step_eq"] and "NS" in g["step_eq"]  # newton_schulz(m, ns_steps = 5)
    assert "accumulat" in g["levels"]["m2"]["equations"][0]["title"]


def _run_dir(tmp_path, rows, overrides=None) -> Path:
    r = tmp_path / "run"
    (r / "spec" / "optim").mkdir(parents=True)
    shutil.copy(specs_dir() / "hope.nl", r / "spec" / "hope.nl")
    shutil.copy(specs_dir() / "optim" / "adamw.nl", r / "spec" / "optim" / "adamw.nl")
    (r / "spec.json").write_text(json.dumps({"spec_name": "hope", "spec_hash": "0" * 16, "model": "Hope",
                                             "overrides": overrides or {}, "spec_file": "spec/hope.nl"}))
    (r / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in rows) + '\n{"step": 99, "loss"')
    return r


def test_run_statistics_go_to_their_levels(tmp_path):
    rows = [{"step": s, "loss": 5.0 / s, "bpb": 7.0 / s, "lr": 1e-3, "grad_norm": 1.0 + s,
             "hope.0.memory/surprise": 0.1 * s, "hope.1.memory/surprise": 0.2 * s,
             "hope.0.mk/update_norm": float(s), "hope.0.c_cms0/nan": float("nan")} for s in range(1, 6)]
    rows.append({"step": 6, "val_loss": 0.8, "val_bpb": 1.2})
    r = _run_dir(tmp_path, rows, {"layers": 2})
    d = D.build(None, run_dir=r)  # the run's own spec, model and overrides
    json.dumps(d, allow_nan=False)
    assert d["spec"]["overrides"] == {"layers": 2} and d["run"]["record"]["model"] == "Hope"
    assert d["run"]["rows"] == 6  # the cut-off last line is skipped
    assert d["run"]["curves"]["loss"][0] == [1, 5.0] and d["run"]["curves"]["val_bpb"] == [[6, 1.2]]
    lv = d["graphs"][0]["levels"]
    sur = {x["layer"]: x["points"] for x in lv["memory"]["stats"]["surprise"]}
    assert sorted(sur) == [0, 1] and sur[1][-1] == [5, pytest.approx(1.0)]
    assert [x["layer"] for x in lv["mk"]["stats"]["update_norm"]] == [0]
    assert "stats" not in lv["c_cms0"]  # non-finite values are dropped, not plotted
    assert [p[1] for p in lv["outer"]["stats"]["grad_norm"][0]["points"]] == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert any(f.endswith("hope.nl") for f in d["sources"])


def test_long_series_are_thinned():
    pts = [[i, float(i)] for i in range(5000)]
    out = D._thin(pts)
    assert len(out) <= D.MAX_POINTS + 1 and out[0] == [0, 0.0] and out[-1] == [4999, 4999.0]


def test_page_is_self_contained_and_round_trips(tmp_path):
    spec = tmp_path / "s.nl"
    spec.write_text("# a comment with </script><script>alert(1)</script> & <!--\n"
                    "model S(dim = 8, vocab = 16) {\n  block b {\n    h = rmsnorm(x)\n"
                    "    level m : linear() { keys h\n values h\n clock tokens(4) }\n    out x + m(h)\n  }\n}\n")
    d = D.build(str(spec))
    html = page.render(d)
    body = re.search(r'<script id="nlc-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    assert json.loads(body) == json.loads(json.dumps(d))
    assert "</script" not in body and "<!--" not in body
    # nothing is fetched at view time: no external scripts, styles, fonts or images
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)=', html)
    assert "http://" not in html.replace('xmlns="http://www.w3.org', "").replace("http://www.w3.org/2000/svg", "")
    assert "{{" not in html.split('<script id="nlc-data"')[0]


def test_cli_writes_the_page(tmp_path, capsys):
    from nlc.cli import main
    out = tmp_path / "h.html"
    assert main(["view", "hope", "-o", str(out)]) == 0
    assert "<svg" in out.read_text() and f"wrote {out}" in capsys.readouterr().out
    assert main(["view", "optim/m3", "--set", "f=4", "-o", str(tmp_path / "m3.html")]) == 0
    assert '"every":4' in (tmp_path / "m3.html").read_text()
    assert main(["view"]) == 2 and "needs a spec" in capsys.readouterr().err
    assert main(["view", "hope", "--run", str(tmp_path / "nope")]) == 2


def test_serve_answers_on_localhost():
    from nlc.view.serve import make_server
    srv = make_server("<html>ok</html>", 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        assert srv.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(url + "/") as r:
            assert r.read() == b"<html>ok</html>" and r.headers["Content-Type"].startswith("text/html")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "/etc/passwd")
    finally:
        srv.shutdown()
        srv.server_close()


SPEC_TWO_BLOCKS = """
model Two(dim = 32, heads = 2, vocab = 64, layers = 3) {
  block first {
    h = rmsnorm(x)
    k = l2norm(linear(h), groups = heads)
    level a : linear() per head {
      keys k
      values linear(h)
      rule gd(lr = learned(0.1))
      clock tokens(8)
      init zeros
    }
    out x + linear(a(k))
  }
  block rest repeat layers {
    h = rmsnorm(x)
    k = l2norm(linear(h), groups = heads)
    level a : mlp(depth = 2) per head {
      keys k
      values linear(h)
      learn huber(delta = 0.5)
      rule momentum(lr = 0.1, momentum = 0.8, decay = 0.01)
      clock tokens(4)
    }
    out x + linear(a(k))
  }
}
"""


def test_several_blocks_and_a_user_spec(tmp_path):
    spec = tmp_path / "two.nl"
    spec.write_text(SPEC_TWO_BLOCKS)
    d = D.build(str(spec))
    g = d["graphs"][0]
    assert sorted(g["levels"]) == ["first.a", "rest.a"]  # node ids of the level graph: block.level
    first, rest = g["levels"]["first.a"], g["levels"]["rest.a"]
    assert first["init"]["learned_by"] == [] and "zeros" in first["init"]["words"]  # not meta-learned
    lr = next(b for b in first["bindings"] if b["role"] == "lr")
    assert (lr["kind"], lr["text"], lr["value"]) == ("learned", "learned(0.1)", 0.1)
    assert "Huber" in rest["objective_eq"] and "<mn>0.5</mn>" in rest["objective_eq"]
    assert first["spans"][0]["line"] == 6 and "level a" in _line(d, first["spans"][0])
    assert rest["spans"][0]["line"] == 18
    exp = [(n["key"], n["layer"]) for n in g["views"]["expanded"]["nodes"] if n["key"] != None]  # noqa: E711
    assert sorted(exp, key=str) == sorted([("first.a", None)] + [("rest.a", i) for i in range(3)], key=str)
    rows = [{"step": 1, "first.0.a/surprise": 0.5, "rest.2.a/surprise": 0.25}]
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    d = D.build(str(spec), run_dir=run_dir)  # a spec of one's own with a run's statistics
    lv = d["graphs"][0]["levels"]
    assert lv["first.a"]["stats"]["surprise"] == [{"layer": 0, "points": [[1, 0.5]]}]
    assert lv["rest.a"]["stats"]["surprise"] == [{"layer": 2, "points": [[1, 0.25]]}]


def test_a_model_without_levels(tmp_path):
    spec = tmp_path / "tiny.nl"
    spec.write_text("model Tiny(dim = 8, vocab = 16) {\n  block b {\n    out x + linear(x)\n  }\n}\n")
    d = D.build(str(spec))
    g = d["graphs"][0]
    assert g["levels"] == {} and g["timeline"] == []
    assert sorted(n["id"] for n in g["views"]["collapsed"]["nodes"]) == ["input", "output"]
    assert "<svg" in page.render(d)
