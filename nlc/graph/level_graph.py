"""Pass `build-graph`: the level graph of a resolved model, and its checks.

Nodes are levels (plus `input`, `output` and the outer optimizer); edges are typed:
flow (a level's output feeds another's keys/values/queries), generates (a level
produces another's lr/decay/momentum, or its own values: self-modification),
optimizes / initializes (the outer optimizer trains parameters / meta-learns initial
states), backprop (the task loss teaches a CMS block). Levels of a repeated block are
one node with `repeat = N`. Tiers follow Nested Learning's ordering: faster = updated
more often; token clocks are faster than step clocks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nlc.errors import Diagnostics, GraphError
from nlc.ir.kinds import CMS_VARIANTS, READ_ROLES, EdgeKind, Flow, GateKind, Init, MemoryKind, NodeKind, OpKind, Role
from nlc.ir.resolved import BlockPlan, ClockUnit, LevelPlan, ModelPlan

if TYPE_CHECKING:
    import networkx as nx

GATE_ROLES = ("lr", "decay", "momentum")


@dataclass
class LevelLayout:
    """The level graph as plain data: what `nlc check` needs, without importing networkx.

    `to_networkx()` turns it into the MultiDiGraph the rest of nlc uses (the `graph` stage).
    """

    model: str
    nodes: dict[str, dict] = field(default_factory=dict)        # id -> attributes, in insertion order
    edges: list[tuple[str, str, dict]] = field(default_factory=list)
    tiers: list[list[str]] = field(default_factory=list)         # node ids, fastest tier first

    def add_node(self, n: str, **attrs) -> None:
        self.nodes.setdefault(n, {}).update(attrs)

    def add_edge(self, u: str, v: str, **attrs) -> None:
        self.nodes.setdefault(u, {})
        self.nodes.setdefault(v, {})
        self.edges.append((u, v, attrs))

    def to_networkx(self) -> "nx.MultiDiGraph":
        # NOTE: networkx costs ~0.1 s to import, so only the stages that need the graph import it
        import networkx as nx
        G = nx.MultiDiGraph(model=self.model)
        for n, d in self.nodes.items():
            G.add_node(n, **d)
        for u, v, d in self.edges:
            G.add_edge(u, v, **d)
        G.graph["tiers"] = [list(t) for t in self.tiers]
        return G


def clock_str(lv: LevelPlan) -> str:
    return str(lv.clock)


def tier_key(unit: str, every: int | None) -> tuple:
    # fastest first: tokens(1) < tokens(16) < ... < frozen (frequency 0 in context) < steps(C)
    return {"tokens": (0, every or 1), "frozen": (1, 0), "steps": (2, every or 1)}[unit]


def node_id(block: BlockPlan, lv: LevelPlan, nblocks: int) -> str:
    return lv.name if nblocks == 1 else f"{block.name}.{lv.name}"


def memory_str(lv: LevelPlan) -> str:
    m = lv.memory
    if m.kind == MemoryKind.ATTENTION:
        extra = [f"window={m.window}"] if m.window else []
        extra += [f"persistent={m.persistent}"] if m.persistent else []
        return f"attention({', '.join(extra)})"
    if m.kind == MemoryKind.LINEAR:
        return f"linear({lv.dk}x{lv.dv})"
    return f"{m.kind}(h={lv.hidden})" + (f" x{lv.heads} heads" if lv.heads > 1 else "")


def _deps(block: BlockPlan, x_deps: frozenset) -> dict[str, frozenset]:
    """For every stream: the set of level nodes (or 'input') whose output it depends on."""
    deps: dict[str, frozenset] = {"x": x_deps}
    for op in block.ops:
        if op.op == OpKind.READ:
            deps[op.name] = frozenset({op.attrs["level"]})
        elif op.op == OpKind.CMS:
            deps[op.name] = frozenset({op.attrs["levels"][-1]} if not CMS_VARIANTS[op.attrs["variant"]].parallel else op.attrs["levels"])
        else:
            deps[op.name] = frozenset().union(*(deps.get(i, frozenset()) for i in op.inputs))
    return deps


def build_graph(plan: ModelPlan) -> "nx.MultiDiGraph":
    return build_layout(plan).to_networkx()


def build_layout(plan: ModelPlan) -> LevelLayout:
    G = LevelLayout(model=plan.name)
    G.add_node("input", kind=NodeKind.INPUT, label="input", tier=-1)
    edges: dict[tuple, list[str]] = {}  # (src, dst, kind) -> labels: parallel edges merged
    nb = len(plan.blocks)
    x_deps = frozenset({"input"})
    meta = set()  # memory levels whose initial state the optimizer meta-learns (init meta)
    for b in plan.blocks:
        nid = {lv.name: node_id(b, lv, nb) for lv in b.levels}
        meta |= {nid[lv.name] for lv in b.levels if lv.role == Role.MEMORY and lv.init == Init.META}
        for lv in b.levels:
            label = nid[lv.name] if b.repeat == 1 else f"{b.name}[0..{b.repeat - 1}].{lv.name}"
            G.add_node(nid[lv.name], kind=NodeKind.ATTENTION if lv.role == Role.ATTENTION else NodeKind.LEVEL, label=label,
                       clock=clock_str(lv), chunk=lv.clock.period, params=lv.params,  # per layer; x repeat
                       objective="task-loss" if lv.role == Role.CMS else ("—" if lv.role == Role.ATTENTION else lv.objective),
                       rule=lv.rule or ("nonparametric" if lv.role == Role.ATTENTION else "none"),  # words, for the picture
                       memory=memory_str(lv), repeat=b.repeat, block=b.name, level=lv.name,
                       unit=str(lv.clock.unit), role=lv.role)
        deps = _deps(b, x_deps)

        def link(srcs, dst, kind, label):
            for s in srcs:
                src = s if s == "input" or s not in nid else nid[s]
                if s == dst:
                    edges.setdefault((nid[dst], nid[dst], EdgeKind.GENERATES), []).append(label)
                else:
                    edges.setdefault((src, nid[dst], kind), []).append(label)

        for op in b.ops:
            if op.op == OpKind.READ:
                link(deps[op.inputs[0]], op.attrs["level"], EdgeKind.FLOW, str(Flow.QUERIES))
            elif op.op == OpKind.CMS:
                names = op.attrs["levels"]
                link(deps[op.inputs[0]], names[0], EdgeKind.FLOW, "input")
                for a, c in zip(names, names[1:]):
                    if CMS_VARIANTS[op.attrs["variant"]].parallel:
                        link(deps[op.inputs[0]], c, EdgeKind.FLOW, "input")
                    else:
                        edges.setdefault((nid[a], nid[c], EdgeKind.FLOW), []).append("nested" if CMS_VARIANTS[op.attrs["variant"]].nested else "")
        for lv in b.levels:
            for role, s in lv.flows().items():
                if role != Flow.QUERIES:  # an attention level's queries come with each read (above)
                    link(deps[s], lv.name, EdgeKind.GENERATES if (role == Flow.VALUES and lv.self_values) else EdgeKind.FLOW, str(role))
            for g, gate in lv.gates.items():
                if gate.kind == GateKind.STREAM:
                    link(deps[gate.stream], lv.name, EdgeKind.GENERATES, g)
        x_deps = frozenset(nid.get(d, d) for d in deps[b.out])
    for (src, dst, kind), labels in edges.items():
        G.add_edge(src, dst, kind=kind, label=", ".join(dict.fromkeys(x for x in labels if x)))
    G.add_node("output", kind=NodeKind.OUTPUT, label="output (loss)", tier=-1)
    for s in x_deps - {"input"}:  # the residual path input -> output is implied
        G.add_edge(s, "output", kind=EdgeKind.FLOW, label="")
    for n, d in list(G.nodes.items()):
        if d.get("role") == Role.CMS and d.get("unit") != "frozen":
            G.add_edge("output", n, kind=EdgeKind.BACKPROP, label="task loss")
    if plan.optimizer is not None:
        o = plan.optimizer
        if "all" in o.targets:  # every parameter of the model, not only the levels' own
            from nlc.passes.size import parameter_count
            total = parameter_count(plan)
        else:
            total = sum(lv.params * b.repeat for b, lv in plan.all_levels())
        G.add_node(o.name, kind=NodeKind.OPTIMIZER, label=o.name, clock=f"steps({o.every})", chunk=o.every, params=total,
                   objective="task-loss", rule=o.rule, memory="params(" + ", ".join(o.targets) + ")", repeat=1,
                   unit="steps", role="optimizer")
        for n, d in list(G.nodes.items()):
            if d.get("kind") in ("level", "attention"):
                kind = EdgeKind.INITIALIZES if n in meta else EdgeKind.OPTIMIZES
                G.add_edge(o.name, n, kind=kind, label="init" if kind == EdgeKind.INITIALIZES else "")
    tiers: dict[tuple, list[str]] = {}
    for n, d in G.nodes.items():
        if d.get("kind") in ("input", "output"):
            continue
        tiers.setdefault(tier_key(d["unit"], d.get("chunk")), []).append(n)
    order = sorted(tiers)
    for i, k in enumerate(order):
        for n in tiers[k]:
            G.nodes[n]["tier"] = i
    G.tiers = [tiers[k] for k in order]
    return G


def check_graph(plan: ModelPlan, G=None) -> None:
    """Checks on the resolved model that need the whole graph (G, a LevelLayout or graph, is unused so far)."""
    diags = Diagnostics()
    for b in plan.blocks:
        read = {op.attrs["level"] for op in b.ops if op.op == OpKind.READ}
        for lv in b.levels:
            if lv.role in READ_ROLES and lv.name not in read:
                diags.error(GraphError, f"nothing reads level '{lv.name}'", lv.span,
                            f"read it with `o = {lv.name}(q)` and use o, or remove the level")
    o = plan.optimizer
    if o is not None:
        for b, lv in plan.all_levels():
            if lv.clock.unit == ClockUnit.STEPS and lv.clock.period % o.every:
                diags.error(GraphError, f"optimizer '{o.name}' runs every {o.every} steps and cannot drive level "
                            f"'{lv.name}' at {lv.clock}", lv.span,
                            f"make the level's period a multiple of {o.every}")
    diags.check()


def level_rows(G) -> list[dict]:
    """One row per level (not input/output), fastest tier first; G is a LevelLayout or a graph."""
    rows = []
    items = G.nodes.items() if isinstance(G, LevelLayout) else G.nodes(data=True)
    for n, d in items:
        if d.get("kind") in ("input", "output"):
            continue
        rows.append(dict(name=d.get("label", n), tier=d["tier"], clock=d["clock"], chunk=d.get("chunk"),
                         params=d["params"] * d.get("repeat", 1), objective=d["objective"], rule=d["rule"], memory=d.get("memory", ""),
                         repeat=d.get("repeat", 1)))
    return sorted(rows, key=lambda r: (r["tier"], r["name"]))
