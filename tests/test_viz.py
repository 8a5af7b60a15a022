import re
import subprocess
import sys

import networkx as nx
import pytest

from nlc import viz

MEM = "residual_mlp(h=128)"


def example_graph() -> nx.MultiDiGraph:
    """A Hope-like level graph: self-modifying k/v/eta/alpha, memory, a CMS chain, AdamW."""
    G = nx.MultiDiGraph(model="Hope", tiers=[
        ["k", "v", "eta", "alpha", "cms_0"], ["memory"], ["cms_1"], ["cms_2"], ["outer"]])

    def level(name, tier, clock, params, objective="l2", rule="dgd", kind="level", **kw):
        G.add_node(name, kind=kind, label=name, tier=tier, clock=clock, chunk=kw.pop("chunk", None), params=params,
                   objective=objective, rule=rule, memory=kw.pop("memory", MEM),
                   repeat=kw.pop("repeat", 1), **kw)

    G.add_node("input", kind="input", label="input", tier=0, clock="", params=0, repeat=1)
    for n in ("k", "v", "eta", "alpha"):
        level(n, 0, "tokens(16)", 33024, chunk=16)
    level("memory", 1, "tokens(64)", 33024, chunk=64)
    for i, (tier, c) in enumerate([(0, 16), (2, 256), (3, 1024)]):
        level(f"cms_{i}", tier, f"tokens({c})", 525312, objective="task-loss", rule="gd",
              memory="mlp(1024)", chunk=c)
    G.add_node("output", kind="output", label="output", tier=0, clock="", params=0, repeat=1)
    level("outer", 4, "steps(1)", 0, objective="task-loss", rule="adamw", kind="optimizer",
          memory="")

    for n, lab in (("k", "keys"), ("v", "values"), ("eta", "lr"), ("alpha", "decay")):
        G.add_edge("input", n, kind="flow")
        G.add_edge(n, n, kind="generates", label="values")
        G.add_edge(n, "memory", kind="flow" if n in ("k", "v") else "generates", label=lab)
    G.add_edge("input", "memory", kind="flow", label="queries")
    chain = ["memory", "cms_0", "cms_1", "cms_2", "output"]
    for a, b in zip(chain, chain[1:]):
        G.add_edge(a, b, kind="flow")
    for c in ("cms_0", "cms_1", "cms_2"):
        G.add_edge("output", c, kind="backprop")
    for n in ("k", "v", "eta", "alpha", "memory", "cms_0", "cms_1", "cms_2"):
        G.add_edge("outer", n, kind="optimizes")
    for n in ("k", "v", "eta", "alpha", "memory"):
        G.add_edge("outer", n, kind="initializes")
    return G


@pytest.fixture(scope="module")
def G():
    return example_graph()


def test_render_svg_png_pdf(G, tmp_path):
    out = viz.render(G, str(tmp_path / "g.svg"))
    assert out == tmp_path / "g.svg"
    svg = out.read_text()
    assert "<svg" in svg
    assert (viz.render(G, tmp_path / "g.png").read_bytes()[:8]) == b"\x89PNG\r\n\x1a\n"
    assert viz.render(G, tmp_path / "sub" / "g.pdf").read_bytes()[:5] == b"%PDF-"


def test_draw_returns_figure(G):
    from matplotlib.figure import Figure
    fig = viz.draw(G)
    assert isinstance(fig, Figure)
    w, h = fig.get_size_inches()
    assert w > 8 and h > 8  # five tiers and the I/O bands, five boxes in the widest band
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"Hope", "tokens(16)", "steps(1)", "memory", "cms_2"} <= texts
    assert "tokens(16) · dgd · l2 · 33k" in texts
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(lab.startswith("backprop") for lab in labels)
    assert any(lab.startswith("learning level") for lab in labels)


def test_svg_deterministic(G, tmp_path):
    a = viz.render(G, tmp_path / "a.svg").read_bytes()
    b = viz.render(example_graph(), tmp_path / "b.svg").read_bytes()
    assert a == b


def test_dot(G, tmp_path):
    text = viz.render(G, tmp_path / "g.dot").read_text()
    assert text.startswith('digraph "Hope"') and text.rstrip().endswith("}")
    groups = re.findall(r'subgraph "band_(\w+)" \{\s*rank=same;', text)
    assert groups == ["input", "tier0", "tier1", "tier2", "tier3", "output", "tier4"]
    for n in G:
        assert f'"{n}"' in text
    assert "style=dotted" in text and "style=bold" in text and "style=dashed" in text
    assert text.count("{") == text.count("}")


def test_dot_parses_with_pydot(G):
    pydot = pytest.importorskip("pydot")
    (g,) = pydot.graph_from_dot_data(viz.to_dot(G))
    H = nx.nx_pydot.from_pydot(g)
    assert set(G) <= set(H)
    assert len(g.get_subgraphs()) == len(viz.bands(G))


def test_mermaid(G, tmp_path):
    text = viz.render(G, tmp_path / "g.mmd").read_text()
    assert "flowchart BT" in text
    for n in G:
        assert re.search(rf"^\s+{n}\[\"{n}<br/>", text, re.M) or f'{n}["{n}"]' in text, n
    assert text.count("subgraph") == text.count("\n  end")
    assert len(re.findall(r"linkStyle \d+ ", text)) == G.number_of_edges()
    assert "k -.->|values| k" in text and "==>" in text


def test_bands_fastest_at_bottom(G):
    pos = viz.layout(G)
    y = {n: p[1] for n, p in pos.items()}
    assert y["input"] < y["k"] == y["v"] == y["cms_0"] < y["memory"] < y["cms_1"] < y["cms_2"]
    assert y["cms_2"] < y["output"] < y["outer"]
    # boxes in a band never overlap
    size = viz._layout(G).size
    row = sorted((pos[n][0], size[n][0]) for n in ("k", "v", "eta", "alpha", "cms_0"))
    for (x1, w1), (x2, w2) in zip(row, row[1:]):
        assert x1 + w1 / 2 < x2 - w2 / 2


def test_layout_deterministic_and_uncrossed():
    pos = viz.layout(example_graph())
    assert pos == viz.layout(example_graph())
    # barycentric ordering pulls the tier-0 node feeding tier-1 `memory` ...
    # ... and `cms_0` (fed by memory) next to each other rather than leaving insertion order
    G = nx.MultiDiGraph(model="m", tiers=[["a", "b", "c"], ["x", "y", "z"]])
    for n in "abcxyz":
        G.add_node(n, kind="level", clock="tokens(1)")
    for u, v in (("a", "z"), ("b", "y"), ("c", "x")):
        G.add_edge(u, v, kind="flow")
    p = viz.layout(G)
    order0 = sorted("abc", key=lambda n: p[n][0])
    order1 = sorted("xyz", key=lambda n: p[n][0])
    assert [{"a": "z", "b": "y", "c": "x"}[n] for n in order0] == order1


def test_band_labels(G):
    labels = [b.label for b in viz.bands(G)]
    assert labels == ["input", "tokens(16)", "tokens(64)", "tokens(256)", "tokens(1024)",
                      "output", "steps(1)"]
    F = nx.MultiDiGraph(model="f", tiers=[["w"]])
    F.add_node("w", kind="level", clock="frozen", params=10)
    assert viz.bands(F)[0].label == "frequency 0"
    F.add_node("u", kind="level", tier=0)  # no clock: the band keeps the other clocks
    assert viz.bands(F)[0].label == "frequency 0"


def test_unknown_suffix(G, tmp_path):
    with pytest.raises(ValueError, match=r"\.svg.*\.mmd"):
        viz.render(G, tmp_path / "g.jpg")
    with pytest.raises(ValueError):
        viz.render(G, tmp_path / "noext")


def test_human_count():
    assert viz.human_count(33024) == "33k"
    assert viz.human_count(33012) == "33k"
    assert viz.human_count(525312) == "525k"
    assert viz.human_count(1_250_000) == "1.25M"
    assert viz.human_count(999) == "999"
    assert viz.human_count(0) == "0"


def test_minimal_graphs(tmp_path):
    E = nx.MultiDiGraph(model="empty")
    assert viz.render(E, tmp_path / "e.svg").stat().st_size > 0
    assert "digraph" in viz.to_dot(E) and "flowchart BT" in viz.to_mermaid(E)
    # no tiers in G.graph: fall back on node attributes; odd names survive DOT and Mermaid
    M = nx.MultiDiGraph(model='we"ird')
    M.add_node("block[0..3].memory", kind="level", tier=1, clock="tokens(64)", params=5, repeat=4)
    M.add_node("attn", kind="attention", tier=0, clock="tokens(1)", params=0)
    M.add_edge("attn", "block[0..3].memory", kind="flow", label="keys")
    assert viz.render(M, tmp_path / "m.png").stat().st_size > 0
    dot = viz.to_dot(M)
    assert '"block[0..3].memory"' in dot and 'digraph "we\\"ird"' in dot
    mmd = viz.to_mermaid(M)
    assert "block_0__3__memory" in mmd and "block[0..3].memory" in mmd
    assert 'title: "we\\"ird"' in mmd
    R = nx.MultiDiGraph(model="r")
    R.add_node("end", kind="level", clock="tokens(1)")
    R.add_edge("end", "end", kind="generates", label="a|b")
    assert "n_end -.->|a#124;b| n_end" in viz.to_mermaid(R)
    assert viz.layout(M)["attn"][1] < viz.layout(M)["block[0..3].memory"][1]
    # a node listed twice, or a name unknown to G, in G.graph["tiers"]
    M.graph["tiers"] = [["attn", "ghost"], ["block[0..3].memory", "attn"]]
    assert [b.nodes for b in viz.bands(M)] == [["attn"], ["block[0..3].memory"]]


def test_import_is_cheap():
    code = ("import sys, nlc.viz; bad = [m for m in ('torch', 'matplotlib') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_model_without_levels_draws(tmp_path):
    """A model with no levels (docs/language.md's Tiny) draws: input and output only (it raised IndexError)."""
    spec = tmp_path / "tiny.nl"
    spec.write_text("model Tiny(dim = 8, vocab = 16) {\n  block b {\n    out x + linear(x)\n  }\n}\n")
    from nlc.passes import run
    G = run(str(spec)).graph
    assert [b.key for b in viz.bands(G)] == ["input", "output"]
    assert viz.render(G, tmp_path / "tiny.svg").stat().st_size > 0


def test_every_node_and_edge_kind_has_a_look():
    """The picture's kinds are one registry (nlc.ir.kinds): each has a style in the figure, the page and
    the Mermaid export, and nothing else does."""
    from nlc.ir.kinds import EDGE_KINDS, NODE_KINDS, EdgeKind, NodeKind
    from nlc.view.data import DASH
    from nlc.viz import _MERMAID_ARROW, EDGE_STYLE, NODE_STYLE
    assert set(NODE_STYLE) == set(NODE_KINDS) == set(NodeKind)
    assert set(EDGE_STYLE) == set(DASH) == set(_MERMAID_ARROW) == set(EDGE_KINDS) == set(EdgeKind)
