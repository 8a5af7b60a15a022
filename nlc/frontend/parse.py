"""Text -> lark tree -> IR. The transformer only builds nodes; meaning is checked in passes.

Limits (docs/language.md, "Limits"): a spec file is a regular file of at most
`max_source_bytes()` bytes (1 MiB; `NLC_MAX_SPEC_BYTES` raises it); an expression nests at
most `MAX_EXPR_DEPTH` calls and operators deep. A UTF-8 byte-order mark is dropped and every
newline convention (\n, \r\n, \r) is read as \n.
"""
from __future__ import annotations

import os
import stat
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from nlc.errors import ParseError, Span
from nlc.ir import nodes as ir
from nlc.ir.kinds import Flow

GRAMMAR = Path(__file__).with_name("grammar.lark")

# Friendly names for the terminals lark reports as expected.
_TOKEN_NAMES = {
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "EQUAL": "'='",
    "COLON": "':'", "SEMICOLON": "';'", "NAME": "a name", "NUMBER": "a number", "STRING": "a string",
    "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "AT": "'@'", "__ANON_0": "'->'",
    "STREAM_ROLE": "keys/values/queries/context", "$END": "end of file",
}


@lru_cache(maxsize=1)
def parser() -> Lark:
    # strict: shift/reduce conflicts and regex collisions are errors. The parse table is
    # cached on disk (keyed by the grammar's hash), so `nlc check` starts fast.
    return Lark(GRAMMAR.read_text(), parser="lalr", propagate_positions=True, strict=True, maybe_placeholders=True,
                cache=True)


def _span(file: str, meta) -> Span | None:
    if getattr(meta, "empty", True):
        return None
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + len(tok))


def _as_call(x, file) -> ir.Call:
    if isinstance(x, ir.Call):
        return x
    return ir.Call(func=str(x), span=_tok_span(file, x))


# How deep calls, operators and unary minuses may nest in one expression. The passes walk
# expressions recursively (a few Python frames per level), so the limit keeps them well
# inside Python's recursion limit; no person writes 200 nested calls (name intermediate streams).
MAX_EXPR_DEPTH = 200
# A spec file larger than this is refused (the front end reads ~0.1-0.3 MB/s on a busy core).
DEFAULT_MAX_SOURCE_BYTES = 1 << 20


def max_source_bytes() -> int:
    """The size limit of one spec file: 1 MiB, or `NLC_MAX_SPEC_BYTES` when set to a positive integer."""
    v = os.environ.get("NLC_MAX_SPEC_BYTES", "").strip()
    if v:
        try:
            n = int(v)
        except ValueError:
            raise ParseError(f"NLC_MAX_SPEC_BYTES={v!r} is not a number of bytes", None,
                             "e.g. NLC_MAX_SPEC_BYTES=8388608 for 8 MiB") from None
        if n > 0:
            return n
    return DEFAULT_MAX_SOURCE_BYTES


class _Depth:
    """Expression depth of the nodes built so far (by id; the builder keeps every node alive)."""

    def __init__(self):
        self.d: dict[int, int] = {}

    def of(self, node) -> int:
        return self.d.get(id(node), 0)

    def set(self, node, children, file) -> None:
        depth = 1 + max((self.of(c) for c in children), default=0)
        if depth > MAX_EXPR_DEPTH:
            raise ParseError(f"expression nested too deeply (more than {MAX_EXPR_DEPTH} calls or operators)",
                             node.span, "name intermediate results (`a = ...` then use `a`); "
                             f"the limit is {MAX_EXPR_DEPTH} (docs/language.md, Limits)", file=file)
        self.d[id(node)] = depth


@v_args(meta=True)
class _Build(Transformer_NonRecursive):
    # non-recursive: any tree depth parses; the expression depth is then checked (_Depth)
    def __init__(self, file: str):
        super().__init__()
        self.file = file
        self.depth = _Depth()

    def _s(self, meta):
        return _span(self.file, meta)

    # ---- top level
    def start(self, meta, items):
        return ir.Program(file=self.file, items=[i for i in items if isinstance(i, ir.Node)], span=self._s(meta))

    def import_stmt(self, meta, c):
        return ir.Import(path=c[0][1:-1], alias=str(c[1]) if c[1] else None, span=self._s(meta))

    def param_list(self, meta, c):
        return [p for p in c if p is not None]

    def param(self, meta, c):
        return ir.Param(name=str(c[0]), default=c[1], span=self._s(meta))

    def model_def(self, meta, c):
        body = [x for x in c[2:] if isinstance(x, ir.Node)]
        return ir.Model(name=str(c[0]), params=c[1] or [], body=body, span=self._s(meta))

    def optimizer_def(self, meta, c):
        body = [x for x in c[2:] if isinstance(x, ir.Node)]
        return ir.Optimizer(name=str(c[0]), params=c[1] or [], body=body, span=self._s(meta))

    def memory_def(self, meta, c):
        return ir.MemoryDef(name=str(c[0]), memory=c[1], span=self._s(meta))

    def block_def(self, meta, c):
        body = [x for x in c[2:] if isinstance(x, ir.Node)]
        return ir.Block(name=str(c[0]), repeat=c[1], body=body, span=self._s(meta))

    def assign(self, meta, c):
        return ir.Assign(name=str(c[0]), value=c[1], span=self._s(meta))

    def out_stmt(self, meta, c):
        return ir.Out(value=c[0], span=self._s(meta))

    def step_stmt(self, meta, c):
        return ir.Step(value=c[0], span=self._s(meta))

    # ---- levels
    def level_def(self, meta, c):
        names, mtype, per = c[0], c[1], c[2]
        props = [p for p in c[3:] if isinstance(p, ir.Node)]
        return ir.LevelDef(names=names, type=mtype, per_head=per is not None, heads=per[0] if per else None,
                           props=props, span=self._s(meta))

    def name_list(self, meta, c):
        return [str(t) for t in c]

    def memory_call(self, meta, c):
        return ir.MemoryType(form="call", call=c[0], span=self._s(meta))

    def memory_ref(self, meta, c):
        return ir.MemoryType(form="ref", ref=str(c[0]), span=self._s(meta))

    def params_ref(self, meta, c):
        return ir.MemoryType(form="params", targets=c[0], span=self._s(meta))

    def per_head(self, meta, c):
        return (c[0],)

    def clock_prop(self, meta, c):
        return ir.ClockProp(clock=c[0], span=self._s(meta))

    def stream_prop(self, meta, c):
        return ir.StreamProp(role=Flow(str(c[0])), value=c[1], span=self._s(meta))

    def learn_prop(self, meta, c):
        return ir.LearnProp(objective=_as_call(c[0], self.file), span=self._s(meta))

    def rule_prop(self, meta, c):
        return ir.RuleProp(rule=c[0], span=self._s(meta))

    def init_prop(self, meta, c):
        return ir.InitProp(init=_as_call(c[0], self.file), span=self._s(meta))

    def option_prop(self, meta, c):
        return ir.OptionProp(name=str(c[0]), value=c[1], span=self._s(meta))

    def tokens_clock(self, meta, c):
        return ir.Clock(unit="tokens", every=c[0], span=self._s(meta))

    def steps_clock(self, meta, c):
        return ir.Clock(unit="steps", every=c[0], span=self._s(meta))

    def frozen_clock(self, meta, c):
        return ir.Clock(unit="frozen", span=self._s(meta))

    # ---- expressions
    def cms_chain(self, meta, c):
        args, kwargs = c[0]
        opts = ir.Call(func="cms", args=args, kwargs=kwargs, span=self._s(meta))
        node = ir.Cms(options=opts, stages=c[1:], span=self._s(meta))
        self.depth.set(node, [*args, *(k.value for k in kwargs), *(s.memory for s in c[1:])], self.file)
        return node

    def _bin(op):
        def f(self, meta, c):
            node = ir.BinOp(op=op, left=c[0], right=c[1], span=self._s(meta))
            self.depth.set(node, c, self.file)
            return node
        return f

    add, sub, mul, div = _bin("+"), _bin("-"), _bin("*"), _bin("/")

    def neg(self, meta, c):
        node = ir.Neg(operand=c[0], span=self._s(meta))
        self.depth.set(node, c, self.file)
        return node

    def number(self, meta, c):
        return ir.Num(value=float(c[0]), text=str(c[0]), span=self._s(meta))

    def string(self, meta, c):
        return ir.Str(value=str(c[0])[1:-1], span=self._s(meta))

    def true(self, meta, c):
        return ir.Bool(value=True, span=self._s(meta))

    def false(self, meta, c):
        return ir.Bool(value=False, span=self._s(meta))

    def name(self, meta, c):
        return ir.Name(id=str(c[0]), span=self._s(meta))

    def call(self, meta, c):
        args, kwargs = c[1]
        node = ir.Call(func=str(c[0]), args=args, kwargs=kwargs, span=self._s(meta))
        self.depth.set(node, [*args, *(k.value for k in kwargs)], self.file)
        return node

    def call_args(self, meta, c):
        args, kwargs = [], []
        for a in c:
            if a is None:
                continue
            (kwargs if isinstance(a, ir.KwArg) else args).append(a)
        return args, kwargs

    def kwarg(self, meta, c):
        return ir.KwArg(name=str(c[0]), value=c[1], span=self._s(meta))

    def cms_stage(self, meta, c):
        return ir.CmsStage(memory=c[0], clock=c[1], span=self._s(meta))


# Examples of common mistakes, matched against lark's error state (lark's match_examples).
_EXAMPLES = {
    "missing '}' at the end of a block": ["model M() { block b { out x }", "model M() {"],
    "missing '=' in an assignment": ["model M() { block b { h rmsnorm(x) } }"],
    "a level needs ':' and a memory type after its name": ["model M() { block b { level m { } } }"],
    "unbalanced parentheses": ["model M() { block b { h = f(x } }", "model M(dim = 1 { }"],
    "a clock is tokens(C), steps(C) or frozen": ["model M() { block b { level m : linear() { clock every(3) } } }"],
    "a model or optimizer needs '{' after its parameters": ["model M(dim = 1) block"],
}


def _describe_expected(expected) -> str:
    names = sorted({_TOKEN_NAMES.get(t, f"'{t.lower()}'") for t in expected if not t.startswith("_")})
    if len(names) > 6:
        names = names[:6] + ["..."]
    return ", ".join(names)


def _friendly(e: UnexpectedInput, text: str, file: str) -> ParseError:
    line, col = e.line if e.line > 0 else 1, e.column if e.column > 0 else 1
    label = None
    try:
        label = e.match_examples(parser().parse, _EXAMPLES, use_accepts=True)
    except Exception:  # noqa: BLE001 - matching examples is best effort
        label = None
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        msg = f"unexpected character {ch!r}"
        hint = label or "names are letters, digits and '_'; comments start with '#'"
        if ch == '"':
            msg, hint = "unterminated string", "a string ends with '\"' on the same line"
        return ParseError(msg, Span(file, line, col, line, col + 1), hint)
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        lines = text.split("\n")  # lark counts lines by \n only (str.splitlines also splits at \f, \x1c, ...)
        if len(lines) > 1 and not lines[-1]:
            lines.pop()  # the newline that ends the file
        line = len(lines)
        col = len(lines[-1]) + 1
        return ParseError("unexpected end of file", Span(file, line, max(col - 1, 1), line, col),
                          label or f"expected {_describe_expected(e.expected)}")
    tok = e.token
    end = col + max(len(str(tok)), 1)
    msg = f"unexpected {str(tok)!r}"
    hint = label or f"expected {_describe_expected(e.expected)}"
    return ParseError(msg, Span(file, line, col, line, end), hint)


def normalize_source(text: str) -> str:
    """Drop a byte-order mark; read \r\n and a lone \r as \n (so lines and comments end where the author sees)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def parse_text(text: str, file: str = "<string>") -> ir.Program:
    """Parse one `.nl` source text into an IR Program (raises ParseError)."""
    text = normalize_source(text)
    if len(text) > max_source_bytes():
        raise ParseError(f"{file} is too large ({len(text)} characters; the limit is {max_source_bytes()} bytes)",
                         None, "split it into files joined by `import`, or raise NLC_MAX_SPEC_BYTES", file=file)
    if not text.strip():
        raise ParseError("empty file: nothing to compile", None,
                         "a spec holds at least one `model Name(...) { ... }` or `optimizer` definition", file=file)
    try:
        tree = parser().parse(text)
    except UnexpectedInput as e:
        raise _friendly(e, text, file) from None
    try:
        return _Build(file).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, ParseError):  # a limit the builder checks (expression depth)
            raise e.orig_exc from None
        raise e.orig_exc from e  # a bug in the builder, not a user error


def read_source(path: str | Path) -> str:
    """Read a spec file; every way it can fail is a clear user error."""
    p = Path(path)
    f = str(path)
    if not p.exists():
        from nlc.builtin import builtin_names
        raise ParseError(f"no such file: {f}", None, "check the path, or name a built-in spec: "
                         + ", ".join(n for n in builtin_names() if "/" not in n), file=f)
    if p.is_dir():
        raise ParseError(f"{f} is a directory, not a .nl file", None, f"try {f}/*.nl", file=f)
    limit = max_source_bytes()
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (OSError, ValueError) as e:
        raise ParseError(f"cannot read {f}: {getattr(e, 'strerror', None) or e}", None, file=f) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
            raise ParseError(f"{f} is {what}, not a .nl file", None, "nlc reads specs from regular files only", file=f)
        if st.st_size > limit:
            raise ParseError(f"{f} is too large ({st.st_size} bytes; the limit is {limit} bytes)", None,
                             "split it into files joined by `import`, or raise NLC_MAX_SPEC_BYTES "
                             "(docs/language.md, Limits)", file=f)
        chunks, n = [], 0
        while n <= limit:  # the file may grow after fstat: read at most limit + 1 bytes
            b = os.read(fd, min(1 << 20, limit + 1 - n))
            if not b:
                break
            chunks.append(b)
            n += len(b)
        data = b"".join(chunks)
    except OSError as e:
        raise ParseError(f"cannot read {f}: {e.strerror or e}", None, file=f) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ParseError(f"{f} is too large (more than {limit} bytes)", None,
                         "split it into files joined by `import`, or raise NLC_MAX_SPEC_BYTES", file=f)
    if b"\0" in data:
        raise ParseError(f"{f} is a binary file, not a .nl spec", None, file=f)
    try:
        return normalize_source(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = data[: e.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        raise ParseError(f"{f} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})",
                         Span(f, line, 1, line, 2), "save the file as UTF-8", file=f) from None


def parse_file(path: str | Path) -> ir.Program:
    return parse_text(read_source(path), str(path))
