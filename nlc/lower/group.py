"""A level group run as one batched level (nlc/ir/schedule.py: LevelGroup).

Members of a group share the memory kind and shapes, rule, gates, keys and clock; only their values
and weights differ. So G members of H heads each are one level of G*H heads: their weights are
stacked along the head axis (member-major: member 0's heads first), keys and gates repeated G times,
values stacked. Why: Hope runs 16-token segments, so each of its four identical memories' reads and
writes is a handful of tiny ops; one batched read per shared input and one write per segment issue
the same math as a quarter of the ops (and a quarter of the update code in a compiled graph).

The fast state stays per level (`hope.0.mk.W0`, ...): stacked here per segment (a `torch.cat` per
memory layer, shared by the reads and the write of the segment), split back after the write. So the
state layout, checkpoints, `state_dict`s, streaming and the reference backend are unchanged, and the
stats (`{level}/surprise`, `{level}/update_norm`) stay per member.

The per-segment cache lives in the segment's stream dict `v` (fresh each segment, in both orders),
under tuple keys that no op name can be.
"""
from __future__ import annotations

import torch

from nlc.ir.kinds import OpKind
from nlc.ir.schedule import Part
from nlc.lower import memory as mem


def batched_reads(block, ops, groups) -> dict:
    """(level, input stream) -> the group's members that read that stream, when two or more do (their
    reads run as one). `groups`: this block's LevelGroups; `ops`: the ops the layer runs."""
    out = {}
    for g in groups:
        readers: dict = {}
        for op in ops:
            if op.op == OpKind.READ and op.attrs["level"] in g.levels:
                readers.setdefault(op.inputs[0], set()).add(op.attrs["level"])
        for stream, names in readers.items():
            if len(names) >= 2:
                members = tuple(n for n in g.levels if n in names)  # the group's order
                out.update({(n, stream): members for n in members})
    return out


def stacked(layer, members, part, st, v):
    """The members' `part` weights per memory layer, stacked along heads (cached for the segment)."""
    key = ("group", members, part)
    out = v.get(key)
    if out is None:
        per = [[st[k] for k in layer.skeys[(n, part)]] for n in members]
        out = v[key] = [torch.cat(ws, 1) for ws in zip(*per)]
    return out


def read(layer, members, name, stream, q, st, v):
    """Member `name`'s read of `stream` (= q): the first member's read computes all members' (one
    batched forward at the stacked chunk-start weights), the others take theirs from the cache."""
    key = ("group-read", members, stream)
    outs = v.get(key)
    if outs is None:
        lv, G = layer.mems[members[0]].lv, len(members)
        Wbar = stacked(layer, members, Part.WBAR, st, v)
        y, _ = mem.forward_layers(lv, Wbar, mem.split_heads(q, lv.heads).repeat(1, G, 1, 1))
        outs = v[key] = dict(zip(members, (mem.merge_heads(t) for t in y.chunk(G, 1))))
    return outs[name]


def write(layer, g, v, st, at_end, n, stats, acc):
    """One segment's writes of the whole group `g`: one closed-form gradient and one chunk update on the
    stacked state, split back into each member's slots. `at_end`: a bool, or (compiled program) a 0-dim
    bool tensor; the members share a clock, so one flag serves them all. `acc`: program._acc."""
    members, G = g.levels, len(g.levels)
    m0 = layer.mems[members[0]]
    lv = m0.lv
    mems = [layer.mems[n] for n in members]
    Wbar = stacked(layer, members, Part.WBAR, st, v)
    Ws = stacked(layer, members, Part.W, st, v)
    Ss = stacked(layer, members, Part.S, st, v) if lv.momentum else None
    B = Ws[0].shape[0]
    k1 = mem.split_heads(v[lv.keys], lv.heads)
    k = k1.repeat(1, G, 1, 1)
    val = torch.cat([mem.split_heads(v[m.lv.values], lv.heads) for m in mems], 1)

    def gate(name):  # the same stream or constant for every member (the group's condition): repeat it
        return m0.gate(name, v, B, n, k1).repeat(1, G, 1)
    theta, alpha = gate("lr"), gate("decay")
    eta = gate("momentum") if Ss is not None else None
    W0s = None
    if m0.rule.uses_init:  # M_0 of each member, stacked like the state
        W0s = [torch.cat(ws, 1) for ws in zip(*(m.initial(B, k.device, k.dtype) for m in mems))]
    u, surprise, theta = mem.chunk_grads(lv, Wbar, k, val, theta, groups=G)
    Ws, Ss = mem.chunk_write(lv, Ws, Ss, u, theta, alpha, eta, W0s, m0.chunk_step)
    for i, name in enumerate(members):
        acc(stats, f"{name}/surprise", surprise[i] / (B * n))
    _store(layer, members, Part.W, Ws, st)
    if Ss is not None:
        _store(layer, members, Part.S, Ss, st)
    selected = torch.is_tensor(at_end)  # the compiled program: a select, one graph for ends and not-ends
    if selected or at_end:  # chunk boundary: the chunk-start state moves on
        # per member, as program.Layer._write: sum over memory layers of ||W - Wbar|| / B
        norms = sum(torch.linalg.vector_norm((w - wb).detach().unflatten(1, (G, -1)), dim=(0, 2, 3, 4))
                    for w, wb in zip(Ws, Wbar)) / B
        if selected:
            norms = torch.where(at_end, norms, torch.zeros_like(norms))
            Ws = [torch.where(at_end, w, wb) for w, wb in zip(Ws, Wbar)]
        for i, name in enumerate(members):
            acc(stats, f"{name}/update_norm", norms[i])
        _store(layer, members, Part.WBAR, Ws, st)


def _store(layer, members, part, stacked_ws, st):
    """Split stacked weights back into each member's state slots."""
    G = len(members)
    for li, w in enumerate(stacked_ws):
        for name, piece in zip(members, w.chunk(G, 1)):
            st[layer.skeys[(name, part)][li]] = piece
