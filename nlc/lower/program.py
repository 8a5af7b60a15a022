"""The lowered program: a ModelPlan as an nn.Module that runs segment by segment.

A forward pass walks the sequence in segments whose ends fall on every chunk boundary of
every token-clock level (segment length = gcd of the chunk sizes). In a segment, every
block runs its stream ops token-parallel, its levels are read at their chunk-start state,
then each level takes the segment's writes; at a level's chunk boundary its chunk-start
state moves on. The fast state (weights, momenta, conv and attention caches, position) is a
flat dict of batch-first tensors, so a sequence streamed in segments equals it at once.

mode="chunk": closed-form gradients and scans (nlc.lower.memory), segments of gcd length.
mode="reference": segments of one token and the literal per-token equations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from nlc.lower import memory as mem
from nlc.lower.attention import AttentionLevel
from nlc.lower.ops import ACTS, RMSNorm, apply_op, make_module


@dataclass
class ModelOutput:
    logits: torch.Tensor
    state: dict
    loss: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)


class CMSLevel(nn.Module):
    """One CMS stage: an MLP h -> W_out act(W_in h) (NL eq. 70), meta-learned initial weights."""

    def __init__(self, lv):
        super().__init__()
        self.lv = lv
        d, h = lv.dk, lv.hidden
        self.w_in = nn.Parameter(torch.randn(h, d) / math.sqrt(d))
        self.w_out = nn.Parameter(torch.zeros(d, h))  # zero: a fresh chain is the identity

    @property
    def learns(self):
        return self.lv.clock == "tokens" and self.lv.learns


class Layer(nn.Module):
    """One instance of a block (a repeated block has `repeat` of these)."""

    def __init__(self, block, dim: int):
        super().__init__()
        self.block = block
        widths = {"x": dim, **{op.name: op.width for op in block.ops}}
        self.mods = nn.ModuleDict()
        for op in block.ops:
            m = make_module(op, widths)
            if m is not None:
                self.mods[op.name] = m
        self.mems = nn.ModuleDict({lv.name: mem.MemoryLevel(lv, mem.keys_unit_norm(block, lv))
                                   for lv in block.levels if lv.role == "memory"})
        self.attns = nn.ModuleDict({lv.name: AttentionLevel(lv, dim) for lv in block.levels if lv.role == "attention"})
        self.cms = nn.ModuleDict({lv.name: CMSLevel(lv) for lv in block.levels if lv.role == "cms"})
        self.agg = nn.ParameterDict({op.name: nn.Parameter(torch.ones(len(op.attrs["levels"])) / len(op.attrs["levels"]))
                                     for op in block.ops if op.op == "cms" and op.attrs["variant"] == "independent"})

    # ---- fast state
    def init_state(self, st, key, B, device, dtype):
        for name, m in self.mems.items():
            ws = m.initial(B, device, dtype)
            for i, w in enumerate(ws):
                st[f"{key}.{name}.Wbar{i}"] = w
                st[f"{key}.{name}.W{i}"] = w
                if m.momentum:
                    st[f"{key}.{name}.S{i}"] = torch.zeros_like(w)
        for op in self.block.ops:
            if op.op == "conv":
                st[f"{key}.{op.name}.conv"] = torch.zeros(B, op.attrs["window"] - 1, op.width, device=device, dtype=dtype)
        for name, c in self.cms.items():
            st[f"{key}.{name}.w_in"] = c.w_in.unsqueeze(0).expand(B, -1, -1)
            st[f"{key}.{name}.w_out"] = c.w_out.unsqueeze(0).expand(B, -1, -1)
            if c.learns:
                st[f"{key}.{name}.g_in"] = torch.zeros(B, *c.w_in.shape, device=device, dtype=dtype)
                st[f"{key}.{name}.g_out"] = torch.zeros(B, *c.w_out.shape, device=device, dtype=dtype)

    # ---- the whole sequence, layer-major (no CMS teaching): hoist what does not need reads
    def _partition(self):
        """ops -> (before, loop, after): `before` needs no level read (runs on the whole sequence
        first); `loop` holds the reads and what the levels' writes or other reads need (runs per
        segment); `after` needs reads but only feeds the block output (whole sequence, last)."""
        if hasattr(self, "_parts"):
            return self._parts
        ops = self.block.ops
        reads = {op.name for op in ops if op.op == "read"}
        dep = {}
        for op in ops:
            dep[op.name] = op.name in reads or any(dep.get(i, False) for i in op.inputs)
        need = set()
        byname = {op.name: op for op in ops}

        def mark(name):
            if name in byname and dep[name] and name not in need:
                need.add(name)
                for i in byname[name].inputs:
                    mark(i)
        for op in ops:
            if op.name in reads:
                mark(op.name)
        for lv in self.block.levels:
            for sname in [lv.keys, lv.values, lv.context] + [g.stream for g in lv.gates.values()]:
                if sname:
                    mark(sname)
        self._parts = ([op for op in ops if not dep[op.name]], [op for op in ops if op.name in need],
                       [op for op in ops if dep[op.name] and op.name not in need])
        return self._parts

    def edges(self, start: int, end: int):
        """The token-clock levels whose chunk starts at `start` / ends at `end` (absolute positions)."""
        tok = [lv for lv in self.block.levels if lv.clock == "tokens"]
        return (frozenset(lv.name for lv in tok if start % lv.chunk == 0),
                frozenset(lv.name for lv in tok if end % lv.chunk == 0))

    def _run_op(self, op, v, st, key):
        ins = [v[i] for i in op.inputs]
        x = v["x"]
        if op.op == "const":
            return torch.full((x.shape[0], x.shape[1], 1), float(op.attrs["value"]), dtype=x.dtype, device=x.device)
        if op.op == "conv":
            out, st[f"{key}.{op.name}.conv"] = self.mods[op.name](ins[0], st[f"{key}.{op.name}.conv"])
            return out
        if op.op == "read":
            return self._read(op, ins, st, key)
        if op.op == "cms":
            return self._cms(op, ins[0], st, key)
        return apply_op(op, self.mods[op.name] if op.name in self.mods else None, ins)

    def run(self, x, st, key, pos0, bounds, stats):
        before, loop, after = self._partition()
        full = {"x": x}
        for op in before:
            full[op.name] = self._run_op(op, full, st, key)
        pieces = {op.name: [] for op in loop}
        for s, e in bounds:
            v = {name: t[:, s:e] for name, t in full.items()}
            for op in loop:
                v[op.name] = self._run_op(op, v, st, key)
                pieces[op.name].append(v[op.name])
            starts, ends = self.edges(pos0 + s, pos0 + e)
            for name, m in self.mems.items():
                self._write(m, v, st, f"{key}.{name}", name in ends, e - s, "chunk", stats, at_start=name in starts)
        for name, ps in pieces.items():
            full[name] = torch.cat(ps, 1)
        for op in after:
            full[op.name] = self._run_op(op, full, st, key)
        return full[self.block.out]

    # ---- one segment
    def segment(self, x, st, key, ends, mode, stats, starts=frozenset()):
        n = x.shape[1]
        v = {"x": x}
        for op in self.block.ops:
            v[op.name] = self._run_op(op, v, st, key)
        for name, m in self.mems.items():
            self._write(m, v, st, f"{key}.{name}", name in ends, n, mode, stats, at_start=name in starts)
        return v[self.block.out]

    def _read(self, op, ins, st, key):
        name, q = op.attrs["level"], ins[0]
        if name in self.attns:
            ctx = ins[1] if len(ins) > 1 else None  # MAC: the memory tokens join the keys
            return self.attns[name](q, ctx, st, f"{key}.{name}")
        m = self.mems[name]
        Wbar = [st[f"{key}.{name}.Wbar{i}"] for i in range(len(mem.layer_shapes(m.lv)))]
        return mem.read(m.lv, Wbar, q)

    def _write(self, m, v, st, key, at_end, n, mode, stats, at_start=False):
        lv = m.lv
        if lv.clock != "tokens" or not lv.learns:
            return  # frozen (by its clock or by `freeze`) or outer-clock levels do not learn in context
        L = len(mem.layer_shapes(lv))
        Wbar = [st[f"{key}.Wbar{i}"] for i in range(L)]
        Ws = [st[f"{key}.W{i}"] for i in range(L)]
        Ss = [st[f"{key}.S{i}"] for i in range(L)] if m.momentum else None
        B = Ws[0].shape[0]
        k, val = mem.split_heads(v[lv.keys], lv.heads), mem.split_heads(v[lv.values], lv.heads)
        theta, alpha = m.gate("lr", v, B, n, k), m.gate("decay", v, B, n, k)
        eta = m.gate("momentum", v, B, n, k) if m.momentum else None
        if getattr(m, "kernel", None) and at_start:
            from nlc.lower.triton_plan import fused_write
            Ws, Ss = fused_write(lv, m.kernel, Ws, Ss, k, val, theta, alpha, eta)
            surprise = mem.objective_value(lv, mem.forward_layers(lv, Wbar, k)[0], val).detach()
        elif mode == "reference":
            surprise = 0.0
            for t in range(n):
                Ws, Ss, loss = mem.reference_token(lv, Wbar, Ws, Ss, k[:, :, t], val[:, :, t], theta[..., t],
                                                   alpha[..., t], eta[..., t] if eta is not None else None)
                surprise = surprise + loss
        else:
            u, surprise = mem.closed_form_grads(lv, Wbar, k, val)
            upd = mem.dgd_update if lv.rule == "dgd" else mem.chunk_update
            Ws, Ss = upd(lv, Ws, Ss, u, theta, alpha, eta)
        for i in range(L):
            st[f"{key}.W{i}"] = Ws[i]
            if Ss is not None:
                st[f"{key}.S{i}"] = Ss[i]
        _acc(stats, f"{key}/surprise", surprise / (B * n))
        if at_end:  # chunk boundary: the chunk-start state moves on
            _acc(stats, f"{key}/update_norm", sum((w - wb).detach().norm() for w, wb in zip(Ws, Wbar)) / B)
            for i in range(L):
                st[f"{key}.Wbar{i}"] = Ws[i]

    def _cms(self, op, x, st, key):
        names, variant = op.attrs["levels"], op.attrs["variant"]
        h, outs = x, []
        for i, name in enumerate(names):
            c = self.cms[name]
            w_in, w_out = st[f"{key}.{name}.w_in"], st[f"{key}.{name}.w_out"]
            inp = x if variant == "independent" else h
            y = ACTS[c.lv.memory.act](inp @ w_in.transpose(-1, -2)) @ w_out.transpose(-1, -2)
            outs.append(y)
            h = h + y
        if variant == "independent":
            return sum(w * y for w, y in zip(self.agg[op.name], outs))
        return h - x


def learning_levels(plan) -> list[str]:
    """Names of the levels that learn in context (memories and CMS stages on a token clock), in plan order."""
    return list(dict.fromkeys(lv.name for _, lv in plan.all_levels()
                              if lv.role in ("memory", "cms") and lv.clock == "tokens"))


def freeze_plan(plan, freeze):
    """The plan with in-context learning switched off (`LevelPlan.learns = False`) for the levels named
    in `freeze`: a name, a comma-separated string or a list of names; "inner" names every level that
    learns in context (`learning_levels`). A frozen level keeps its initial state (the meta-learned
    one): its reads see M_0, it takes no writes; parameters and state layout are unchanged."""
    from nlc.errors import NlcError
    if freeze is None:
        return plan
    names = [s.strip() for s in (freeze.split(",") if isinstance(freeze, str) else freeze) if s and s.strip()]
    learning = learning_levels(plan)
    every = {lv.name: lv for _, lv in plan.all_levels()}
    want = set()
    for n in names:
        if n == "inner":
            want.update(learning)
        elif n not in every:
            raise NlcError(f"freeze: no level '{n}' in model {plan.name}",
                           hint=f"levels that learn in context: {', '.join(learning) or 'none'} (or 'inner' for all)")
        elif n not in learning:
            raise NlcError(f"freeze: level '{n}' does not learn in context (role {every[n].role}, clock {every[n].clock})",
                           hint=f"levels that learn in context: {', '.join(learning) or 'none'}")
        else:
            want.add(n)
    blocks = [b.model_copy(update={"levels": [lv.model_copy(update={"learns": False}) if lv.name in want else lv
                                              for lv in b.levels]}) for b in plan.blocks]
    return plan.model_copy(update={"blocks": blocks})


def _grad_target(t):
    """`t` itself when torch.autograd.grad can differentiate w.r.t. it (a node of the graph, or a
    leaf); else a detached leaf copy. Frozen weights do not require grad, and a view of a parameter
    made under no_grad (the state at the start of `nlc generate`) requires grad yet is in no graph:
    autograd.grad would answer None for it."""
    if t.requires_grad and (t.grad_fn is not None or t._base is None):
        return t
    return t.detach().requires_grad_()


def _token_loss(logits, targets):
    """Per-token cross-entropy (B*n,); low-precision logits are scored in fp32."""
    lf = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return F.cross_entropy(lf.flatten(0, 1), targets.flatten(), reduction="none")


def _acc(stats, k, val):
    stats[k] = stats.get(k, 0.0) + (val.detach() if torch.is_tensor(val) else val)


class NLModel(nn.Module):
    """A compiled .nl model: embedding -> blocks -> norm -> head; fast state per sequence."""

    def __init__(self, plan, mode: str = "chunk", checkpointing: bool = False):
        super().__init__()
        self.plan, self.mode, self.checkpointing = plan, mode, checkpointing
        self.embed = nn.Embedding(plan.vocab, plan.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleDict({b.name: nn.ModuleList(Layer(b, plan.dim) for _ in range(b.repeat)) for b in plan.blocks})
        self.norm = RMSNorm(plan.dim)
        self.head = nn.Linear(plan.dim, plan.vocab, bias=False)
        chunks = [lv.chunk for _, lv in plan.all_levels() if lv.clock == "tokens" and lv.role != "attention"]
        self.seg = 1 if mode == "reference" else (math.gcd(*chunks) if chunks else 1 << 30)
        self._compiled = None
        self.detach_state_output = False  # set under DDP (nlc.train.distributed)
        self.cms_learns = any(lv.role == "cms" and lv.clock == "tokens" and lv.learns for _, lv in plan.all_levels())
        self.frozen = frozenset(lv.name for _, lv in plan.all_levels() if not lv.learns)

    def with_freeze(self, freeze) -> "NLModel":
        """A copy of this program with `freeze` (level names, or "inner") frozen in context, sharing
        nothing: a new program from `freeze_plan(self.plan, freeze)` with this one's weights (same
        state_dict layout). Used to measure what in-context learning buys (the in-context gain)."""
        m = NLModel(freeze_plan(self.plan, freeze), mode=self.mode, checkpointing=self.checkpointing)
        m.load_state_dict(self.state_dict())
        p = next(iter(self.parameters()), None)
        if p is not None:
            m.to(p.device)
        for k in ("backend", "spec_name", "spec_text", "spec_path", "config", "overrides", "spec_hash",
                  "compilation", "train_defaults", "tokenizer"):  # what nlc.api.compile / load attach
            if k in self.__dict__:
                setattr(m, k, self.__dict__[k])
        m.train(self.training)
        return m

    def layers(self):
        for b in self.plan.blocks:
            for i, layer in enumerate(self.blocks[b.name]):
                yield f"{b.name}.{i}", layer

    def init_state(self, batch_size: int, device=None, dtype=None) -> dict:
        device = device or self.embed.weight.device
        dtype = dtype or self.embed.weight.dtype
        st = {"pos": torch.zeros(batch_size, dtype=torch.long, device=device)}
        for key, layer in self.layers():
            layer.init_state(st, key, batch_size, device, dtype)
        return st

    def forward(self, tokens=None, state=None, targets=None, embeddings=None) -> ModelOutput:
        x_all = self.embed(tokens) if embeddings is None else embeddings
        B, T, _ = x_all.shape
        st = dict(state) if state is not None else self.init_state(B, x_all.device, x_all.dtype)
        pos0 = int(st["pos"][0]) if st["pos"].numel() else 0
        stats: dict = {}
        logits, losses = [], []
        learn_cms = self.cms_learns and targets is not None
        leaves: dict | None = {} if learn_cms else None
        teach = {"losses": [], "born": {}}  # segment losses, and the segment each teaching leaf was made in
        s, bounds = 0, []
        while s < T:  # segment ends: every chunk boundary of every token-clock level
            e = min(T, s + self.seg - (pos0 + s) % self.seg) if self.seg < (1 << 30) else T
            bounds.append((s, e))
            s = e
        if self._layer_major():
            return self._forward_layer_major(x_all, st, pos0, bounds, targets, stats)
        with torch.enable_grad() if learn_cms else _null():
            for s, e in bounds:
                pos = pos0 + s
                x = x_all[:, s:e]
                for key, layer in self.layers():
                    x = self._segment(layer, x, st, key, pos, e - s, leaves, stats)
                lg = self.head(self.norm(x))
                logits.append(lg)
                if targets is not None:
                    tok_loss = _token_loss(lg, targets[:, s:e])
                    losses.append(tok_loss)
                    if learn_cms:
                        teach["losses"].append(tok_loss.sum())
                        self._cms_step(st, leaves, teach, pos + (e - s), last=e == T)
        loss = torch.cat(losses).mean() if losses else None
        return self._finish(torch.cat(logits, 1), st, loss, stats, len(bounds))

    def _finish(self, logits, st, loss, stats, nseg) -> ModelOutput:
        """Advance the position, detach the state where asked, average the per-segment surprise."""
        st["pos"] = st["pos"] + logits.shape[1]
        if self.detach_state_output:
            st = {k: v.detach() for k, v in st.items()}
        return ModelOutput(logits=logits, state=st, loss=loss,
                           stats={k: (v / nseg if "surprise" in k else v) for k, v in stats.items()})

    def _layer_major(self) -> bool:
        # without CMS teaching signals (which need every layer's output for a segment's loss),
        # the chunk program can run layer by layer, hoisting read-independent ops out of the loop
        return self.mode == "chunk" and not self.cms_learns and not self.checkpointing and not self._compiled

    def _forward_layer_major(self, x, st, pos0, bounds, targets, stats):
        for key, layer in self.layers():
            x = layer.run(x, st, key, pos0, bounds, stats)
        logits = self.head(self.norm(x))
        loss = _token_loss(logits, targets).mean() if targets is not None else None
        return self._finish(logits, st, loss, stats, len(bounds))

    def _segment(self, layer, x, st, key, pos, n, leaves, stats):
        # which levels reach a chunk boundary at the end of this segment (decided here, in
        # Python, so the compiled segment program sees plain flags, not positions)
        starts, ends = layer.edges(pos, pos + n)
        if leaves is not None:
            # the CMS teaching signal differentiates w.r.t. each stage's chunk-start weight tensors
            # (all their uses in the chunk derive from them); kept here, outside any compiled program
            for name, c in layer.cms.items():
                k = f"{key}.{name}"
                if c.learns and k not in leaves:
                    for part in (".w_in", ".w_out"):
                        st[k + part] = _grad_target(st[k + part])
                    leaves[k] = (st[k + ".w_in"], st[k + ".w_out"])
        fn = self._compiled.get(id(layer), layer.segment) if self._compiled else layer.segment
        if self.checkpointing and torch.is_grad_enabled():
            return self._checkpointed(fn, x, st, key, ends, stats, starts)
        return fn(x, st, key, ends, self.mode, stats, starts)

    def _checkpointed(self, fn, x, st, key, ends, stats, starts):
        """Activation checkpointing per segment: keep only the segment's inputs and outputs (fast
        state included); recompute its inside during backward. Training memory then grows with T
        (the carried states), not with the activations of every chunk's update."""
        from torch.utils.checkpoint import checkpoint
        skeys = sorted(k for k in st if k.startswith(key + "."))
        meta = {}

        def pure(x, *flat):
            s = dict(zip(skeys, flat))
            local = {}
            out = fn(x, s, key, ends, self.mode, local, starts)
            meta["out"], meta["stats"] = sorted(s), sorted(local)
            return (out, *[s[k] for k in meta["out"]],
                    *[torch.as_tensor(local[k], dtype=x.dtype, device=x.device) for k in meta["stats"]])

        res = checkpoint(pure, x, *[st[k] for k in skeys], use_reentrant=False)
        n = len(meta["out"])
        st.update(zip(meta["out"], res[1:1 + n]))
        for k, v in zip(meta["stats"], res[1 + n:]):
            _acc(stats, k, v)
        return res[0]

    def compile_segments(self, **kw):
        """torch.compile each block's segment program (fullgraph: no graph break allowed)."""
        import torch._dynamo
        # one program per pattern of chunk ends/starts in a segment (a handful per block)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        if self.cms_learns:
            # CMS teaching signals backprop through a segment's graph more than once (retain_graph)
            import torch._functorch.config as fc
            fc.donated_buffer = False
        self._compiled = {id(layer): torch.compile(layer.segment, fullgraph=True, **kw) for _, layer in self.layers()}
        return self

    def _cms_step(self, st, leaves, teach, end, last):
        """Task-loss teaching signal for CMS stages (NL eq. 71): a stage's update at its boundary is
        the gradient of the loss of its chunk's tokens w.r.t. its chunk-start weights (first order).

        `leaves[k]` are those weight tensors, taken at the chunk start; every use in the chunk derives
        from them, so one autograd pass over the summed losses since the chunk began gives the sum of
        the per-token gradients. Stages ending here share one pass, over the losses since the oldest
        one's chunk began (earlier losses do not reach younger weights). A stage that a nested reset
        restarts mid-chunk, and every stage at the end of a call, is flushed into its g accumulators
        first, so the update is the same however the stream is split."""
        i = len(teach["losses"]) - 1
        born = teach["born"]
        for k in leaves:
            born.setdefault(k, i)
        stages = self._cms_stages()
        boundary = [k for k in leaves if end % stages[k].lv.chunk == 0]
        reset = {r for k in boundary for r in self._nested_targets(k)}
        due = list(leaves) if last else [k for k in leaves if k in boundary or k in reset]
        if due:
            first = min(born[k] for k in due)
            loss = teach["losses"][i] if first == i else torch.stack(teach["losses"][first:]).sum()
            flat = [t for k in due for t in leaves[k]]
            grads = torch.autograd.grad(loss, flat, retain_graph=True, allow_unused=True)
            for j, k in enumerate(due):
                for part, g in zip((".g_in", ".g_out"), grads[2 * j:2 * j + 2]):
                    if g is not None:
                        st[k + part] = st[k + part] + g.detach()
        for k in boundary:
            lr = stages[k].lv.gates["lr"].value
            for w, g in ((".w_in", ".g_in"), (".w_out", ".g_out")):
                st[k + w] = st[k + w] - lr * st[k + g]
                st[k + g] = torch.zeros_like(st[k + g])
        for k in reset:
            # nested CMS (eq. 72): a slower stage completing its chunk restarts the faster stages of
            # its chain from their meta-learned initial state (the slower level owns their init)
            c, B = stages[k], st[k + ".w_in"].shape[0]
            st[k + ".w_in"] = c.w_in.unsqueeze(0).expand(B, -1, -1)
            st[k + ".w_out"] = c.w_out.unsqueeze(0).expand(B, -1, -1)
        for k in set(boundary) | reset:
            leaves.pop(k, None)  # the next segment takes the new weights as the teaching leaves
            born.pop(k, None)

    def _cms_stages(self) -> dict:
        if not hasattr(self, "_stages"):  # built once: the layers do not change after construction
            self._stages = {f"{key}.{name}": c for key, layer in self.layers() for name, c in layer.cms.items()}
        return self._stages

    def _nested_targets(self, k) -> list:
        """The learning stages a nested chain restarts when stage `k` completes its chunk: the faster
        ones of every nested `cms` op that holds it."""
        key, name = k.rsplit(".", 1)
        layer = dict(self.layers())[key]
        slow = layer.cms[name].lv.chunk
        return [f"{key}.{other}" for op in layer.block.ops
                if op.op == "cms" and op.attrs["variant"] == "nested" and name in op.attrs["levels"]
                for other in op.attrs["levels"] if layer.cms[other].learns and layer.cms[other].lv.chunk < slow]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
