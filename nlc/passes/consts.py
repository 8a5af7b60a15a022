"""Pass `bind-params`: pick the model, apply `--set k=v` overrides, evaluate its parameters."""
from __future__ import annotations

import difflib
import math
from typing import Any

from nlc.errors import Diagnostics, NameError_, NlcError
from nlc.ir import nodes as ir


class ConstError(NlcError):
    pass


def did_you_mean(name: str, options) -> str | None:
    m = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"did you mean '{m[0]}'?" if m else None


# Integers a spec computes with stay within a signed 64-bit range, floats finite: a
# constant outside is an error where it is written (1e400, 10**400 as digits, 1e300 * 1e300).
MAX_INT = (1 << 63) - 1


def check_number(v, span, what: str = "number"):
    """`v` itself if it is a usable number (finite float, int within +-MAX_INT); else a ConstError."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        raise ConstError(f"{what} out of range: {v}", span,
                         "numbers are finite: at most about 1.8e308 (and integers at most 2^63 - 1)")
    if isinstance(v, int) and not -MAX_INT <= v <= MAX_INT:
        raise ConstError(f"{what} out of range: an integer of {len(str(abs(v)))} digits", span,
                         "integers are at most 2^63 - 1 = 9223372036854775807")
    return v


def eval_const(e, env: dict[str, Any], what: str = "value"):
    """Evaluate a constant expression (numbers, strings, bools, names of params, + - * /)."""
    if isinstance(e, ir.Num):
        v = e.value
        if not math.isfinite(v):
            raise ConstError(f"number out of range: {e.text if len(e.text) <= 40 else e.text[:37] + '...'}", e.span,
                             "numbers are finite: at most about 1.8e308")
        v = int(v) if v.is_integer() and not any(c in e.text for c in ".eE") else v
        return check_number(v, e.span)
    if isinstance(e, (ir.Str, ir.Bool)):
        return e.value
    if isinstance(e, ir.Name):
        if e.id in env:
            return env[e.id]
        raise ConstError(f"unknown name '{e.id}' in {what}", e.span, did_you_mean(e.id, env) or "spec parameters are declared in `model Name(p = ...)`")
    if isinstance(e, ir.Neg):
        v = eval_const(e.operand, env, what)
        _num(v, e)
        return check_number(-v, e.span, "result")
    if isinstance(e, ir.BinOp):
        a, b = eval_const(e.left, env, what), eval_const(e.right, env, what)
        _num(a, e.left)
        _num(b, e.right)
        if e.op == "+":
            return check_number(a + b, e.span, "result")
        if e.op == "-":
            return check_number(a - b, e.span, "result")
        if e.op == "*":
            return check_number(a * b, e.span, "result")
        if b == 0:
            raise ConstError("division by zero", e.span)
        if isinstance(a, int) and isinstance(b, int) and a % b == 0:
            return a // b  # exact: no detour through a float
        try:
            r = a / b
        except OverflowError:  # an int quotient too large for a float
            r = math.inf
        return check_number(r, e.span, "result")
    raise ConstError(f"{what} must be a constant (a number, a string or a spec parameter)", e.span)


def _num(v, node):
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ConstError(f"expected a number, got {v!r}", node.span)
    if isinstance(v, float) and not math.isfinite(v):
        raise ConstError(f"number out of range: {v}", node.span)


def eval_option(e, env: dict[str, Any], what: str = "option"):
    """Like eval_const, but a bare unknown name is a symbol (`variant = nested`, `act = gelu`)."""
    if isinstance(e, ir.Name) and e.id not in env:
        return e.id
    return eval_const(e, env, what)


def parse_override(text: str) -> Any:
    """`--set k=v` values: ints, floats, true/false, else a string."""
    t = text.strip()
    if t in ("true", "false"):
        return t == "true"
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def select_model(unit, name: str | None) -> ir.Model:
    if name:
        if name not in unit.models:
            raise NameError_(f"no model named '{name}' in {unit.program.file}", None,
                             did_you_mean(name, unit.models) or f"models here: {', '.join(unit.models) or 'none'}",
                             file=unit.program.file)
        return unit.models[name]
    own = unit.own_models or list(unit.models)
    if not own:
        raise NameError_(f"{unit.program.file} defines no model", None,
                         "a spec needs `model Name(params) { ... }`; files with only optimizers are imported by models",
                         file=unit.program.file)
    return unit.models[own[0]]


def bind_params(model: ir.Model, overrides: dict[str, Any]) -> dict[str, Any]:
    diags = Diagnostics()
    env: dict[str, Any] = {}
    seen: dict[str, ir.Param] = {}
    for p in model.params:
        if p.name in seen:
            diags.error(NameError_, f"parameter '{p.name}' is declared twice", p.span)
            continue
        seen[p.name] = p
        if p.name in overrides:
            try:
                env[p.name] = check_number(overrides[p.name], model.span, f"--set {p.name}")
            except NlcError as e:
                diags.add(e)
            continue
        try:
            env[p.name] = eval_const(p.default, env, f"the default of '{p.name}'")
        except NlcError as e:
            diags.add(e)
    for k in overrides:
        if k not in seen:
            diags.error(NameError_, f"--set {k}: model {model.name} has no parameter '{k}'", model.span,
                        did_you_mean(k, seen) or f"parameters: {', '.join(seen) or 'none'}")
    diags.check()
    return env
