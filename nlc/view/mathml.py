"""A small MathML writer: the update rules of levels as presentation MathML, which browsers
render natively (no script, no fonts to ship). Every function returns a string of MathML;
`math(...)` wraps a formula in its `<math display="block">` element.
"""
from __future__ import annotations

import html
import re

GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "eps": "ε", "epsilon": "ε", "eta": "η",
         "theta": "θ", "lambda": "λ", "mu": "μ", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ", "omega": "ω"}


def _esc(s) -> str:
    return html.escape(str(s), quote=False)


def mi(s, normal: bool = False) -> str:
    """An identifier; single letters are italic, longer names upright (MathML's default)."""
    return f'<mi mathvariant="normal">{_esc(s)}</mi>' if normal else f"<mi>{_esc(s)}</mi>"


def mo(s) -> str:
    return f"<mo>{_esc(s)}</mo>"


def mn(s) -> str:
    return f"<mn>{_esc(s)}</mn>"


def mtext(s) -> str:
    return f"<mtext>{_esc(s)}</mtext>"


def row(*xs) -> str:
    return "<mrow>" + "".join(xs) + "</mrow>"


def sub(a, b) -> str:
    return f"<msub>{a}{b}</msub>"


def sup(a, b) -> str:
    return f"<msup>{a}{b}</msup>"


def subsup(a, b, c) -> str:
    return f"<msubsup>{a}{b}{c}</msubsup>"


def frac(a, b) -> str:
    return f"<mfrac>{a}{b}</mfrac>"


def sqrt(a) -> str:
    return f"<msqrt>{a}</msqrt>"


def hat(a) -> str:
    return f'<mover accent="true">{a}<mo>^</mo></mover>'


def bar(a) -> str:
    return f'<mover accent="true">{a}<mo>¯</mo></mover>'


def tilde(a) -> str:
    return f'<mover accent="true">{a}<mo>~</mo></mover>'


def paren(a, left="(", right=")") -> str:
    return row(f'<mo fence="true">{_esc(left)}</mo>', a, f'<mo fence="true">{_esc(right)}</mo>')


def norm(a) -> str:
    return paren(a, "‖", "‖")


def math(*xs, label: str | None = None) -> str:
    lab = f' aria-label="{html.escape(label)}"' if label else ""
    return f'<math display="block"{lab}>' + row(*xs) + "</math>"


# ---- symbols -------------------------------------------------------------------
def sym(name: str) -> str:
    """An identifier of a spec as a math symbol: `beta1` -> β₁, `alpha` -> α, `lr` -> lr."""
    m = re.fullmatch(r"([A-Za-z]+)_?(\d+)", name)
    base, idx = (m.group(1), m.group(2)) if m else (name, None)
    b = GREEK.get(base)
    core = mi(b or base)
    return sub(core, mn(idx)) if idx else core


def t_sub(s: str, t: str = "t") -> str:
    """s_t (s already MathML)."""
    return sub(s, mi(t))


# ---- surface expressions (optimizer keys and steps) ------------------------------
_PREC = {"+": 1, "-": 1, "*": 2, "/": 3}


def surface(e):
    """A checked optimizer expression (nlc.ir.optimizer: Const, Ref, ...) as the surface expression it
    came from, so one renderer draws both; anything else is returned as it is."""
    from nlc.ir import nodes as ir
    from nlc.ir import optimizer as rx
    if isinstance(e, rx.Const):
        return ir.Num(value=e.value, text=e.text, span=e.span)
    if isinstance(e, rx.Ref):
        return ir.Name(id=e.name, span=e.span)
    if isinstance(e, rx.Neg):
        return ir.Neg(operand=surface(e.x), span=e.span)
    if isinstance(e, rx.Bin):
        return ir.BinOp(op=e.op, left=surface(e.a), right=surface(e.b), span=e.span)
    if isinstance(e, rx.Apply):
        return ir.Call(func=e.func, args=[surface(a) for a in e.args], span=e.span)
    return e


def expr(e, prec: int = 0, consts: dict | None = None) -> str:
    """An elementwise `.nl` expression (ir nodes: Num, Name, BinOp, Neg, Call, or their checked forms,
    see `surface`) as MathML. `consts`: the optimizer's parameter values, written in place of a name
    where a function takes a constant (`newton_schulz(m, ns_steps)` -> NS_5(m))."""
    from nlc.ir import nodes as ir
    consts = consts or {}
    e = surface(e)

    def const(a):
        if isinstance(a, ir.Name) and isinstance(consts.get(a.id), (int, float)):
            v = consts[a.id]
            return mn(f"{v:g}" if isinstance(v, float) else str(v))
        return expr(a, 4, consts)
    if isinstance(e, ir.Num):
        return mn(e.text)
    if isinstance(e, ir.Name):
        if e.id == "grad":
            return mi("g")
        if e.id == "param":
            return mi("Θ")
        return sym(e.id)
    if isinstance(e, ir.Neg):
        return row(mo("−"), expr(e.operand, 4, consts))
    if isinstance(e, ir.BinOp):
        if e.op == "/":
            return frac(expr(e.left, 0, consts), expr(e.right, 0, consts))
        p = _PREC[e.op]
        op = {"+": "+", "-": "−", "*": "⋅"}[e.op]
        out = row(expr(e.left, p, consts), mo(op), expr(e.right, p + (1 if e.op == "-" else 0), consts))
        return paren(out) if p < prec else out
    if isinstance(e, ir.Call):
        args = list(e.args)
        if e.func == "sqrt" and len(args) == 1:
            return sqrt(expr(args[0], 0, consts))
        if e.func == "abs" and len(args) == 1:
            return paren(expr(args[0], 0, consts), "|", "|")
        if e.func == "unbias" and len(args) == 2:  # Adam's bias correction x / (1 - beta^t)
            return frac(expr(args[0], 0, consts), row(mn("1"), mo("−"), sup(expr(args[1], 4), mi("τ"))))
        if e.func == "newton_schulz" and len(args) == 2:
            return row(sub(mi("NS"), const(args[1])), paren(expr(args[0], 0, consts)))
        inner = (mo(",")).join(expr(a, 0, consts) for a in args)
        return row(mi(e.func), paren(inner))
    return mtext(str(e))
