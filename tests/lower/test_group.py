"""Level groups: identical memories of a block run as one batched level (nlc/lower/group.py).

The schedule decides the groups (nlc/passes/schedule.py: level_groups); `group_levels=False` runs
every level alone. Grouped and ungrouped must agree on everything: logits, loss, every fast-state
slot, the per-level stats and the gradients of every parameter."""
import pytest
import torch

import nlc
from nlc.ir.schedule import Target
from nlc.passes import run
from nlc.passes.schedule import build_schedule

# two memories with the same memory, rule, gates (named streams), keys and clock; values differ. No CMS:
# the torch backend runs it layer-major (Layer.run), Hope runs segment-major (Layer.segment)
TWO = """
import "optim/adamw.nl"
memory Deep = mlp(depth = 2, expansion = 2, act = silu)
model Two(dim = 16, heads = 2, layers = 2, vocab = 256, chunk = 4) {
  block b repeat layers {
    h = rmsnorm(x)
    q = l2norm(linear(h), groups = heads)
    k = l2norm(linear(h), groups = heads)
    eta = sigmoid(linear(h, out = heads))
    lr = 0.2 * sigmoid(linear(h, out = heads))
    level a : Deep per head {
      keys k
      values l2norm(linear(h), groups = heads)
      learn l2
      rule RULE(lr = lr, momentum = eta, decay = 0.01)
      clock tokens(chunk)
    }
    level c : Deep per head {
      keys k
      values l2norm(linear(h), groups = heads)
      learn l2
      rule RULE(lr = GATE, momentum = eta, decay = 0.01)
      clock tokens(chunk)
    }
    out x + linear(a(q)) + linear(c(q))
  }
}
"""


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny float64 convolutions with two OpenMP threads on a loaded machine take ~0.1 s each (measured,
    2026-11-30): one thread keeps these tests at a few seconds. Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def two(rule="momentum", gate="lr"):
    return TWO.replace("RULE", rule).replace("GATE", gate)


def groups(spec, text=None, **target):
    c = run(spec, {}, None, text=text) if text else run(spec, {}, None)
    return [g.levels for g in build_schedule(c.plan, Target(**target)).groups]


def test_hope_groups_its_four_identical_memories():
    assert groups("hope") == [("mk", "mv", "meta", "malpha")]  # `memory` has another clock
    assert groups("hope", backend="reference") == []  # the reference interpreter stays ungrouped
    assert groups("hope", group_levels=False) == []


def test_freeze_and_differing_gates_break_a_group():
    assert groups("hope", frozen=frozenset({"mk"})) == [("mv", "meta", "malpha")]
    assert groups("hope", frozen=frozenset({"mk", "mv", "meta"})) == []
    assert groups("<spec>", two()) == [("a", "c")]
    assert groups("<spec>", two(gate="eta")) == []       # another lr stream
    assert groups("<spec>", two(gate="learned(0.1)")) == []  # a learned gate is each level's own


def test_emit_schedule_prints_the_group(capsys):
    from nlc.cli import main
    assert main(["compile", "hope", "--emit", "schedule"]) == 0
    out = capsys.readouterr().out
    assert "hope.{mk, mv, meta, malpha}" in out and "4 x 4 heads" in out


def _pair(spec=None, text=None, **kw):
    torch.manual_seed(0)
    make = (lambda **k: nlc.compile_text(text, **k)) if text else (lambda **k: nlc.compile(spec, **k))
    g, u = make(**kw).double(), make(group_levels=False, **kw).double()
    u.load_state_dict(g.state_dict())
    assert g.schedule.groups and not u.schedule.groups
    return g, u


def _same(g, u, calls, x):
    """Run both models over the calls (token ranges, the state passed on) and compare everything."""
    sg = su = None
    for a, b in calls:
        og = g(x[:, a:b], state=sg, targets=x[:, a:b])
        ou = u(x[:, a:b], state=su, targets=x[:, a:b])
        torch.testing.assert_close(og.logits, ou.logits, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(og.loss, ou.loss, rtol=1e-10, atol=1e-12)
        assert og.state.keys() == ou.state.keys() and og.stats.keys() == ou.stats.keys()
        for k in ou.state:
            torch.testing.assert_close(og.state[k], ou.state[k], rtol=1e-10, atol=1e-12, msg=k)
        for k in ou.stats:
            torch.testing.assert_close(torch.as_tensor(og.stats[k]), torch.as_tensor(ou.stats[k]),
                                       rtol=1e-10, atol=1e-12, msg=k)
        sg, su = og.state, ou.state
    params = [n for n, p in u.named_parameters() if p.requires_grad]
    gg = torch.autograd.grad(og.loss, [dict(g.named_parameters())[n] for n in params], allow_unused=True)
    gu = torch.autograd.grad(ou.loss, [dict(u.named_parameters())[n] for n in params], allow_unused=True)
    for n, a, b in zip(params, gg, gu):
        assert (a is None) == (b is None), n
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=n)
    return og


@pytest.mark.parametrize("ov,T,calls", [
    (dict(dim=16, heads=2, layers=1, chunk=4, mem_chunk=8), 19, [(0, 19)]),   # a tail of 3
    (dict(dim=12, heads=3, layers=2, chunk=2, mem_chunk=4), 9, [(0, 5), (5, 9)]),  # two streaming calls
])
def test_hope_grouped_equals_ungrouped(ov, T, calls):
    g, u = _pair("hope", **ov)
    _same(g, u, calls, torch.randint(0, 256, (2, T)))


@pytest.mark.parametrize("rule", ["momentum", "anchored"])  # momentum buffers stacked; M_0 stacked (anchored)
def test_layer_major_grouped_equals_ungrouped(rule):
    g, u = _pair(text=two(rule))
    _same(g, u, [(0, 6), (6, 11)], torch.randint(0, 256, (2, 11)))


def test_grouped_curvature_step_equals_ungrouped():
    """normalize = true (the curvature-following step): the grouped c_t is each member's own."""
    g, u = _pair(text=two().replace("decay = 0.01)", "decay = 0.01, normalize = true)"))
    _same(g, u, [(0, 6), (6, 11)], torch.randint(0, 256, (2, 11)))


def test_hope_grouped_with_checkpointing_and_layer_major():
    x = torch.randint(0, 256, (2, 5))
    g, u = _pair("hope", dim=8, heads=2, layers=1, chunk=2, mem_chunk=4, checkpointing=True)
    _same(g, u, [(0, 5)], x)
    # CMS frozen: no level learns from the task loss, so the torch backend runs Hope layer-major
    g, u = _pair("hope", dim=8, heads=2, layers=1, chunk=2, mem_chunk=4, freeze="c_cms0,c_cms1")
    assert g.schedule.order == "layer-major"
    _same(g, u, [(0, 11)], x)


@pytest.mark.parametrize("ov,T,calls", [
    (dict(dim=24, heads=3, layers=2, chunk=2, mem_chunk=6), 13, [(0, 7), (7, 13)]),
    (dict(dim=32, heads=4, layers=2, chunk=4, mem_chunk=16), 37, [(0, 37)]),
    (dict(dim=64, heads=4, layers=2, chunk=16, mem_chunk=64), 80, [(0, 50), (50, 80)]),
])
def test_hope_grouped_equals_ungrouped_larger(ov, T, calls):
    g, u = _pair("hope", **ov)
    _same(g, u, calls, torch.randint(0, 256, (2, T)))
