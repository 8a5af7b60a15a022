"""Printers for every stage's artifact (`nlc compile --emit STAGE`)."""
from __future__ import annotations

import json

from nlc.ir.kinds import GateKind
from nlc.ir.printer import program


def plan_text(plan) -> str:
    """A readable dump of a ModelPlan: params, then each block's ops and levels."""
    out = [f"model {plan.name}  # {plan.file}",
           "  params: " + ", ".join(f"{k}={v}" for k, v in plan.params.items())]
    for b in plan.blocks:
        out.append(f"  block {b.name} x{b.repeat} -> out {b.out}")
        for op in b.ops:
            attrs = ", ".join(f"{k}={v}" for k, v in op.attrs.items())
            out.append(f"    {op.name:<22} = {op.op}({', '.join(op.inputs)}{'; ' + attrs if attrs else ''})  [{op.width}]")
        for lv in b.levels:
            gates = ", ".join(f"{g}={v.stream or v.value}" + ("(learned)" if v.kind == GateKind.LEARNED else "")
                              for g, v in lv.gates.items())
            out.append(f"    level {lv.name}: {lv.role} {lv.memory.kind} heads={lv.heads} dk={lv.dk} dv={lv.dv} "
                       f"hidden={lv.hidden} clock={lv.clock} learn={lv.objective}{lv.objective_args or ''} "
                       f"rule={lv.rule or 'none'}({gates}){lv.rule_args or ''} init={lv.init or 'none'} keys={lv.keys} values={lv.values}"
                       f"{' self-generated' if lv.self_values else ''} params={lv.params}")
    if plan.optimizer:
        o = plan.optimizer
        out.append(f"  optimizer {o.name}: {o.rule}({o.args}) every {o.every} steps options={o.options}")
        if o.spec is not None:
            from nlc.ir.optimizer import show
            out.append("    params: " + ", ".join(f"{k}={v}" for k, v in o.spec.params.items()))
            for lv in o.spec.levels:
                out.append(f"    slot {lv.name}: every {lv.every} steps rule={lv.rule}{lv.rule_args} keys={show(lv.keys)}")
            out.append(f"    step {show(o.spec.step)}")
    return "\n".join(out) + "\n"


def graph_text(G) -> str:
    from nlc.viz import to_dot
    return to_dot(G)


def emit(c, stage: str) -> str:
    if stage == "load":
        return program(c.unit.program, c.unit.text)
    if stage == "bind-params":
        return json.dumps(c.params, indent=2) + "\n"
    if stage == "resolve":
        return plan_text(c.plan)
    if stage in ("graph", "check-graph"):
        return graph_text(c.graph)
    if stage == "schedule":
        from nlc.ir.schedule import schedule_text
        return schedule_text(c.schedule, c.plan)
    raise ValueError(stage)
