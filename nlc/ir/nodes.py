"""The surface IR: frozen pydantic models, one per construct of the language.

Every node carries the `Span` it came from. Equality ignores spans, so that
`parse(fmt(x)) == x` holds although formatting moves text around. Node kinds are
discriminated unions on the `kind` field.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from nlc.errors import Span


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    span: Span | None = Field(default=None, repr=False)

    @field_serializer("span")
    def _ser_span(self, v, info):
        if v is None or (info.context and info.context.get("nospan")):
            return None
        return str(v)

    def key(self):
        """A structural key without spans (what equality compares)."""
        return self.model_dump(context={"nospan": True})

    def __eq__(self, other):
        return type(self) is type(other) and self.key() == other.key()

    def __hash__(self):
        return hash(repr(self.key()))


# ---- expressions ---------------------------------------------------------------
class Num(Node):
    kind: Literal["num"] = "num"
    value: float
    text: str  # as written, so printing round-trips (1e-3 stays 1e-3)


class Str(Node):
    kind: Literal["str"] = "str"
    value: str


class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class Name(Node):
    kind: Literal["name"] = "name"
    id: str


class KwArg(Node):
    kind: Literal["kwarg"] = "kwarg"
    name: str
    value: "Expr"


class Call(Node):
    kind: Literal["call"] = "call"
    func: str
    args: list["Expr"] = []
    kwargs: list[KwArg] = []

    def kw(self, name: str):
        for k in self.kwargs:
            if k.name == name:
                return k.value
        return None


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: Literal["+", "-", "*", "/"]
    left: "Expr"
    right: "Expr"


class Neg(Node):
    kind: Literal["neg"] = "neg"
    operand: "Expr"


class Clock(Node):
    kind: Literal["clock"] = "clock"
    unit: Literal["tokens", "steps", "frozen"]
    every: "Expr | None" = None


class CmsStage(Node):
    kind: Literal["cms_stage"] = "cms_stage"
    memory: Call
    clock: Clock


class Cms(Node):
    """`cms(input, options...) -> mlp(...) @ tokens(C) -> ...` (NL eqs. 70-74)."""

    kind: Literal["cms"] = "cms"
    options: Call  # func == "cms"; args[0] is the input stream
    stages: list[CmsStage]


Expr = Annotated[Union[Num, Str, Bool, Name, Call, BinOp, Neg, Cms], Field(discriminator="kind")]


# ---- level properties ----------------------------------------------------------
class ClockProp(Node):
    kind: Literal["clock_prop"] = "clock_prop"
    clock: Clock


class StreamProp(Node):
    kind: Literal["stream_prop"] = "stream_prop"
    role: Literal["keys", "values", "queries", "context"]
    value: Expr


class LearnProp(Node):
    kind: Literal["learn_prop"] = "learn_prop"
    objective: Call  # a bare name `l2` is stored as Call(func="l2")


class RuleProp(Node):
    kind: Literal["rule_prop"] = "rule_prop"
    rule: Call


class InitProp(Node):
    kind: Literal["init_prop"] = "init_prop"
    init: Call


class OptionProp(Node):
    kind: Literal["option_prop"] = "option_prop"
    name: str
    value: Expr


Prop = Annotated[Union[ClockProp, StreamProp, LearnProp, RuleProp, InitProp, OptionProp], Field(discriminator="kind")]


class MemoryType(Node):
    """What a level learns: a memory template (by name or inline call) or outer parameters."""

    kind: Literal["memory_type"] = "memory_type"
    form: Literal["call", "ref", "params"]
    call: Call | None = None      # form == call
    ref: str | None = None        # form == ref
    targets: list[str] = []       # form == params: `params(all)` or `params(a, b)`


# ---- statements ----------------------------------------------------------------
class Import(Node):
    kind: Literal["import"] = "import"
    path: str
    alias: str | None = None


class MemoryDef(Node):
    kind: Literal["memory_def"] = "memory_def"
    name: str
    memory: Call


class Assign(Node):
    kind: Literal["assign"] = "assign"
    name: str
    value: Expr


class Out(Node):
    kind: Literal["out"] = "out"
    value: Expr


class Step(Node):
    kind: Literal["step"] = "step"
    value: Expr


class LevelDef(Node):
    kind: Literal["level"] = "level"
    names: list[str]
    type: MemoryType
    per_head: bool = False
    heads: Expr | None = None
    props: list[Prop] = []

    def props_of(self, cls):
        return [p for p in self.props if isinstance(p, cls)]


class Block(Node):
    kind: Literal["block"] = "block"
    name: str
    repeat: Expr | None = None
    body: list[Annotated[Union[Assign, LevelDef, MemoryDef, Out], Field(discriminator="kind")]] = []


class Param(Node):
    kind: Literal["param"] = "param"
    name: str
    default: Expr


class Model(Node):
    kind: Literal["model"] = "model"
    name: str
    params: list[Param] = []
    body: list[Annotated[Union[MemoryDef, Block, LevelDef], Field(discriminator="kind")]] = []


class Optimizer(Node):
    kind: Literal["optimizer"] = "optimizer"
    name: str
    params: list[Param] = []
    body: list[Annotated[Union[LevelDef, Assign, Step], Field(discriminator="kind")]] = []


Item = Annotated[Union[Import, Model, Optimizer, MemoryDef], Field(discriminator="kind")]


class Program(Node):
    kind: Literal["program"] = "program"
    file: str
    items: list[Item] = []

    def key(self):
        # the file name is where the program came from, not what it says
        d = super().key()
        d.pop("file", None)
        return d


for _cls in (KwArg, Call, BinOp, Neg, Clock, CmsStage, Cms, StreamProp, OptionProp, LevelDef, Block, Param, Model,
             Optimizer, Program, Assign, Out, Step, MemoryType, MemoryDef):
    _cls.model_rebuild()
