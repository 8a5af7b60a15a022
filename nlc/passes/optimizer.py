"""Pass `check-optimizer`: validate an `optimizer` definition and reduce it to an OptimizerSpec.

An optimizer written in `.nl` is a set of slot levels (its states: memories of the
gradient, NL-arXiv §4 and App. B) and one `step` expression that reads them:

    optimizer AdamW(lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8) {
      level m : slot { clock steps(1); keys grad; rule ema(beta1) }
      level v : slot { clock steps(1); keys grad * grad; rule ema(beta2) }
      step lr * unbias(m, beta1) / (sqrt(unbias(v, beta2)) + eps)
    }

Each step, every slot level whose clock fires updates from its `keys` (an elementwise
expression of `grad`, `param` and the optimizer's parameters), then the parameter moves
by `-step`. The lowering reads the returned OptimizerSpec (`nlc.ir.optimizer`) only: parameters
bound, rule arguments evaluated, local `name = expr` definitions inlined into `step`, expressions
resolved (`ir.optimizer.Const`, `Ref`, ...). The registries (SLOT_RULES, STEP_FUNCS, DOMAINS) live
there too, since checker and lowering both read them.
"""
from __future__ import annotations

from typing import Any

from nlc.errors import ClockError, CycleError, Diagnostics, DimensionError, NameError_, NlcError
from nlc.ir import nodes as ir
from nlc.ir import optimizer as rx
from nlc.ir.kinds import Flow, MemoryKind
from nlc.ir.optimizer import (DOMAINS, INPUTS, SLOT_RULES, STEP_FUNCS, OptimizerSpec, SlotLevel,  # noqa: F401
                              domain_error)
from nlc.passes.consts import check_number, did_you_mean, eval_const


def check_optimizer(opt: ir.Optimizer, env: dict[str, Any] | None = None) -> OptimizerSpec:
    """Check `opt`; `env` overrides its parameters' defaults (`rule AdamW(lr = 3e-4)`)."""
    diags = Diagnostics()
    params = _bind(opt, dict(env or {}), diags)
    levels: dict[str, SlotLevel] = {}
    declared: set[str] = set()  # level names, also of levels that failed (so the step does not cascade)
    defs: dict[str, ir.Assign] = {}
    steps: list[ir.Step] = []
    taken = set(params) | set(INPUTS)
    for s in opt.body:
        names = s.names if isinstance(s, ir.LevelDef) else [s.name] if isinstance(s, ir.Assign) else []
        for n in names:
            if n in taken:
                what = "an input" if n in INPUTS else "a parameter" if n in params else "already defined"
                diags.error(NameError_, f"'{n}' is {what} in optimizer {opt.name}", s.span, "pick another name")
            taken.add(n)
        if isinstance(s, ir.Step):
            steps.append(s)
        elif isinstance(s, ir.Assign) and s.name not in defs:
            defs[s.name] = s
        elif isinstance(s, ir.LevelDef):
            declared.update(s.names)
            for n in s.names:
                try:
                    levels.setdefault(n, _slot_level(n, s, params))
                except NlcError as e:
                    diags.add(e)
    if not steps:
        diags.error(NameError_, f"optimizer {opt.name} has no `step`", opt.span,
                    "add `step lr * m`: how the parameters move, read from the slot levels")
    for s in steps[1:]:
        diags.error(NameError_, f"optimizer {opt.name} has more than one `step`", s.span, f"the first is at {steps[0].span}")
    step = None
    if steps:
        try:
            step = _inline(steps[0].value, defs, [])
        except NlcError as e:
            diags.add(e)
    if step is not None:
        _check_expr(step, params, declared, diags, "step")
        used = _names(step)
        for n, lv in levels.items():
            if n not in used:
                diags.error(NameError_, f"`step` of optimizer {opt.name} never reads level '{n}'", _level_span(opt, n),
                            f"use it in the step, e.g. `step lr * {n}`, or remove the level")
    diags.check()
    return OptimizerSpec(name=opt.name, file=opt.span.file if opt.span else None, params=params,
                         levels=list(levels.values()), step=resolve(step), span=opt.span)


def _bind(opt: ir.Optimizer, env: dict, diags: Diagnostics) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in opt.params:
        if p.name in out:
            diags.error(NameError_, f"parameter '{p.name}' is declared twice", p.span)
        else:
            # every optimizer parameter is a number (the step is arithmetic on tensors)
            given = p.name in env
            try:
                v = env[p.name] if given else eval_const(p.default, out, f"the default of '{p.name}'")
                check_number(v, p.span, f"the value of '{p.name}'")
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise DimensionError(f"optimizer {opt.name}: parameter '{p.name}' must be a number, got {v!r}"
                                         + (" (given by the caller)" if given else ""), p.span)
                out[p.name] = v
            except NlcError as e:
                diags.add(e)
                out[p.name] = None  # declared: uses of the name do not cascade into "unknown name"
    return out


def _level_span(opt: ir.Optimizer, name: str):
    return next((s.span for s in opt.body if isinstance(s, ir.LevelDef) and name in s.names), opt.span)


def _slot_level(name: str, lv: ir.LevelDef, params: dict) -> SlotLevel:
    from nlc.ir.resolved import Clock, ClockUnit
    from nlc.passes.levels import check_clock
    t = lv.type
    is_slot = (t.form == "ref" and t.ref == MemoryKind.SLOT) or (t.form == "call" and t.call.func == MemoryKind.SLOT and not t.call.args
                                                         and not t.call.kwargs)
    if not is_slot:
        raise NameError_(f"optimizer level '{name}' must be a `slot` (optimizer state)", t.span,
                         f"write `level {name} : slot {{ clock steps(1); keys grad; rule ema(0.9) }}`")
    if lv.per_head:
        raise NameError_("optimizer states are elementwise: `per head` does not apply", lv.span)
    seen: dict[str, ir.Node] = {}
    clock, keys, rule = Clock(unit=ClockUnit.STEPS, period=1), None, None
    every: Any = ir.Num(value=1, text="1")
    for p in lv.props:
        key = p.role if isinstance(p, ir.StreamProp) else p.kind.replace("_prop", "")
        if key in seen:
            raise NameError_(f"level '{name}' sets '{key}' twice", p.span, f"the first is at {seen[key].span}")
        seen[key] = p
        if isinstance(p, ir.ClockProp):
            clock = check_clock(p.clock, params)
            every = p.clock.every
            if clock.unit != ClockUnit.STEPS:
                raise ClockError(f"optimizer level '{name}' runs on training steps; `clock {clock.unit}` cannot drive it",
                                 p.clock.span, "use clock steps(C): every C optimizer steps")
        elif isinstance(p, ir.StreamProp) and p.role == Flow.KEYS:
            keys = p.value
        elif isinstance(p, ir.RuleProp):
            rule = p.rule
        else:
            raise NameError_(f"an optimizer level takes clock, keys and rule, not `{key}`", p.span,
                             "its values are implicit: a slot memorises its keys")
    if keys is None:
        raise NameError_(f"optimizer level '{name}' needs `keys`", lv.span, "e.g. `keys grad` or `keys grad * grad`")
    if rule is None:
        raise NameError_(f"optimizer level '{name}' needs a `rule`", lv.span,
                         f"rules: {', '.join(f'{r}(beta)' for r in SLOT_RULES)}")
    diags = Diagnostics()
    _check_expr(keys, params, set(), diags, "keys")
    if not (_names(keys) & set(INPUTS)):
        diags.error(NameError_, f"keys of level '{name}' do not depend on grad or param", keys.span,
                    "a slot memorises something of the gradient: `keys grad`")
    diags.check()
    args = _rule_args(rule, params)  # first: it rejects an unknown rule
    exprs = {"every": every} | dict(zip(SLOT_RULES[rule.func][0], rule.args)) | {k.name: k.value for k in rule.kwargs}
    return SlotLevel(name=name, every=clock.period, rule=rule.func, rule_args=args, keys=resolve(keys),
                     exprs={k: resolve(v) for k, v in exprs.items()}, span=lv.span)


def _rule_args(rule: ir.Call, params: dict) -> dict[str, Any]:
    spec = SLOT_RULES.get(rule.func)
    if spec is None:
        raise NameError_(f"unknown optimizer-level rule '{rule.func}'", rule.span,
                         (did_you_mean(rule.func, SLOT_RULES) or "") + f" rules: {', '.join(SLOT_RULES)}".rstrip())
    pos, kwdefaults = spec
    if len(rule.args) > len(pos):
        raise NameError_(f"{rule.func}() takes {len(pos)} positional argument(s)", rule.args[len(pos)].span)
    args = {n: eval_const(a, params, f"{rule.func}({n})") for n, a in zip(pos, rule.args)}
    for k in rule.kwargs:
        if k.name not in pos and k.name not in kwdefaults:
            raise NameError_(f"{rule.func}() has no argument '{k.name}'", k.span,
                             f"arguments: {', '.join(list(pos) + list(kwdefaults))}")
        if k.name in args:
            raise NameError_(f"{rule.func}() gets '{k.name}' twice", k.span)
        args[k.name] = eval_const(k.value, params, f"{rule.func}({k.name} = ...)")
    for n in pos:
        if n not in args:
            raise NameError_(f"{rule.func}() needs '{n}'", rule.span, f"e.g. {rule.func}(0.9)")
    for k, d in kwdefaults.items():
        args.setdefault(k, d)
    for k, v in args.items():
        what = domain_error(k, v)
        if what is not None:
            raise DimensionError(f"{rule.func}({k} = {v!r}): {k} must be {what}", rule.span)
    args["beta"] = float(args["beta"])
    return args


def resolve(e) -> rx.X:
    """A checked surface expression as the plan's resolved expression (same text, same spans)."""
    if isinstance(e, ir.Num):
        return rx.Const(value=e.value, text=e.text, span=e.span)
    if isinstance(e, ir.Name):
        return rx.Ref(name=e.id, span=e.span)
    if isinstance(e, ir.Neg):
        return rx.Neg(x=resolve(e.operand), span=e.span)
    if isinstance(e, ir.BinOp):
        return rx.Bin(op=e.op, a=resolve(e.left), b=resolve(e.right), span=e.span)
    if isinstance(e, ir.Call) and not e.kwargs:  # the checks refuse keyword arguments
        return rx.Apply(func=e.func, args=tuple(resolve(a) for a in e.args), span=e.span)
    raise TypeError(f"not a checked optimizer expression: {type(e).__name__}")


def _inline(e, defs: dict[str, ir.Assign], stack: list[str]):
    """Replace names of local definitions by their expressions (so lowering sees one expression)."""
    if isinstance(e, ir.Name) and e.id in defs:
        if e.id in stack:
            cyc = stack[stack.index(e.id):] + [e.id]
            raise CycleError(f"definition cycle: {' -> '.join(cyc)}", defs[e.id].span)
        return _inline(defs[e.id].value, defs, stack + [e.id])
    if isinstance(e, ir.Call):
        return e.model_copy(update={"args": [_inline(a, defs, stack) for a in e.args],
                                    "kwargs": [k.model_copy(update={"value": _inline(k.value, defs, stack)})
                                               for k in e.kwargs]})
    if isinstance(e, ir.BinOp):
        return e.model_copy(update={"left": _inline(e.left, defs, stack), "right": _inline(e.right, defs, stack)})
    if isinstance(e, ir.Neg):
        return e.model_copy(update={"operand": _inline(e.operand, defs, stack)})
    return e


def _names(e) -> set[str]:
    if isinstance(e, ir.Name):
        return {e.id}
    if isinstance(e, ir.Call):
        return set().union(*(_names(a) for a in e.args), *(_names(k.value) for k in e.kwargs))
    if isinstance(e, ir.BinOp):
        return _names(e.left) | _names(e.right)
    if isinstance(e, ir.Neg):
        return _names(e.operand)
    return set()


def _check_expr(e, params: dict, levels: set[str], diags: Diagnostics, what: str) -> None:
    """An elementwise expression: numbers, names, + - * /, and STEP_FUNCS."""
    if isinstance(e, ir.Num):
        return
    if isinstance(e, ir.Name):
        if e.id not in params and e.id not in levels and e.id not in INPUTS:
            known = list(params) + list(levels) + list(INPUTS)
            diags.error(NameError_, f"unknown name '{e.id}' in {what}", e.span,
                        did_you_mean(e.id, known) or f"{what} may use: {', '.join(known)}")
        return
    if isinstance(e, ir.Neg):
        return _check_expr(e.operand, params, levels, diags, what)
    if isinstance(e, ir.BinOp):
        _check_expr(e.left, params, levels, diags, what)
        return _check_expr(e.right, params, levels, diags, what)
    if isinstance(e, ir.Call):
        spec = STEP_FUNCS.get(e.func)
        if spec is None:
            diags.error(NameError_, f"unknown function '{e.func}' in {what}", e.span,
                        did_you_mean(e.func, STEP_FUNCS) or f"functions: {', '.join(STEP_FUNCS)}")
            return
        ntensor, consts = spec
        if e.kwargs or len(e.args) != ntensor + len(consts):
            sig = ", ".join(["x", *consts])
            diags.error(NameError_, f"{e.func} takes {ntensor + len(consts)} argument(s): {e.func}({sig})", e.span)
            return
        for a in e.args[:ntensor]:
            _check_expr(a, params, levels, diags, what)
        for name, a in zip(consts, e.args[ntensor:]):
            try:
                v = eval_const(a, params, f"{e.func}(..., {name})")
            except NlcError as err:
                diags.add(err)
                continue
            what = domain_error(f"{e.func}.{name}", v)
            if what is not None:
                sig = ", ".join(["x", *consts])
                diags.error(DimensionError, f"{e.func}({sig}): {name} must be {what}, got {v!r}", a.span)
        return
    diags.error(NameError_, f"{what} must be a numeric expression", e.span,
                "numbers, names, + - * / and functions: " + ", ".join(STEP_FUNCS))


def check_file_optimizers(unit, overrides: dict[str, Any]) -> list[OptimizerSpec]:
    """`nlc check` of a file that defines optimizers and no model: check each; `--set` applies to all."""
    diags = Diagnostics()
    specs = []
    opts = [unit.optimizers[n] for n in unit.own_optimizers]
    for opt in opts:
        names = {p.name for p in opt.params}
        try:
            specs.append(check_optimizer(opt, {k: v for k, v in overrides.items() if k in names}))
        except NlcError as e:
            diags.add(e)
    known = {p.name for o in opts for p in o.params}
    for k in overrides:
        if k not in known:
            where = opts[0].name if len(opts) == 1 else "of " + ", ".join(o.name for o in opts)
            diags.error(NameError_, f"--set {k}: optimizer {where} has no parameter '{k}'", opts[0].span,
                        did_you_mean(k, known) or f"parameters: {', '.join(sorted(known)) or 'none'}")
    diags.check()
    return specs


def optimizer_table(spec: OptimizerSpec) -> str:
    """`nlc check` output for an optimizer definition: one row per slot level, then the step."""
    head = ("level", "clock", "rule", "keys")
    data = [(lv.name, f"steps({lv.every})", _rule_str(lv), rx.show(lv.keys)) for lv in spec.levels]
    widths = [max(len(h), *(len(d[i]) for d in data)) if data else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [f"optimizer {spec.name} ({spec.file}): {len(spec.levels)} slot level{'s' if len(spec.levels) != 1 else ''}",
           line(head), line(["-" * w for w in widths])]
    out += [line(d) for d in data]
    out.append(f"step: {rx.show(spec.step)}")
    return "\n".join(out)


def _rule_str(lv: SlotLevel) -> str:
    args = [f"{lv.rule_args['beta']:g}"] + [f"{k}={v:g}" for k, v in lv.rule_args.items() if k != "beta"]
    return f"{lv.rule}({', '.join(args)})"
