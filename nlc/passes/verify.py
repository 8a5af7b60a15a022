"""Invariants between stages, checked after the stage that establishes them (the tinygrad/inductor
habit): a failure here is a compiler bug, not a user mistake, so it raises AssertionError-like
`CompilerBug` naming the invariant. Cheap: run on every compilation."""
from __future__ import annotations


class CompilerBug(RuntimeError):
    """An invariant of the pipeline does not hold (a bug in nlc, not in the spec)."""


def _need(ok, what, stage="schedule"):
    if not ok:
        raise CompilerBug(f"{stage} invariant broken: {what}")


def verify_plan(plan) -> None:
    """After `resolve`: every context flow of a level names a stream of its block (an op, or `x`) of
    the width the flow needs, and every stream gate names one of width 1 or `heads`: the flows are
    typed references, not free strings, from here on."""
    from nlc.ir.kinds import Flow, GateKind, Role
    for b in plan.blocks:
        width = {"x": plan.dim, **{op.name: op.width for op in b.ops}}
        for lv in b.levels:
            need = {Flow.KEYS: lv.heads * lv.dk, Flow.VALUES: lv.heads * lv.dv, Flow.QUERIES: lv.heads * lv.dk,
                    Flow.CONTEXT: plan.dim}
            if lv.role == Role.MEMORY:
                _need(Flow.KEYS in lv.flows() and Flow.VALUES in lv.flows(), f"{b.name}.{lv.name} has keys and values",
                      "plan")
            for flow, stream in lv.flows().items():
                _need(stream in width, f"{b.name}.{lv.name}: its {flow} stream '{stream}' is in the block", "plan")
                _need(width[stream] == need[flow],
                      f"{b.name}.{lv.name}: its {flow} stream '{stream}' has width {need[flow]}, not {width[stream]}", "plan")
            for g, gate in lv.gates.items():
                if gate.kind == GateKind.STREAM:
                    _need(width.get(gate.stream) in (1, lv.heads),
                          f"{b.name}.{lv.name}: gate {g} reads '{gate.stream}' of width 1 or heads", "plan")


def verify_schedule(plan, s) -> None:
    """What passes/README.md promises after `schedule`."""
    from nlc.ir.kinds import Role
    from nlc.ir.schedule import Backend, Impl
    levels = {(b.name, lv.name): lv for b, lv in plan.all_levels()}
    _need(set(s.impls) == set(levels), "every level has exactly one implementation")
    if s.target.backend == Backend.REFERENCE:
        _need(s.seg == 1, "the reference backend runs one token per segment")
    for key, c in s.chunks.items():
        _need(key in levels and levels[key].clock.in_context, f"{key} is a token-clock level")
        _need(s.seg is not None and c % s.seg == 0, f"the segment length {s.seg} divides {key}'s chunk {c}")
    for i, e in enumerate(s.table):
        for key, c in s.chunks.items():
            _need((key in e.starts) == ((i * s.seg) % c == 0), f"segment {i} starts {key}'s chunk exactly when {c} divides it")
            _need((key in e.ends) == (((i + 1) * s.seg) % c == 0), f"segment {i} ends {key}'s chunk exactly when {c} divides it")
    for (b, name), impl in s.impls.items():
        lv = levels[(b, name)]
        if impl.kernel:
            _need(s.target.kernels_runnable and s.target.backend == Backend.TRITON, f"{b}.{name}: a kernel only where it can run")
        if name in s.target.frozen:
            _need(impl in (Impl.FROZEN, Impl.CMS_FIXED), f"{b}.{name} is frozen")
        if impl == Impl.REFERENCE:
            _need(s.target.backend == Backend.REFERENCE, f"{b}.{name}: the per-token reference only on its backend")
        _need(lv.role != Role.ATTENTION or impl == Impl.ATTENTION, f"{b}.{name}: attention runs as attention")
    keys = [sl.key for sl in s.state]
    _need(len(keys) == len(set(keys)), "fast-state keys are unique")
    from nlc.ir.schedule import Order
    for bs in s.spans:
        if bs.span:
            _need(s.order == Order.LAYER_MAJOR, f"block {bs.block}: a whole-layer span only in layer-major order")
            for name in bs.levels:
                _need(s.impls[(bs.block, name)] in (Impl.CHUNK, Impl.TRITON_LINEAR, Impl.TRITON_MLP),
                      f"{bs.block}.{name}: a span writes only chunk or kernel levels")
    grouped = [(g.block, n) for g in s.groups for n in g.levels]
    _need(len(grouped) == len(set(grouped)), "a level is in at most one group")
    spanned = {bs.block for bs in s.spans if bs.span}
    _need(not any(b in spanned for b, _ in grouped), "a whole-layer span block has no level group")
    for g in s.groups:
        _need(len(g.levels) >= 2, f"group {g} has two members or more")
        for n in g.levels:
            _need(s.impls.get((g.block, n)) == Impl.CHUNK, f"group {g}: {n} runs the closed form (not frozen)")
            _need(levels[(g.block, n)].clock == levels[(g.block, g.levels[0])].clock, f"group {g}: one clock")
            _need(levels[(g.block, n)].heads == g.heads, f"group {g}: {g.heads} heads per member")
