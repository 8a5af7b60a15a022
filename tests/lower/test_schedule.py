"""The `schedule` stage: decided once, printed, and what the program runs."""
import pytest

from nlc.ir.schedule import Backend, Impl, Order, Target, grid
from nlc.passes import run
from nlc.passes.schedule import build_schedule


def _sched(spec, model=None, **target):
    c = run(spec, {}, model)
    return c.plan, build_schedule(c.plan, Target(**target))


def test_grid_and_edges_of_hope():
    plan, s = _sched("hope")
    chunks = {lv.clock.period for _, lv in plan.all_levels() if lv.clock.in_context and lv.role in ("memory", "cms")}
    import math
    assert s.seg == math.gcd(*chunks) and s.period == math.lcm(*chunks)
    assert s.order == Order.SEGMENT_MAJOR  # Hope's CMS learns from the task loss
    # every segment boundary: a level ends a chunk exactly where its period divides the position
    for s0 in range(0, 3 * s.period, s.seg):
        e = s.edges(s0, s0 + s.seg)
        for (b, name), c in s.chunks.items():
            assert ((b, name) in e.starts) == (s0 % c == 0)
            assert ((b, name) in e.ends) == ((s0 + s.seg) % c == 0)


@pytest.mark.parametrize("pos0,T", [(0, 100), (5, 37), (63, 2), (64, 64), (7, 1)])
def test_segments_cover_the_call_and_split_at_boundaries(pos0, T):
    _, s = _sched("hope")
    segs = s.segments(pos0, T)
    assert segs[0][0] == 0 and segs[-1][1] == T
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))
    for a, b, e in segs:
        assert b - a <= s.seg
        assert all((pos0 + a) % s.chunks[k] == 0 for k in e.starts)
        assert all((pos0 + b) % s.chunks[k] == 0 for k in e.ends)
        assert not any((pos0 + t) % s.seg == 0 for t in range(a + 1, b))  # no boundary strictly inside


def test_untabulated_period_computes_the_same_edges():
    chunks = {("b", "x"): 3, ("b", "y"): 5}
    seg, period, table, _ = grid(chunks)
    assert (seg, period) == (1, 15) and len(table) == 15
    from nlc.ir.schedule import Schedule
    tab = Schedule(target=Target(), seg=seg, period=period, chunks=chunks, table=table)
    raw = Schedule(target=Target(), seg=seg, period=period, chunks=chunks)
    for p in range(60):
        assert tab.edges(p, p + 1) == raw.edges(p, p + 1)


def test_order_and_impls_follow_the_target():
    _, s = _sched("titans", "TitansLMM")
    assert s.order == Order.LAYER_MAJOR and {ls.impl for ls in s.levels} == {Impl.CHUNK}
    _, r = _sched("titans", "TitansLMM", backend=Backend.REFERENCE)
    assert r.seg == 1 and {ls.impl for ls in r.levels} == {Impl.REFERENCE}
    _, c = _sched("titans", "TitansLMM", backend=Backend.COMPILE)
    assert c.order == Order.SEGMENT_MAJOR
    _, t = _sched("titans", "TitansLMM", backend=Backend.TRITON, kernels_runnable=True)
    assert {ls.impl for ls in t.levels} == {Impl.TRITON_MLP}
    _, n = _sched("titans", "TitansLMM", backend=Backend.TRITON, kernels_runnable=False)
    assert {ls.impl for ls in n.levels} == {Impl.CHUNK} and "no CUDA" in n.levels[0].why
    _, f = _sched("hope", frozen=frozenset({"c_cms0", "c_cms1"}))
    assert f.order == Order.LAYER_MAJOR  # nothing learns from the task loss: layer by layer


def test_the_curvature_step_takes_the_torch_closed_form():
    """No kernel computes the curvature of `normalize = true`: the schedule says so and runs the closed form."""
    c = run("titans", {"normalize": True}, "TitansLMM")
    s = build_schedule(c.plan, Target(backend=Backend.TRITON, kernels_runnable=True))
    assert {ls.impl for ls in s.levels} == {Impl.CHUNK} and "no fused kernel computes c_t" in s.levels[0].why


def test_state_layout_is_the_models_state():
    torch = pytest.importorskip("torch")
    import nlc
    for spec in ("hope", "titans:TitansMAG", "cms", "transformer"):
        m = nlc.compile(spec, dim=16, heads=2, layers=2)
        st = m.init_state(3)
        assert [sl.key for sl in m.schedule.state] == list(st)
        for sl in m.schedule.state:
            assert tuple(st[sl.key].shape[1:]) == sl.shape, sl.key
        out = m(torch.randint(0, 256, (3, 20)), state=st)
        assert set(st) <= set(out.state)  # attention caches join on first use


def test_emit_schedule(capsys):
    from nlc.cli import main
    assert main(["compile", "hope", "--emit", "schedule"]) == 0
    out = capsys.readouterr().out
    assert "segments: 16 tokens" in out and "segment-major" in out and "hope.0.mk.Wbar0" in out


def test_verify_catches_a_broken_schedule():
    from dataclasses import replace

    from nlc.ir.schedule import Edges
    from nlc.passes.verify import CompilerBug, verify_schedule
    plan, s = _sched("hope")
    verify_schedule(plan, s)
    bad = replace(s, table=(Edges(),) + s.table[1:])  # segment 0 no longer starts any chunk
    with pytest.raises(CompilerBug, match="segment 0 starts"):
        verify_schedule(plan, bad)
    with pytest.raises(CompilerBug, match="divides"):
        verify_schedule(plan, replace(s, seg=3))
    with pytest.raises(CompilerBug, match="a kernel only where it can run"):
        levels = (replace(s.levels[0], impl=Impl.TRITON_LINEAR),) + s.levels[1:]
        verify_schedule(plan, replace(s, levels=levels))


def test_verify_plan_types_the_context_flows():
    """After `resolve`, a level's context flows name streams of its block of the widths they need."""
    from nlc.ir.kinds import Flow
    from nlc.passes.verify import CompilerBug, verify_plan
    plan, _ = _sched("hope")
    verify_plan(plan)
    b = plan.blocks[0]
    mem = b.level("memory")
    assert set(mem.flows()) == {Flow.KEYS, Flow.VALUES}

    def with_level(**update):
        levels = [lv.model_copy(update=update) if lv.name == "memory" else lv for lv in b.levels]
        return plan.model_copy(update={"blocks": [b.model_copy(update={"levels": levels})] + plan.blocks[1:]})
    with pytest.raises(CompilerBug, match="keys stream 'nowhere' is in the block"):
        verify_plan(with_level(keys="nowhere"))
    with pytest.raises(CompilerBug, match="values stream 'x' has width"):
        verify_plan(with_level(values="x", dv=mem.dv + 1))
    eta = mem.gates["lr"]
    with pytest.raises(CompilerBug, match="gate lr reads 'x' of width 1 or heads"):
        verify_plan(with_level(gates={**mem.gates, "lr": eta.model_copy(update={"stream": "x"})}))
