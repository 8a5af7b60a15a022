"""The schedule: what the `schedule` stage decides once, and the lowering only executes.

From a resolved `ModelPlan` and a `Target` (backend, checkpointing, whether fused kernels can
run here) the schedule fixes:
    the segment grid   segment length `seg` (gcd of the token-clock chunks; None = the whole
                       sequence) and, per segment of one period (lcm of the chunks), which
                       levels start and which end a chunk there (`Edges`);
    the order          layer-major (each layer over the whole sequence, read-independent ops
                       hoisted) or segment-major (every layer per segment: CMS teaching needs a
                       segment's loss through every layer), and why;
    the implementation of each level (`Impl`) and why (kernel choice included);
    the spans          per layer-major block, its ops split into hoisted / per-segment / after
                       (`parts`), and whether its memories run as one op call per layer over
                       the whole call (a whole-layer span, `BlockSpan`) and why;
    the level groups   levels of one block that run as one batched level (`LevelGroup`: the same
                       memory, rule, gates, keys and clock; stacked along the head axis), and why;
    the fast-state layout (`StateSlot`s: every key, its owner and its shape without batch);
    the nested-CMS resets (which stages a slower stage restarts at its boundary).
Plain data, no torch: `nlc compile --emit schedule` prints it.
"""
from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass, field

from nlc.ir.resolved import Clock


class Backend(enum.StrEnum):
    REFERENCE = "reference"  # per-token interpreter of the equations (the ground truth)
    TORCH = "torch"          # the chunk-parallel program, eager
    COMPILE = "compile"      # the same, each layer's segment program under torch.compile(fullgraph=True)
    TRITON = "triton"        # the chunk-parallel program with fused Triton update kernels where they apply


BACKENDS = tuple(b.value for b in Backend)  # the one list: the API, every --backend flag


class Order(enum.StrEnum):
    LAYER_MAJOR = "layer-major"
    SEGMENT_MAJOR = "segment-major"


class Impl(enum.StrEnum):
    """How a level runs. Memories: the per-token reference, the rule's closed-form chunk update
    (nlc/rules/<rule>/update.py: `chunk`), or a fused Triton kernel; frozen levels only read."""
    REFERENCE = "reference"
    CHUNK = "chunk"
    TRITON_LINEAR = "triton:linear_memory"
    TRITON_MLP = "triton:mlp_memory"
    FROZEN = "frozen"
    ATTENTION = "attention"
    CMS_TEACH = "cms-teach"
    CMS_FIXED = "cms-fixed"

    @property
    def kernel(self) -> str | None:
        """The fused op's name (nlc.kernels) for a Triton implementation."""
        return self.value.split(":", 1)[1] if self.value.startswith("triton:") else None


@dataclass(frozen=True)
class Target:
    backend: Backend = Backend.TORCH
    checkpointing: bool = False
    kernels_runnable: bool = False   # a CUDA device or the Triton interpreter is there (nlc.kernels.available)
    frozen: frozenset = frozenset()  # levels whose in-context learning is switched off (`freeze=`)
    cut_teaching: bool = True        # CMS teaching (NL eq. 71) cut per segment and stitched (nlc/lower/stitch.py,
                                     # linear in T); False: the reference, one graph over the whole call (O(T^2))
    group_levels: bool = True        # run identical memories of a block as one batched level (`LevelGroup`);
                                     # False: each alone (the A/B switch, tests/lower/test_group.py)


@dataclass(frozen=True)
class Edges:
    """The levels, as (block, level) pairs, whose chunk starts at the beginning / ends at the end
    of a segment."""
    starts: frozenset = frozenset()
    ends: frozenset = frozenset()

    def __str__(self):
        def names(s):
            return ", ".join(f"{b}.{n}" for b, n in sorted(s))
        return f"starts {{{names(self.starts)}}} ends {{{names(self.ends)}}}"


NO_EDGES = Edges()


class Part(enum.StrEnum):
    """What a fast-state tensor is to its owner (the key's last component)."""
    WBAR = "Wbar"     # a memory layer's chunk-start weights (every read and gradient of a chunk uses them)
    W = "W"           # its running weights
    S = "S"           # its momentum (surprise) buffer
    CONV = "conv"     # a causal convolution's last window - 1 inputs
    W_IN = "w_in"     # a CMS stage's weights
    W_OUT = "w_out"
    G_IN = "g_in"     # a CMS stage's accumulated teaching gradient
    G_OUT = "g_out"
    POS = "pos"       # the stream position (one per model)


@dataclass(frozen=True)
class StateSlot:
    key: str                 # the key in the fast-state dict
    layer: str               # the layer (`block.i`), "" for the position
    owner: str               # the level or op within the layer
    part: Part               # (a memory's parts Wbar, W, S are per memory layer `index`)
    index: int | None = None
    shape: tuple = ()        # without the batch dimension


@dataclass(frozen=True)
class LevelSchedule:
    level: str
    block: str
    impl: Impl
    why: str
    clock: Clock             # the level's clock: tokens(C), steps(C), frozen


@dataclass(frozen=True)
class BlockSpan:
    """Whether a block's memory levels run as one op call per layer over the whole call (a
    whole-layer span: the chunked op walks the chunks itself) instead of segment by segment, and why.
    Only where no level feeds back within the layer: the per-segment part of the block is just one
    read per written memory level, of a query computed before any read."""
    block: str
    span: bool
    why: str
    levels: tuple = ()       # the memory levels the span writes (each read once in the block)
    period: int = 0          # lcm of their chunks: a span's prefix is a multiple of it


@dataclass(frozen=True)
class LevelGroup:
    """Memory levels of one block that run as one level of len(levels) x heads heads: one read per input
    stream they share, one write per segment. Their state stays per level (the layout, checkpoints and
    stats do not change); the lowering stacks it along the head axis, members in this order."""
    block: str
    levels: tuple            # member names, plan order (>= 2)
    heads: int               # heads of each member
    why: str

    def __str__(self):
        return f"{self.block}.{{{', '.join(self.levels)}}}"


def state_key(layer: str, owner: str, part: str, index: int | None = None) -> str:
    """The one place a fast-state key is spelled: `block.i.level.part[index]`."""
    return f"{layer}.{owner}.{part}{'' if index is None else index}"


def slot(layer: str, owner: str, part: str, shape: tuple, index: int | None = None) -> StateSlot:
    return StateSlot(state_key(layer, owner, part, index), layer, owner, part, index, tuple(shape))


# a period longer than this many segments is not tabulated: edges are computed by the same rule on demand
MAX_TABLE = 4096


@dataclass(frozen=True)
class Schedule:
    target: Target
    seg: int | None                      # None: the whole sequence is one segment
    period: int | None                   # lcm of the chunks (the edge pattern repeats with it)
    chunks: dict = field(default_factory=dict)       # (block, level) -> chunk, for levels whose edges matter
    table: tuple = ()                    # Edges of each segment of one period (empty if > MAX_TABLE)
    patterns: tuple = ()                 # the distinct Edges in the table
    order: Order = Order.SEGMENT_MAJOR
    order_why: str = ""
    levels: tuple = ()                   # LevelSchedule per level of every block (plan order)
    groups: tuple = ()                   # LevelGroup: levels batched into one (Target.group_levels)
    state: tuple = ()                    # StateSlot: the fast-state layout of the whole model
    nested: dict = field(default_factory=dict)       # (block, stage) -> stages it restarts at its boundary
    layers: tuple = ()                   # (block, layer key) in execution order
    live: dict = field(default_factory=dict)         # block -> the ops its output or a learning level needs
    parts: dict = field(default_factory=dict)        # block -> (before, loop, after) op names (layer-major)
    spans: tuple = ()                    # BlockSpan per block (plan order)

    def span(self, block: str) -> BlockSpan | None:
        """The block's span decision (None: not decided, e.g. a hand-built schedule)."""
        return next((b for b in self.spans if b.block == block), None)

    @functools.cached_property
    def impls(self) -> dict:
        """(block, level) -> Impl: the `levels` column, as a map."""
        return {(ls.block, ls.level): ls.impl for ls in self.levels}

    def impl(self, block: str, level: str) -> Impl:
        return self.impls[(block, level)]

    @functools.cached_property
    def group_of(self) -> dict:
        """(block, level) -> its LevelGroup, for grouped levels."""
        return {(g.block, n): g for g in self.groups for n in g.levels}

    def dead(self, plan) -> dict:
        """block -> the plan's ops not in `live` (not run), in plan order; blocks with none left out."""
        out = {b.name: tuple(op.name for op in b.ops if op.name not in self.live[b.name]) for b in plan.blocks}
        return {b: d for b, d in out.items() if d}

    def edges(self, start: int, end: int) -> Edges:
        """Which levels start a chunk at absolute position `start` and end one at `end` (a segment
        of the grid: `end - start <= seg`, no chunk boundary strictly inside)."""
        if not self.chunks:
            return NO_EDGES
        g = self.seg
        if self.table:
            n = len(self.table)
            starts = self.table[(start // g) % n].starts if start % g == 0 else frozenset()
            ends = self.table[((end - 1) // g) % n].ends if end % g == 0 else frozenset()
            return Edges(starts, ends)
        return Edges(frozenset(k for k, c in self.chunks.items() if start % c == 0),
                     frozenset(k for k, c in self.chunks.items() if end % c == 0))

    def segments(self, pos0: int, T: int) -> list[tuple[int, int, Edges]]:
        """The segments of a call over tokens [pos0, pos0 + T), relative to the call: (s, e, edges).
        A stream split anywhere meets the same chunk boundaries as the whole sequence."""
        if self.seg is None:
            return [(0, T, self.edges(pos0, pos0 + T) if self.chunks else NO_EDGES)]
        out, s = [], 0
        while s < T:
            e = min(T, s + self.seg - (pos0 + s) % self.seg)
            out.append((s, e, self.edges(pos0 + s, pos0 + e)))
            s = e
        return out


def grid(chunks: dict, seg: int | None = None) -> tuple[int | None, int | None, tuple, tuple]:
    """(seg, period, table, patterns) for levels with the given chunk sizes; `seg` forces a segment
    length that divides every chunk (1: the reference interpreter)."""
    if not chunks:
        return seg, None, (), ()
    seg = seg or math.gcd(*chunks.values())
    period = math.lcm(*chunks.values())
    n = period // seg
    if n > MAX_TABLE:
        return seg, period, (), ()
    table = tuple(Edges(frozenset(k for k, c in chunks.items() if (i * seg) % c == 0),
                        frozenset(k for k, c in chunks.items() if ((i + 1) * seg) % c == 0)) for i in range(n))
    return seg, period, table, tuple(dict.fromkeys(table))


def schedule_text(s: Schedule, plan) -> str:
    """The schedule of `plan` as `nlc compile --emit schedule` prints it."""
    t = s.target
    out = [f"schedule for backend {t.backend}" + (" (checkpointing)" if t.checkpointing else "")
           + (f", frozen in context: {', '.join(sorted(t.frozen))}" if t.frozen else "")
           + ("" if t.cut_teaching else ", CMS teaching uncut (one graph per call: the reference)"),
           f"  segments: {'whole sequence' if s.seg is None else f'{s.seg} tokens'}"
           + (f", period {s.period} tokens ({s.period // s.seg} segments, {len(s.patterns)} edge patterns)"
              if s.period and s.table else (f", period {s.period} tokens (not tabulated)" if s.period else "")),
           f"  order: {s.order} ({s.order_why})",
           "  levels:"]
    for ls in s.levels:
        out.append(f"    {ls.block}.{ls.level:<12} {str(ls.clock):<12} {ls.impl:<22} {ls.why}")
    if s.groups:
        out.append("  level groups (one batched read per shared input, one write per segment; state per level):")
        for g in s.groups:
            out.append(f"    {str(g):<28} {len(g.levels)} x {g.heads} heads: {g.why}")
    elif t.group_levels is False:
        out.append("  level groups: off (group_levels=False)")
    if s.table:
        out.append("  edge patterns (segment indices within the period):")
        for p in s.patterns:
            idx = [i for i, e in enumerate(s.table) if e == p]
            shown = ", ".join(map(str, idx[:8])) + (f", ... ({len(idx)} segments)" if len(idx) > 8 else "")
            out.append(f"    [{shown}]: {p}")
    for bs in s.spans:
        out.append(f"  block {bs.block}: " + (f"whole-layer span ({bs.why})" if bs.span else f"per segment ({bs.why})"))
    for b, dead in s.dead(plan).items():
        out.append(f"  block {b}: {len(dead)} ops feed only frozen levels' writes, not run: {', '.join(dead)}")
    if s.nested:
        out.append("  nested CMS resets:")
        for (b, name), fast in s.nested.items():
            out.append(f"    {b}.{name} restarts {', '.join(fast)} at its boundary")
    out.append(f"  fast state: {len(s.state)} tensors per sequence (+ attention caches)")
    for sl in s.state:
        out.append(f"    {sl.key:<28} {'x'.join(map(str, sl.shape)) or '-'}")
    return "\n".join(out) + "\n"
