"""Level-graph properties of every built-in spec and model: frequency tiers are ordered,
edge kinds are known, and the edges the papers describe are there."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nlc.cli import main
from nlc.graph.level_graph import build_graph, level_rows, node_id
from nlc.passes import run
from nlc.passes.load import load

ROOT = Path(__file__).resolve().parents[2]
EDGE_KINDS = {"flow", "generates", "optimizes", "initializes", "backprop"}
MODELS = [(str(p.relative_to(ROOT)), m) for p in sorted((ROOT / "specs").glob("*.nl")) for m in load(p).own_models]


@pytest.fixture(scope="module")
def compiled():
    cache = {}

    def get(spec, model):
        if (spec, model) not in cache:
            cache[spec, model] = run(ROOT / spec, model=model)
        return cache[spec, model]
    return get


def _levels(G):
    return {n: d for n, d in G.nodes(data=True) if d.get("kind") not in ("input", "output")}


@pytest.mark.parametrize("spec,model", MODELS, ids=[m for _, m in MODELS])
def test_tiers_ordered(spec, model, compiled):
    G = compiled(spec, model).graph
    lv = _levels(G)
    assert sorted(n for t in G.graph["tiers"] for n in t) == sorted(lv)
    for a, da in lv.items():
        for b, db in lv.items():
            if da["unit"] == "tokens" and db["unit"] in ("steps", "frozen"):
                assert da["tier"] < db["tier"], (a, b)
            if da["unit"] == "frozen" and db["unit"] == "steps":
                assert da["tier"] < db["tier"], (a, b)
            if da["unit"] == db["unit"] and da["unit"] in ("tokens", "steps"):
                assert (da["chunk"] < db["chunk"]) == (da["tier"] < db["tier"]), (a, b)
                assert (da["chunk"] == db["chunk"]) == (da["tier"] == db["tier"]), (a, b)
    for i, tier in enumerate(G.graph["tiers"]):
        assert all(G.nodes[n]["tier"] == i for n in tier)


@pytest.mark.parametrize("spec,model", MODELS, ids=[m for _, m in MODELS])
def test_edge_kinds_and_endpoints(spec, model, compiled):
    c = compiled(spec, model)
    G = c.graph
    kinds = {d["kind"] for _, _, d in G.edges(data=True)}
    assert kinds <= EDGE_KINDS
    assert "input" in G and "output" in G
    for u, v, d in G.edges(data=True):
        if d["kind"] == "backprop":
            assert u == "output" and G.nodes[v]["role"] == "cms"
        if d["kind"] in ("optimizes", "initializes"):
            assert G.nodes[u]["kind"] == "optimizer"


@pytest.mark.parametrize("spec,model", MODELS, ids=[m for _, m in MODELS])
def test_optimizer_edges(spec, model, compiled):
    c = compiled(spec, model)
    G, plan = c.graph, c.plan
    assert plan.optimizer is not None
    o = plan.optimizer.name
    nb = len(plan.blocks)
    for b, lv in plan.all_levels():
        n = node_id(b, lv, nb)
        kinds = {d["kind"] for d in G.get_edge_data(o, n, default={}).values()}
        if lv.role == "memory" and lv.init == "meta":
            assert "initializes" in kinds, n
        else:
            assert "optimizes" in kinds, n
    # built-in models use the AdamW written in specs/optim/adamw.nl, checked
    assert plan.optimizer.spec is not None and [s.name for s in plan.optimizer.spec.levels] == ["m", "v"]


@pytest.mark.parametrize("spec,model", MODELS, ids=[m for _, m in MODELS])
def test_cms_levels_learn_by_backprop(spec, model, compiled):
    G = compiled(spec, model).graph
    for n, d in _levels(G).items():
        if d.get("role") == "cms" and d["unit"] != "frozen":
            assert any(e["kind"] == "backprop" for e in G.get_edge_data("output", n, default={}).values()), n


@pytest.mark.parametrize("spec,model", MODELS, ids=[m for _, m in MODELS])
def test_layout_matches_networkx(spec, model, compiled):
    c = compiled(spec, model)
    assert level_rows(c.layout) == level_rows(c.graph)
    assert c.graph.graph["tiers"] == c.layout.tiers
    G = build_graph(c.plan)
    assert sorted(G.edges(data="kind")) == sorted(c.graph.edges(data="kind"))


def test_hope_self_generated_values(compiled):
    G = compiled("specs/hope.nl", "Hope").graph
    for n in ("mk", "mv", "meta", "malpha", "memory"):
        edges = G.get_edge_data(n, n, default={}).values()
        assert any(d["kind"] == "generates" and "values" in d["label"] for d in edges), n
    # eta and alpha are produced by the meta and malpha memories: data-dependent gates
    assert any(d["kind"] == "generates" and d["label"] == "lr" for d in G.get_edge_data("meta", "memory").values())
    assert any(d["kind"] == "generates" and d["label"] == "decay" for d in G.get_edge_data("malpha", "memory").values())
    assert len(G.graph["tiers"]) == 4


def test_mac_memory_depends_on_attention(compiled):
    G = compiled("specs/titans.nl", "TitansMAC").graph
    flow = [d["label"] for d in G.get_edge_data("attn", "mem").values() if d["kind"] == "flow"]
    assert flow and "keys" in flow[0] and "values" in flow[0]
    # the memory's read joins the attention's context
    assert any(d["kind"] == "flow" and d["label"] == "context" for d in G.get_edge_data("mem", "attn").values())


def test_cms_chain_is_sequential(compiled):
    G = compiled("specs/cms.nl", "CMS").graph
    assert G.has_edge("c_cms0", "c_cms1") and G.has_edge("c_cms1", "c_cms2")
    assert [G.nodes[n]["chunk"] for n in ("c_cms0", "c_cms1", "c_cms2")] == [16, 64, 256]


@pytest.mark.parametrize("variant,edges", [("nested", [("c_cms0", "c_cms1")]), ("independent", [("input", "c_cms1")])])
def test_cms_variants(variant, edges):
    text = (ROOT / "specs/cms.nl").read_text().replace("variant = sequential", f"variant = {variant}")
    G = run(ROOT / "specs/cms.nl", text=text).graph
    for u, v in edges:
        assert G.has_edge(u, v)


@pytest.mark.parametrize("suffix", [".svg", ".png", ".dot", ".mmd"])
def test_nlc_graph_writes(suffix, tmp_path, capsys):
    out = tmp_path / f"hope{suffix}"
    assert main(["graph", str(ROOT / "specs/hope.nl"), "-o", str(out)]) == 0
    assert out.exists() and out.stat().st_size > 100
    if suffix == ".dot":
        assert out.read_text().startswith('digraph "Hope"')
    if suffix == ".svg":
        assert "<svg" in out.read_text()


def test_check_does_not_import_torch_or_networkx():
    code = ("import sys; from nlc.cli import main; rc = main(['check', '--quiet', 'specs/hope.nl', 'specs/titans.nl', "
            "'specs/optim/m3.nl']); heavy = [m for m in ('torch', 'networkx', 'pydantic', 'matplotlib') if m in sys.modules]; "
            "print(rc, heavy)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "0 []", r.stdout + r.stderr
