"""The resolved IR the passes produce and the lowering consumes.

A `ModelPlan` is a model with every name bound, every constant evaluated, every
expression flattened into named stream ops in dependency order, and every dimension
known. Like the surface IR it is frozen and every node keeps its source span.
"""
from __future__ import annotations

import enum
from typing import Any

from nlc.ir.base import Record
from nlc.ir.kinds import Flow, GateKind, Init, MemoryKind, Objective, OpKind, Role

# the largest clock period (chunk or steps(C)) a plan may hold: the checker's limit, the lowering's too
MAX_CHUNK = 1 << 20


class R(Record):
    dump_span = False


class ClockUnit(enum.StrEnum):
    TOKENS = "tokens"   # in context: every C tokens of a sequence
    STEPS = "steps"     # in the outer loop: every C optimizer steps
    FROZEN = "frozen"   # frequency 0: never updated


class Clock(R):
    """When a level updates: `tokens(C)`, `steps(C)`, or `frozen` (no period)."""

    unit: ClockUnit = ClockUnit.TOKENS
    period: int | None = 1          # C, 1 <= C <= MAX_CHUNK; None when frozen

    def __str__(self) -> str:
        return str(self.unit) if self.period is None else f"{self.unit}({self.period})"

    @property
    def in_context(self) -> bool:
        """Whether the level learns within a sequence (a token clock)."""
        return self.unit == ClockUnit.TOKENS


class Op(R):
    """One stream op: `name = op(inputs..., **attrs)`, a (B, T, width) tensor."""

    name: str
    op: str
    inputs: list[str] = []
    attrs: dict[str, Any] = {}
    width: int


class Gate(R):
    """An update-rule hyperparameter: a constant, a learned scalar per head, or a stream."""

    kind: GateKind
    value: float = 0.0          # const value, or the learned scalar's initial value
    stream: str | None = None   # name of an op of width 1 or `heads`


class MemoryPlan(R):
    kind: MemoryKind
    depth: int = 1
    expansion: float = 1.0
    act: OpKind = OpKind.SILU     # one of kinds.MEMORY_ACTS
    window: int = 0
    persistent: int = 0
    rope: bool = True          # attention: rotary position embedding of queries and keys


class LevelPlan(R):
    name: str                       # unique within the block
    block: str
    role: Role
    memory: MemoryPlan
    heads: int = 1
    dk: int = 0                     # per-head key width
    dv: int = 0                     # per-head value width
    hidden: int = 0                 # per-head hidden width of MLP memories
    clock: Clock = Clock()          # tokens(C): the chunk C of in-context learning; steps(C); frozen
    objective: Objective = Objective.L2   # attention: l2 too, solved non-parametrically (NL eq. 62)
    objective_args: dict[str, float] = {}
    rule: str | None = "gd"         # a name in nlc.rules.RULES; None: no in-context update (attention, a fixed CMS stage)
    gates: dict[str, Gate] = {}
    rule_args: dict[str, Any] = {}
    init: Init | None = Init.META   # None: no memory weights (attention's cache starts empty)
    init_args: dict[str, Any] = {}
    keys: str | None = None
    values: str | None = None
    queries: str | None = None
    context: str | None = None
    self_values: bool = False
    options: dict[str, Any] = {}
    params: int = 0
    cms_input: str | None = None    # role cms: the stream the chain reads
    cms_index: int = 0

    def flows(self) -> dict[Flow, str]:
        """The level's context flows that it names, as {flow: stream}."""
        named = {Flow.KEYS: self.keys, Flow.VALUES: self.values, Flow.QUERIES: self.queries, Flow.CONTEXT: self.context}
        return {f: s for f, s in named.items() if s}

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of each weight matrix of a parametric memory, first layer first (per head)."""
        m, dk, dv, h = self.memory, self.dk, self.dv, self.hidden
        if m.kind == MemoryKind.LINEAR or (m.kind == MemoryKind.MLP and m.depth == 1):
            return [(dv, dk)]
        if m.kind == MemoryKind.RESIDUAL_MLP:
            return [(h, dk), (dv, h)]
        return [(h, dk)] + [(h, h)] * (m.depth - 2) + [(dv, h)]

    @property
    def momentum(self) -> bool:
        """Whether the rule carries a momentum (surprise) buffer S (nlc/rules: the rule's registration)."""
        from nlc.rules import RULES
        return self.role == Role.MEMORY and self.rule in RULES and RULES[self.rule].has_momentum(self)


class BlockPlan(R):
    name: str
    repeat: int = 1
    ops: list[Op] = []
    levels: list[LevelPlan] = []
    out: str = "x"

    def level(self, name: str) -> LevelPlan:
        return next(lv for lv in self.levels if lv.name == name)


class OptimizerPlan(R):
    name: str                      # the level's name, e.g. `outer`
    rule: str                      # AdamW, SGD, or an `optimizer` definition's name
    args: dict[str, Any] = {}
    every: int = 1                 # steps(C)
    targets: list[str] = ["all"]
    options: dict[str, Any] = {}   # clip, warmup, schedule, ...
    definition: Any = None         # the ir.Optimizer when the rule is written in .nl (for views; the lowering
                                   # reads only `spec`)
    spec: Any = None               # ...and its checked form (nlc.ir.optimizer.OptimizerSpec)


class ModelPlan(R):
    name: str
    file: str
    params: dict[str, Any] = {}
    dim: int
    vocab: int
    blocks: list[BlockPlan] = []
    optimizer: OptimizerPlan | None = None

    def all_levels(self):
        for b in self.blocks:
            for lv in b.levels:
                yield b, lv
