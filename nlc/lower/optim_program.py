"""Compile a checked optimizer (`passes.optimizer.OptimizerSpec`) once into a per-parameter program.

The program is an ordered list of typed statements: one `SlotUpdate` per slot level (in the
order the spec declares them), then the `step` expression. Every expression is compiled into a
Python closure over an environment `env`: the parameter group's hyperparameters (the optimizer's
declared parameters, read live so a group's own lr, beta1 or weight_decay and a schedule's
changes apply), `grad`, `param`, the slot states read so far, and the parameter's own step
count under STEP (not a name a spec can write). Nothing here reads the surface definition:
local definitions (`u = m * 2`) are already inlined into `step` by the checker.

Everything the program cannot run is an `NlcError` raised by `compile_program`, before any step.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch

from nlc.errors import DimensionError, NameError_, NlcError
from nlc.ir import nodes as ir
from nlc.ir.printer import expr
from nlc.passes.optimizer import DOMAINS, INPUTS, STEP_FUNCS, OptimizerSpec, domain_error

Value = Any  # float | torch.Tensor
Fn = Callable[[dict], Value]
STEP = "#step"  # the env key of the parameter's step count (1 at its first step); '#' cannot start a name


def newton_schulz(g, steps: int = 5):
    """Orthogonalise a matrix (Muon's quintic iteration); vectors are normalised."""
    if g.ndim < 2:
        return g / (g.norm() + 1e-7)
    shape = g.shape
    # fp32 at least (the iteration is unstable in half precision), fp64 kept for fp64 parameters
    x = g.reshape(shape[0], -1)
    x = x if x.dtype == torch.float64 else x.float()
    a, b, c = 3.4445, -4.7750, 2.0315
    x = x / (x.norm() + 1e-7)
    tr = x.shape[0] > x.shape[1]
    if tr:
        x = x.T
    for _ in range(int(steps)):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    if tr:
        x = x.T
    return x.reshape(shape).to(g.dtype)


def _sqrt(x):
    return torch.sqrt(x) if isinstance(x, torch.Tensor) else math.sqrt(x)


def _abs(x):
    return torch.abs(x) if isinstance(x, torch.Tensor) else abs(x)


def _sign(x):
    return torch.sign(x) if isinstance(x, torch.Tensor) else float((x > 0) - (x < 0))


# the functions of STEP_FUNCS: name -> (tensor args, constant args, env) -> value. A constant
# argument is evaluated with the group's values (unbias's beta may be a group's beta1).
FUNCS: dict[str, Callable] = {
    "sqrt": lambda t, c, env: _sqrt(t[0]),
    "abs": lambda t, c, env: _abs(t[0]),
    "sign": lambda t, c, env: _sign(t[0]),
    "unbias": lambda t, c, env: t[0] / (1 - float(c[0]) ** env[STEP]),
    "newton_schulz": lambda t, c, env: newton_schulz(t[0], int(c[0])),
}
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


@dataclass(frozen=True)
class Check:
    """A constant whose value a parameter group may change: it must stay in DOMAINS[domain]."""

    what: str      # where it is used, for the message: "ema(beta) of level m"
    domain: str    # a key of DOMAINS
    value: Fn      # of the group's hyperparameters
    source: str    # the expression as written ("beta1"), for the message


@dataclass(frozen=True)
class SlotUpdate:
    """`name <- rule(name, keys)` every `every` steps of the parameter; keys summed in between."""

    name: str
    rule: str                  # a key of nlc.lower.optim.SLOT_UPDATES
    every: Fn                  # of the group's hyperparameters -> int
    args: dict[str, Fn]        # rule argument -> value, of the group's hyperparameters
    keys: Fn                   # of env -> tensor


@dataclass(frozen=True)
class Program:
    name: str
    hyper: dict[str, float]        # the declared parameters and their bound values: a group's defaults
    slots: tuple[SlotUpdate, ...]
    step: Fn                       # of env -> the amount subtracted from the parameter
    checks: tuple[Check, ...]
    implicit_lr: bool              # the spec declares no `lr`: the group's lr (1.0) multiplies `step`


def compile_program(spec: OptimizerSpec, rules) -> Program:
    """`rules`: the slot rule names the caller can run (nlc.lower.optim.SLOT_UPDATES)."""
    if not isinstance(spec, OptimizerSpec) or spec.step is None:
        raise NlcError(f"NLOptimizer needs a checked optimizer (OptimizerSpec), got {type(spec).__name__}",
                       hint="pass the `spec` of the model plan's optimizer (nlc.passes.optimizer.check_optimizer)")
    hyper = dict(spec.params)
    if "params" in hyper:
        # torch keeps a group's tensors under "params": a hyperparameter of that name would replace them
        raise NameError_(f"optimizer {spec.name}: a parameter cannot be called 'params' (torch's param groups "
                         "keep the tensors under that key)", spec.span, "rename it")
    sc = _Scope(spec.name, frozenset(hyper), [])
    consts = set(hyper)
    slots = []
    for lv in spec.levels:
        if lv.rule not in rules:
            raise NameError_(f"optimizer {spec.name}: level '{lv.name}' has rule '{lv.rule}', which the lowering "
                             f"cannot run", lv.span, f"rules it runs: {', '.join(rules)}")
        args: dict[str, Fn] = {}
        for a, v in lv.rule_args.items():
            fn = _expr(lv.exprs[a], consts, sc) if a in lv.exprs else _const(v)
            args[a] = fn
            if a in DOMAINS:
                src = expr(lv.exprs[a]) if a in lv.exprs else repr(v)
                sc.checks.append(Check(f"{lv.rule}({a}) of level '{lv.name}'", a, fn, src))
        every = _expr(lv.exprs["every"], consts, sc) if "every" in lv.exprs else _const(lv.every)
        src = expr(lv.exprs["every"]) if "every" in lv.exprs else repr(lv.every)
        sc.checks.append(Check(f"the clock period of level '{lv.name}'", "every", every, src))
        keys = _expr(lv.keys, consts | set(INPUTS), sc)
        slots.append(SlotUpdate(lv.name, lv.rule, every, args, keys))
    step = _expr(spec.step, consts | set(INPUTS) | {lv.name for lv in spec.levels}, sc)
    return Program(spec.name, hyper, tuple(slots), step, tuple(sc.checks), implicit_lr="lr" not in hyper)


def check_group(prog: Program, group: dict, index: int) -> None:
    """Every hyperparameter is a number, and every constant of the program in its domain, under this
    group's values."""
    for k in prog.hyper:
        v = group[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DimensionError(f"optimizer {prog.name}, parameter group {index}: {k} = {v!r}; "
                                 "it must be a finite number", hint="optimizer parameters are numbers")
    for c in prog.checks:
        try:
            v = c.value(group)
        except (ArithmeticError, ValueError, KeyError) as e:
            raise DimensionError(f"optimizer {prog.name}, parameter group {index}: {c.what} cannot be computed "
                                 f"({type(e).__name__}: {e})") from None
        what = domain_error(c.domain, v)
        if what is not None:
            shown = f"{c.source} = {v!r}" if c.source != repr(v) else repr(v)
            raise DimensionError(f"optimizer {prog.name}, parameter group {index}: {c.what} is {shown}; "
                                 f"it must be {what}", hint="change the group's values")


def _const(v) -> Fn:
    return lambda env: v


@dataclass(frozen=True)
class _Scope:
    opt: str             # the optimizer's name, for messages
    hyper: frozenset     # the group's hyperparameters: all a constant argument may read
    checks: list         # the Checks found so far


def _expr(e, names: set[str], sc: _Scope) -> Fn:
    """A closure computing `e` from env; `names` are those `e` may read."""
    if isinstance(e, ir.Num):
        return _const(e.value)
    if isinstance(e, ir.Name):
        if e.id not in names:
            raise NameError_(f"optimizer {sc.opt}: the lowering cannot read '{e.id}' here", e.span,
                             f"names it can read: {', '.join(sorted(names))}")
        key = e.id
        return lambda env: env[key]
    if isinstance(e, ir.Neg):
        f = _expr(e.operand, names, sc)
        return lambda env: -f(env)
    if isinstance(e, ir.BinOp):
        op, f, g = OPS[e.op], _expr(e.left, names, sc), _expr(e.right, names, sc)
        return lambda env: op(f(env), g(env))
    if isinstance(e, ir.Call) and e.func in FUNCS and e.func in STEP_FUNCS and not e.kwargs:
        ntensor, cnames = STEP_FUNCS[e.func]
        if len(e.args) == ntensor + len(cnames):
            fn = FUNCS[e.func]
            tensors = [_expr(a, names, sc) for a in e.args[:ntensor]]
            consts = [_expr(a, set(sc.hyper), sc) for a in e.args[ntensor:]]
            for cname, c, a in zip(cnames, consts, e.args[ntensor:]):
                if f"{e.func}.{cname}" in DOMAINS:
                    sc.checks.append(Check(f"{e.func}(x, {cname})", f"{e.func}.{cname}", c, expr(a)))
            return lambda env: fn([t(env) for t in tensors], [c(env) for c in consts], env)
    raise NlcError(f"optimizer {sc.opt}: the lowering cannot run `{getattr(e, 'func', type(e).__name__)}` here",
                   getattr(e, "span", None), f"functions it runs: {', '.join(FUNCS)}")
