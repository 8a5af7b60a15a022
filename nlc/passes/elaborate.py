"""Passes `resolve-names` and `infer-dims`: flatten a block into named stream ops and levels.

Inside a block, assignments are single-assignment and order-free (a dataflow graph):
a name may be used before the line that defines it. Level *reads* `m(q)` see the
level's chunk-start state, and level *writes* (keys, values, gates) happen after every
read of the tick, so a level may read streams computed from its own reads (Hope's
self-modification). A cycle among assignments themselves cannot be scheduled.
"""
from __future__ import annotations

import math
from typing import Any

from nlc.errors import CycleError, Diagnostics, DimensionError, NameError_, NlcError
from nlc.ir import nodes as ir
from nlc.ir.kinds import (
    BINARY, BUILTINS, CMS_VARIANTS, MEMORY_KINDS, QUERY_WIDTH_KINDS, CmsVariant, Flow, MemoryKind, OpKind,
)
from nlc.ir.resolved import BlockPlan, Gate, LevelPlan, MemoryPlan, Op
from nlc.passes.consts import did_you_mean, eval_const, eval_option

# builtin stream ops (names, arity, keyword arguments): nlc/ir/kinds.py OPS, the one op registry
# memory kinds (linear, mlp, ...) and their arguments: nlc/ir/kinds.py MEMORY_KINDS
# objectives and inits: nlc/ir/kinds.py; in-context update rules: nlc/rules (one folder per rule)


class _Poisoned(NlcError):
    """A stream whose definition already failed: its users stay silent (the error is reported once)."""


def _number(v, span, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DimensionError(f"{what} must be a number, got {v!r}", span)
    return float(v)


class Elaborator:
    """Elaborates one block of one model."""

    def __init__(self, block: ir.Block, env: dict[str, Any], memories: dict[str, ir.MemoryDef], diags: Diagnostics):
        self.block, self.env, self.diags = block, env, diags
        self.memories = dict(memories)
        self.dim = env.get("dim")
        self.defs: dict[str, ir.Assign] = {}
        self.leveldefs: dict[str, ir.LevelDef] = {}
        self.ops: list[Op] = []
        self.width: dict[str, int] = {"x": self.dim}
        self.state: dict[str, str] = {"x": "done"}
        self.stack: list[str] = []
        self.levels: dict[str, LevelPlan] = {}
        self.counter: dict[str, int] = {}
        self.out: str | None = None
        self.widening: set[str] = set()  # levels whose read width is being computed (to catch self-reference)

    # ---- driver
    def run(self) -> BlockPlan:
        outs = []
        for s in self.block.body:
            if isinstance(s, ir.MemoryDef):
                self.memories[s.name] = s
            elif isinstance(s, ir.Assign):
                self._define(s.name, s, self.defs)
            elif isinstance(s, ir.LevelDef):
                for n in s.names:
                    self._define(n, s, self.leveldefs)
            elif isinstance(s, ir.Out):
                outs.append(s)
        for n in self.defs:
            if n in self.leveldefs:
                self.diags.error(NameError_, f"'{n}' names both a stream and a level", self.defs[n].span)
        if not outs:
            self.diags.error(NameError_, f"block '{self.block.name}' has no `out` statement", self.block.span,
                             "end the block with `out x + ...` (its output, added to the residual stream)")
        for o in outs[1:]:
            self.diags.error(NameError_, "a block has one `out` statement", o.span, f"the first is at {outs[0].span}")
        for n in self.defs:
            self._try(self.stream, n)
        if outs:
            r = self._try(self.expr, outs[0].value, "out")
            if r is not None:
                self.out = self._as_stream(r, outs[0].value, "out")
                if self.out and self.width.get(self.out) not in (None, self.dim):
                    self.diags.error(DimensionError, f"a block's output must have width dim = {self.dim}, "
                                     f"this one has width {self.width[self.out]}", outs[0].value.span,
                                     "project it with linear(...)")
        for n, lv in list(self.leveldefs.items()):
            self._try(self.level, n, lv)
        return BlockPlan(name=self.block.name, ops=self.ops, levels=list(self.levels.values()),
                         out=self.out or "x", span=self.block.span)

    def _try(self, fn, *args):
        try:
            return fn(*args)
        except _Poisoned:
            return None
        except NlcError as e:
            self.diags.add(e)
            return None

    def _define(self, name, node, table):
        if name == "x":
            self.diags.error(NameError_, "'x' is the block's input and cannot be redefined", node.span,
                             "pick another name, e.g. `h = ...`")
        elif name in table:
            self.diags.error(NameError_, f"'{name}' is defined twice in block '{self.block.name}'", node.span,
                             f"the first definition is at {table[name].span}")
        else:
            table[name] = node

    def _fresh(self, target: str) -> str:
        self.counter[target] = self.counter.get(target, 0) + 1
        return f"{target}__{self.counter[target]}"

    def _emit(self, name, op: OpKind, inputs, width, span, **attrs) -> str:
        self.ops.append(Op(name=name, op=OpKind(op), inputs=inputs, attrs=attrs, width=width, span=span))
        self.width[name] = width
        self.state[name] = "done"
        return name

    # ---- streams
    def stream(self, name: str) -> str:
        st = self.state.get(name)
        if st == "done":
            return name
        if st == "failed":
            raise _Poisoned(f"'{name}' failed", self.defs[name].span)
        if st == "pending":
            cyc = self.stack[self.stack.index(name):] + [name]
            raise CycleError(f"flow cycle inside one tick: {' -> '.join(cyc)}", self.defs[name].span,
                             "a stream cannot depend on itself; to feed a value back, make it a level's keys/values "
                             "(writes happen after the tick's reads)")
        node = self.defs[name]
        self.state[name] = "pending"
        self.stack.append(name)
        try:
            r = self.expr(node.value, name, top=True)
            if r[0] == "const":
                self._emit(name, OpKind.CONST, [], 1, node.span, value=r[1])
            elif r[1] != name:
                self._emit(name, OpKind.ALIAS, [r[1]], self.width[r[1]], node.span)
        finally:
            self.stack.pop()
            if self.state.get(name) == "pending":
                self.state[name] = "failed"
        return name

    def _as_stream(self, r, node, target) -> str:
        if r[0] == "stream":
            return r[1]
        return self._emit(self._fresh(target), OpKind.CONST, [], 1, node.span, value=r[1])

    def expr(self, e, target: str, top: bool = False):
        """-> ("const", value) or ("stream", op name)."""
        name = target if top else None
        if isinstance(e, (ir.Num, ir.Str, ir.Bool)):
            return ("const", eval_const(e, self.env))
        if isinstance(e, ir.Name):
            if e.id in self.defs or e.id == "x":
                return ("stream", self.stream(e.id))
            if e.id in self.env:
                return ("const", self.env[e.id])
            if e.id in self.leveldefs:
                raise NameError_(f"'{e.id}' is a level; read it with {e.id}(query)", e.span)
            raise NameError_(f"unknown name '{e.id}'", e.span,
                             did_you_mean(e.id, list(self.defs) + list(self.env) + ["x"]) or "define it with `name = ...` in this block")
        if isinstance(e, ir.Neg):
            r = self.expr(e.operand, target)
            if r[0] == "const":
                return ("const", -r[1])
            return ("stream", self._emit(name or self._fresh(target), OpKind.NEG, [r[1]], self.width[r[1]], e.span))
        if isinstance(e, ir.BinOp):
            return self._binop(e, target, name)
        if isinstance(e, ir.Call):
            return self._call(e, target, name)
        if isinstance(e, ir.Cms):
            return self._cms(e, target, name)
        raise NameError_("unsupported expression", e.span)

    def _binop(self, e: ir.BinOp, target, name):
        a, b = self.expr(e.left, target), self.expr(e.right, target)
        if a[0] == "const" and b[0] == "const":
            return ("const", eval_const(e, self.env))
        wa = self.width[a[1]] if a[0] == "stream" else 1
        wb = self.width[b[1]] if b[0] == "stream" else 1
        if wa != wb and 1 not in (wa, wb):
            raise DimensionError(f"'{e.op}' needs equal widths, got {wa} and {wb}", e.span,
                                 "a width-1 stream or a constant broadcasts; otherwise project with linear(x, out = N)")
        ins, attrs = [], {}
        for side, r in (("left", a), ("right", b)):
            if r[0] == "const":
                attrs[side] = _number(r[1], (e.left if side == "left" else e.right).span, f"an operand of '{e.op}'")
            else:
                ins.append(r[1])
        op = BINARY[e.op]
        return ("stream", self._emit(name or self._fresh(target), op, ins, max(wa, wb), e.span, **attrs))

    def _call(self, e: ir.Call, target, name):
        f = e.func
        if f == "self":
            lv = self.stack_level
            if lv is None:
                raise NameError_("`self(...)` is only meaningful inside a level", e.span)
            return self._read(lv, e, target, name)
        if f in self.leveldefs:
            return self._read(f, e, target, name)
        if f in BUILTINS:
            return self._builtin(e, target, name)
        if f in self.memories:
            raise NameError_(f"'{f}' is a memory template, not a level", e.span,
                             f"declare a level that learns it: `level m : {f} {{ ... }}`, then read m(q)")
        raise NameError_(f"unknown function '{f}'", e.span,
                         did_you_mean(f, list(BUILTINS) + list(self.leveldefs)) or
                         f"builtins: {', '.join(sorted(BUILTINS))}")

    stack_level: str | None = None

    def _builtin(self, e: ir.Call, target, name):
        kind = OpKind(e.func)
        arity, allowed = BUILTINS[kind].arity, BUILTINS[kind].kwargs
        out = name or self._fresh(target)
        if len(e.args) < arity:
            raise NameError_(f"{e.func}() takes {arity} stream argument{'s' if arity > 1 else ''}", e.span)
        extra_pos = e.args[arity:]
        kw = {}
        for k in e.kwargs:
            if k.name not in allowed:
                raise NameError_(f"{e.func}() has no argument '{k.name}'", k.span,
                                 f"arguments: {', '.join(allowed) or 'none'}")
            kw[k.name] = eval_const(k.value, self.env, f"{e.func}(..., {k.name} = ...)")
        if extra_pos:
            if not allowed or len(extra_pos) > 1:
                raise NameError_(f"{e.func}() takes {arity} argument{'s' if arity > 1 else ''}", extra_pos[0].span)
            kw.setdefault(allowed[0], eval_const(extra_pos[0], self.env, f"{e.func}(...)"))
        ins = []
        for a in e.args[:arity]:
            r = self.expr(a, target)
            if r[0] == "const":
                raise DimensionError(f"{e.func}() needs a stream, got the constant {r[1]!r}", a.span)
            ins.append(r[1])
        w = self.width[ins[0]]
        if kind == OpKind.LINEAR:
            width = kw.get("out", self.dim)
            if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
                raise DimensionError(f"linear(..., out = {width!r}): the width must be a positive integer", e.span)
        elif kind in (OpKind.L2NORM, OpKind.HEAD_MEAN):
            g = kw.get("groups", 1)
            if not isinstance(g, int) or g <= 0 or w % g:
                raise DimensionError(f"{e.func}: width {w} is not divisible into {g} groups", e.span,
                                     "groups is usually `heads`; dim must be a multiple of it")
            width = g if kind == OpKind.HEAD_MEAN else w
        elif kind == OpKind.CONV:
            win = kw.setdefault("window", 4)
            if not isinstance(win, int) or not 1 <= win <= 64:
                raise DimensionError(f"conv window must be an integer in 1..64, got {win}", e.span)
            width = w
        elif kind == OpKind.SCALE:
            for k, v in kw.items():  # lo and hi as given; each defaults to 1 (nlc/lower/ops.py: Scale)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                    raise DimensionError(f"scale(..., {k} = {v!r}): {k} must be a positive number", e.span,
                                         "the channels start at lo .. hi, equally spaced in log, e.g. "
                                         "scale(x, lo = 0.001, hi = 0.1)")
                kw[k] = float(v)
            width = w
        elif kind == OpKind.GATE:
            if self.width[ins[1]] != w:
                raise DimensionError(f"gate() needs equal widths, got {w} and {self.width[ins[1]]}", e.span)
            width = w
        else:
            width = w
        return ("stream", self._emit(out, kind, ins, width, e.span, **kw))

    # ---- levels
    def _read(self, lname: str, e: ir.Call, target, name):
        if len(e.args) != 1 or e.kwargs:
            raise NameError_(f"a level read takes one query stream: {lname}(q)", e.span)
        r = self.expr(e.args[0], target)
        if r[0] == "const":
            raise DimensionError(f"{lname}(...) needs a stream, got a constant", e.args[0].span)
        width = self._read_width(lname, self.width[r[1]], e)
        inputs = [r[1]]
        lv = self.leveldefs[lname]
        ctx = next((p for p in lv.props if isinstance(p, ir.StreamProp) and p.role == Flow.CONTEXT), None)
        if ctx is not None and self._memory_call(lv).func == MemoryKind.ATTENTION:
            # an attention read also attends to the context tokens (MAC): they must exist first
            inputs.append(self.role_stream(lname, Flow.CONTEXT, ctx.value))
        return ("stream", self._emit(name or self._fresh(target), OpKind.READ, inputs, width, e.span, level=lname))

    def _memory_call(self, lv: ir.LevelDef) -> ir.Call:
        t = lv.type
        if t.form == "call":
            return t.call
        if t.form == "ref":
            if t.ref in self.memories:
                return self.memories[t.ref].memory
            if t.ref in MEMORY_KINDS:
                return ir.Call(func=t.ref, span=t.span)
            raise NameError_(f"unknown memory '{t.ref}'", t.span,
                             did_you_mean(t.ref, list(self.memories) + list(MEMORY_KINDS)) or
                             "declare it with `memory Name = mlp(...)` or use linear(), mlp(), residual_mlp(), attention()")
        raise NameError_("`params(...)` levels are outer optimizers; declare them in the model, not in a block", t.span)

    def _read_width(self, lname, qwidth, e) -> int:
        lv = self.leveldefs[lname]
        kind = self._memory_call(lv).func
        if kind in QUERY_WIDTH_KINDS:
            return qwidth
        vals = next((p for p in lv.props if isinstance(p, ir.StreamProp) and p.role == Flow.VALUES), None)
        if vals is None:
            raise DimensionError(f"level '{lname}' has no `values`, so its output width is unknown", lv.span)
        # the width alone, without building the values' ops: the values may be computed from
        # this very read (MAC writes its memory from attention that attends to the memory's read)
        w = self._static_width(vals.value, set())
        if w is not None:
            return w
        if lname in self.widening:
            raise DimensionError(f"the output width of level '{lname}' depends on itself (its values read it)", vals.span,
                                 "self-generated values need a memory whose output has the query width: residual_mlp")
        prev, self.stack_level = self.stack_level, lname
        self.widening.add(lname)
        try:
            r = self.expr(vals.value, f"{lname}__values")
        finally:
            self.stack_level = prev
            self.widening.discard(lname)
        if r[0] != "stream":
            raise DimensionError(f"`values` of level '{lname}' must be a stream", vals.span)
        return self.width[r[1]]

    def _static_width(self, e, seen: set) -> int | None:
        """The width of an expression from its shape alone (None when it needs elaboration)."""
        if isinstance(e, ir.Name):
            if self.state.get(e.id) == "done":
                return self.width[e.id]
            if e.id in self.defs and e.id not in seen:
                return self._static_width(self.defs[e.id].value, seen | {e.id})
            return None
        if isinstance(e, ir.BinOp):
            a, b = self._static_width(e.left, seen), self._static_width(e.right, seen)
            return None if a is None or b is None else max(a, b)
        if isinstance(e, ir.Neg):
            return self._static_width(e.operand, seen)
        if isinstance(e, (ir.Num, ir.Bool)):
            return 1
        if isinstance(e, ir.Call) and e.args:
            if e.func == OpKind.LINEAR:
                out = e.kw("out") or (e.args[1] if len(e.args) > 1 else None)
                try:
                    return int(eval_const(out, self.env)) if out is not None else self.dim
                except NlcError:
                    return None
            if e.func == OpKind.HEAD_MEAN:
                g = e.kw("groups")
                try:
                    return int(eval_const(g, self.env)) if g is not None else 1
                except NlcError:
                    return None
            if e.func in BUILTINS:
                return self._static_width(e.args[0], seen)
            lname = self.stack_level if e.func == "self" else e.func
            if lname in self.leveldefs and lname not in seen:
                kind = self._memory_call(self.leveldefs[lname]).func
                if kind in QUERY_WIDTH_KINDS:
                    return self._static_width(e.args[0], seen)
                vals = next((p for p in self.leveldefs[lname].props
                             if isinstance(p, ir.StreamProp) and p.role == Flow.VALUES), None)
                return self._static_width(vals.value, seen | {lname}) if vals else None
        return None

    def level(self, lname: str, lv: ir.LevelDef) -> None:
        from nlc.passes.levels import build_level
        self.levels[lname] = build_level(self, lname, lv)

    def role_stream(self, lname: str, role: str, e) -> str:
        prev, self.stack_level = self.stack_level, lname
        try:
            r = self.expr(e, f"{lname}__{role}")
        finally:
            self.stack_level = prev
        return self._as_stream(r, e, f"{lname}__{role}")

    # ---- CMS chains
    def _cms(self, e: ir.Cms, target, name):
        opts = e.options
        if len(opts.args) != 1:
            raise NameError_("cms(input, ...) takes one input stream", opts.span)
        r = self.expr(opts.args[0], target)
        if r[0] != "stream":
            raise DimensionError("cms() needs a stream input", opts.args[0].span)
        kw = {k.name: eval_option(k.value, self.env, f"cms({k.name} = ...)") for k in opts.kwargs}
        bad = set(kw) - {"variant", "lr"}
        if bad:
            raise NameError_(f"cms() has no option '{sorted(bad)[0]}'", opts.span, "options: variant, lr")
        lr = _number(kw.get("lr", 1e-2), opts.span, "cms(lr = ...)")
        variant = kw.get("variant", next(iter(CMS_VARIANTS)))
        if variant not in CMS_VARIANTS:
            raise NameError_(f"unknown CMS variant '{variant}'", opts.span, f"variants: {', '.join(CMS_VARIANTS)}")
        variant = CmsVariant(variant)
        out = name or self._fresh(target)
        from nlc.passes.levels import build_cms_level
        names = []
        for i, st in enumerate(e.stages):
            lname = f"{out}_cms{i}"
            self.levels[lname] = build_cms_level(self, lname, st, self.width[r[1]], r[1], i, lr)
            names.append(lname)
        return ("stream", self._emit(out, OpKind.CMS, [r[1]], self.width[r[1]], e.span, levels=names, variant=variant))
