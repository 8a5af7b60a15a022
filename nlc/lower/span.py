"""Whole-layer spans: a memory level's reads and writes over many chunks in one call.

The schedule decides which layer-major blocks qualify (nlc/passes/schedule.py: `block_span`): the
block's per-segment part is one read per writing memory level, of a query computed before any read,
and no write stream depends on a read. Then a level's chunks need nothing from the rest of the layer,
and `Layer.run` hands the longest chunk-aligned prefix of the call to `span_level` at once:
    torch   the level's chunk loop over the whole prefix: gates and heads split once, then per chunk the
            read at its chunk-start state, the closed-form gradients and the rule's `chunk` (the same
            functions as the per-segment path: `memory.chunk_grads`, `memory.chunk_write`);
    triton  one fused op call over the prefix (`triton_plan.fused_span`), with the real queries.
The prefix ends on a chunk boundary of every level, so the chunk-start state after it is the final
state; the tail that ends mid-chunk goes through the per-segment path from there.

Stats are those of the per-segment path: `surprise` sums, per segment, the objective at the
chunk-start state divided by B times the segment length (the prefix has only full segments of the
grid), `update_norm` sums ||W_end - Wbar|| / B over the chunks that end (every chunk of the prefix).
"""
from __future__ import annotations

import torch

from nlc.ir.schedule import Part
from nlc.lower import memory as mem


def span_prefix(layer, segments) -> int:
    """Tokens of the call that the layer's whole-layer span takes: 0 unless the schedule chose a span
    for its block and the call starts on a chunk boundary of every span level (streaming from
    mid-chunk runs per segment); else the longest prefix ending on a chunk boundary of all of them."""
    span = layer.span
    if span is None or not span.span or not segments:
        return 0
    starts, _ = layer.edge_names(segments[0][2])
    if not all(name in starts for name in span.levels):
        return 0
    return segments[-1][1] // span.period * span.period


def span_level(layer, name, q, streams, st, seg):
    """Level `name` of `layer` over the first n tokens (the prefix): `q` (B, n, H*dk) its queries,
    `streams` the hoisted streams cut to the prefix, `st` the layer's local state (updated), `seg` the
    grid's segment length (stats). Returns the read (B, n, H*dv) and the level's local stats."""
    m = layer.mems[name]
    lv, impl = m.lv, layer.impls[name]
    kW, kS, kB = layer.skeys[(name, Part.W)], layer.skeys.get((name, Part.S)), layer.skeys[(name, Part.WBAR)]
    Ws = [st[k] for k in kW]  # at a chunk start the running weights are the chunk-start ones
    Ss = [st[k] for k in kS] if kS else None
    B, n = q.shape[0], q.shape[1]
    qh = mem.split_heads(q, lv.heads)
    k, val = mem.split_heads(streams[lv.keys], lv.heads), mem.split_heads(streams[lv.values], lv.heads)
    theta, alpha = m.gate("lr", streams, B, n, k), m.gate("decay", streams, B, n, k)
    eta = m.gate("momentum", streams, B, n, k) if kS else None
    chunk = lv.clock.period
    if impl.kernel:
        from nlc.lower.triton_plan import fused_span
        o, Ws, Ss, starts = fused_span(lv, impl.kernel, Ws, Ss, qh, k, val, theta, alpha, eta, chunk)
        surprise, norm = _stats_from_starts(lv, starts, Ws, k, val, chunk)
    else:
        o, Ws, Ss, surprise, norm = _torch_span(m, Ws, Ss, qh, k, val, theta, alpha, eta, chunk)
    st.update(zip(kW, Ws))
    if Ss is not None:
        st.update(zip(kS, Ss))
    st.update(zip(kB, Ws))  # the prefix ends every chunk it starts
    return mem.merge_heads(o), {f"{name}/surprise": surprise / (B * seg), f"{name}/update_norm": norm / B}


def _torch_span(m, Ws, Ss, q, k, v, theta, alpha, eta, chunk):
    """The chunk loop in torch over a chunk-aligned span (heads split: q, k (B,H,n,dk), v (B,H,n,dv),
    gates (B,H,n)): the per-segment path's functions, once per chunk instead of once per segment. (Reading
    every chunk in one batched read at the stacked chunk-start states after the loop was slower on CPU:
    the stack copies every chunk's weights; 0.91x fwd+bwd, docs/performance.md.)"""
    lv = m.lv
    W0s = m.initial(k.shape[0], k.device, k.dtype) if m.rule.uses_init else None
    outs, surprise, norm = [], 0.0, 0.0
    # split, not sliced per chunk: a slice's backward is a zero tensor of the whole span (O(n^2) per call)
    qs, ks, vs = q.split(chunk, 2), k.split(chunk, 2), v.split(chunk, 2)
    ths, als = theta.split(chunk, -1), alpha.split(chunk, -1)
    ets = eta.split(chunk, -1) if eta is not None else [None] * len(ks)
    for qc, kc, vc, th, al, et in zip(qs, ks, vs, ths, als, ets):
        Wbar = Ws
        outs.append(mem.forward_layers(lv, Wbar, qc)[0])
        u, s, th = mem.chunk_grads(lv, Wbar, kc, vc, th)
        Ws, Ss = mem.chunk_write(lv, Ws, Ss, u, th, al, et, W0s, m.chunk_step)
        surprise = surprise + s
        norm = norm + sum((w - wb).detach().norm() for w, wb in zip(Ws, Wbar))
    return torch.cat(outs, 2), Ws, Ss, surprise, norm


def _chunked_read(lv, starts, x, chunk):
    """M(x) at each chunk's start state: x (B, H, chunks * chunk, d) -> (B, H, chunks * chunk, d_out)."""
    B, H, n, d = x.shape
    y, _ = mem.forward_layers(lv, starts, x.reshape(B, H, n // chunk, chunk, d))
    return y.reshape(B, H, n, -1)


def _norms(starts, Ws):
    """The per-segment path's update norm summed over the chunks: sum over chunks of sum over memory
    layers of ||W_end - Wbar|| (over the batch and heads), from the stacked chunk-start states."""
    norm = 0.0
    for s, w in zip(starts, Ws):
        s = s.detach().to(w.dtype)
        ends = torch.cat([s[:, :, 1:], w.detach()[:, :, None]], 2)
        norm = norm + (ends - s).transpose(0, 2).flatten(1).norm(dim=1).sum()
    return norm


def _stats_from_starts(lv, starts, Ws, k, v, chunk):
    """(surprise, norm) of a span from its chunk-start states `starts` (per memory layer, (B, H, nC, o, i),
    detached): the objective of every chunk's keys at its chunk-start state, as one batched read, and
    the norms of the steps between consecutive chunk starts (the last one ends at the final `Ws`)."""
    starts = [s.to(k.dtype) for s in starts]
    surprise = mem.objective_value(lv, _chunked_read(lv, starts, k.detach(), chunk), v.detach())
    return surprise, _norms(starts, Ws)
