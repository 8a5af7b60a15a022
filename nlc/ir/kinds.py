"""The closed vocabularies of the resolved plan: one enum and one registry per kind.

    Objective / OBJECTIVES   what an in-context level learns (`learn l2`, `learn huber(delta = 1)`)
    Init / INITS             where a memory's initial state M_0 comes from (`init meta`, ...)
    OpKind / OPS             the stream ops a block is flattened into (`linear`, `rmsnorm`, `add`, ...)
    Role / ROLES             what a level is: an in-context memory, attention, or a CMS stage
    MemoryKind / MEMORY_KINDS  a memory's architecture (`linear`, `mlp(depth = 2)`, `residual_mlp`, ...)
    CmsVariant / CMS_VARIANTS  how a CMS chain's stages connect (`variant = sequential | nested | independent`)
    GateKind / GATE_KINDS    what an update-rule gate is (a constant, `learned(v)`, a stream)

Every string in a spec or a plan that selects behaviour is a member of one of these enums (or a
rule name of nlc/rules, a backend or implementation of nlc/ir/schedule.py). The checker reads the
registries (names, arities, arguments and their defaults); the lowering binds torch functions to the
same keys (nlc/lower/ops.py: APPLY and MODULES, tested against OPS). Plain data, no torch. The enums
are StrEnums, so a plan prints exactly as the strings did.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Objective(enum.StrEnum):
    L2 = "l2"
    DOT = "dot"
    HUBER = "huber"
    LP = "lp"
    BACKPROP = "backprop"


@dataclass(frozen=True)
class ObjectiveInfo:
    doc: str
    args: dict = field(default_factory=dict)   # argument -> default
    local: bool = True                         # a memory level may learn it (backprop is the task loss: CMS)


OBJECTIVES: dict[Objective, ObjectiveInfo] = {
    Objective.L2: ObjectiveInfo("1/2 ||M(k) - v||^2  (Titans eq. 12)"),
    Objective.DOT: ObjectiveInfo("-<M(k), v>"),
    Objective.HUBER: ObjectiveInfo("Huber loss of M(k) - v, quadratic within delta", {"delta": 1.0}),
    Objective.LP: ObjectiveInfo("||M(k) - v||_p^p", {"p": 3.0}),
    Objective.BACKPROP: ObjectiveInfo("the task loss, by backpropagation (CMS stages, NL eq. 71)", local=False),
}
LOCAL_OBJECTIVES = tuple(o for o, info in OBJECTIVES.items() if info.local)


class Init(enum.StrEnum):
    META = "meta"
    ZEROS = "zeros"
    CONST = "const"
    PRETRAINED = "pretrained"


@dataclass(frozen=True)
class InitInfo:
    doc: str
    nargs: int = 0              # positional arguments: const(v), pretrained("file")
    learned: bool = False       # M_0 is a parameter the outer loop trains


INITS: dict[Init, InitInfo] = {
    Init.META: InitInfo("M_0 is meta-learned by the outer loop", learned=True),
    Init.ZEROS: InitInfo("M_0 = 0"),
    Init.CONST: InitInfo("every entry of M_0 is a constant: const(v)", nargs=1),
    Init.PRETRAINED: InitInfo("M_0 read from a file: pretrained(\"file.safetensors\")", nargs=1),
}


class OpKind(enum.StrEnum):
    # activations
    SILU = "silu"
    GELU = "gelu"
    RELU = "relu"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    SOFTPLUS = "softplus"
    EXP = "exp"
    # builtins with parameters or arguments
    LINEAR = "linear"
    RMSNORM = "rmsnorm"
    LAYERNORM = "layernorm"
    L2NORM = "l2norm"
    CONV = "conv"
    HEAD_MEAN = "head_mean"
    GATE = "gate"
    SCALE = "scale"
    # written by the elaborator, not callable by name
    CONST = "const"
    ALIAS = "alias"
    NEG = "neg"
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    READ = "read"
    CMS = "cms"


@dataclass(frozen=True)
class OpInfo:
    arity: int                      # stream inputs
    kwargs: tuple = ()              # keyword arguments a spec may give (the first may also be positional)
    builtin: bool = False           # callable by name in a spec: `rmsnorm(x)`
    params: bool = False            # owns parameters: the lowering builds a module for it (nlc/lower/ops.py: MODULES)
    program: bool = False           # run by the program itself (it reads levels or carries fast state), not by
                                    # nlc/lower/ops.py: APPLY


ACTS = (OpKind.SILU, OpKind.GELU, OpKind.RELU, OpKind.SIGMOID, OpKind.TANH, OpKind.SOFTPLUS, OpKind.EXP)
# the activations a memory's or CMS stage's MLP may use (`mlp(act = ...)`), with a derivative in
# nlc/lower/ops.py: act_grad (the closed-form gradients need it)
MEMORY_ACTS = (OpKind.SILU, OpKind.GELU, OpKind.RELU, OpKind.TANH)

OPS: dict[OpKind, OpInfo] = {
    **{a: OpInfo(1, builtin=True) for a in ACTS},
    OpKind.LINEAR: OpInfo(1, ("out",), builtin=True, params=True),
    OpKind.RMSNORM: OpInfo(1, builtin=True, params=True),
    OpKind.LAYERNORM: OpInfo(1, builtin=True, params=True),
    OpKind.L2NORM: OpInfo(1, ("groups",), builtin=True),
    OpKind.CONV: OpInfo(1, ("window",), builtin=True, params=True, program=True),  # carries its last inputs
    OpKind.HEAD_MEAN: OpInfo(1, ("groups",), builtin=True),
    OpKind.GATE: OpInfo(2, builtin=True, params=True),
    OpKind.SCALE: OpInfo(1, ("lo", "hi"), builtin=True, params=True),  # x * exp(s), s per channel
    OpKind.CONST: OpInfo(0, program=True),
    OpKind.ALIAS: OpInfo(1),
    OpKind.NEG: OpInfo(1),
    # binary arithmetic: a constant operand is an attribute (`left` or `right`), not an input
    OpKind.ADD: OpInfo(2),
    OpKind.SUB: OpInfo(2),
    OpKind.MUL: OpInfo(2),
    OpKind.DIV: OpInfo(2),
    OpKind.READ: OpInfo(1, program=True),   # a level read at its chunk-start state (+ attention context)
    OpKind.CMS: OpInfo(1, program=True),    # a CMS chain of MLP stages
}
BUILTINS: dict[OpKind, OpInfo] = {k: v for k, v in OPS.items() if v.builtin}
BINARY = {"+": OpKind.ADD, "-": OpKind.SUB, "*": OpKind.MUL, "/": OpKind.DIV}


class Role(enum.StrEnum):
    MEMORY = "memory"
    ATTENTION = "attention"
    CMS = "cms"


@dataclass(frozen=True)
class RoleInfo:
    doc: str
    writes: bool      # carries fast state that it writes in context (when its clock is a token clock)
    must_read: bool   # a level of this role that no op reads is an error (check-graph)


ROLES: dict[Role, RoleInfo] = {
    Role.MEMORY: RoleInfo("a parametric memory learning a local objective in context (Titans, DGD, ...)", True, True),
    Role.ATTENTION: RoleInfo("attention: a non-parametric memory (NL eq. 62), no weights to write", False, True),
    Role.CMS: RoleInfo("a stage of a CMS chain, taught by the task loss (NL eqs. 70-74)", True, False),
}
WRITING_ROLES = tuple(r for r, info in ROLES.items() if info.writes)
READ_ROLES = tuple(r for r, info in ROLES.items() if info.must_read)


class Flow(enum.StrEnum):
    """A level's context flow (NL §3): which stream of its block it learns from or reads with. A
    level names each as a stream (an op of its block, `x` for the block input); `verify_plan`
    checks after `resolve` that every named stream exists with the width the flow needs."""
    KEYS = "keys"          # what the memory is indexed by: heads * dk
    VALUES = "values"      # what it should return: heads * dv
    QUERIES = "queries"    # attention: what it is read with (heads * dk)
    CONTEXT = "context"    # attention: extra tokens joined to its keys (MAC), width dim


class MemoryKind(enum.StrEnum):
    LINEAR = "linear"
    MLP = "mlp"
    RESIDUAL_MLP = "residual_mlp"
    ATTENTION = "attention"
    SLOT = "slot"


@dataclass(frozen=True)
class MemoryKindInfo:
    doc: str
    args: tuple = ()            # keyword arguments a spec may give: `mlp(depth = 2, expansion = 4, act = gelu)`
    query_width: bool = False   # its output has the query's width (no `values` needed to know it)
    residual: bool = False      # M(k) = k + MLP(k) (Hope eq. 89)
    in_block: bool = True       # a block's level may use it (a slot is optimizer state only)


MEMORY_KINDS: dict[MemoryKind, MemoryKindInfo] = {
    MemoryKind.LINEAR: MemoryKindInfo("one matrix: M(k) = W k"),
    MemoryKind.MLP: MemoryKindInfo("an MLP of `depth` layers (depth 1: a matrix)", ("depth", "expansion", "act")),
    MemoryKind.RESIDUAL_MLP: MemoryKindInfo("k + a 2-layer MLP of k (Hope eq. 89)", ("expansion", "act"),
                                            query_width=True, residual=True),
    MemoryKind.ATTENTION: MemoryKindInfo("softmax attention over the sequence (NL eq. 62)",
                                         ("window", "persistent", "rope"), query_width=True),
    MemoryKind.SLOT: MemoryKindInfo("an optimizer's per-parameter state (specs/optim)", in_block=False),
}
QUERY_WIDTH_KINDS = tuple(k for k, info in MEMORY_KINDS.items() if info.query_width)


class CmsVariant(enum.StrEnum):
    SEQUENTIAL = "sequential"
    NESTED = "nested"
    INDEPENDENT = "independent"


@dataclass(frozen=True)
class CmsVariantInfo:
    doc: str
    parallel: bool = False   # every stage reads the chain's input; a learned mix sums their outputs (NL eq. 74)
    nested: bool = False     # a slower stage restarts the faster ones at its chunk boundary (NL eq. 72)


CMS_VARIANTS: dict[CmsVariant, CmsVariantInfo] = {   # the first is the default: cms(x) { ... }
    CmsVariant.SEQUENTIAL: CmsVariantInfo("each stage reads the previous stage's output"),
    CmsVariant.NESTED: CmsVariantInfo("sequential, and a slower stage restarts the faster ones", nested=True),
    CmsVariant.INDEPENDENT: CmsVariantInfo("every stage reads the input", parallel=True),
}


class GateKind(enum.StrEnum):
    CONST = "const"
    LEARNED = "learned"
    STREAM = "stream"


@dataclass(frozen=True)
class GateKindInfo:
    doc: str
    learned: bool = False   # one scalar parameter per head, trained by the outer loop


GATE_KINDS: dict[GateKind, GateKindInfo] = {
    GateKind.CONST: GateKindInfo("a constant: `lr = 0.1`"),
    GateKind.LEARNED: GateKindInfo("a scalar per head, meta-learned: `lr = learned(0.1)`", learned=True),
    GateKind.STREAM: GateKindInfo("computed from the input, per token: `lr = sigmoid(linear(x, out = heads))`"),
}


# ---- the level graph's picture (nlc/graph, nlc/viz.py, the page): what its nodes and edges are
class NodeKind(enum.StrEnum):
    LEVEL = "level"
    ATTENTION = "attention"
    OPTIMIZER = "optimizer"
    INPUT = "input"
    OUTPUT = "output"


NODE_KINDS: dict[NodeKind, str] = {
    NodeKind.LEVEL: "learning level", NodeKind.ATTENTION: "attention (non-parametric)",
    NodeKind.OPTIMIZER: "outer optimizer", NodeKind.INPUT: "input", NodeKind.OUTPUT: "output",
}


class EdgeKind(enum.StrEnum):
    FLOW = "flow"                # a context flow: keys, values, queries, a CMS chain's input
    GENERATES = "generates"      # a level produces another's (or its own) values or gates
    OPTIMIZES = "optimizes"      # the outer optimizer updates the level's parameters
    INITIALIZES = "initializes"  # ... and its meta-learned initial state
    BACKPROP = "backprop"        # the task-loss gradient reaches it (CMS stages)


EDGE_KINDS: dict[EdgeKind, str] = {
    EdgeKind.FLOW: "flow (keys / values / queries)",
    EdgeKind.GENERATES: "generates (self-generated values, lr)",
    EdgeKind.OPTIMIZES: "optimizes (outer update)",
    EdgeKind.INITIALIZES: "initializes (meta-learned init)",
    EdgeKind.BACKPROP: "backprop (task-loss gradient)",
}
