"""The surface IR: frozen records (nlc.ir.base), one per construct of the language.

Every node carries the `Span` it came from. Equality ignores spans, so that
`parse(fmt(x)) == x` holds although formatting moves text around. Every node has a
`kind` tag.
"""
from __future__ import annotations

from typing import Literal, Union

from nlc.ir.base import Record
from nlc.ir.kinds import Flow


class Node(Record):
    """A surface IR node: frozen, keyword-only, with a span; equality ignores spans."""


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


Expr = Union[Num, Str, Bool, Name, Call, BinOp, Neg, Cms]


# ---- level properties ----------------------------------------------------------
class ClockProp(Node):
    kind: Literal["clock_prop"] = "clock_prop"
    clock: Clock


class StreamProp(Node):
    kind: Literal["stream_prop"] = "stream_prop"
    role: Flow
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


Prop = Union[ClockProp, StreamProp, LearnProp, RuleProp, InitProp, OptionProp]


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
    body: list[Union[Assign, LevelDef, MemoryDef, Out]] = []


class Param(Node):
    kind: Literal["param"] = "param"
    name: str
    default: Expr


class Model(Node):
    kind: Literal["model"] = "model"
    name: str
    params: list[Param] = []
    body: list[Union[MemoryDef, Block, LevelDef]] = []


class Optimizer(Node):
    kind: Literal["optimizer"] = "optimizer"
    name: str
    params: list[Param] = []
    body: list[Union[LevelDef, Assign, Step]] = []


Item = Union[Import, Model, Optimizer, MemoryDef]


class Program(Node):
    kind: Literal["program"] = "program"
    file: str
    items: list[Item] = []

    def key(self):
        # the file name is where the program came from, not what it says
        d = super().key()
        d.pop("file", None)
        return d
