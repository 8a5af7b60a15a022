"""A taught forward cut into pieces: every autograd pass bounded by one segment.

Why. With CMS teaching (NL eq. 71), the forward takes a gradient of the task loss at every CMS
chunk end (`NLModel._cms_step`). `torch.autograd.grad` first walks the *whole* graph reachable
from its outputs, and the carried fast state chains every segment to the start of the sequence:
each call cost O(t), the step O(T^2) (docs/performance.md).

How. At each segment start, `Tape.begin` replaces every state tensor that requires grad (and the
teaching stages' weights) by a detached leaf, and records (original, leaf): a segment's graph then
stops at its own leaves, the parameters and its slice of the input. Gradients that crossed a
boundary inside one graph are carried across it by hand, walking the pieces in reverse:
    the teaching gradient (`Tape.teach`): from the current piece back to the chunk start, each
        step one `autograd.grad` of (the piece's loss, its end state) w.r.t. its start leaves;
    the outer gradient (`Stitch`): loss, logits and final state leave the forward through one
        autograd.Function whose inputs are the external tensors (the input embeddings, the initial
        state, the parameters); its backward walks every piece once, from the last, with the
        incoming gradients of loss, logits and state, and returns the external tensors' gradients.
Both `loss.backward()` and `torch.autograd.grad(loss, params)` see exactly the gradients of the
uncut graph (tests/lower/test_stitch.py compares the two paths in float64).

A CMS chunk may span calls (a stream fed in parts, the state passed on with its graph): the
chunk-start weights are then the earlier call's output, used in that call too, and the teaching
walk goes on into the earlier call's pieces (`_earlier`), as the uncut graph over both calls would.

Limits. No double backward (`create_graph=True` raises an NlcError: the pieces are walked with
plain `autograd.grad`). The graph's tensors are held as the Function's saved tensors, so the
graph is freed after a backward unless `retain_graph=True`, as an uncut graph is; saved-tensor
hooks (`torch.autograd.graph.saved_tensors_hooks`) around the forward are not supported. A chunk
spanning calls needs the state passed on as returned (or detached): a state changed in between
(still in the graph) cannot be followed into the earlier call, and raises an NlcError. Under
`no_grad` a taught forward returns detached outputs (the uncut one returns a state with a graph).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nlc.errors import NlcError


@dataclass
class Piece:
    """One segment [s, e) of the call: its leaves and where they came from."""
    s: int
    e: int
    leaves: dict = field(default_factory=dict)   # state key -> detached leaf at the segment start
    origins: dict = field(default_factory=dict)  # state key -> the tensor it replaced (those with a history)
    same: frozenset = frozenset()                # keys whose origin is the previous piece's own (unchanged) input
    inputs: dict = field(default_factory=dict)   # state key -> what the segment reads: a view of its leaf
    x: torch.Tensor | None = None                # the segment's input, a leaf (when the input requires grad)
    logits: torch.Tensor | None = None
    tok_loss: torch.Tensor | None = None          # (B*n,) per-token losses


def has_history(t) -> bool:
    """Gradients can flow into `t`: it requires grad and is a node or a leaf (not a view made under
    no_grad, which requires grad yet is in no graph; nlc/lower/program.py: _grad_target)."""
    return torch.is_tensor(t) and t.requires_grad and (t.grad_fn is not None or t._base is None)


def _stitch_node(t):
    """The Stitch backward node (its ctx) that produced `t`, if `t` is an output of an earlier cut call."""
    f = t.grad_fn if torch.is_tensor(t) else None
    return f if isinstance(f, Stitch._backward_cls) else None


class Tape:
    """The pieces of one taught forward. `keep`: state keys made leaves even when they do not require
    grad (the teaching stages' weights: the teaching gradient is taken w.r.t. them)."""

    def __init__(self, x_all, params, keep):
        self.x_all, self.keep = x_all, frozenset(keep)
        self.params = [p for p in params if p.requires_grad]
        self.pieces: list[Piece] = []

    def begin(self, st: dict, s: int, e: int) -> torch.Tensor:
        """Start the piece of segment [s, e): cut `st` in place; returns the segment's input."""
        p, prev = Piece(s, e), (self.pieces[-1].inputs if self.pieces else {})
        same = []
        for k, t in st.items():
            if torch.is_tensor(t) and t.is_floating_point() and (t.requires_grad or k in self.keep):
                if has_history(t):
                    p.origins[k] = t
                    if prev.get(k) is t:
                        same.append(k)
                p.leaves[k] = t.detach().requires_grad_()
                # the segment reads a view, not the leaf: module hooks on inputs (FlopCounterMode's
                # ModuleTracker) cannot take a leaf while autograd.grad runs
                st[k] = p.inputs[k] = p.leaves[k].view_as(t)
        p.same = frozenset(same)
        x = self.x_all[:, s:e]
        if x.requires_grad:
            # a leaf per piece: a gradient w.r.t. the whole input would be (B, T, d) per piece (O(T^2))
            p.x = x.detach().requires_grad_()
            x = p.x.view_as(p.x)
        self.pieces.append(p)
        return x

    def end(self, logits, tok_loss):
        self.pieces[-1].logits, self.pieces[-1].tok_loss = logits, tok_loss

    def teach(self, first: int, wanted: list) -> list:
        """The gradient of the summed losses of pieces first..now w.r.t. each (piece, key) leaf in
        `wanted` (a leaf of a piece >= first): the reverse walk, each pass bounded by one piece.

        A stage whose chunk began in an earlier call that streamed its state here unchanged has as
        chunk-start weights that call's output itself, used in that call too: the walk goes on into
        the earlier call's pieces (`_earlier`), as one uncut graph over both calls would."""
        out = [None] * len(wanted)
        p0 = self.pieces[0]
        chain = {k: i for i, (j, k) in enumerate(wanted) if j == 0 and _stitch_node(p0.origins.get(k)) is not None}
        carried: dict = {}  # key -> gradient w.r.t. the state at the end of piece j
        for j in range(len(self.pieces) - 1, first - 1, -1):
            p = self.pieces[j]
            outs, gouts = [p.tok_loss.sum()], [None]
            if carried:
                end = self.pieces[j + 1].origins
                outs += [end[k] for k in carried]
                gouts += list(carried.values())
            here = [i for i, (pj, _) in enumerate(wanted) if pj == j]
            back = list(p.origins) if j > first or chain else []  # carried on to the piece (or call) before
            keys = list(dict.fromkeys([wanted[i][1] for i in here] + back))
            if not keys:
                break  # nothing before this piece can reach the wanted leaves
            grads = dict(zip(keys, torch.autograd.grad(outs, [p.leaves[k] for k in keys], gouts,
                                                       retain_graph=True, allow_unused=True)))
            for i in here:
                out[i] = grads[wanted[i][1]]
            carried = {k: grads[k] for k in back if grads[k] is not None}
        if chain:
            _earlier(p0.origins, carried, chain, out)
        return out

    def stitch(self, st: dict):
        """(loss, logits, state) as the outputs of `Stitch` (the outer gradient walks the pieces);
        detached values when grad mode is off or nothing outside the pieces requires grad."""
        init = self.pieces[0].origins
        external = ([self.x_all] if self.x_all.requires_grad else []) + list(init.values()) + self.params
        if not external or not torch.is_grad_enabled():
            logits = torch.cat([p.logits.detach() for p in self.pieces], 1)
            loss = torch.cat([p.tok_loss.detach() for p in self.pieces]).mean()
            return loss, logits, {k: (t.detach() if torch.is_tensor(t) else t) for k, t in st.items()}
        out_keys = [k for k, t in st.items() if has_history(t)]
        res = Stitch.apply(_Walk(self, list(init), out_keys, st), *external)
        st = dict(st)
        st.update(zip(out_keys, res[2:]))
        return res[0], res[1], st


def _earlier(origins: dict, carried: dict, chain: dict, out: list):
    """Continue a teaching walk into the earlier call that produced `origins` (the state a call
    started from): `carried` are the gradients w.r.t. them, `chain` the stages (key -> index in
    `out`) whose chunk-start weights are that call's outputs. Recursive over calls."""
    node = _stitch_node(origins[next(iter(chain))])
    walk = node.walk
    c, alive = {}, {}
    for k, g in carried.items():
        o = origins[k]
        if o.grad_fn is None:
            continue  # a leaf given by the caller: no history before it
        if o.grad_fn is not node:
            raise NlcError("a CMS stage's chunk spans calls, but the state passed to this call is not the previous "
                           "call's output as it was (changed, or mixed from several calls)",
                           hint="pass the returned state unchanged, detach it between calls, or set "
                                "compile with cut_teaching=False (the uncut reference path)")
        k1 = walk.out_keys[o.output_nr - 2]
        c[k1] = g if k1 not in c else c[k1] + g
        if k in chain and k1 in walk.final_leaf:
            alive[k1] = chain[k]  # the chunk-start weights were in use in that call: follow them back
    if not alive:
        return  # created at that call's very end: no use there, the gradient so far is the whole of it
    pieces, end = walk.unpack(node.saved_tensors)
    for j in range(len(pieces) - 1, -1, -1):
        if not c:
            return  # no gradient reaches further back: the values in `out` are whole
        p = pieces[j]
        keys = list(dict.fromkeys(list(p.origins) + list(alive)))
        outs = [end[k] for k in c]
        grads = dict(zip(keys, torch.autograd.grad(outs, [p.leaves[k] for k in keys], list(c.values()),
                                                   retain_graph=True, allow_unused=True)))
        c = {k: grads[k] for k in p.origins if grads[k] is not None}
        end = p.origins
        for k in list(alive):
            if k not in p.same:  # born here (or in the call before, if it came in unchanged)
                out[alive[k]] = grads[k]
                if j > 0 or _stitch_node(p.origins.get(k)) is None:
                    del alive[k]
        if not alive:
            return
    _earlier(end, c, {k: i for k, i in alive.items()}, out)


class _Walk:
    """What `Stitch.backward` needs, without holding tensors: those go to the Function's saved
    tensors (released after a backward without retain_graph, as an uncut graph's buffers are)."""

    def __init__(self, tape: Tape, init_keys, out_keys, st):
        self.tape, self.init_keys, self.out_keys = tape, init_keys, out_keys
        self.final = {k: st[k] for k in out_keys}
        last = tape.pieces[-1].inputs
        self.final_leaf = frozenset(k for k in out_keys if last.get(k) is st[k])  # unchanged in the last piece
        self.has_x = tape.x_all.requires_grad
        self.n_params = len(tape.params)
        self.layout = None

    def pack(self) -> list:
        """Every tensor the walk needs, flat; the layout to find them again; the tape is emptied."""
        flat, layout = [], []
        for p in self.tape.pieces:
            ks = list(p.origins)
            layout.append((p.s, p.e, ks, p.x is not None, p.same))
            flat += [p.logits, p.tok_loss] + [p.leaves[k] for k in ks] + [p.origins[k] for k in ks]
            flat += [p.x] if p.x is not None else []
        flat += [self.final[k] for k in self.out_keys] + self.tape.params
        self.layout, self.tape, self.final = layout, None, None
        return flat

    def unpack(self, saved) -> tuple[list, dict]:
        """(pieces, final state) from the saved tensors (pack's order); parameters are saved[-n_params:]."""
        pieces, i = [], 0
        for s, e, ks, has_x, same in self.layout:
            n = len(ks)
            p = Piece(s, e, leaves=dict(zip(ks, saved[i + 2:i + 2 + n])),
                      origins=dict(zip(ks, saved[i + 2 + n:i + 2 + 2 * n])), same=same,
                      logits=saved[i], tok_loss=saved[i + 1])
            i += 2 + 2 * n
            if has_x:
                p.x, i = saved[i], i + 1
            pieces.append(p)
        return pieces, dict(zip(self.out_keys, saved[i:i + len(self.out_keys)]))


class Stitch(torch.autograd.Function):
    """Outputs (loss, logits, *final state) of a cut forward; backward = the uncut graph's gradient
    w.r.t. the external inputs (input embeddings, initial state, parameters)."""

    @staticmethod
    def forward(ctx, walk: _Walk, *external):
        pieces = walk.tape.pieces
        final = [walk.final[k] for k in walk.out_keys]
        # fresh tensors (not views of the saved ones), so changing an output in place is harmless
        logits = torch.cat([p.logits.detach() for p in pieces], 1)
        tok = torch.cat([p.tok_loss.detach() for p in pieces])
        ctx.walk, ctx.numel = walk, tok.numel()
        ctx.save_for_backward(*walk.pack())
        ctx.set_materialize_grads(False)
        return (tok.mean(), logits, *[t.detach().clone() for t in final])

    @staticmethod
    def backward(ctx, g_loss, g_logits, *g_state):
        if torch.is_grad_enabled():
            raise NlcError("double backward (create_graph=True) through a forward with CMS teaching is not supported",
                           hint="the teaching forward is cut per segment and stitched with plain autograd.grad "
                                "(nlc/lower/stitch.py); the uncut path, nlc.compile(..., cut_teaching=False), supports it")
        walk, saved = ctx.walk, ctx.saved_tensors
        n_par = walk.n_params
        params = saved[len(saved) - n_par:]
        pieces, end = walk.unpack(saved)  # `end`: the state at the end of the piece being walked
        carried = {k: g for k, g in zip(walk.out_keys, g_state) if g is not None}
        g_par = [None] * n_par
        g_x = []
        for p in reversed(pieces):
            outs, gouts = [], []
            if g_loss is not None:
                outs.append(p.tok_loss)
                gouts.append((g_loss / ctx.numel).expand_as(p.tok_loss))
            if g_logits is not None:
                outs.append(p.logits)
                gouts.append(g_logits[:, p.s:p.e])
            for k, g in carried.items():
                outs.append(end[k])
                gouts.append(g)
            keep = [(o, g) for o, g in zip(outs, gouts) if o.requires_grad]
            ks = list(p.origins)
            inputs = [p.leaves[k] for k in ks] + ([p.x] if p.x is not None else []) + list(params)
            grads = (torch.autograd.grad([o for o, _ in keep], inputs, [g for _, g in keep], retain_graph=True,
                                         allow_unused=True) if keep else [None] * len(inputs))
            carried = {k: g for k, g in zip(ks, grads) if g is not None}
            end = p.origins
            if p.x is not None:
                g_x.append(grads[len(ks)] if grads[len(ks)] is not None else torch.zeros_like(p.x))
            for j, g in enumerate(grads[len(grads) - n_par:]):
                if g is not None:
                    g_par[j] = g if g_par[j] is None else g_par[j] + g
        g_init = [carried.get(k) for k in walk.init_keys]
        g_all = ([torch.cat(g_x[::-1], 1)] if walk.has_x else []) + g_init + g_par
        return (None, *g_all)
