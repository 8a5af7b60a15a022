"""The lowered program: a ModelPlan and its Schedule as an nn.Module.

The lowering executes what the `schedule` stage decided (nlc/ir/schedule.py): the segment
grid and, per segment, which levels start and end a chunk; the order (layer-major or
segment-major); each level's implementation (`Impl`: the per-token reference, the closed-form
chunk update, DGD's WY form, a fused Triton kernel); the fast-state layout. It reads only the
resolved plan and the schedule: no surface IR, no passes (tests/lower/test_layering.py).

In a segment, every block runs its stream ops token-parallel, its levels are read at their
chunk-start state, then each level takes the segment's writes; at a level's chunk boundary its
chunk-start state moves on. The fast state (weights, momenta, conv and attention caches,
position) is a flat dict of batch-first tensors, so a sequence streamed in segments equals it
at once.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from nlc.ir.kinds import CMS_VARIANTS, OpKind, Role
from nlc.ir.schedule import Backend, Impl, Order, Part
from nlc.lower import group
from nlc.lower import memory as mem
from nlc.lower.attention import AttentionLevel
from nlc.lower.ops import ACTS, RMSNorm, apply_op, make_module
from nlc.lower.span import span_level, span_prefix
from nlc.lower.stitch import Tape, has_history


@dataclass
class ModelOutput:
    logits: torch.Tensor
    state: dict
    loss: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)


class CMSLevel(nn.Module):
    """One CMS stage: an MLP h -> W_out act(W_in h) (NL eq. 70), meta-learned initial weights."""

    def __init__(self, lv, learns: bool):
        super().__init__()
        self.lv, self.learns = lv, learns  # learns: the schedule's Impl.CMS_TEACH
        d, h = lv.dk, lv.hidden
        self.w_in = nn.Parameter(torch.randn(h, d) / math.sqrt(d))
        self.w_out = nn.Parameter(torch.zeros(d, h))  # zero: a fresh chain is the identity


class Layer(nn.Module):
    """One instance of a block (a repeated block has `repeat` of these), named `key` (`block.i`)."""

    def __init__(self, block, dim: int, key: str, schedule):
        super().__init__()
        self.block, self.key = block, key
        self.prefix = key + "."  # the layer's fast state is `prefix + local key` in the model's state dict
        self.impls = {lv.name: schedule.impl(block.name, lv.name) for lv in block.levels}
        live = schedule.live.get(block.name)
        self.ops = [op for op in block.ops if live is None or op.name in live]  # the schedule's live ops
        byname = {op.name: op for op in self.ops}
        # layer-major: the schedule's split of the live ops into (before, loop, after), resolved to ops once
        self.parts = tuple([byname[n] for n in names] for names in schedule.parts[block.name])
        self.span = schedule.span(block.name)        # whether the block runs as a whole-layer span
        # the fast-state keys of this layer, local (without `prefix`), from the schedule's layout:
        # (owner, part) -> [keys by index]. The layer's code sees only local keys, so every layer of
        # a block runs the same compiled program (NLModel._compile_program)
        self.skeys: dict = {}
        for sl in schedule.state:
            if sl.layer == key:
                self.skeys.setdefault((sl.owner, sl.part), []).append(sl.key[len(self.prefix):])
        self._edge_names: dict = {}
        widths = {"x": dim, **{op.name: op.width for op in block.ops}}
        self.mods = nn.ModuleDict()
        for op in block.ops:
            m = make_module(op, widths)
            if m is not None:
                self.mods[op.name] = m
        self.mems = nn.ModuleDict({lv.name: mem.MemoryLevel(lv, mem.keys_unit_norm(block, lv))
                                   for lv in block.levels if lv.role == Role.MEMORY})
        self.attns = nn.ModuleDict({lv.name: AttentionLevel(lv, dim) for lv in block.levels if lv.role == Role.ATTENTION})
        self.cms = nn.ModuleDict({lv.name: CMSLevel(lv, self.impls[lv.name] == Impl.CMS_TEACH)
                                 for lv in block.levels if lv.role == Role.CMS})
        self.agg = nn.ParameterDict({op.name: nn.Parameter(torch.ones(len(op.attrs["levels"])) / len(op.attrs["levels"]))
                                     for op in block.ops if op.op == OpKind.CMS and CMS_VARIANTS[op.attrs["variant"]].parallel})
        # level groups (schedule.groups): members run as one batched level (nlc/lower/group.py)
        groups = [g for g in schedule.groups if g.block == block.name]
        self.group_of = {n: g for g in groups for n in g.levels}
        self.batched = group.batched_reads(block, self.ops, groups)  # (level, input) -> members read as one

    # ---- fast state
    def k(self, owner: str, part: str, index: int = 0) -> str:
        """The model-wide state key of a slot of this layer (spelled once, by the schedule)."""
        return self.prefix + self.skeys[(owner, part)][index]

    def local(self, st: dict) -> dict:
        """This layer's part of the model's fast state, under local keys (attention caches included)."""
        n = len(self.prefix)
        return {k[n:]: v for k, v in st.items() if k.startswith(self.prefix)}

    def store(self, st: dict, ls: dict, lstats: dict | None = None, stats: dict | None = None):
        """Write a local state (and local stats) back under the model-wide keys."""
        st.update((self.prefix + k, v) for k, v in ls.items())
        for k, v in (lstats or {}).items():
            _acc(stats, self.prefix + k, v)

    def initial(self, sl, B, device, dtype):
        """The initial value of one of this layer's state slots (nlc.ir.schedule.StateSlot)."""
        if sl.part in (Part.WBAR, Part.W):
            w = self.mems[sl.owner].initial(B, device, dtype)[sl.index]
            return w
        if sl.part in (Part.S, Part.CONV, Part.G_IN, Part.G_OUT):
            return torch.zeros(B, *sl.shape, device=device, dtype=dtype)
        c = self.cms[sl.owner]  # w_in, w_out: the meta-learned initial weights, shared by the batch
        return getattr(c, sl.part).unsqueeze(0).expand(B, -1, -1)

    def edge_names(self, edges):
        """(starts, ends) of a segment as this block's level names (cached per edge pattern)."""
        out = self._edge_names.get(edges)
        if out is None:
            b = self.block.name
            out = (frozenset(n for bb, n in edges.starts if bb == b), frozenset(n for bb, n in edges.ends if bb == b))
            self._edge_names[edges] = out
        return out

    # ---- the whole sequence, layer-major (no CMS teaching): hoist what does not need reads
    def _partition(self):
        """ops -> (before, loop, after), as the schedule split them (nlc/passes/schedule.py: `partition`):
        `before` needs no level read (runs on the whole sequence first); `loop` holds the reads and what
        the levels' writes or other reads need (runs per segment); `after` needs reads but only feeds
        the block output (whole sequence, last)."""
        return self.parts

    def _run_op(self, op, v, st):
        ins = [v[i] for i in op.inputs]
        x = v["x"]
        if op.op == OpKind.CONST:
            return torch.full((x.shape[0], x.shape[1], 1), float(op.attrs["value"]), dtype=x.dtype, device=x.device)
        if op.op == OpKind.CONV:
            ck = self.skeys[(op.name, Part.CONV)][0]
            out, st[ck] = self.mods[op.name](ins[0], st[ck])
            return out
        if op.op == OpKind.READ:
            return self._read(op, ins, st, v)
        if op.op == OpKind.CMS:
            return self._cms(op, ins[0], st)
        return apply_op(op, self.mods[op.name] if op.name in self.mods else None, ins)

    def run(self, x, st, segments, stats):
        """The layer over the whole call (layer-major order): `segments` from Schedule.segments;
        `st` and `stats` are this layer's local state and stats (`local`, `store`). A whole-layer span
        (the schedule's `BlockSpan`) takes the longest chunk-aligned prefix of the call in one call per
        memory level (nlc/lower/span.py); the rest goes segment by segment."""
        before, loop, after = self._partition()
        full = {"x": x}
        for op in before:
            full[op.name] = self._run_op(op, full, st)
        pieces = {op.name: [] for op in loop}
        # split, not sliced per segment: the backward of a slice is a zero tensor of the whole
        # sequence (O(T) per segment, O(T^2) per call); a split's backward is one concatenation
        # (Titans layer fwd+bwd, T 8192: 6.49 -> 4.77 s, docs/performance.md)
        n0 = span_prefix(self, segments)
        seg = segments[0][1] - segments[0][0]  # the span's prefix holds only whole segments of the grid
        segments = [sg for sg in segments if sg[0] >= n0]
        sizes = ([n0] if n0 else []) + [e - s for s, e, _ in segments]
        parts = {name: t.split(sizes, 1) for name, t in full.items()}
        if n0:
            # every loop op is a read of a span level whose query is hoisted (the schedule checked)
            head = {name: p[0] for name, p in parts.items()}
            parts = {name: p[1:] for name, p in parts.items()}
            for op in loop:
                out, lstats = span_level(self, op.attrs["level"], head[op.inputs[0]], head, st, seg)
                pieces[op.name].append(out)
                for k, v in lstats.items():
                    _acc(stats, k, v)
        for i, (s, e, edges) in enumerate(segments):
            v = {name: p[i] for name, p in parts.items()}
            for op in loop:
                v[op.name] = self._run_op(op, v, st)
                pieces[op.name].append(v[op.name])
            starts, ends = self.edge_names(edges)
            for name, m in self.mems.items():
                self._write(m, v, st, name, name in ends, e - s, stats, at_start=name in starts)
        for name, ps in pieces.items():
            full[name] = torch.cat(ps, 1) if len(ps) > 1 else ps[0]
        for op in after:
            full[op.name] = self._run_op(op, full, st)
        return full[self.block.out]

    # ---- one segment (segment-major order; the unit torch.compile takes whole)
    def segment(self, x, st, starts, ends, stats):
        """One segment of this layer on its local state `st` (and local `stats`); `starts`/`ends`: this
        block's levels whose chunk starts/ends here. `ends` may map each memory level to a 0-dim bool
        tensor instead (the compiled program: the edge pattern is data, not a branch)."""
        n = x.shape[1]
        v = {"x": x}
        for op in self.ops:
            v[op.name] = self._run_op(op, v, st)
        for name, m in self.mems.items():
            self._write(m, v, st, name, ends[name] if isinstance(ends, dict) else name in ends, n, stats,
                        at_start=name in starts)
        return v[self.block.out]

    def program(self, x, st, ends, starts=frozenset()):
        """A segment as a function: (x, local state) -> (output, new local state, local stats). Pure,
        so dynamo sees no side effect when it is compiled (NLModel._compile_program, `ends` then as
        tensors: one graph serves every edge pattern) and checkpointing can recompute it."""
        st, stats = dict(st), {}
        out = self.segment(x, st, starts, ends, stats)
        return out, st, stats

    def _read(self, op, ins, st, v=None):
        name, q = op.attrs["level"], ins[0]
        if name in self.attns:
            ctx = ins[1] if len(ins) > 1 else None  # MAC: the memory tokens join the keys
            return self.attns[name](q, ctx, st, name)
        members = self.batched.get((name, op.inputs[0])) if v is not None else None
        if members:  # one read for the group's members on this input, this segment (`v` holds it)
            return group.read(self, members, name, op.inputs[0], q, st, v)
        return mem.read(self.mems[name].lv, [st[k] for k in self.skeys[(name, Part.WBAR)]], q)

    def _write(self, m, v, st, name, at_end, n, stats, at_start=False):
        lv, impl = m.lv, self.impls[name]
        if impl == Impl.FROZEN:
            return  # frozen (by its clock or by `freeze`) or outer-clock levels do not learn in context
        g = self.group_of.get(name)
        if g is not None:  # one write for the whole group, when its first member's turn comes
            if name == g.levels[0]:
                group.write(self, g, v, st, at_end, n, stats, _acc)
            return
        kW, kS = self.skeys[(name, Part.W)], self.skeys.get((name, Part.S))
        Wbar = [st[k] for k in self.skeys[(name, Part.WBAR)]]
        Ws = [st[k] for k in kW]
        Ss = [st[k] for k in kS] if kS else None
        B = Ws[0].shape[0]
        k, val = mem.split_heads(v[lv.keys], lv.heads), mem.split_heads(v[lv.values], lv.heads)
        theta, alpha = m.gate("lr", v, B, n, k), m.gate("decay", v, B, n, k)
        eta = m.gate("momentum", v, B, n, k) if kS else None
        W0s = m.initial(B, k.device, k.dtype) if m.rule.uses_init else None  # M_0, for rules that read it
        if impl.kernel and at_start:  # a kernel call covers a chunk from its start
            from nlc.lower.triton_plan import fused_write
            Ws, Ss = fused_write(lv, impl.kernel, Ws, Ss, k, val, theta, alpha, eta)
            surprise = mem.objective_value(lv, mem.forward_layers(lv, Wbar, k)[0], val).detach()
        elif impl == Impl.REFERENCE:
            surprise = 0.0
            for t in range(n):
                Ws, Ss, loss = mem.reference_token(lv, Wbar, Ws, Ss, k[:, :, t], val[:, :, t], theta[..., t],
                                                   alpha[..., t], eta[..., t] if eta is not None else None, W0s,
                                                   m.token_step)
                surprise = surprise + loss
        else:  # CHUNK, or a kernel's level on a segment that starts mid-chunk
            u, surprise, theta = mem.chunk_grads(lv, Wbar, k, val, theta)
            Ws, Ss = mem.chunk_write(lv, Ws, Ss, u, theta, alpha, eta, W0s, m.chunk_step)
        st.update(zip(kW, Ws))
        if Ss is not None:
            st.update(zip(kS, Ss))
        _acc(stats, f"{name}/surprise", surprise / (B * n))
        selected = torch.is_tensor(at_end)  # the compiled program: a select, one graph for ends and not-ends
        if selected or at_end:  # chunk boundary: the chunk-start state moves on
            norm = sum((w - wb).detach().norm() for w, wb in zip(Ws, Wbar)) / B
            if selected:
                norm, Ws = torch.where(at_end, norm, torch.zeros_like(norm)), [torch.where(at_end, w, wb)
                                                                               for w, wb in zip(Ws, Wbar)]
            _acc(stats, f"{name}/update_norm", norm)
            st.update(zip(self.skeys[(name, Part.WBAR)], Ws))

    def _cms(self, op, x, st):
        names, parallel = op.attrs["levels"], CMS_VARIANTS[op.attrs["variant"]].parallel
        h, outs = x, []
        for i, name in enumerate(names):
            c = self.cms[name]
            w_in, w_out = st[self.skeys[(name, Part.W_IN)][0]], st[self.skeys[(name, Part.W_OUT)][0]]
            inp = x if parallel else h
            y = ACTS[c.lv.memory.act](inp @ w_in.transpose(-1, -2)) @ w_out.transpose(-1, -2)
            outs.append(y)
            h = h + y
        if parallel:
            return sum(w * y for w, y in zip(self.agg[op.name], outs))
        return h - x


def _grad_target(t):
    """`t` itself when torch.autograd.grad can differentiate w.r.t. it (a node of the graph, or a
    leaf); else a detached leaf copy. Frozen weights do not require grad, and a view of a parameter
    made under no_grad (the state at the start of `nlc generate`) requires grad yet is in no graph:
    autograd.grad would answer None for it."""
    return t if has_history(t) else t.detach().requires_grad_()


def _uniform(t):
    """`t` as the compiled program takes it: requiring grad exactly when grad mode is on. A tensor
    that does not require grad becomes a leaf that does (its gradient is never read), and under
    no_grad every input is detached (nothing is recorded either way): one graph per grad mode."""
    if not torch.is_grad_enabled():
        return t.detach()
    return t if t.requires_grad else t.detach().requires_grad_()


def _token_loss(logits, targets):
    """Per-token cross-entropy (B*n,); low-precision logits are scored in fp32."""
    lf = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return F.cross_entropy(lf.flatten(0, 1), targets.flatten(), reduction="none")


def _acc(stats, k, val):
    stats[k] = stats.get(k, 0.0) + (val.detach() if torch.is_tensor(val) else val)


class NLModel(nn.Module):
    """A compiled .nl model: embedding -> blocks -> norm -> head; fast state per sequence.

    Built from a resolved plan and its schedule (nlc.passes: `run(...)` then `build_schedule`);
    `source` describes where the spec came from (nlc.api.SpecSource), `tokenizer` is set for a
    model loaded from a run directory. `nlc.compile` and `nlc.load` return this class."""

    def __init__(self, plan, schedule, source=None, tokenizer=None):
        super().__init__()
        self.plan, self.schedule = plan, schedule
        self.source, self.tokenizer = source, tokenizer
        self.embed = nn.Embedding(plan.vocab, plan.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleDict({b.name: nn.ModuleList(Layer(b, plan.dim, f"{b.name}.{i}", schedule)
                                                           for i in range(b.repeat)) for b in plan.blocks})
        self.norm = RMSNorm(plan.dim)
        self.head = nn.Linear(plan.dim, plan.vocab, bias=False)
        self._program = None  # the compiled segment program (backend `compile`)
        self._flags: dict = {}
        self.detach_state_output = False  # set under DDP (nlc.train.distributed)
        self.cms_learns = any(ls.impl == Impl.CMS_TEACH for ls in schedule.levels)
        self.frozen = schedule.target.frozen
        self._layer_of = dict(self.layers())  # layer key -> Layer (built once: _cms_step runs per segment)
        self._stages = {(layer.key, name): c for _, layer in self.layers() for name, c in layer.cms.items()}
        # the teaching stages' weight keys: leaves of every piece of a cut taught forward (nlc/lower/stitch.py)
        self._teach_keys = [self._layer_of[lk].k(n, p) for (lk, n), c in self._stages.items() if c.learns
                            for p in (Part.W_IN, Part.W_OUT)]
        if schedule.target.backend == Backend.COMPILE:
            self._compile_program()

    # ---- what the compiler decided, and where the spec came from
    @property
    def spec_name(self) -> str:
        return self.plan.name

    @property
    def config(self) -> dict:
        """The model's bound parameters (spec defaults with the overrides applied)."""
        return dict(self.plan.params)

    @property
    def spec_text(self) -> str | None:
        return self.source.text if self.source else None

    @property
    def spec_path(self) -> str | None:
        return self.source.path if self.source else None

    @property
    def overrides(self) -> dict:
        return dict(self.source.overrides) if self.source else {}

    @property
    def compilation(self):
        return self.source.compilation if self.source else None

    @property
    def spec_hash(self) -> str | None:
        return self.source.spec_hash(self.plan.name, self.config) if self.source else None

    @property
    def train_defaults(self) -> dict:
        """Training settings the spec gives: the optimizer level's lr and options (warmup, clip),
        and `steps`, `batch`, `seq_len` model parameters."""
        from nlc.train.defaults import SPEC_KEYS, SPEC_PARAMS
        opt = self.plan.optimizer
        out = {k: v for k, v in ((opt.options if opt else {}) | {"lr": (opt.args.get("lr") if opt else None)}).items()
               if k in SPEC_KEYS and v is not None}
        out.update({k: self.config[k] for k in SPEC_PARAMS if k in self.config})
        return out

    @property
    def backend(self) -> str:
        return str(self.schedule.target.backend)

    @property
    def checkpointing(self) -> bool:
        return self.schedule.target.checkpointing

    @property
    def seg(self) -> int | None:
        """The segment length (None: the whole sequence is one segment)."""
        return self.schedule.seg

    @property
    def clock_period(self) -> int:
        """Tokens after which the chunk schedule repeats (an exported step is exact at p + k * period)."""
        return self.schedule.period or 1

    def optimizer(self):
        """The outer optimizer of the spec's `params(...)` level (AdamW if the spec has none)."""
        from nlc.lower.outer import make_optimizer
        return make_optimizer(self.plan.optimizer, [p for p in self.parameters() if p.requires_grad])

    def emit(self, stage: str) -> str:
        """A printable artifact of the lowering: `schedule`, `plan` (alias), `py` or `fx` (the traced
        program of one segment of the first layer)."""
        from nlc.lower.emit import emit
        return emit(self, stage)

    def layers(self):
        for b in self.plan.blocks:
            for i, layer in enumerate(self.blocks[b.name]):
                yield f"{b.name}.{i}", layer

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        """The fast state of `batch_size` fresh sequences, in the schedule's layout."""
        device = device or self.embed.weight.device
        dtype = dtype or self.embed.weight.dtype
        layers = self._layer_of
        st = {}
        for sl in self.schedule.state:
            if sl.part == Part.POS:
                st[sl.key] = torch.zeros(batch_size, dtype=torch.long, device=device)
            else:
                st[sl.key] = layers[sl.layer].initial(sl, batch_size, device, dtype)
        return st

    def forward(self, tokens=None, state=None, targets=None, embeddings=None) -> ModelOutput:
        x_all = self.embed(tokens) if embeddings is None else embeddings
        B, T, _ = x_all.shape
        st = dict(state) if state is not None else self.init_state(B, x_all.device, x_all.dtype)
        pos0 = int(st["pos"][0]) if st["pos"].numel() else 0
        stats: dict = {}
        segments = self.schedule.segments(pos0, T)
        if self._layer_major():
            return self._forward_layer_major(x_all, st, segments, targets, stats)
        logits, losses = [], []
        learn_cms = self.cms_learns and targets is not None
        leaves: dict | None = {} if learn_cms else None
        teach = {"losses": [], "born": {}}  # segment losses, and the segment each teaching leaf was made in
        tape = Tape(x_all, self.parameters(), self._teach_keys) if learn_cms and self.schedule.target.cut_teaching else None
        # split once, not sliced per segment: a slice's backward is a zero tensor of the whole input
        xs = x_all.split([e - s for s, e, _ in segments], 1) if tape is None else None
        with torch.enable_grad() if learn_cms else _null():
            for i, (s, e, edges) in enumerate(segments):
                # cut: the segment starts from leaves, so every autograd pass is bounded by one segment
                x = tape.begin(st, s, e) if tape is not None else xs[i]
                for _, layer in self.layers():
                    x = self._segment(layer, x, st, edges, leaves, stats)
                lg = self.head(self.norm(x))
                logits.append(lg)
                if targets is not None:
                    tok_loss = _token_loss(lg, targets[:, s:e])
                    losses.append(tok_loss)
                    if learn_cms:
                        teach["losses"].append(tok_loss.sum())
                        if tape is not None:
                            tape.end(lg, tok_loss)
                        self._cms_step(st, leaves, teach, edges, last=e == T, tape=tape)
        if tape is not None:  # outside enable_grad: the caller's grad mode decides if the outputs have a graph
            loss, logits, st = tape.stitch(st)
            return self._finish(logits, st, loss, stats, len(segments))
        loss = torch.cat(losses).mean() if losses else None
        return self._finish(torch.cat(logits, 1), st, loss, stats, len(segments))

    def _finish(self, logits, st, loss, stats, nseg) -> ModelOutput:
        """Advance the position, detach the state where asked, average the per-segment surprise."""
        st["pos"] = st["pos"] + logits.shape[1]
        if self.detach_state_output:
            st = {k: v.detach() for k, v in st.items()}
        return ModelOutput(logits=logits, state=st, loss=loss,
                           stats={k: (v / nseg if "surprise" in k else v) for k, v in stats.items()})

    def _layer_major(self) -> bool:
        # decided by the schedule; CMS stages that do not learn in this call (no targets) still run
        # segment-major, so a call with and without targets takes the same path through a layer
        return self.schedule.order == Order.LAYER_MAJOR

    def _forward_layer_major(self, x, st, segments, targets, stats):
        for _, layer in self.layers():
            ls, lstats = layer.local(st), {}
            x = layer.run(x, ls, segments, lstats)
            layer.store(st, ls, lstats, stats)
        logits = self.head(self.norm(x))
        loss = _token_loss(logits, targets).mean() if targets is not None else None
        return self._finish(logits, st, loss, stats, len(segments))

    def _segment(self, layer, x, st, edges, leaves, stats):
        starts, ends = layer.edge_names(edges)
        if leaves is not None:
            # the CMS teaching signal differentiates w.r.t. each stage's chunk-start weight tensors
            # (all their uses in the chunk derive from them); kept here, outside any compiled program
            for name, c in layer.cms.items():
                if c.learns and (layer.key, name) not in leaves:
                    ki, ko = layer.k(name, Part.W_IN), layer.k(name, Part.W_OUT)
                    st[ki], st[ko] = _grad_target(st[ki]), _grad_target(st[ko])
                    leaves[(layer.key, name)] = (st[ki], st[ko])
        ls, lstats = layer.local(st), {}
        checkpointed = self.checkpointing and torch.is_grad_enabled()
        if self._program is not None:
            fn = functools.partial(self._run_program, layer, self._end_flags(layer, edges, x.device))
        elif checkpointed:
            fn = functools.partial(layer.program, ends=ends, starts=starts)
        else:  # eager: `ls` is already this call's own dict, the segment may write it in place
            fn = None
            x = layer.segment(x, ls, starts, ends, lstats)
        if fn is not None:
            x, ls, lstats = self._checkpointed(fn, x, ls) if checkpointed else fn(x, ls)
        layer.store(st, ls, lstats, stats)
        return x

    @staticmethod
    def _checkpointed(fn, x, ls):
        """Activation checkpointing per segment: keep only the segment's inputs and outputs (fast
        state included); recompute its inside during backward. Training memory then grows with T
        (the carried states), not with the activations of every chunk's update."""
        from torch.utils.checkpoint import checkpoint
        skeys = sorted(ls)
        meta = {}

        def pure(x, *flat):
            out, s, local = fn(x, dict(zip(skeys, flat)))
            meta["out"], meta["stats"] = sorted(s), sorted(local)
            return (out, *[s[k] for k in meta["out"]],
                    *[torch.as_tensor(local[k], dtype=x.dtype, device=x.device) for k in meta["stats"]])

        res = checkpoint(pure, x, *[ls[k] for k in skeys], use_reentrant=False)
        n = len(meta["out"])
        return res[0], dict(zip(meta["out"], res[1:1 + n])), dict(zip(meta["stats"], res[1 + n:]))

    def _run_program(self, layer, flags, x, ls):
        """One segment through the compiled program. Its inputs are normalised so that one graph serves
        every call: contiguous (a slice of the input, an expanded initial state and a computed one
        would each be a variant), no two inputs the same tensor, all requiring grad or none (the
        first segment's zero state does not, later ones do); the chunk ends are 0-dim tensors."""
        seen, norm = set(), {}
        for k, v in ls.items():
            if torch.is_tensor(v) and v.is_floating_point():
                t = v.clone() if id(v) in seen else v.contiguous()  # the second key of one tensor: a copy
                seen.add(id(v))
                v = _uniform(t)
            norm[k] = v
        return self._program(layer, _uniform(x.contiguous()), norm, flags)

    def _end_flags(self, layer, edges, device):
        """{memory level: 0-dim bool tensor}: does its chunk end with this segment (cached per pattern)."""
        key = (layer.block.name, edges, device)
        out = self._flags.get(key)
        if out is None:
            _, ends = layer.edge_names(edges)
            out = self._flags[key] = {n: torch.tensor(n in ends, device=device) for n in layer.mems}
        return out

    def _compile_program(self, **kw):
        """torch.compile the segment program once for the model (fullgraph: no graph break allowed).
        Every layer runs it on its local state, so layers of one block share a graph; the edge pattern
        is data (`_end_flags`), so it does not multiply the graphs. Dynamo still specialises per block,
        per grad mode and for the first segment (state not yet requiring grad) and partial segments."""
        import torch._dynamo
        n = max(64, 4 * (len(self.plan.blocks) + 2))
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, n)
        if self.cms_learns:
            # CMS teaching signals backprop through a segment's graph more than once (retain_graph)
            import torch._functorch.config as fc
            fc.donated_buffer = False
        self._program = torch.compile(Layer.program, fullgraph=True, **kw)
        return self

    def _cms_step(self, st, leaves, teach, edges, last, tape=None):
        """Task-loss teaching signal for CMS stages (NL eq. 71): a stage's update at its boundary is
        the gradient of the loss of its chunk's tokens w.r.t. its chunk-start weights (first order).

        `leaves[(layer, stage)]` are those weight tensors, taken at the chunk start; every use in the
        chunk derives from them, so one autograd pass over the summed losses since the chunk began
        gives the sum of the per-token gradients. Stages ending here share one pass, over the losses
        since the oldest one's chunk began (earlier losses do not reach younger weights). A stage that
        a nested reset restarts mid-chunk, and every stage at the end of a call, is flushed into its g
        accumulators first, so the update is the same however the stream is split. With a `tape`
        (a cut forward) the same gradient is taken by walking its pieces back to the oldest chunk start."""
        i = len(teach["losses"]) - 1
        born = teach["born"]
        for k in leaves:
            born.setdefault(k, i)
        layers = self._layer_of
        boundary = [k for k in leaves if (layers[k[0]].block.name, k[1]) in edges.ends]
        reset = {(k[0], r) for k in boundary for r in self.schedule.nested.get((layers[k[0]].block.name, k[1]), ())}
        due = list(leaves) if last else [k for k in leaves if k in boundary or k in reset]
        if due:
            first = min(born[k] for k in due)
            if tape is not None:  # the chunk-start weights are the leaves of the piece they were taken in
                grads = tape.teach(first, [(born[k], layers[k[0]].k(k[1], p)) for k in due for p in (Part.W_IN, Part.W_OUT)])
            else:
                loss = teach["losses"][i] if first == i else torch.stack(teach["losses"][first:]).sum()
                flat = [t for k in due for t in leaves[k]]
                grads = torch.autograd.grad(loss, flat, retain_graph=True, allow_unused=True)
            for j, (lk, name) in enumerate(due):
                for part, g in zip((Part.G_IN, Part.G_OUT), grads[2 * j:2 * j + 2]):
                    if g is not None:
                        gk = layers[lk].k(name, part)
                        st[gk] = st[gk] + g.detach()
        for lk, name in boundary:
            layer = layers[lk]
            lr = self._stages[(lk, name)].lv.gates["lr"].value
            for w, g in ((Part.W_IN, Part.G_IN), (Part.W_OUT, Part.G_OUT)):
                wk, gk = layer.k(name, w), layer.k(name, g)
                st[wk] = st[wk] - lr * st[gk]
                st[gk] = torch.zeros_like(st[gk])
        for lk, name in reset:
            # nested CMS (eq. 72): a slower stage completing its chunk restarts the faster stages of
            # its chain from their meta-learned initial state (the slower level owns their init)
            layer, c = layers[lk], self._stages[(lk, name)]
            B = st[layer.k(name, Part.W_IN)].shape[0]
            st[layer.k(name, Part.W_IN)] = c.w_in.unsqueeze(0).expand(B, -1, -1)
            st[layer.k(name, Part.W_OUT)] = c.w_out.unsqueeze(0).expand(B, -1, -1)
        for k in set(boundary) | reset:
            leaves.pop(k, None)  # the next segment takes the new weights as the teaching leaves
            born.pop(k, None)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
