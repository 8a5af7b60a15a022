"""Pass `resolve-model`: elaborate every block and the outer optimizer level into a ModelPlan."""
from __future__ import annotations

from nlc.errors import ClockError, Diagnostics, DimensionError, NameError_, NlcError
from nlc.ir import nodes as ir
from nlc.ir.resolved import Clock, ClockUnit, ModelPlan, OptimizerPlan
from nlc.passes.consts import did_you_mean, eval_const
from nlc.passes.elaborate import Elaborator
from nlc.passes.levels import check_clock
from nlc.passes.size import check_size
from nlc.train.defaults import SPEC_OPTIONS

TORCH_OPTIMIZERS = ("AdamW", "Adam", "SGD")
# the arguments of the torch optimizers a spec may set, and what each takes
_NUM, _BOOL = "a number >= 0", "true or false"
TORCH_ARGS = {
    "AdamW": {"lr": _NUM, "weight_decay": _NUM, "eps": _NUM, "amsgrad": _BOOL},
    "Adam": {"lr": _NUM, "weight_decay": _NUM, "eps": _NUM, "amsgrad": _BOOL},
    "SGD": {"lr": _NUM, "momentum": _NUM, "weight_decay": _NUM, "dampening": _NUM, "nesterov": _BOOL},
}
# options of the outer optimizer level that `nlc train` reads (defaults for its flags): (type, smallest value)
OUTER_TYPES = SPEC_OPTIONS
OUTER_OPTIONS = tuple(SPEC_OPTIONS)


def resolve_model(unit, model: ir.Model, env: dict) -> ModelPlan:
    diags = Diagnostics()
    declared = {p.name: p for p in model.params}
    for need in ("dim", "vocab"):
        v = env.get(need)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            if need in declared:  # declared, but its value (default or --set) is wrong
                p = declared[need]
                diags.error(DimensionError, f"model {model.name}: '{need}' must be a positive integer, got {v!r}",
                            p.span, f"set it to a positive integer: `{need} = 64` here, or --set {need}=64")
            else:
                diags.error(DimensionError, f"model {model.name} needs a positive integer parameter '{need}' (got {v!r})",
                            model.span, f"add `{need} = ...` to `model {model.name}(...)`")
    diags.check()
    memories = {n: m for n, m in unit.memories.items()}
    blocks, seen_blocks, optimizer = [], {}, None
    for s in model.body:
        if isinstance(s, ir.MemoryDef):
            memories[s.name] = s
    for s in model.body:
        if isinstance(s, ir.Block):
            if s.name in seen_blocks:
                diags.error(NameError_, f"block '{s.name}' is defined twice", s.span, f"the first is at {seen_blocks[s.name].span}")
                continue
            seen_blocks[s.name] = s
            try:
                rep = eval_const(s.repeat, env, "repeat") if s.repeat is not None else 1
                if not isinstance(rep, int) or isinstance(rep, bool) or not 1 <= rep <= 1024:
                    raise DimensionError(f"repeat must be an integer in 1..1024, got {rep!r}", s.repeat.span)
            except NlcError as e:
                diags.add(e)
                rep = 1
            plan = Elaborator(s, env, memories, diags).run()
            blocks.append(plan.model_copy(update={"repeat": rep}))
        elif isinstance(s, ir.LevelDef):
            if optimizer is not None:
                diags.error(NameError_, "a model has one outer optimizer level", s.span)
                continue
            try:
                optimizer = _optimizer_level(unit, s, env)
            except NlcError as e:
                diags.add(e)
    if not blocks:
        diags.error(NameError_, f"model {model.name} has no block", model.span, "add `block layer repeat layers { ... out x + ... }`")
    diags.check()
    plan = ModelPlan(name=model.name, file=unit.program.file, params=env, dim=env["dim"], vocab=env["vocab"],
                     blocks=blocks, optimizer=optimizer, span=model.span)
    # absurd sizes (expansion = 1e300, --set vocab=2^40) stop here, before anything prints or allocates them
    check_size(plan, model.span, declared["vocab"].span if "vocab" in declared else None)
    return plan


def _optimizer_level(unit, lv: ir.LevelDef, env) -> OptimizerPlan:
    if lv.type.form != "params":
        raise NameError_("a level in the model body is the outer optimizer: `level outer : params(all) { ... }`", lv.span,
                         "in-context levels go inside a block")
    if len(lv.names) != 1:
        raise NameError_("an optimizer level has one name", lv.span)
    clock, rule, opts = Clock(unit=ClockUnit.STEPS, period=1), None, {}
    for p in lv.props:
        if isinstance(p, ir.ClockProp):
            clock = check_clock(p.clock, env)
            if clock.unit != ClockUnit.STEPS:
                raise ClockError(f"the outer optimizer runs on training steps; `clock {clock.unit}` cannot drive it",
                                 p.clock.span, "use clock steps(1)")
        elif isinstance(p, ir.RuleProp):
            rule = p.rule
        elif isinstance(p, ir.OptionProp):
            if p.name not in OUTER_OPTIONS:
                raise NameError_(f"the outer optimizer has no option '{p.name}'", p.span,
                                 (did_you_mean(p.name, OUTER_OPTIONS) or "") + f" options: {', '.join(OUTER_OPTIONS)}")
            v = eval_const(p.value, env, p.name)
            typ, lo = OUTER_TYPES[p.name]
            if isinstance(v, bool) or not isinstance(v, (int, float) if typ is float else int) or v < lo:
                raise DimensionError(f"{p.name} = {v!r}: {p.name} must be " +
                                     ("a number" if typ is float else "an integer") + f" >= {lo}", p.span)
            opts[p.name] = v
        else:
            raise NameError_("an optimizer level takes clock, rule and options (clip = 1.0, warmup = 100)", p.span)
    if rule is None:
        raise NameError_(f"optimizer level '{lv.names[0]}' needs a rule", lv.span, "e.g. rule AdamW(lr = 3e-4)")
    definition = unit.optimizers.get(rule.func)
    if definition is None and rule.func not in TORCH_OPTIMIZERS:
        raise NameError_(f"unknown optimizer '{rule.func}'", rule.span,
                         (did_you_mean(rule.func, list(unit.optimizers) + list(TORCH_OPTIMIZERS)) or "") +
                         " built in: AdamW, Adam, SGD; or import one: import \"optim/m3.nl\"")
    if rule.args:
        raise NameError_("optimizer arguments are named: AdamW(lr = 3e-4)", rule.args[0].span)
    args = {k.name: eval_const(k.value, env, k.name) for k in rule.kwargs}
    if definition is None:  # a torch optimizer: known arguments of the right type
        allowed = TORCH_ARGS[rule.func]
        for k in rule.kwargs:
            want = allowed.get(k.name)
            if want is None:
                raise NameError_(f"{rule.func} has no argument '{k.name}'", k.span,
                                 did_you_mean(k.name, allowed) or f"arguments: {', '.join(allowed)}")
            v = args[k.name]
            ok = isinstance(v, bool) if want == _BOOL else (not isinstance(v, bool) and isinstance(v, (int, float))
                                                            and v >= 0)
            if not ok:
                raise DimensionError(f"{rule.func}({k.name} = {v!r}): {k.name} is {want}", k.span)
    if definition is not None:
        known = {p.name for p in definition.params}
        for k in rule.kwargs:
            if k.name not in known:
                raise NameError_(f"optimizer {rule.func} has no parameter '{k.name}'", k.span,
                                 did_you_mean(k.name, known) or f"parameters: {', '.join(sorted(known))}")
    spec = None
    if definition is not None:
        for k in rule.kwargs:
            v = args[k.name]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise DimensionError(f"{rule.func}({k.name} = {v!r}): optimizer parameters are numbers", k.span)
        from nlc.passes.optimizer import check_optimizer
        spec = check_optimizer(definition, args)
    return OptimizerPlan(name=lv.names[0], rule=rule.func, args=args, every=clock.period, targets=lv.type.targets,
                         options=opts, definition=definition, spec=spec, span=lv.span)
