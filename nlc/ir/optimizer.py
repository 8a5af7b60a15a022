"""The checked optimizer plan: what `passes.optimizer` makes of an `optimizer` definition and the
lowering (`lower.optim`) runs. Plain data and small helpers, no torch and no surface IR, so the
lowering reads this and never the definition it came from (issue 11).

Expressions are a small resolved IR: `Const`, `Ref`, `Neg`, `Bin`, `Apply`. The checker builds them
from the surface expressions once they are checked (local definitions inlined, names bound);
`show` prints them exactly as the surface printer prints the expression they came from, so error
messages quote the source as written.
"""
from __future__ import annotations

from typing import Any

from nlc.ir.base import Record
from nlc.ir.resolved import MAX_CHUNK


# ---- expressions ---------------------------------------------------------------
class X(Record):
    """A resolved optimizer expression; keeps its source span for messages."""

    dump_span = False


class Const(X):
    value: float
    text: str          # as written (1e-3 stays 1e-3), for messages


class Ref(X):
    """A name: an optimizer parameter, a slot level, or an input (grad, param)."""

    name: str


class Neg(X):
    x: Any


class Bin(X):
    op: str            # + - * /
    a: Any
    b: Any


class Apply(X):
    """A function of STEP_FUNCS: its tensor arguments first, then its constant ones."""

    func: str
    args: tuple = ()


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def show(e: X, prec: int = 0) -> str:
    """`e` as `.nl` text (the same text `nlc.ir.printer.expr` gives for its surface form)."""
    if isinstance(e, Const):
        return e.text
    if isinstance(e, Ref):
        return e.name
    if isinstance(e, Neg):
        return "-" + show(e.x, 3)
    if isinstance(e, Bin):
        p = _PREC[e.op]
        # left-associative: the right operand needs parentheses at equal precedence
        s = f"{show(e.a, p)} {e.op} {show(e.b, p + 1)}"
        return f"({s})" if p < prec else s
    if isinstance(e, Apply):
        return f"{e.func}({', '.join(show(a) for a in e.args)})"
    raise TypeError(f"not an optimizer expression: {type(e).__name__}")


def names(e: X) -> set[str]:
    """The names `e` reads."""
    if isinstance(e, Ref):
        return {e.name}
    if isinstance(e, Neg):
        return names(e.x)
    if isinstance(e, Bin):
        return names(e.a) | names(e.b)
    if isinstance(e, Apply):
        return set().union(*(names(a) for a in e.args))
    return set()


# ---- registries: what an optimizer may say (checker and lowering read these) ---
# slot update rules: name -> (positional args, keyword args with defaults). `beta` is in [0, 1].
#   ema(beta)         s <- beta s + (1 - beta) k
#   accumulate(beta)  s <- s + beta k        (additive, as printed in M3's Algorithm 1)
#   momentum(beta)    s <- beta s + k        (NL §4; the step subtracts it)
#   delta(beta)       s <- (beta I - k^ k^T) s + k,  k^ = k / |k|   (delta momentum, NL eqs. 48-49)
#   deep(beta, hidden, lr)  s <- beta s + f(k), f an MLP memory trained by GD on <f(k), 1> (DMGD, eq. 50)
SLOT_RULES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "ema": (("beta",), {}),
    "accumulate": (("beta",), {}),
    "momentum": (("beta",), {}),
    "delta": (("beta",), {}),
    "deep": (("beta",), {"hidden": 16, "lr": 1e-3}),
}
# functions of `keys` and `step` expressions: name -> (tensor args, constant args)
STEP_FUNCS = {"sqrt": (1, ()), "sign": (1, ()), "abs": (1, ()), "unbias": (1, ("beta",)),
              "newton_schulz": (1, ("steps",))}
INPUTS = ("grad", "param")


def _num(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float))


# the values each constant an optimizer takes may have: key -> (test, what a value must be). The
# checker tests the values it binds; the lowering tests each parameter group's values again (a group
# may set its own beta1 or f). Keys: a slot rule's argument, "every" (a slot's clock period), and
# "<function>.<argument>" for the constant arguments of STEP_FUNCS.
DOMAINS: dict[str, tuple[Any, str]] = {
    "beta": (lambda v: _num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "hidden": (lambda v: _num(v) and not isinstance(v, float) and v >= 1, "a positive integer"),
    "lr": (lambda v: _num(v) and v > 0, "a positive number"),
    "every": (lambda v: _num(v) and float(v).is_integer() and 1 <= v <= MAX_CHUNK, f"an integer in 1..{MAX_CHUNK}"),
    "unbias.beta": (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "newton_schulz.steps": (lambda v: _num(v) and not isinstance(v, float) and 1 <= v <= 100, "an integer in 1..100"),
}


def domain_error(key: str, v) -> str | None:
    """What `v` must be if it is not a valid value for DOMAINS[key], else None."""
    ok, what = DOMAINS[key]
    return None if ok(v) else what


# ---- the plan --------------------------------------------------------------------
class SlotLevel(Record):
    """One optimizer state: updated every `every` steps by `rule` from `keys`."""

    name: str
    every: int
    rule: str                       # a key of SLOT_RULES
    rule_args: dict[str, Any] = {}  # evaluated: beta (float), and hidden/lr for deep
    keys: Any = None                # X over grad, param and the optimizer's parameters
    # the constant expressions (X) `every` and `rule_args` were evaluated from ("every", and each rule
    # argument written in the source; the others are defaults): the lowering evaluates them again
    # with each parameter group's values
    exprs: dict[str, Any] = {}


class OptimizerSpec(Record):
    """A checked optimizer definition: bound parameters, slot levels, the step expression."""

    name: str
    file: str | None = None
    params: dict[str, Any] = {}     # every parameter, defaults overridden by the caller's values
    levels: list[SlotLevel] = []
    step: Any = None                # X over level names, params, grad, param; definitions inlined

    def level(self, name: str) -> SlotLevel:
        return next(lv for lv in self.levels if lv.name == name)
