"""Pass `schedule`: decide, once, how the lowered program runs (see nlc/ir/schedule.py).

The segment grid, the order of layers and segments, each level's implementation (kernel
choice included), the split of layer-major blocks and their whole-layer spans, the level
groups, the fast-state layout and the nested-CMS resets, from the resolved plan and the target.
Plain Python: `nlc check` and `nlc compile --emit schedule` import no torch.
"""
from __future__ import annotations

import math

from nlc.errors import NlcError
from nlc.ir.kinds import CMS_VARIANTS, GATE_KINDS, WRITING_ROLES, MemoryKind, Objective, OpKind, Role
from nlc.ir.schedule import (
    Backend,
    BlockSpan,
    Impl,
    LevelGroup,
    LevelSchedule,
    Order,
    Part,
    Schedule,
    StateSlot,
    Target,
    grid,
    slot,
)

from nlc.rules import RULES

MLP_KERNEL_ACTS = ("silu", "relu")


def fused_kernel(lv) -> Impl | None:
    """The Triton kernel that covers a memory level, or None: `kernel_shape`, less the levels whose
    curvature-following step (`normalize = true`) no kernel computes."""
    return None if RULES[lv.rule].curvature_step(lv) else kernel_shape(lv)


def kernel_shape(lv) -> Impl | None:
    """The Triton kernel whose shape covers a memory level (the closed forms it computes need an l2
    objective; the MLP kernel is 2 layers of silu or relu, without DGD's k k^T term), or None."""
    m = lv.memory
    if lv.role != Role.MEMORY or not lv.clock.in_context or lv.objective != Objective.L2:
        return None
    kernels = RULES[lv.rule].kernels  # what the rule's registration says implements it
    if m.kind == MemoryKind.LINEAR or (m.kind == MemoryKind.MLP and m.depth == 1):
        return Impl.TRITON_LINEAR if Impl.TRITON_LINEAR.kernel in kernels else None
    if m.kind == MemoryKind.MLP and m.depth == 2 and m.act in MLP_KERNEL_ACTS and Impl.TRITON_MLP.kernel in kernels:
        return Impl.TRITON_MLP
    return None


def learning_levels(plan) -> list[str]:
    """Names of the levels that learn in context (memories and CMS stages on a token clock), in plan order."""
    return list(dict.fromkeys(lv.name for _, lv in plan.all_levels()
                              if lv.role in WRITING_ROLES and lv.clock.in_context))


def frozen_levels(plan, freeze) -> frozenset:
    """The levels whose in-context learning `freeze` switches off: a name, a comma-separated string or
    a list of names; "inner" names every level that learns in context (`learning_levels`). A frozen
    level keeps its initial state (the meta-learned one): its reads see M_0, it takes no writes;
    parameters are unchanged."""
    if not freeze:
        return frozenset()
    names = [s.strip() for s in (freeze.split(",") if isinstance(freeze, str) else freeze) if s and s.strip()]
    learning = learning_levels(plan)
    every = {lv.name: lv for _, lv in plan.all_levels()}
    want = set()
    for n in names:
        if n == "inner":
            want.update(learning)
        elif n not in every:
            raise NlcError(f"freeze: no level '{n}' in model {plan.name}",
                           hint=f"levels that learn in context: {', '.join(learning) or 'none'} (or 'inner' for all)")
        elif n not in learning:
            raise NlcError(f"freeze: level '{n}' does not learn in context (role {every[n].role}, clock {every[n].clock})",
                           hint=f"levels that learn in context: {', '.join(learning) or 'none'}")
        else:
            want.add(n)
    return frozenset(want)


def level_impl(lv, target: Target) -> tuple[Impl, str]:
    learns = lv.clock.in_context and lv.name not in target.frozen
    if lv.role == Role.ATTENTION:
        return Impl.ATTENTION, "softmax attention over its key/value cache"
    if lv.role == Role.CMS:
        if learns:
            return Impl.CMS_TEACH, f"task-loss gradient at its chunk start, applied every {lv.clock.period} tokens"
        return Impl.CMS_FIXED, "frozen in context (freeze=)" if lv.clock.in_context else \
            f"clock {lv.clock}: learns only in the outer loop"
    if not lv.clock.in_context:
        return Impl.FROZEN, f"clock {lv.clock}: no in-context update"
    if not learns:
        return Impl.FROZEN, "frozen in context (freeze=)"
    if target.backend == Backend.REFERENCE:
        return Impl.REFERENCE, "the literal per-token equations"
    closed = (Impl.CHUNK, f"closed form of rule {lv.rule} (nlc/rules/{lv.rule}): {RULES[lv.rule].doc}")
    curvature = RULES[lv.rule].curvature_step(lv)
    if curvature:
        closed = (closed[0], closed[1] + "; theta' = theta / (1 + C theta c_t), c_t by a tangent pass (normalize = true)")
    if target.backend == Backend.TRITON:
        k = fused_kernel(lv)
        if k is None:
            return closed[0], closed[1] + ("; no fused kernel computes c_t" if curvature else "; no fused kernel covers this level")
        if not target.kernels_runnable:
            return closed[0], closed[1] + f"; {k.kernel} applies but no CUDA device or Triton interpreter here"
        return k, "fused Triton kernel on chunk-aligned segments (the closed form on a segment that starts mid-chunk)"
    return closed


def state_layout(plan, frozen=frozenset()) -> tuple[StateSlot, ...]:
    """Every fast-state tensor of one sequence. Attention caches (k, v, pos) grow with the stream
    and are created on first use (nlc/lower/attention.py)."""
    slots = [StateSlot(str(Part.POS), "", "", Part.POS)]
    for b in plan.blocks:
        for i in range(b.repeat):
            layer = f"{b.name}.{i}"
            for lv in b.levels:
                if lv.role == Role.MEMORY:
                    for li, shape in enumerate(lv.layer_shapes()):
                        for part in (Part.WBAR, Part.W) + ((Part.S,) if lv.momentum else ()):
                            slots.append(slot(layer, lv.name, part, (lv.heads, *shape), li))
            for op in b.ops:
                if op.op == OpKind.CONV:
                    slots.append(slot(layer, op.name, Part.CONV, (op.attrs["window"] - 1, op.width)))
            for lv in b.levels:
                if lv.role == Role.CMS:
                    shapes = {Part.W_IN: (lv.hidden, lv.dk), Part.W_OUT: (lv.dk, lv.hidden)}
                    if lv.clock.in_context and lv.name not in frozen:  # the teaching-gradient accumulators
                        shapes |= {Part.G_IN: shapes[Part.W_IN], Part.G_OUT: shapes[Part.W_OUT]}
                    slots += [slot(layer, lv.name, p, s) for p, s in shapes.items()]
    return tuple(slots)


def nested_resets(plan, frozen=frozenset()) -> dict:
    """(block, stage) -> the learning stages of its nested chain that are faster (eq. 72: the slower
    stage completing its chunk restarts them from their meta-learned initial state)."""
    out = {}
    for b in plan.blocks:
        for op in b.ops:
            if op.op != OpKind.CMS or not CMS_VARIANTS[op.attrs["variant"]].nested:
                continue
            for name in op.attrs["levels"]:
                slow = b.level(name).clock.period
                fast = tuple(o for o in op.attrs["levels"]
                             if b.level(o).clock.in_context and o not in frozen and b.level(o).clock.period < slow)
                if fast:
                    out[(b.name, name)] = fast
    return out


# implementations that write the level's fast state from its keys, values and gate streams
WRITES = (Impl.REFERENCE, Impl.CHUNK, Impl.TRITON_LINEAR, Impl.TRITON_MLP)


def live_ops(block, impls) -> frozenset:
    """The ops the block's output or a writing level needs (dead-op elimination): a frozen level's
    keys, values and gates feed only its writes, so with it frozen they are not computed (nlc.freeze
    copies, `--freeze`, the frozen reader of generation)."""
    byname = {op.name: op for op in block.ops}
    roots = [block.out]
    for lv in block.levels:
        if impls[(block.name, lv.name)] in WRITES:
            roots += list(lv.flows().values()) + [g.stream for g in lv.gates.values()]
    live, stack = set(), [r for r in roots if r]
    while stack:
        n = stack.pop()
        if n in live or n not in byname:
            continue
        live.add(n)
        stack.extend(byname[n].inputs)
    return frozenset(live)


def partition(block, impls, live) -> tuple[tuple, tuple, tuple]:
    """A layer-major block's live ops as (before, loop, after) names: `before` needs no level read (runs
    on the whole call first); `loop` holds the reads and what the writing memories' streams or other
    reads need (per segment: a read sees the chunk-start state); `after` needs reads but only feeds
    the block output (whole call, last)."""
    ops = [op for op in block.ops if op.name in live]
    byname = {op.name: op for op in ops}
    dep = {}
    for op in ops:
        dep[op.name] = op.op == OpKind.READ or any(dep.get(i, False) for i in op.inputs)
    need = set()

    def mark(name):
        if name in byname and dep[name] and name not in need:
            need.add(name)
            for i in byname[name].inputs:
                mark(i)
    for op in ops:
        if op.op == OpKind.READ:
            mark(op.name)
    for lv in block.levels:
        if lv.role != Role.MEMORY or impls[(block.name, lv.name)] == Impl.FROZEN:
            continue  # only a writing memory's streams are needed in the loop
        for sname in list(lv.flows().values()) + [g.stream for g in lv.gates.values()]:
            if sname:
                mark(sname)
    return (tuple(n for n in byname if not dep[n]), tuple(n for n in byname if n in need),
            tuple(n for n in byname if dep[n] and n not in need))


# implementations a whole-layer span runs: the closed form's torch chunk walk or the fused op
SPAN_IMPLS = (Impl.CHUNK, Impl.TRITON_LINEAR, Impl.TRITON_MLP)


def block_span(block, impls, parts, order: Order, groups=()) -> BlockSpan:
    """Whether the block runs as a whole-layer span: its per-segment part is exactly one read per
    writing memory level, each level of a kernel op's shape (`kernel_shape`: its torch chunk form on
    `torch`, the fused op on `triton` where the level has one), each query and every write stream
    computed before any read.
    Then no level feeds back within the layer, and each memory can take the whole call in one call."""
    def no(why):
        return BlockSpan(block.name, False, why)
    if order != Order.LAYER_MAJOR:
        return no(f"{order} order")
    grouped = [g for g in groups if g.block == block.name]
    if grouped:
        # a group batches its members' writes per segment (1.2-1.3x on Hope's eager step); a span runs
        # each level alone, which on the torch chunk path measured no faster than per segment
        return no(f"levels {', '.join(grouped[0].levels)} run as one batched group")
    _, loop, _ = parts
    byname = {op.name: op for op in block.ops}
    writing = [lv for lv in block.levels if lv.role == Role.MEMORY and impls[(block.name, lv.name)] in WRITES]
    if not writing:
        return no("no memory level learns in context")
    read_by = {}
    for name in loop:
        op = byname[name]
        if op.op != OpKind.READ:
            return no(f"op {name} ({op.op}) runs between the reads and the writes")
        lv = block.level(op.attrs["level"])
        impl = impls[(block.name, lv.name)]
        if lv.role != Role.MEMORY:
            return no(f"{name} reads {lv.role} level {lv.name}")
        if impl not in SPAN_IMPLS:
            return no(f"{name} reads level {lv.name}, which runs as {impl}")
        if kernel_shape(lv) is None:
            return no(f"no kernel op covers level {lv.name} (l2 objective; linear or 2-layer silu/relu mlp; "
                      f"rules {', '.join(r for r, e in RULES.items() if e.kernels)})")
        if len(op.inputs) != 1 or op.inputs[0] in loop:
            return no(f"the query of {name} depends on a read in this layer")
        if lv.name in read_by:
            return no(f"level {lv.name} is read more than once ({read_by[lv.name]}, {name})")
        read_by[lv.name] = name
    for lv in writing:
        if lv.name not in read_by:
            return no(f"level {lv.name} learns but is not read in this block")
        fed = [s for s in list(lv.flows().values()) + [g.stream for g in lv.gates.values()] if s in loop]
        if fed:
            return no(f"level {lv.name}'s writes read {fed[0]}, a read of this layer")
    names = tuple(read_by)
    period = math.lcm(*(block.level(n).clock.period for n in names))
    return BlockSpan(block.name, True, f"{', '.join(names)}: one chunked op call per level and layer over the "
                     f"call's prefix of whole {period}-token periods, queries and writes from hoisted ops; "
                     "a call starting mid-chunk runs per segment", names, period)


def group_signature(lv) -> tuple:
    """What must be equal for two memory levels to run as one batched level: everything that shapes
    the read and the update except the values (each member's own) and the initial weights (stacked per
    member). Gates must be the same constants or streams: a learned gate is each level's own parameter."""
    gates = tuple(sorted((n, str(g.kind), g.value, g.stream) for n, g in lv.gates.items()))
    return (str(lv.role), repr(lv.memory), lv.heads, lv.dk, lv.dv, lv.hidden, tuple(lv.layer_shapes()),
            lv.rule, repr(sorted(lv.rule_args.items())), str(lv.objective), repr(sorted(lv.objective_args.items())),
            gates, lv.keys, lv.queries, lv.context, str(lv.clock), repr(sorted(lv.options.items())))


def level_groups(plan, impls, target: Target) -> tuple[LevelGroup, ...]:
    """Levels of one block that can run as one: closed-form (`chunk`) memories learning in context with
    equal `group_signature`s and no learned gate. Taken from the implementations, so `freeze` of a member
    takes it out of its group (a group left with one member is none). The reference backend stays
    ungrouped (it is the plain reference), as do kernels (their launch is per level)."""
    if not target.group_levels:
        return ()
    out = []
    for b in plan.blocks:
        by_sig: dict = {}
        for lv in b.levels:
            if (lv.role == Role.MEMORY and impls[(b.name, lv.name)] == Impl.CHUNK
                    and not any(GATE_KINDS[g.kind].learned for g in lv.gates.values())):
                by_sig.setdefault(group_signature(lv), []).append(lv)
        for members in by_sig.values():
            if len(members) < 2:
                continue
            lv = members[0]
            gates = ", ".join(f"{n} = {g.stream or g.value}" for n, g in sorted(lv.gates.items()))
            why = (f"same {lv.memory.kind} memory, rule {lv.rule} ({gates}), learn {lv.objective}, keys {lv.keys}, "
                   f"clock {lv.clock}; values differ")
            out.append(LevelGroup(b.name, tuple(m.name for m in members), lv.heads, why))
    return tuple(out)


def order_of(plan, target: Target) -> tuple[Order, str]:
    if target.backend == Backend.REFERENCE:
        return Order.SEGMENT_MAJOR, "reference: one token per segment through every layer"
    if any(lv.role == Role.CMS and lv.clock.in_context and lv.name not in target.frozen for _, lv in plan.all_levels()):
        return Order.SEGMENT_MAJOR, "a CMS stage learns from the task loss: each segment's loss needs every layer"
    if target.checkpointing:
        return Order.SEGMENT_MAJOR, "checkpointing recomputes per segment"
    if target.backend == Backend.COMPILE:
        return Order.SEGMENT_MAJOR, "compile: one compiled program per block, run a segment at a time"
    return Order.LAYER_MAJOR, "no level feeds back across layers within a segment: each layer runs over the " \
                              "whole sequence, read-independent ops hoisted out of the segment loop"


def build_schedule(plan, target: Target | None = None) -> Schedule:
    target = target or Target()
    # every token-clock memory and CMS stage sets the grid (attention reads its cache every token)
    chunks = {(b.name, lv.name): lv.clock.period for b, lv in plan.all_levels()
              if lv.clock.in_context and lv.role in WRITING_ROLES}
    # the reference interpreter takes one token per segment
    seg, period, table, patterns = grid(chunks, seg=1 if target.backend == Backend.REFERENCE else None)
    levels, impls = [], {}
    for b, lv in plan.all_levels():
        impl, why = level_impl(lv, target)
        levels.append(LevelSchedule(lv.name, b.name, impl, why, lv.clock))
        impls[(b.name, lv.name)] = impl
    order, why = order_of(plan, target)
    live = {b.name: live_ops(b, impls) for b in plan.blocks}
    parts = {b.name: partition(b, impls, live[b.name]) for b in plan.blocks}
    groups = level_groups(plan, impls, target)
    spans = tuple(block_span(b, impls, parts[b.name], order, groups) for b in plan.blocks)
    return Schedule(target=target, seg=seg, period=period, chunks=chunks, table=table, patterns=patterns,
                    order=order, order_why=why, levels=tuple(levels), groups=groups,
                    state=state_layout(plan, target.frozen), nested=nested_resets(plan, target.frozen),
                    layers=tuple((b.name, f"{b.name}.{i}") for b in plan.blocks for i in range(b.repeat)),
                    live=live, parts=parts, spans=spans)
