"""The data of `nlc view`'s page: one JSON-able dict built from a compilation (pure functions).

    model_page(c, run=None)            a model: its level graph, levels, equations, spans, clocks
    optimizer_page(unit, specs)        a file of `optimizer` definitions (specs/optim/m3.nl)
    build(source, overrides, model, run_dir)   either one, the way `nlc check` picks
    timeline(rows, n)                  which level updates (and which nested CMS stage restarts)
                                       at which token (or step) of n; the page computes the same

Drawings reuse `nlc graph`'s layout (nlc.viz: bands by update frequency, barycentric order,
edge curvature), converted from inches (y up) to pixels (y down). A graph with repeated blocks
has two drawings: `collapsed` (one node per level, `hope[0..1].mk`, as `nlc graph`) and
`expanded` (one node per layer, `hope[0].mk`, `hope[1].mk`, with the layers chained).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from nlc.ir.kinds import CMS_VARIANTS, MEMORY_KINDS, EdgeKind, GateKind, Init, MemoryKind, NodeKind, Objective, OpKind, Role
from nlc.ir.resolved import ClockUnit
from nlc.rules import RULES
from nlc.view import mathml as M

PX = 96            # pixels per inch: viz measures text in points, the page draws at 96 dpi
BAND_SCALE = 0.72  # bands drawn shorter than nlc graph's (boxes keep their size): more fits on screen
MAX_POINTS = 400   # a logged series is thinned to at most this many points
FORMAT = 1         # the page data's version

DASH = {EdgeKind.FLOW: "", EdgeKind.GENERATES: "6 3.5", EdgeKind.OPTIMIZES: "1.5 3", EdgeKind.INITIALIZES: "8 3 2 3",
        EdgeKind.BACKPROP: ""}


# ---------------------------------------------------------------- sources and spans

class _Sources:
    """The spec text of a unit, by display name; spans become {file, line, end_line}."""

    def __init__(self, unit):
        self.raw = dict(getattr(unit, "sources", {}) or {})
        self.names: dict[str, str] = {}
        self.used: dict[str, str] = {}

    def name(self, f: str) -> str:
        if f not in self.names:
            n = f
            try:
                rel = os.path.relpath(f)
                if not rel.startswith(".."):
                    n = rel
            except ValueError:
                pass
            self.names[f] = Path(n).as_posix()
        return self.names[f]

    def span(self, s, role: str = "def") -> dict | None:
        if s is None or not getattr(s, "file", None):
            return None
        name = self.name(s.file)
        if s.file in self.raw:
            self.used[name] = self.raw[s.file]
        return {"file": name, "line": s.line, "end_line": max(s.end_line, s.line), "role": role}

    def text(self, s) -> str:
        """The source text a span covers (what the user wrote), or ''."""
        if s is None or s.file not in self.raw:
            return ""
        lines = self.raw[s.file].splitlines()
        if not 1 <= s.line <= len(lines):
            return ""
        if s.end_line == s.line:
            return lines[s.line - 1][s.col - 1:s.end_col - 1]
        first = lines[s.line - 1][s.col - 1:]
        mid = lines[s.line:s.end_line - 1]
        last = lines[s.end_line - 1][:s.end_col - 1] if s.end_line <= len(lines) else ""
        return "\n".join([first, *mid, last])


def _names(e) -> tuple[set[str], set[str]]:
    """(names, called functions) in a surface expression (or a checked optimizer one)."""
    from nlc.ir import nodes as ir
    names, calls = set(), set()
    stack = [M.surface(e)]
    while stack:
        x = stack.pop()
        if isinstance(x, ir.Name):
            names.add(x.id)
        elif isinstance(x, ir.Call):
            calls.add(x.func)
            stack += list(x.args) + [k.value for k in x.kwargs]
        elif isinstance(x, ir.BinOp):
            stack += [x.left, x.right]
        elif isinstance(x, ir.Neg):
            stack.append(x.operand)
        elif isinstance(x, ir.Cms):
            stack.append(x.options)
    return names, calls


class _Block:
    """A surface block: its definitions, its levels, where each level is read."""

    def __init__(self, blk, src: _Sources):
        from nlc.ir import nodes as ir
        self.src = src
        self.assigns: dict[str, Any] = {}
        self.leveldefs: dict[str, Any] = {}
        self.stmts = list(blk.body) if blk is not None else []
        for s in self.stmts:
            if isinstance(s, ir.Assign):
                self.assigns[s.name] = s
            elif isinstance(s, ir.LevelDef):
                for n in s.names:
                    self.leveldefs[n] = s

    def defs_of(self, e, skip=("x",)) -> tuple[list[dict], list[str]]:
        """The definitions an expression depends on (transitively) and the levels it reads."""
        out, levels, seen = [], [], set()
        todo = [e]
        while todo:
            names, calls = _names(todo.pop(0))
            for f in sorted(calls):
                if f in self.leveldefs and f not in levels:
                    levels.append(f)
            for n in sorted(names):
                if n in seen or n in skip or n not in self.assigns:
                    continue
                seen.add(n)
                a = self.assigns[n]
                out.append({"name": n, "text": self.src.text(a.span), **self.src.span(a.span, "ref")})
                todo.append(a.value)
        return sorted(out, key=lambda d: d["line"]), levels

    def reads_of(self, level: str) -> list[dict]:
        """Statements that read `level` (`o = memory(q)`), as spans."""
        out = []
        for s in self.stmts:
            value = getattr(s, "value", None)
            if value is not None and level in _names(value)[1]:
                out.append(self.src.span(s.span, "read"))
        return out


# ---------------------------------------------------------------- clocks, words

def clock_words(unit: str, every, role: str = Role.MEMORY) -> str:
    if role == Role.ATTENTION:
        return ("non-parametric: its context grows by one key/value pair every token "
                "(nothing is learned in context; its projections are trained by the outer optimizer)")
    if unit == "frozen":
        return ("never updated in context (frequency 0): its weights change only when the outer "
                "optimizer trains them")
    if unit == "steps":
        n = int(every or 1)
        return ("updated every training step (an outer optimizer step), not in context" if n == 1 else
                f"updated every {n} training steps (outer optimizer steps), not in context")
    n = int(every or 1)
    grad = ("the task-loss gradient summed over the chunk, taken at the chunk-start weights"
            if role == Role.CMS else "the gradient taken at the chunk-start state")
    if n == 1:
        return ("updated every token, in context: fully sequential, each token's read and gradient see the "
                "state left by the previous token")
    return (f"updated every {n} tokens, in context: the sequence is cut into chunks of {n} tokens; "
            f"reads inside a chunk see the chunk-start state, {grad}, applied at the chunk's end")


def _fmt_num(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# ---------------------------------------------------------------- equations

def _memory_eq(lv) -> str:
    """M_W(k): the memory's function."""
    m = lv.memory
    act = M.mi(m.act, normal=True) if m.act else M.mi("σ")
    k = M.mi("k")
    if m.kind == MemoryKind.LINEAR:
        body = M.row(M.mi("W"), k)
    else:
        depth = max(1, int(m.depth or 1)) + (1 if m.kind == MemoryKind.RESIDUAL_MLP and m.depth <= 1 else 0)
        depth = 2 if m.kind in (MemoryKind.MLP, MemoryKind.RESIDUAL_MLP) and depth < 2 else depth
        body = M.row(M.sub(M.mi("W"), M.mn(1)), k)
        for i in range(2, depth + 1):
            body = M.row(M.sub(M.mi("W"), M.mn(i)), act, M.paren(body))
        if MEMORY_KINDS[m.kind].residual:
            body = M.row(k, M.mo("+"), body)
    return M.math(M.sub(M.mi("M"), M.mi("W")), M.paren(k), M.mo("="), body)


def objective_eq(lv) -> str:
    Mk = M.row(M.sub(M.mi("M"), M.mi("W")), M.paren(M.mi("k")))
    v = M.mi("v")
    lhs = M.row(M.mi("ℓ"), M.paren(M.row(M.mi("W"), M.mo(";"), M.mi("k"), M.mo(","), v)), M.mo("="))
    o = lv.objective
    if o == Objective.L2:
        rhs = M.row(M.frac(M.mn(1), M.mn(2)), M.sup(M.norm(M.row(Mk, M.mo("−"), v)), M.mn(2)))
    elif o == Objective.DOT:
        rhs = M.row(M.mo("−"), M.paren(M.row(Mk, M.mo(","), v), "⟨", "⟩"))
    elif o == Objective.HUBER:
        d = _fmt_num(lv.objective_args.get("delta", 1.0))
        rhs = M.row(M.sub(M.mi("Huber", True), M.mn(d)), M.paren(M.row(Mk, M.mo("−"), v)))
    elif o == Objective.LP:
        p = _fmt_num(lv.objective_args.get("p", 3))
        rhs = M.subsup(M.norm(M.row(Mk, M.mo("−"), v)), M.mn(p), M.mn(p))
    else:
        rhs = M.mtext(o)
    return M.math(lhs, rhs)


def _gate_zero(lv, g: str) -> bool:
    gate = lv.gates.get(g)
    return gate is None or (gate.kind == GateKind.CONST and gate.value == 0)


def _grad_term(theta) -> str:
    """θ ∇_W ℓ(W̄; k_t, v_t)."""
    args = M.row(M.bar(M.mi("W")), M.mo(";"), M.t_sub(M.mi("k")),
                 M.mo(","), M.t_sub(M.mi("v")))
    return M.row(theta, M.sub(M.mo("∇"), M.mi("W")), M.mi("ℓ"), M.paren(args))


def update_eqs(lv) -> list[dict]:
    """The level's update rule as MathML formulas (with a short title each)."""
    W, Wp = M.t_sub(M.mi("W")), M.sub(M.mi("W"), M.row(M.mi("t"), M.mo("−"), M.mn(1)))
    S, Sp = M.t_sub(M.mi("S")), M.sub(M.mi("S"), M.row(M.mi("t"), M.mo("−"), M.mn(1)))
    th, al, et = M.t_sub(M.mi("θ")), M.t_sub(M.mi("α")), M.t_sub(M.mi("η"))
    out = []
    if lv.role == Role.ATTENTION:
        m = lv.memory
        ctx = M.mtext("the last " + str(m.window) + " tokens" if m.window else "every earlier token")
        out.append({"title": "read (softmax attention over its context)", "mathml": M.math(
            M.t_sub(M.mi("y")), M.mo("="), M.mi("softmax", True),
            M.paren(M.frac(M.row(M.t_sub(M.mi("q")), M.sup(M.t_sub(M.mi("K")), M.mi("⊤"))),
                           M.sqrt(M.sub(M.mi("d"), M.mi("k"))))), M.t_sub(M.mi("V")))})
        out.append({"title": "update (the context grows)", "mathml": M.math(
            M.t_sub(M.mi("K")), M.mo("="), M.paren(M.row(
                *( [M.mi("P"), M.mo(",")] if m.persistent else []),
                M.sub(M.mi("K"), M.row(M.mi("t"), M.mo("−"), M.mn(1))), M.mo(","), M.t_sub(M.mi("k"))), "[", "]"),
            M.mtext("\u2003over "), ctx)})
        return out
    if lv.role == Role.CMS:
        if lv.clock.unit == ClockUnit.FROZEN or lv.rule is None:
            out.append({"title": "no in-context update (an ordinary MLP)", "mathml": M.math(
                W, M.mo("="), M.sub(M.mi("W"), M.mn(0)), M.mtext("  (trained by the outer optimizer)"))})
        else:
            out.append({"title": "update at the end of each chunk of C tokens (NL eq. 71)", "mathml": M.math(
                M.sub(M.mi("W"), M.row(M.mi("c"), M.mo("+"), M.mn(1))), M.mo("="),
                M.sub(M.mi("W"), M.mi("c")), M.mo("−"), M.mi("θ"),
                M.row("<munder><mo>∑</mo>" + M.row(M.mi("t"), M.mo("∈"), M.sub(M.mi("chunk", True), M.mi("c"))) + "</munder>"),
                M.sub(M.mo("∇"), M.mi("W")), M.sub(M.mi("L", True), M.mi("task", True)),
                M.paren(M.row(M.sub(M.mi("W"), M.mi("c")), M.mo(";"), M.t_sub(M.mi("x")))))})
        out.append({"title": "read (a stage of the chain)", "mathml": M.math(
            M.mi("y"), M.mo("="), M.sub(M.mi("W"), M.mi("out", True)), M.mi(lv.memory.act, True),
            M.paren(M.row(M.sub(M.mi("W"), M.mi("in", True)), M.mi("x"))))})
        return out
    grad = _grad_term
    decay = not _gate_zero(lv, "decay")
    mom = lv.momentum  # the rule's registration: always, never, or when its momentum gate is not 0
    retain = M.row(M.paren(M.row(M.mn(1), M.mo("−"), al)), Wp) if decay else Wp
    if RULES[lv.rule].key_projection:
        norm = lv.rule_args.get("normalize", True)
        thp = M.t_sub(M.row(M.mi("θ"), M.mo("′"))) if norm else th
        kt = M.t_sub(M.tilde(M.mi("k")))
        ret = M.row(M.mn(1), M.mo("−"), al) if decay else M.mn(1)
        factor = M.paren(M.row(M.paren(ret) if decay else ret, M.mi("I"), M.mo("−"), thp, kt,
                               M.sup(kt, M.mi("⊤"))))
        if mom:
            out.append({"title": "momentum (surprise)", "mathml": M.math(S, M.mo("="), et, Sp, M.mo("−"), grad(thp))})
            out.append({"title": "update (delta gradient descent, NL eq. 88)",
                        "mathml": M.math(W, M.mo("="), Wp, factor, M.mo("+"), S)})
        else:
            out.append({"title": "update (delta gradient descent, NL eq. 88)",
                        "mathml": M.math(W, M.mo("="), Wp, factor, M.mo("−"), grad(thp))})
        if norm:
            out.append({"title": "normalised step (Sherman-Morrison, NL eqs. 56-57)", "mathml": M.math(
                thp, M.mo("="), M.frac(th, M.row(M.mn(1), M.mo("+"), th, M.sup(M.norm(kt), M.mn(2)))))})
        which = ("each layer's own input (layers = all)" if lv.rule_args.get("layers") == "all"
                 else "the first layer's input, the keys (layers = first); the other layers take the plain step")
        out.append({"title": "where", "mathml": M.math(M.t_sub(M.tilde(M.mi("k"))), M.mtext("\u2002is " + which))})
    elif lv.rule == "delta":  # nlc/rules/delta: the gate multiplies the delta factor too (Gated DeltaNet)
        kt = M.t_sub(M.tilde(M.mi("k")))
        factor = M.paren(M.row(M.mi("I"), M.mo("−"), th, kt, M.sup(kt, M.mi("⊤"))))
        out.append({"title": "update (the gated delta rule; learn dot: Gated DeltaNet)",
                    "mathml": M.math(W, M.mo("="), retain, factor, M.mo("−"), grad(th))})
    else:
        curv = RULES[lv.rule].curvature_step(lv)  # normalize = true: theta follows the curvature (nlc/rules/momentum)
        thc = M.t_sub(M.row(M.mi("θ"), M.mo("′"))) if curv else th
        if mom:
            out.append({"title": "momentum (surprise, Titans eq. 14)", "mathml": M.math(S, M.mo("="), et, Sp, M.mo("−"), grad(thc))})
            out.append({"title": "update (Titans eq. 13)", "mathml": M.math(W, M.mo("="), retain, M.mo("+"), S)})
        else:
            out.append({"title": "update (gradient descent)", "mathml": M.math(W, M.mo("="), retain, M.mo("−"), grad(thc))})
        if curv:
            g = M.t_sub(M.mi("g"))
            c = M.frac(M.sup(M.norm(M.row(M.t_sub(M.mi("J")), g)), M.mn(2)), M.sup(M.norm(g), M.mn(2)))
            out.append({"title": "curvature-following step (normalize = true; g: the token's gradient at the chunk start)",
                        "mathml": M.math(thc, M.mo("="), M.frac(th, M.row(M.mn(1), M.mo("+"), M.mn(lv.clock.period or 1),
                                                                          th, c)))})
    out.append({"title": "read (at the chunk-start state)", "mathml": M.math(
        M.t_sub(M.mi("y")), M.mo("="), M.sub(M.mi("M"), M.bar(M.mi("W"))), M.paren(M.t_sub(M.mi("q"))))})
    return out


SLOT_EQ = {
    "ema": lambda s, sp, b, k: M.row(s, M.mo("="), b, sp, M.mo("+"), M.paren(M.row(M.mn(1), M.mo("−"), b)), k),
    "accumulate": lambda s, sp, b, k: M.row(s, M.mo("="), sp, M.mo("+"), b, k),
    "momentum": lambda s, sp, b, k: M.row(s, M.mo("="), b, sp, M.mo("+"), k),
    "delta": lambda s, sp, b, k: M.row(s, M.mo("="), M.paren(M.row(b, M.mi("I"), M.mo("−"), M.hat(k),
                                                                   M.sup(M.hat(k), M.mi("⊤")))), sp, M.mo("+"), k),
    "deep": lambda s, sp, b, k: M.row(s, M.mo("="), b, sp, M.mo("+"), M.mi("f"), M.paren(k)),
}
SLOT_WORDS = {"ema": "exponential moving average", "accumulate": "additive accumulation (M3's Algorithm 1)",
              "momentum": "momentum (NL §4)", "delta": "delta momentum (NL eqs. 48-49)",
              "deep": "deep momentum: an MLP memory of the gradient (DMGD, NL eq. 50)"}


def slot_eq(lv) -> str:
    s = M.sub(M.mi("s"), M.mi("τ"))
    sp = M.sub(M.mi("s"), M.row(M.mi("τ"), M.mo("−"), M.mn(1)))
    b = M.mn(_fmt_num(lv.rule_args.get("beta")))
    keys = M.surface(lv.keys)
    k = M.paren(M.expr(keys)) if not _simple(keys) and type(keys).__name__ != "BinOp" else M.expr(keys)
    return M.math(SLOT_EQ.get(lv.rule, SLOT_EQ["momentum"])(s, sp, b, k))


def _simple(e) -> bool:
    from nlc.ir import nodes as ir
    return isinstance(M.surface(e), (ir.Name, ir.Num))


def step_eq(spec) -> str:
    e = M.expr(spec.step, consts=spec.params)
    return M.math(M.mi("Θ"), M.mo("←"), M.mi("Θ"), M.mo("−"), M.paren(e) if not _simple(spec.step) else e)


BUILTIN_OPT = {  # PyTorch's optimizers, when the spec names one without an .nl definition
    "SGD": lambda: [M.math(M.mi("Θ"), M.mo("←"), M.mi("Θ"), M.mo("−"), M.mi("lr"), M.mi("g"))],
    "Adam": lambda: [M.math(M.mi("m"), M.mo("←"), M.sub(M.mi("β"), M.mn(1)), M.mi("m"), M.mo("+"),
                            M.paren(M.row(M.mn(1), M.mo("−"), M.sub(M.mi("β"), M.mn(1)))), M.mi("g")),
                     M.math(M.mi("v"), M.mo("←"), M.sub(M.mi("β"), M.mn(2)), M.mi("v"), M.mo("+"),
                            M.paren(M.row(M.mn(1), M.mo("−"), M.sub(M.mi("β"), M.mn(2)))), M.sup(M.mi("g"), M.mn(2))),
                     M.math(M.mi("Θ"), M.mo("←"), M.mi("Θ"), M.mo("−"), M.mi("lr"),
                            M.frac(M.hat(M.mi("m")), M.row(M.sqrt(M.hat(M.mi("v"))), M.mo("+"), M.mi("ε"))))],
}
BUILTIN_OPT["AdamW"] = lambda: BUILTIN_OPT["Adam"]()[:2] + [M.math(
    M.mi("Θ"), M.mo("←"), M.mi("Θ"), M.mo("−"), M.mi("lr"), M.paren(M.row(
        M.frac(M.hat(M.mi("m")), M.row(M.sqrt(M.hat(M.mi("v"))), M.mo("+"), M.mi("ε"))), M.mo("+"), M.mi("λ"), M.mi("Θ"))))]


# ---------------------------------------------------------------- drawings

def _drawing(G, key_of, layer_of=None) -> dict:
    """Node boxes, bands and edge curves of `nlc graph`'s layout, in pixels (y down)."""
    from nlc import viz
    if not G.graph.get("tiers"):  # a model without levels: input and output only (viz needs one tier)
        G = G.copy()
        G.graph["tiers"] = [[]]
    L = viz._layout(G)
    rads = viz._edge_rads(G, L)
    H = L.height

    def X(x):
        return round(x * PX, 1)

    def Y(y):
        return round((H - y) * PX * BAND_SCALE, 1)

    bands = [{"key": b.key, "label": viz._band_lines(b.label), "caption": b.caption, "y": Y(y),
              "h": round(viz.BAND_H * PX * BAND_SCALE, 1), "nodes": list(b.nodes)} for b, y in L.bands]
    nodes = []
    for n, (x, y) in L.pos.items():
        a = G.nodes[n]
        w, h = L.size[n]
        nodes.append({"id": n, "key": key_of(n), "layer": layer_of(n) if layer_of else None,
                      "label": viz._name(G, n), "sub": viz._subtitle(G, n), "kind": str(a.get("kind", NodeKind.LEVEL)),
                      "repeat": int(a.get("repeat") or 1), "x": X(x), "y": Y(y), "w": X(w), "h": X(h)})
    edges = []
    for i, (u, v, k, a) in enumerate(G.edges(keys=True, data=True)):
        e = {"id": f"e{i}", "source": u, "target": v, "kind": str(a.get("kind", EdgeKind.FLOW)), "label": a.get("label") or ""}
        if u != v:
            (x1, y1), (x2, y2) = L.pos[u], L.pos[v]
            r = rads[(u, v, k)]
            cx, cy = (x1 + x2) / 2 + r * (y2 - y1), (y1 + y2) / 2 - r * (x2 - x1)
            e.update(x1=X(x1), y1=Y(y1), cx=X(cx), cy=Y(cy), x2=X(x2), y2=Y(y2))
        edges.append(e)
    return {"width": X(L.width), "height": round(H * PX * BAND_SCALE, 1), "margin": X(L.margin), "bands": bands, "nodes": nodes,
            "edges": edges}


def _expanded_plan(plan):
    """The plan with every repeated block unrolled into one block per layer (`hope[0]`, `hope[1]`)."""
    blocks, origin = [], {}
    for b in plan.blocks:
        if b.repeat <= 1:
            blocks.append(b)
            origin[b.name] = (b.name, None)
            continue
        for i in range(b.repeat):
            name = f"{b.name}[{i}]"
            blocks.append(b.model_copy(update={"name": name, "repeat": 1}))
            origin[name] = (b.name, i)
    return plan.model_copy(update={"blocks": blocks}), origin


# ---------------------------------------------------------------- model pages

def _binding(role, symbol, text, kind, src_block: _Block | None, expr_node=None, value=None, note="") -> dict:
    defs, levels = src_block.defs_of(expr_node) if (src_block and expr_node is not None) else ([], [])
    return {"role": role, "symbol": symbol, "text": text, "kind": kind, "value": value, "note": note,
            "defs": defs, "levels": levels}


def _gate_binding(lv, g, sym, rule_call, blk: _Block, src: _Sources) -> dict:
    gate = lv.gates.get(g)
    given = rule_call.kw(g) if rule_call is not None else None
    if gate is None:
        return _binding(g, sym, "0", "const", None, value=0.0, note="not used by this rule")
    if given is not None:
        text = src.text(given.span) or ""
    else:
        text = _fmt_num(gate.value)
    if gate.kind == GateKind.CONST:
        return _binding(g, sym, text, "const", blk, given, value=gate.value,
                        note="" if given is not None else "the rule's default")
    if gate.kind == GateKind.LEARNED:
        return _binding(g, sym, text, GateKind.LEARNED, blk, given, value=gate.value,
                        note="a learned scalar per head, trained by the outer optimizer")
    return _binding(g, sym, text, "stream", blk, given, note="data-dependent: per token and head")


def _stream_binding(role, sym, lv, ld, blk: _Block, src: _Sources) -> dict | None:
    from nlc.ir import nodes as ir
    prop = next((p for p in (ld.props if ld else []) if isinstance(p, ir.StreamProp) and p.role == role), None)
    if prop is None:
        return None
    b = _binding(role, sym, src.text(prop.value.span), "stream", blk, prop.value)
    if role == "values" and lv.self_values:
        b["note"] = "self-generated: the level's own read (at the chunk-start state) of its argument"
        b["levels"] = [x for x in b["levels"] if x != "self"]
    return b


def _level_info(c, G, nid, src: _Sources, blocks: dict, optimizer_name: str | None) -> dict:
    from nlc.ir import nodes as ir
    a = G.nodes[nid]
    info = {"key": nid, "label": a.get("label", nid), "kind": a.get("kind"), "role": a.get("role"),
            "block": a.get("block"), "level": a.get("level"), "clock": a.get("clock"), "unit": a.get("unit"),
            "every": a.get("chunk"), "tier": a.get("tier"), "rule": a.get("rule"), "objective": a.get("objective"),
            "memory": a.get("memory"), "repeat": int(a.get("repeat") or 1),
            "params_per_layer": int(a.get("params") or 0), "params": int(a.get("params") or 0) * int(a.get("repeat") or 1),
            "equations": [], "bindings": [], "objective_eq": "", "memory_eq": "", "spans": [], "notes": []}
    info["clock_words"] = clock_words(a.get("unit"), a.get("chunk"), a.get("role") or Role.MEMORY)
    learners = [u for u, _, k in G.in_edges(nid, data="kind") if k in (EdgeKind.INITIALIZES, EdgeKind.OPTIMIZES)]
    if a.get("kind") == NodeKind.OPTIMIZER:
        o = c.plan.optimizer
        info["params"] = info["params_per_layer"]
        info["clock_words"] = clock_words("steps", o.every)
        info["rule_text"] = f"{o.rule}(" + ", ".join(f"{k} = {_fmt_num(v)}" for k, v in o.args.items()) + ")"
        info["options"] = {k: v for k, v in o.options.items()}
        info["init"] = {"kind": "model", "words": "the model's parameters Θ, from their initialisers; the "
                        "optimizer's own state (slot levels) starts at zero", "learned_by": []}
        info["spans"].append(src.span(o.span, "def"))
        if o.spec is not None:
            for sl in o.spec.levels:
                info["equations"].append({"title": f"slot level {sl.name}: {sl.rule}, every {sl.every} step"
                                          + ("s" if sl.every != 1 else ""), "mathml": slot_eq(sl)})
            info["equations"].append({"title": "step (per parameter)", "mathml": step_eq(o.spec)})
            if o.spec.span is not None:
                info["spans"].append(src.span(o.spec.span, "ref"))
            info["optimizer_graph"] = f"optimizer:{o.spec.name}"
        else:
            eqs = BUILTIN_OPT.get(o.rule, BUILTIN_OPT["SGD"])()
            info["equations"] = [{"title": f"{o.rule} (PyTorch's)", "mathml": e} for e in eqs]
        info["bindings"] = [_binding(k, M.math(M.sym(k)), _fmt_num(v), "const", None, value=v) for k, v in o.args.items()]
        info["objective_words"] = "the task loss (next-token cross-entropy) over the training batch"
        return info
    b = next(b for b in c.plan.blocks if b.name == a.get("block"))
    lv = b.level(a.get("level"))
    blk = blocks[b.name]
    ld = blk.leveldefs.get(lv.name)
    info["spans"].append(src.span(lv.span, "def"))
    info["spans"] += blk.reads_of(lv.name)
    info["heads"] = lv.heads
    info["equations"] = update_eqs(lv)
    if lv.role == Role.MEMORY:
        info["memory_eq"] = _memory_eq(lv)
        info["objective_eq"] = objective_eq(lv)
        info["objective_words"] = {Objective.L2: "squared error of the memory's prediction of the values",
                                   Objective.DOT: "negative dot product (a Hebbian-like bias)",
                                   Objective.HUBER: "Huber loss of the prediction error", Objective.LP: "p-norm of the prediction error"
                                   }.get(lv.objective, lv.objective)
        rule_call = next((p.rule for p in (ld.props if ld else []) if isinstance(p, ir.RuleProp)), None)
        for role, s in (("keys", "k"), ("values", "v")):
            bd = _stream_binding(role, M.math(M.t_sub(M.mi(s))), lv, ld, blk, src)
            if bd:
                info["bindings"].append(bd)
        info["bindings"].append(_gate_binding(lv, "lr", M.math(M.t_sub(M.mi("θ"))), rule_call, blk, src))
        if not _gate_zero(lv, "decay") or (rule_call is not None and rule_call.kw("decay") is not None):
            info["bindings"].append(_gate_binding(lv, "decay", M.math(M.t_sub(M.mi("α"))), rule_call, blk, src))
        if lv.rule == "momentum" or not _gate_zero(lv, "momentum"):
            info["bindings"].append(_gate_binding(lv, "momentum", M.math(M.t_sub(M.mi("η"))), rule_call, blk, src))
        info["bindings"].append(_binding("queries", M.math(M.t_sub(M.mi("q"))), "each read's argument", "stream", None,
                                         note="every read m(q) gives its own queries"))
        info["rule_text"] = src.text(rule_call.span) if rule_call is not None else lv.rule
    elif lv.role == Role.ATTENTION:
        m = lv.memory
        info["objective_words"] = "none: attention is a non-parametric memory (NL eq. 62)"
        bits = [f"window {m.window}" if m.window else "global (causal)", f"{m.persistent} persistent tokens"
                if m.persistent else "", "rotary positions" if m.rope else "no positional encoding"]
        info["notes"].append("context: " + ", ".join(x for x in bits if x))
        info["bindings"].append(_binding("keys/values", M.math(M.t_sub(M.mi("k")), M.mo(","), M.t_sub(M.mi("v"))),
                                         "learned projections of each read's input", "stream", None))
        if ld is not None:
            prop = next((p for p in ld.props if isinstance(p, ir.StreamProp) and p.role == "context"), None)
            if prop is not None:
                info["bindings"].append(_binding("context", M.math(M.mi("C")), src.text(prop.value.span), "stream", blk,
                                                 prop.value, note="extra context tokens, prefixed per segment"))
        info["rule_text"] = "nonparametric"
    else:  # a CMS stage
        op = next((op for op in b.ops if op.op == OpKind.CMS and lv.name in op.attrs["levels"]), None)
        assign = next((s for s in blk.stmts if getattr(s, "value", None) is not None and
                       type(s.value).__name__ == "Cms" and s.span and lv.span and s.span.line <= lv.span.line <= s.span.end_line), None)
        variant = op.attrs["variant"] if op else next(iter(CMS_VARIANTS))
        info["variant"] = variant
        info["chain"] = list(op.attrs["levels"]) if op else [lv.name]
        info["objective_words"] = "the task loss (next-token prediction), accumulated over the stage's chunk (NL eq. 71)"
        if assign is not None:
            info["spans"].insert(1, src.span(assign.span, "ref"))
            inp = assign.value.options.args[0] if assign.value.options.args else None
            if inp is not None:
                info["bindings"].append(_binding("input", M.math(M.mi("x")), src.text(inp.span), "stream", blk, inp,
                                                 note=f"the chain's input ({variant} chain: {CMS_VARIANTS[variant].doc})"))
        lr = lv.gates.get("lr")
        if lr is not None and lv.clock.unit != ClockUnit.FROZEN:
            info["bindings"].append(_binding("lr", M.math(M.mi("θ")), _fmt_num(lr.value), "const", None, value=lr.value,
                                             note="the in-context learning rate of the chain"))
        info["rule_text"] = "task-loss gradient descent" if lv.clock.unit != ClockUnit.FROZEN else "none (frozen)"
    # the definitions the symbols are bound to: highlighted too (lighter than the level's own lines)
    seen = {(sp["file"], sp["line"]) for sp in info["spans"] if sp}
    for bd in info["bindings"]:
        for df in bd["defs"]:
            if (df["file"], df["line"]) not in seen:
                seen.add((df["file"], df["line"]))
                info["spans"].append({k: df[k] for k in ("file", "line", "end_line", "role")})
    info["spans"] = [sp for sp in info["spans"] if sp]
    # initial state and who learns it
    init_words = {Init.META: "meta-learned: the initial state is a parameter trained by the outer optimizer; "
                          "every sequence starts from it",
                  Init.ZEROS: "zeros at the start of every sequence (not learned)",
                  Init.CONST: f"every entry {_fmt_num(lv.init_args.get('value', lv.init_args.get('v', '')))} at the "
                           "start of every sequence (not learned)",
                  Init.PRETRAINED: f"loaded from {lv.init_args.get('path', lv.init_args.get('file', 'a file'))}",
                  "none": "an empty context: no state carried between sequences"}
    if lv.role == Role.CMS:
        words = (init_words[Init.META] if lv.clock.unit != ClockUnit.FROZEN
                 else "ordinary weights, trained by the outer optimizer (never changed in context)")
        if CMS_VARIANTS[info["variant"]].nested:
            slower = [x for x in info["chain"] if x != lv.name and (b.level(x).clock.period or 0) > (lv.clock.period or 0)
                      and b.level(x).clock.in_context]
            if slower and lv.clock.in_context:
                words += f"; restarted from it whenever a slower stage ({', '.join(slower)}) completes its chunk"
    else:
        words = init_words.get(lv.init or "none", lv.init)
    # who learns the initial state: the outer optimizer, for meta-learned states and CMS weights
    learned = lv.role == Role.CMS or lv.init == Init.META
    info["init"] = {"kind": (lv.init or "none") if lv.role != Role.CMS else ("meta" if lv.clock.unit != ClockUnit.FROZEN else "weights"),
                    "words": words, "learned_by": learners if learned else []}
    return info


def _timeline_rows(c, G, levels: dict) -> list[dict]:
    rows = []
    for nid in (n for tier in G.graph.get("tiers", []) for n in tier):
        info = levels.get(nid)
        if info is None:
            continue
        rows.append({"key": nid, "label": info["label"], "unit": info["unit"], "every": info["every"],
                     "role": info["role"], "resets": []})
    # nested CMS chains: a stage completing its chunk restarts the faster learning stages of its chain
    by = {(G.nodes[r["key"]].get("block"), G.nodes[r["key"]].get("level")): r for r in rows}
    from nlc.passes.schedule import nested_resets  # the schedule's rule, not a second copy of it
    for (block, name), fast in nested_resets(c.plan).items():
        row = by.get((block, name))
        if row is not None:
            row["resets"] += [by[(block, o)]["key"] for o in fast if (block, o) in by]
    return rows


def timeline(rows: list[dict], n: int) -> dict:
    """For a sequence of n tokens (or n steps, for step clocks): {key: {"updates": [t...], "resets": [t...]}},
    t counted from 1. A clock `tokens(C)` updates after tokens C, 2C, ...; a frozen level never; a stage
    of a nested CMS chain is restarted whenever a slower stage of its chain completes its chunk.
    Levels on another unit than the timeline's (`steps` on a token timeline) get no events."""
    unit = "steps" if rows and all(r["unit"] == "steps" for r in rows) else "tokens"
    out = {r["key"]: {"updates": [], "resets": []} for r in rows}
    for r in rows:
        if r["unit"] != unit or not r.get("every"):
            continue
        C = int(r["every"])
        out[r["key"]]["updates"] = list(range(C, n + 1, C))
    for r in rows:
        for t in out[r["key"]]["updates"]:
            for k in r.get("resets", []):
                out[k]["resets"].append(t)
    for v in out.values():
        v["resets"] = sorted(set(v["resets"]))
    return out


def _graph_of_model(c, src: _Sources) -> dict:
    from nlc.graph.level_graph import build_layout
    G = c.graph
    blocks = {}
    surface = {s.name: s for s in c.model.body if type(s).__name__ == "Block"}
    for b in c.plan.blocks:
        blocks[b.name] = _Block(surface.get(b.name), src)
    oname = c.plan.optimizer.name if c.plan.optimizer else None
    levels = {n: _level_info(c, G, n, src, blocks, oname) for n, a in G.nodes(data=True)
              if a.get("kind") not in (NodeKind.INPUT, NodeKind.OUTPUT)}
    collapsed = _drawing(G, lambda n: n if n in levels else None)
    expanded = None
    if any(b.repeat > 1 for b in c.plan.blocks):
        plan2, origin = _expanded_plan(c.plan)
        G2 = build_layout(plan2).to_networkx()
        nb = len(c.plan.blocks)

        def key2(n):
            a = G2.nodes[n]
            if a.get("kind") == NodeKind.OPTIMIZER:
                return n
            if a.get("kind") in (NodeKind.INPUT, NodeKind.OUTPUT):
                return None
            ob, _ = origin[a["block"]]
            return a["level"] if nb == 1 else f"{ob}.{a['level']}"

        def layer2(n):
            a = G2.nodes[n]
            return origin[a["block"]][1] if a.get("block") in origin else None

        for n, a in G2.nodes(data=True):  # per-layer boxes show the layer's own parameter count
            if a.get("kind") in ("level", "attention"):
                a["repeat"] = 1
        expanded = _drawing(G2, key2, layer2)
    title = c.plan.name
    return {"id": f"model:{c.plan.name}", "kind": "model", "title": title, "unit": "tokens",
            "file": src.name(c.plan.file) if c.plan.file else "", "views": {"collapsed": collapsed, "expanded": expanded},
            "levels": levels, "timeline": _timeline_rows(c, G, levels), "default_n": _default_n(levels)}


def _default_n(levels: dict) -> int:
    every = [int(v["every"]) for v in levels.values() if v.get("unit") == "tokens" and v.get("every")]
    big = max(every or [16])
    return int(min(1024, max(64, 2 * big)))


# ---------------------------------------------------------------- optimizer pages

def _graph_of_optimizer(spec, opt, src: _Sources):
    """An optimizer definition as a level graph: gradient -> slot levels -> step."""
    from nlc.graph.level_graph import LevelLayout, tier_key
    L = LevelLayout(model=spec.name)
    L.add_node("grad", kind="input", label="gradient g", tier=-1)
    used_param = any("param" in _names(sl.keys)[0] for sl in spec.levels) or "param" in _names(spec.step)[0]
    if used_param:
        L.add_node("param", kind="input", label="parameter Θ", tier=-1)
    for sl in spec.levels:
        L.add_node(sl.name, kind="level", label=sl.name, clock=f"steps({sl.every})", chunk=sl.every, unit="steps",
                   objective="", rule=f"{sl.rule}({_fmt_num(sl.rule_args.get('beta'))})", repeat=1, role="slot")
    L.add_node("step", kind="output", label="step: Θ ← Θ − Δ", tier=-1)
    for sl in spec.levels:
        names = _names(sl.keys)[0]
        for inp in ("grad", "param"):
            if inp in names:
                L.add_edge(inp, sl.name, kind=EdgeKind.FLOW, label="keys")
    step_names = _names(spec.step)[0]
    for sl in spec.levels:
        if sl.name in step_names:
            L.add_edge(sl.name, "step", kind=EdgeKind.FLOW, label="")
    for inp in ("grad", "param"):
        if inp in step_names and inp in L.nodes:
            L.add_edge(inp, "step", kind=EdgeKind.FLOW, label="")
    tiers: dict = {}
    for sl in spec.levels:
        tiers.setdefault(tier_key("steps", sl.every), []).append(sl.name)
    order = sorted(tiers)
    for i, k in enumerate(order):
        for n in tiers[k]:
            L.nodes[n]["tier"] = i
    L.tiers = [tiers[k] for k in order]
    G = L.to_networkx()
    from nlc.ir import nodes as ir
    leveldefs = {n: s for s in (opt.body if opt is not None else []) if isinstance(s, ir.LevelDef) for n in s.names}
    levels = {}
    for sl in spec.levels:
        every = sl.every
        info = {"key": sl.name, "label": sl.name, "kind": "level", "role": "slot", "block": None, "level": sl.name,
                "clock": f"steps({every})", "unit": "steps", "every": every, "tier": G.nodes[sl.name]["tier"],
                "rule": sl.rule, "objective": "", "memory": "slot (one value per parameter element)", "repeat": 1,
                "params": 0, "params_per_layer": 0, "memory_eq": "", "objective_eq": "", "notes": [],
                "clock_words": ("updated every optimizer step" if every == 1 else
                                f"updated every {every} optimizer steps (with the gradients of those steps)"),
                "equations": [{"title": SLOT_WORDS.get(sl.rule, sl.rule), "mathml": slot_eq(sl)},
                              {"title": "the parameter's step, which reads it", "mathml": step_eq(spec)}],
                "objective_words": "its rule is a closed-form memory of the gradient (NL §4: an optimizer is an "
                                   "associative memory of the gradients)",
                "rule_text": f"{sl.rule}(" + ", ".join(f"{k} = {_fmt_num(v)}" for k, v in sl.rule_args.items()) + ")",
                "init": {"kind": "zeros", "words": "zeros at the start of training (optimizer state, one entry per "
                         "parameter element; not learned)", "learned_by": []},
                "spans": [src.span(sl.span or (leveldefs[sl.name].span if sl.name in leveldefs else None), "def")],
                "bindings": []}
        info["spans"] = [s for s in info["spans"] if s]
        kt = "".join(src.text(p.value.span) for p in (leveldefs[sl.name].props if sl.name in leveldefs else [])
                     if isinstance(p, ir.StreamProp) and p.role == "keys")
        info["bindings"].append(_binding("keys", M.math(M.mi("k")), kt or "grad", "stream", None,
                                         note="an elementwise expression of the gradient g and the parameter Θ"))
        info["bindings"].append(_binding("beta", M.math(M.mi("β")), _fmt_num(sl.rule_args.get("beta")), "const", None,
                                         value=sl.rule_args.get("beta")))
        step = next((s for s in (opt.body if opt is not None else []) if isinstance(s, ir.Step)), None)
        if step is not None:
            info["spans"].append(src.span(step.span, "read"))
        levels[sl.name] = info
    drawing = _drawing(G, lambda n: n if n in levels else None)
    rows = [{"key": n, "label": n, "unit": "steps", "every": levels[n]["every"], "role": "slot", "resets": []}
            for tier in L.tiers for n in tier]
    params = {k: v for k, v in spec.params.items()}
    return {"id": f"optimizer:{spec.name}", "kind": str(NodeKind.OPTIMIZER), "title": spec.name, "unit": "steps",
            "file": src.name(spec.file) if spec.file else "", "views": {"collapsed": drawing, "expanded": None},
            "levels": levels, "timeline": rows, "default_n": int(min(256, max(32, 4 * max([r["every"] for r in rows] or [1])))),
            "step_eq": step_eq(spec), "params": params,
            "step_span": src.span(opt.span, "def") if opt is not None else None}


# ---------------------------------------------------------------- run directories

def _thin(points: list) -> list:
    if len(points) <= MAX_POINTS:
        return points
    stride = len(points) / MAX_POINTS
    out = [points[int(i * stride)] for i in range(MAX_POINTS)]
    return out if out[-1] is points[-1] else out + [points[-1]]


def run_data(run_dir) -> dict:
    """A run's record, training curves and per-level statistics (metrics.jsonl), read leniently."""
    run_dir = Path(run_dir)
    record: dict = {}
    try:
        record = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    rows = []
    mpath = run_dir / "metrics.jsonl"
    if mpath.is_file():
        for line in mpath.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                r = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if isinstance(r, dict):
                rows.append(r)
    series: dict[str, list] = {}
    for r in rows:
        step = r.get("step")
        if not isinstance(step, (int, float)):
            continue
        for k, v in r.items():
            if k in ("step", "time") or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            series.setdefault(k, []).append([step, v])
    series = {k: _thin(v) for k, v in series.items()}
    curves = {k: v for k, v in series.items() if "/" not in k}
    stats = {k: v for k, v in series.items() if "/" in k}
    return {"dir": str(run_dir), "record": record, "curves": curves, "stats": stats, "rows": len(rows)}


def _attach_stats(graph: dict, run: dict) -> None:
    """Per-level statistics: metrics keys `<block>.<layer>.<level>/<stat>` go to that level's panel."""
    levels = graph["levels"]
    by = {}
    for key, info in levels.items():
        if info.get("block") and info.get("level"):
            by[(info["block"], info["level"])] = key
    for k, pts in sorted(run["stats"].items()):
        prefix, stat = k.rsplit("/", 1)
        parts = prefix.split(".")
        if len(parts) < 3 or not parts[-2].isdigit():
            continue
        block, layer, level = ".".join(parts[:-2]), int(parts[-2]), parts[-1]
        key = by.get((block, level))
        if key is None:
            continue
        entry = levels[key].setdefault("stats", {}).setdefault(stat, [])
        entry.append({"layer": layer, "points": pts})
    for info in levels.values():
        if info.get("kind") == NodeKind.OPTIMIZER:
            for name in ("grad_norm", "lr"):
                if name in run["curves"]:
                    info.setdefault("stats", {})[name] = [{"layer": None, "points": run["curves"][name]}]


# ---------------------------------------------------------------- pages

def _styles() -> dict:
    from nlc import viz
    return {"node": {k: {"fill": f, "stroke": s, "desc": viz.NODE_DESC.get(k, k)} for k, (f, s) in viz.NODE_STYLE.items()},
            "edge": {k: {"color": c, "width": w, "dash": DASH.get(k, ""), "desc": d}
                     for k, (c, _, w, _, d) in viz.EDGE_STYLE.items()}}


def model_page(c, run: dict | None = None, spec_label: str | None = None) -> dict:
    """The page data of a compiled model (`nlc.passes.run(...)`), with a run's data if given."""
    src = _Sources(c.unit)
    graphs = [_graph_of_model(c, src)]
    o = c.plan.optimizer
    if o is not None and o.spec is not None and o.definition is not None:
        g = _graph_of_optimizer(o.spec, o.definition, src)
        g["title"] = f"{o.name}: {o.spec.name}"
        graphs.append(g)
    if run is not None:
        _attach_stats(graphs[0], run)
    return {"format": FORMAT, "title": f"{c.plan.name} — nlc view",
            "spec": {"file": src.name(c.plan.file) if c.plan.file else spec_label or "", "model": c.plan.name,
                     "params": dict(c.plan.params), "overrides": dict(c.overrides), "total_params": _total(c)},
            "graphs": graphs, "sources": dict(src.used), "run": run, "styles": _styles()}


def _total(c) -> int:
    from nlc.passes.size import parameter_count
    return int(parameter_count(c.plan))


def optimizer_page(unit, specs: list, overrides: dict | None = None) -> dict:
    """The page data of a file of optimizer definitions (one graph per optimizer)."""
    src = _Sources(unit)
    graphs = [_graph_of_optimizer(s, unit.optimizers.get(s.name), src) for s in specs]
    file = src.name(specs[0].file) if specs and specs[0].file else ""
    return {"format": FORMAT, "title": f"{', '.join(s.name for s in specs)} — nlc view",
            "spec": {"file": file, "model": None, "params": {}, "overrides": dict(overrides or {}), "total_params": None},
            "graphs": graphs, "sources": dict(src.used), "run": None, "styles": _styles()}


def build(source=None, overrides: dict | None = None, model: str | None = None, run_dir=None) -> dict:
    """The page data for a spec argument (a path or a built-in name), as `nlc check` picks: a file of
    optimizer definitions without models gives an optimizer page. With `run_dir` and no source, the run's
    own spec (RUN/spec/...) with its recorded model and overrides."""
    from nlc.passes import run
    overrides = dict(overrides or {})
    rd = run_data(run_dir) if run_dir is not None else None
    if source is None:
        if run_dir is None:
            raise ValueError("give a spec or a run directory")
        from nlc.passes.load import load as load_unit
        from nlc.rundir import open_run
        r = open_run(run_dir)
        unit = load_unit(str(r.main), root=r.spec_root)
        ov = {**dict(r.record.overrides), **overrides}
        c = run(str(r.main), ov, model or r.record.model, unit=unit)
        return model_page(c, rd)
    from nlc.builtin import resolve_spec
    path, model = resolve_spec(str(source), model)
    unit = run(path, overrides, model, until="load").unit
    if not model and not unit.own_models and unit.own_optimizers:
        from nlc.passes.optimizer import check_file_optimizers
        return optimizer_page(unit, check_file_optimizers(unit, overrides), overrides)
    c = run(path, overrides, model, unit=unit)
    return model_page(c, rd)
