"""Pass `check-levels`: a level's memory, dims, clock, objective, rule, gates and init.

Clocks: `tokens(C)` needs an integer 1 <= C <= 2^20; `steps(C)` the same; `frozen`
means frequency 0. Gates (lr, decay, momentum) are constants, `learned(init)` scalars
per head, or streams of width 1 or `heads`.
"""
from __future__ import annotations

import math
from typing import Any

from nlc.errors import ClockError, DimensionError, NameError_, NlcError
from nlc.ir import nodes as ir
from nlc.ir.kinds import (
    GATE_KINDS, INITS, LOCAL_OBJECTIVES, MEMORY_ACTS, MEMORY_KINDS, OBJECTIVES,
    Flow, GateKind, Init, MemoryKind, Objective, OpKind, Role,
)
from nlc.ir.resolved import MAX_CHUNK, Clock, ClockUnit, Gate, LevelPlan, MemoryPlan
from nlc.passes.consts import did_you_mean, eval_const, eval_option
from nlc.passes.elaborate import _number
from nlc.rules import CURVATURE_OPTION, RULES


def check_clock(clock: ir.Clock, env) -> Clock:
    if clock.unit == ClockUnit.FROZEN:
        return Clock(unit=ClockUnit.FROZEN, period=None, span=clock.span)
    v = eval_const(clock.every, env, f"{clock.unit}(...)")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ClockError(f"{clock.unit}(C) needs a number, got {v!r}", clock.span)
    if isinstance(v, float) and not math.isfinite(v):
        raise ClockError(f"{clock.unit}({v}): a clock period must be a finite number", clock.span)
    if isinstance(v, float) and not v.is_integer():
        raise ClockError(f"{clock.unit}({v}): a clock counts whole {clock.unit}", clock.span,
                         f"use {clock.unit}({int(v) or 1}) or {clock.unit}({int(v) + 1})")
    v = int(v)
    if v <= 0:
        raise ClockError(f"{clock.unit}({v}): a clock period must be at least 1", clock.span,
                         "use `clock frozen` for a level that never updates (frequency 0)")
    if v > MAX_CHUNK:
        raise ClockError(f"{clock.unit}({v}) is absurdly large (limit {MAX_CHUNK})", clock.span,
                         "a level this slow is effectively frozen: use `clock frozen`")
    return Clock(unit=ClockUnit(clock.unit), period=v, span=clock.span)


def memory_plan(call: ir.Call, env) -> MemoryPlan:
    info = MEMORY_KINDS.get(call.func)
    if info is None:
        raise NameError_(f"unknown memory kind '{call.func}'", call.span,
                         did_you_mean(call.func, MEMORY_KINDS) or f"kinds: {', '.join(MEMORY_KINDS)}")
    kw: dict[str, Any] = {}
    for k in call.kwargs:
        if k.name not in info.args:
            raise NameError_(f"{call.func}() has no argument '{k.name}'", k.span, f"arguments: {', '.join(info.args) or 'none'}")
        v = k.value
        kw[k.name] = eval_option(v, env, k.name)
    if call.args:
        raise NameError_(f"{call.func}() takes keyword arguments only", call.args[0].span)
    # NOTE: the IR records do not validate types, so every argument is checked here
    def _int(name, lo, hi):
        v = kw.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi):
            raise DimensionError(f"{call.func}({name} = {v!r}): {name} must be an integer in {lo}..{hi}", call.span)
    _int("depth", 1, 8)
    _int("window", 0, MAX_CHUNK)
    _int("persistent", 0, 4096)
    if not isinstance(kw.get("rope", True), bool):
        raise DimensionError(f"{call.func}(rope = {kw['rope']!r}): rope is true or false", call.span)
    e = kw.get("expansion", 1.0)
    if isinstance(e, bool) or not isinstance(e, (int, float)) or e <= 0:
        raise DimensionError(f"{call.func}(expansion = {e!r}): expansion must be a positive number", call.span)
    kw["expansion"] = float(e)
    if "act" in kw:
        if kw["act"] not in MEMORY_ACTS:
            names = [str(a) for a in MEMORY_ACTS]
            raise NameError_(f"unknown activation '{kw['act']}'", call.span,
                             did_you_mean(str(kw["act"]), names) or ", ".join(names[:-1]) + " or " + names[-1])
        kw["act"] = OpKind(kw["act"])
    return MemoryPlan(kind=MemoryKind(call.func), span=call.span, **kw)


def hidden_width(mem: MemoryPlan, width: int, lname: str, span) -> int:
    """The hidden width of an MLP memory: round(expansion * width), at least 1."""
    h = mem.expansion * width
    if not math.isfinite(h):
        raise DimensionError(f"level '{lname}': {mem.kind}(expansion = {mem.expansion:g}) makes a hidden width "
                             f"too large to compute (expansion x {width})", span,
                             "expansion is the hidden width over the input width, usually 1 to 8")
    # a huge but finite width stays an exact int: the size check (passes/size.py) reports it in bytes
    return max(1, int(round(h)))


def _gate(el, lname, name, e, heads) -> Gate:
    if isinstance(e, ir.Call) and e.func == GateKind.LEARNED:
        if len(e.args) > 1 or e.kwargs:
            raise NameError_("learned(init) takes one number: the gate's initial value", e.span)
        init = eval_const(e.args[0], el.env, "learned(init)") if e.args else 0.0
        return Gate(kind=GateKind.LEARNED, value=_number(init, e.span, "learned(init)"), span=e.span)
    try:
        v = eval_const(e, el.env, name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return Gate(kind=GateKind.CONST, value=float(v), span=e.span)
    except NlcError:
        pass
    s = el.role_stream(lname, name, e)
    w = el.width[s]
    if w not in (1, heads):
        raise DimensionError(f"gate '{name}' of level '{lname}' has width {w}; it needs width 1 or heads = {heads}",
                             e.span, f"reduce it, e.g. head_mean(x, groups = {heads}) or linear(x, out = {heads})")
    return Gate(kind=GateKind.STREAM, stream=s, span=e.span)


def build_level(el, lname: str, lv: ir.LevelDef) -> LevelPlan:
    env = el.env
    mcall = el._memory_call(lv)
    mem = memory_plan(mcall, env)
    if not MEMORY_KINDS[mem.kind].in_block:
        raise NameError_("`slot` memories belong to optimizer definitions", lv.type.span)
    heads = 1
    if lv.per_head:
        heads = eval_const(lv.heads, env, "per head(N)") if lv.heads is not None else env.get("heads")
        if heads is None:
            raise NameError_("`per head` needs a head count: add a `heads` parameter or write `per head(4)`", lv.span)
        if not isinstance(heads, int) or heads <= 0:
            raise DimensionError(f"head count must be a positive integer, got {heads!r}", lv.span)
    seen: dict[str, ir.Node] = {}
    for p in lv.props:
        key = p.role if isinstance(p, ir.StreamProp) else (p.name if isinstance(p, ir.OptionProp) else p.kind)
        if key in seen:
            raise NameError_(f"level '{lname}' sets '{key.replace('_prop', '')}' twice", p.span, f"the first is at {seen[key].span}")
        seen[key] = p
    streams = {p.role: p for p in lv.props if isinstance(p, ir.StreamProp)}
    clock_p = next((p for p in lv.props if isinstance(p, ir.ClockProp)), None)
    clock = check_clock(clock_p.clock, env) if clock_p else Clock()
    for p in lv.props:
        # every property of an in-context level must mean something to the lowering
        if isinstance(p, ir.OptionProp):
            raise NameError_(f"level '{lname}' has no option '{p.name}'", p.span,
                             "in-context levels take keys, values, context, learn, rule, clock and init; "
                             "rule options go in the rule: rule dgd(lr = ..., layers = all)")
        if isinstance(p, ir.StreamProp) and p.role == Flow.QUERIES:
            raise NameError_(f"`queries` is given by each read of level '{lname}'", p.span,
                             f"read it with {lname}(q) where q is the query stream")
    options: dict = {}
    common = dict(name=lname, block=el.block.name, heads=heads, options=options, span=lv.span)

    if mem.kind == MemoryKind.ATTENTION:
        for role in (Flow.KEYS, Flow.VALUES, Flow.QUERIES):
            if role in streams:
                raise NameError_(f"attention levels project their own keys and values; remove `{role}`", streams[role].span,
                                 "read the level with attn(h); MAC's memory tokens go in `context`")
        if clock != Clock():
            raise ClockError("an attention level sees every token: its clock is tokens(1)", clock_p.span if clock_p else lv.span)
        if el.dim % heads:
            raise DimensionError(f"dim = {el.dim} is not divisible by heads = {heads}", lv.span)
        ctx = el.role_stream(lname, Flow.CONTEXT, streams[Flow.CONTEXT].value) if Flow.CONTEXT in streams else None
        if ctx and el.width[ctx] != el.dim:
            raise DimensionError(f"attention context must have width dim = {el.dim}", streams[Flow.CONTEXT].span)
        params = 4 * el.dim * el.dim + 2 * mem.persistent * el.dim
        return LevelPlan(role=Role.ATTENTION, memory=mem, dk=el.dim // heads, dv=el.dim // heads, clock=Clock(),
                         objective=Objective.L2, rule=None, init=None, context=ctx, params=params, **common)

    for role in (Flow.KEYS, Flow.VALUES):
        if role not in streams:
            raise NameError_(f"level '{lname}' needs `{role}`", lv.span,
                             "keys and values are the context the level learns from: e.g. `keys k; values v`")
    keys = el.role_stream(lname, Flow.KEYS, streams[Flow.KEYS].value)
    values = el.role_stream(lname, Flow.VALUES, streams[Flow.VALUES].value)
    self_values = _uses_self(streams[Flow.VALUES].value, lname)
    kw, vw = el.width[keys], el.width[values]
    for role, w in ((Flow.KEYS, kw), (Flow.VALUES, vw)):
        if w % heads:
            raise DimensionError(f"{role} of level '{lname}' have width {w}, not divisible by heads = {heads}", streams[role].span)
    dk, dv = kw // heads, vw // heads
    if mem.kind == MemoryKind.RESIDUAL_MLP and dk != dv:
        raise DimensionError(f"a residual memory maps keys to values of the same width; level '{lname}' has keys {kw} "
                             f"and values {vw}", lv.span, "use mlp(...) for different widths")
    hidden = hidden_width(mem, dk, lname, mcall.span)
    # every read of this level must query with the key width
    for op in el.ops:
        if op.op == OpKind.READ and op.attrs.get("level") == lname and el.width[op.inputs[0]] != kw:
            raise DimensionError(f"{lname}(...) is queried with width {el.width[op.inputs[0]]}, but its keys have width {kw}",
                                 op.span, "queries and keys of a memory must have the same width")

    learn = next((p for p in lv.props if isinstance(p, ir.LearnProp)), None)
    obj = learn.objective if learn else ir.Call(func=Objective.L2)
    known = ", ".join(o + (f"({', '.join(OBJECTIVES[o].args)})" if OBJECTIVES[o].args else "") for o in LOCAL_OBJECTIVES)
    if obj.func in OBJECTIVES and not OBJECTIVES[obj.func].local:
        raise NameError_(f"`learn {obj.func}` (task loss) is for CMS chains; in-context levels learn a local objective",
                         obj.span, f"objectives: {known}")
    if obj.func not in OBJECTIVES:
        raise NameError_(f"unknown objective '{obj.func}'", obj.span, did_you_mean(obj.func, LOCAL_OBJECTIVES) or known)
    objective = Objective(obj.func)
    oargs = {k.name: _number(eval_const(k.value, env, k.name), k.span, f"{obj.func}({k.name} = ...)") for k in obj.kwargs}
    for k in oargs:
        if k not in OBJECTIVES[objective].args:
            raise NameError_(f"{obj.func}() has no argument '{k}'", obj.span)
    oargs = OBJECTIVES[objective].args | oargs   # the registry's defaults: huber delta = 1, lp p = 3
    if objective == Objective.LP and oargs["p"] < 1:
        raise DimensionError("lp objective needs p >= 1", obj.span)

    rule_p = next((p for p in lv.props if isinstance(p, ir.RuleProp)), None)
    rule = rule_p.rule if rule_p else ir.Call(func="gd")
    if rule.func not in RULES:
        raise NameError_(f"'{rule.func}' is not an in-context update rule", rule.span,
                         (did_you_mean(rule.func, RULES) or "") + f" in-context rules: {', '.join(RULES)}; "
                         "optimizer rules (adam, muon, m3, ...) drive steps-clock levels")
    r = RULES[rule.func]  # the rule's registration (nlc/rules/<rule>/__init__.py)
    gates, rargs = {}, {}
    for k in rule.kwargs:
        if k.name in r.gates:
            gates[k.name] = _gate(el, lname, k.name, k.value, heads)
        elif k.name in r.options:
            v = eval_option(k.value, env, k.name)
            if v not in r.options[k.name]:
                raise NameError_(f"{rule.func}({k.name} = {v}): choose one of {', '.join(map(str, r.options[k.name]))}", k.span)
            rargs[k.name] = v
        else:
            raise NameError_(f"{rule.func}() has no argument '{k.name}'", k.span,
                             f"arguments: {', '.join(list(r.gates) + list(r.options))}")
    for g, default in r.gates.items():
        gates.setdefault(g, Gate(kind=GateKind.CONST, value=default))
    for o, allowed in r.options.items():
        rargs.setdefault(o, allowed[0])
    if r.curvature_on(rargs) and objective != Objective.L2:
        raise DimensionError(f"{rule.func}({CURVATURE_OPTION} = true) follows the curvature of an l2 objective, "
                             f"not {objective}", rule.span, f"use `learn l2`, or drop {CURVATURE_OPTION}")

    init_p = next((p for p in lv.props if isinstance(p, ir.InitProp)), None)
    init = init_p.init if init_p else ir.Call(func=Init.META)
    if init.func not in INITS:
        raise NameError_(f"unknown init '{init.func}'", init.span, "meta, zeros, const(v), pretrained(\"file.safetensors\")")
    init_kind = Init(init.func)
    if len(init.args) != INITS[init_kind].nargs:
        raise NameError_(f"init {init.func} takes {INITS[init_kind].nargs} argument(s)", init.span)
    if init.kwargs:
        raise NameError_(f"init {init.func} takes no named arguments", init.kwargs[0].span)
    iargs = {}
    if init.args:
        v = eval_const(init.args[0], env, "init")
        if init_kind == Init.CONST:
            v = _number(v, init.args[0].span, "init const(value)")
        elif not isinstance(v, str):
            raise DimensionError(f"init pretrained(...) takes a file name in quotes, got {v!r}", init.args[0].span,
                                 'e.g. init pretrained("mem.safetensors")')
        iargs = {"value": v}
    queries = el.role_stream(lname, Flow.QUERIES, streams[Flow.QUERIES].value) if Flow.QUERIES in streams else None

    per_head = {MemoryKind.LINEAR: dv * dk, MemoryKind.RESIDUAL_MLP: 2 * dk * hidden,
                MemoryKind.MLP: (dk * hidden + hidden * dv + max(0, mem.depth - 2) * hidden * hidden) if mem.depth > 1 else dk * dv}[mem.kind]
    params = per_head * heads if INITS[init_kind].learned else 0
    params += sum(heads for g in gates.values() if GATE_KINDS[g.kind].learned)
    return LevelPlan(role=Role.MEMORY, memory=mem, dk=dk, dv=dv, hidden=hidden, clock=clock,
                     objective=objective, objective_args=oargs, rule=rule.func, gates=gates, rule_args=rargs,
                     init=init_kind, init_args=iargs, keys=keys, values=values, queries=queries, self_values=self_values,
                     params=params, **common)


def _uses_self(e, lname) -> bool:
    if isinstance(e, ir.Call):
        if e.func in ("self", lname):
            return True
        return any(_uses_self(a, lname) for a in e.args)
    if isinstance(e, ir.BinOp):
        return _uses_self(e.left, lname) or _uses_self(e.right, lname)
    if isinstance(e, ir.Neg):
        return _uses_self(e.operand, lname)
    return False


def build_cms_level(el, lname: str, st: ir.CmsStage, width: int, inp: str, index: int, lr: float) -> LevelPlan:
    mem = memory_plan(st.memory, el.env)
    if mem.kind != MemoryKind.MLP:
        raise NameError_("CMS stages are MLPs: mlp(expansion = 4, act = gelu)", st.memory.span)
    clock = check_clock(st.clock, el.env)
    if clock.unit == ClockUnit.STEPS:
        raise ClockError("a CMS stage runs in context: tokens(C) or frozen", st.clock.span,
                         "the outer optimizer level already updates every parameter each step")
    hidden = hidden_width(mem, width, lname, st.memory.span)
    return LevelPlan(name=lname, block=el.block.name, role=Role.CMS, memory=mem, heads=1, dk=width, dv=width, hidden=hidden,
                     clock=clock, objective=Objective.BACKPROP,
                     rule="gd" if clock.in_context else None,  # CMS teaching: plain gradient steps of size lr
                     gates={"lr": Gate(kind=GateKind.CONST, value=lr)}, init=Init.META, params=2 * width * hidden + width,
                     cms_input=inp, cms_index=index, span=st.span)
