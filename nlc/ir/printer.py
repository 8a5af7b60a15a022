"""The canonical printer: IR -> `.nl` text. `nlc fmt` is this; parse(fmt(x)) == x.

Comments are not part of the IR. `fmt` re-attaches them by line: a comment on a line of
its own goes before the next statement, a comment at the end of a line stays at the end
of the statement that line belongs to.
"""
from __future__ import annotations

from nlc.ir import nodes as ir


class Comments:
    """Comments of a source text, handed out once each as statements are printed."""

    def __init__(self, text: str = ""):
        self.own: dict[int, str] = {}       # line -> comment alone on its line
        self.trail: dict[int, str] = {}     # line -> comment after code
        for n, line in enumerate(text.splitlines(), 1):
            code, cmt = _split_comment(line)
            if cmt is not None:
                (self.trail if code.strip() else self.own)[n] = cmt

    def before(self, span, ind: str) -> list[str]:
        if span is None:
            return []
        lines = [n for n in sorted(self.own) if n < span.line]
        return [ind + self.own.pop(n) for n in lines]

    def after(self, line: int | None) -> str:
        c = self.trail.pop(line, None) if line else None
        return f"  {c}" if c else ""

    def rest(self) -> list[str]:
        out = [self.own.pop(n) for n in sorted(self.own)] + [self.trail.pop(n) for n in sorted(self.trail)]
        return out


def _split_comment(line: str):
    in_str = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_str = not in_str
        elif ch == "#" and not in_str:
            return line[:i], line[i:].rstrip()
    return line, None


NO_COMMENTS = None

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
INDENT = "  "


def expr(e, prec: int = 0) -> str:
    if isinstance(e, ir.Num):
        return e.text
    if isinstance(e, ir.Str):
        return f'"{e.value}"'
    if isinstance(e, ir.Bool):
        return "true" if e.value else "false"
    if isinstance(e, ir.Name):
        return e.id
    if isinstance(e, ir.Call):
        return call(e)
    if isinstance(e, ir.Neg):
        return "-" + expr(e.operand, 3)
    if isinstance(e, ir.BinOp):
        p = _PREC[e.op]
        # left-associative: the right operand needs parentheses at equal precedence
        s = f"{expr(e.left, p)} {e.op} {expr(e.right, p + 1)}"
        return f"({s})" if p < prec else s
    if isinstance(e, ir.Cms):
        stages = " ".join(f"-> {call(s.memory)} @ {clock(s.clock)}" for s in e.stages)
        s = f"{call(e.options)} {stages}"
        return f"({s})" if prec > 0 else s
    raise TypeError(f"not an expression: {type(e).__name__}")


def call(c: ir.Call) -> str:
    parts = [expr(a) for a in c.args] + [f"{k.name} = {expr(k.value)}" for k in c.kwargs]
    return f"{c.func}({', '.join(parts)})"


def clock(c: ir.Clock) -> str:
    return "frozen" if c.unit == "frozen" else f"{c.unit}({expr(c.every)})"


def _bare(c: ir.Call) -> str:
    # `learn l2` and `init meta` are written without parentheses when they have no arguments
    return c.func if not c.args and not c.kwargs else call(c)


def prop(p) -> str:
    if isinstance(p, ir.ClockProp):
        return f"clock {clock(p.clock)}"
    if isinstance(p, ir.StreamProp):
        return f"{p.role} {expr(p.value)}"
    if isinstance(p, ir.LearnProp):
        return f"learn {_bare(p.objective)}"
    if isinstance(p, ir.RuleProp):
        return f"rule {call(p.rule)}"
    if isinstance(p, ir.InitProp):
        return f"init {_bare(p.init)}"
    if isinstance(p, ir.OptionProp):
        return f"{p.name} = {expr(p.value)}"
    raise TypeError(type(p).__name__)


def memory_type(t: ir.MemoryType) -> str:
    if t.form == "call":
        return call(t.call)
    if t.form == "ref":
        return t.ref
    return f"params({', '.join(t.targets)})"


def _end(node) -> int | None:
    return node.span.end_line if node.span else None


def _line(node) -> int | None:
    return node.span.line if node.span else None


def level(lv: ir.LevelDef, ind: str, cm: Comments) -> list[str]:
    head = f"{ind}level {', '.join(lv.names)} : {memory_type(lv.type)}"
    if lv.per_head:
        head += " per head" + (f"({expr(lv.heads)})" if lv.heads is not None else "")
    if not lv.props:
        return cm.before(lv.span, ind) + [head + " {}" + cm.after(_line(lv))]
    lines = cm.before(lv.span, ind) + [head + " {" + cm.after(_line(lv))]
    for p in lv.props:
        lines += cm.before(p.span, ind + INDENT)
        lines.append(f"{ind}{INDENT}{prop(p)}" + cm.after(_end(p)))
    return lines + [f"{ind}}}" + cm.after(_end(lv))]


def stmt(s, ind: str, cm: Comments) -> list[str]:
    if isinstance(s, ir.LevelDef):
        return level(s, ind, cm)
    pre = cm.before(s.span, ind)
    if isinstance(s, ir.Assign):
        return pre + [f"{ind}{s.name} = {expr(s.value)}" + cm.after(_end(s))]
    if isinstance(s, ir.Out):
        return pre + [f"{ind}out {expr(s.value)}" + cm.after(_end(s))]
    if isinstance(s, ir.Step):
        return pre + [f"{ind}step {expr(s.value)}" + cm.after(_end(s))]
    if isinstance(s, ir.MemoryDef):
        return pre + [f"{ind}memory {s.name} = {call(s.memory)}" + cm.after(_end(s))]
    if isinstance(s, ir.Block):
        rep = f" repeat {expr(s.repeat)}" if s.repeat is not None else ""
        lines = pre + [f"{ind}block {s.name}{rep} {{" + cm.after(_line(s))]
        for b in s.body:
            lines += stmt(b, ind + INDENT, cm)
        return lines + [f"{ind}}}" + cm.after(_end(s))]
    raise TypeError(type(s).__name__)


def _params(ps: list[ir.Param]) -> str:
    return "(" + ", ".join(f"{p.name} = {expr(p.default)}" for p in ps) + ")"


def item(it, cm: Comments) -> list[str]:
    pre = cm.before(it.span, "")
    if isinstance(it, ir.Import):
        return pre + [f'import "{it.path}"' + (f" as {it.alias}" if it.alias else "") + cm.after(_end(it))]
    if isinstance(it, ir.MemoryDef):
        return pre + stmt(it, "", cm)
    if isinstance(it, (ir.Model, ir.Optimizer)):
        word = "model" if isinstance(it, ir.Model) else "optimizer"
        lines = pre + [f"{word} {it.name}{_params(it.params)} {{" + cm.after(_line(it))]
        for s in it.body:
            lines += stmt(s, INDENT, cm)
        return lines + ["}" + cm.after(_end(it))]
    raise TypeError(type(it).__name__)


def program(p: ir.Program, text: str = "") -> str:
    """Print a program canonically, re-attaching the comments of `text` (its source)."""
    cm = Comments(text)
    out: list[str] = []
    prev = None
    for it in p.items:
        # imports and memory templates group together; models and optimizers get a blank line
        if prev is not None and not (type(prev) is type(it) and isinstance(it, (ir.Import, ir.MemoryDef))):
            out.append("")
        chunk = item(it, cm)
        # a comment block that starts the file is separated from the first item
        if prev is None and chunk and chunk[0].startswith("#"):
            n = next((i for i, line in enumerate(chunk) if not line.startswith("#")), len(chunk))
            if it.span and n and n < len(chunk):
                chunk = chunk[:n] + [""] + chunk[n:]
        out += chunk
        prev = it
    rest = cm.rest()
    if rest:
        out += [""] + rest
    return "\n".join(out) + "\n"
