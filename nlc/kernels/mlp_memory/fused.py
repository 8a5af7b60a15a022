"""Triton kernel for the 2-layer MLP memory: one program per (b, h) walks the sequence chunk by chunk.

Per chunk (sub-blocks of BC rows): Z = K W1b^T, A = act(Z), E = A W2b^T - V, Delta = (E W2b) * act'(Z),
read O = act(Q W1b^T) W2b^T, then W += closed-form accumulation (c*E)^T A, (c*Delta)^T K, all as tl.dot.
Layout: q, k (B,H,T,Dk), v, o (B,H,T,Dv), gates (B,H,T), W1/S1 (B,H,Dh,Dk), W2/S2 (B,H,Dv,Dh).
"""
import torch
import triton
import triton.language as tl

from .._triton_common import chunk_gate_coeffs, load_step
from .._utils import CHUNK_STAGES, CHUNK_WARPS, block, step_layout

ACT_IDS = {"silu": 0, "gelu": 1, "relu": 2}


@triton.jit
def _act(z, ACT: tl.constexpr):
    if ACT == 0:
        s = tl.sigmoid(z)
        return z * s, s * (1 + z * (1 - s))
    elif ACT == 1:
        c: tl.constexpr = 0.7978845608028654
        u = c * (z + 0.044715 * z * z * z)
        th = 2 * tl.sigmoid(2 * u) - 1
        return 0.5 * z * (1 + th), 0.5 * (1 + th) + 0.5 * z * (1 - th * th) * c * (1 + 3 * 0.044715 * z * z)
    else:
        return tl.maximum(z, 0.0), (z > 0).to(tl.float32)


@triton.jit
def _act_d2(z, ACT: tl.constexpr):
    """act''(z), for the backward through act'(z) in the closed-form W1 gradient."""
    if ACT == 0:
        s = tl.sigmoid(z)
        return s * (1 - s) * (2 + z * (1 - 2 * s))
    elif ACT == 1:
        c: tl.constexpr = 0.7978845608028654
        du = c * (1 + 3 * 0.044715 * z * z)
        th = 2 * tl.sigmoid(2 * c * (z + 0.044715 * z * z * z)) - 1
        return (1 - th * th) * (du - z * th * du * du + 3 * c * 0.044715 * z * z)
    else:
        return tl.zeros_like(z)


@triton.jit
def _load_state(p, i_bh, R: tl.constexpr, CC: tl.constexpr, BR: tl.constexpr, BCC: tl.constexpr):
    orr = tl.arange(0, BR)
    occ = tl.arange(0, BCC)
    ptr = p + i_bh * R * CC + orr[:, None] * CC + occ[None, :]
    return tl.load(ptr, mask=(orr[:, None] < R) & (occ[None, :] < CC), other=0.0).to(tl.float32)


@triton.jit
def _store_state(p, x, i_bh, R: tl.constexpr, CC: tl.constexpr, BR: tl.constexpr, BCC: tl.constexpr):
    orr = tl.arange(0, BR)
    occ = tl.arange(0, BCC)
    ptr = p + i_bh * R * CC + orr[:, None] * CC + occ[None, :]
    tl.store(ptr, x.to(p.dtype.element_ty), mask=(orr[:, None] < R) & (occ[None, :] < CC))


@triton.jit
def mlp_memory_fwd_kernel_chunk(
    q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, o, W1T, W2T, S1T, S2T, W1s, W2s, S1s, S2s,
    T, C, NS, NSTEP,
    DK: tl.constexpr, DH: tl.constexpr, DV: tl.constexpr,
    BK: tl.constexpr, BH: tl.constexpr, BV: tl.constexpr, BC: tl.constexpr,
    ACT: tl.constexpr, PREC: tl.constexpr, SAVE: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    ok = tl.arange(0, BK)
    ov = tl.arange(0, BV)
    mk = ok < DK
    mv = ov < DV
    # [BH, BK], [BV, BH]
    W1 = _load_state(W1_0, i_bh, DH, DK, BH, BK)
    S1 = _load_state(S1_0, i_bh, DH, DK, BH, BK)
    W2 = _load_state(W2_0, i_bh, DV, DH, BV, BH)
    S2 = _load_state(S2_0, i_bh, DV, DH, BV, BH)
    for cs in range(0, T, C):
        ce = tl.minimum(cs + C, T)
        W1b = W1
        W2b = W2
        for s in range(cs, ce, BC):
            if SAVE:
                # the backward's recompute: the state at the start of every step (chunk j, sub-block m)
                i_step = i_bh * NSTEP + (cs // C) * NS + (s - cs) // BC
                _store_state(W1s, W1, i_step, DH, DK, BH, BK)
                _store_state(S1s, S1, i_step, DH, DK, BH, BK)
                _store_state(W2s, W2, i_step, DV, DH, BV, BH)
                _store_state(S2s, S2, i_step, DV, DH, BV, BH)
            # Q, K (BC, BK) and V (BC, BV) of the step's rows
            valid, it, m_k, m_v, Q, K, V, lr_c, gam_c, mom_c = load_step(
                q, k, v, lr, decay, mom, i_bh, T, s, ce, ok, ov, mk, mv, DK, DV, BC)
            W1bT = tl.trans(W1b)
            W2bT = tl.trans(W2b)
            # read at the chunk-start weights, [BC, BV]
            Aq, _ = _act(tl.dot(Q, W1bT, input_precision=PREC), ACT)
            O = tl.dot(Aq, W2bT, input_precision=PREC)
            tl.store(o + it[:, None] * DV + ov[None, :], O.to(o.dtype.element_ty), mask=m_v)
            # closed-form per-row gradients, [BC, BH] and [BC, BV]
            A, dA = _act(tl.dot(K, W1bT, input_precision=PREC), ACT)
            E = tl.dot(A, W2bT, input_precision=PREC) - V
            E = tl.where(valid[:, None], E, 0.0)
            D = tl.dot(E, W2b, input_precision=PREC) * dA
            a, b, c, sm, sd = chunk_gate_coeffs(lr_c, gam_c, mom_c, valid)
            W1 = a * W1 + b * S1 + tl.dot(tl.trans(D * c[:, None]), K, input_precision=PREC)
            S1 = sm * S1 + tl.dot(tl.trans(D * sd[:, None]), K, input_precision=PREC)
            W2 = a * W2 + b * S2 + tl.dot(tl.trans(E * c[:, None]), A, input_precision=PREC)
            S2 = sm * S2 + tl.dot(tl.trans(E * sd[:, None]), A, input_precision=PREC)
    _store_state(W1T, W1, i_bh, DH, DK, BH, BK)
    _store_state(S1T, S1, i_bh, DH, DK, BH, BK)
    _store_state(W2T, W2, i_bh, DV, DH, BV, BH)
    _store_state(S2T, S2, i_bh, DV, DH, BV, BH)


def mlp_memory_fwd(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, chunk: int, act: str = "silu",
                   save_states: bool = False):
    """Host launcher: allocates outputs and runs one program per (b, h).

    save_states: also return the fp32 states (W1, W2, S1, S2) at the start of every kernel step,
    (B, H, NSTEP, ...) with the steps of `step_starts`: what the backward kernel walks back through."""
    q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0 = (
        x.contiguous() for x in (q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0))
    B, H, T, DK = q.shape
    chunk = min(chunk, T)  # one chunk either way; keeps the step buffers T-sized
    DV = v.shape[-1]
    DH = W1_0.shape[-2]
    o = torch.empty(B, H, T, DV, dtype=q.dtype, device=q.device)
    outs = [torch.empty_like(x) for x in (W1_0, W2_0, S1_0, S2_0)]
    bc, ns, nstep = step_layout(chunk, T)
    states = [o] * 4  # unused placeholders when not saving
    if save_states:
        states = [torch.empty(B, H, nstep, *x.shape[2:], dtype=torch.float32, device=q.device)
                  for x in (W1_0, W2_0, S1_0, S2_0)]
    prec = "ieee" if q.dtype == torch.float32 else "tf32"
    mlp_memory_fwd_kernel_chunk[(B * H,)](
        q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, o, *outs, *states,
        T, chunk, ns, nstep,
        DK=DK, DH=DH, DV=DV,
        BK=block(DK), BH=block(DH), BV=block(DV), BC=bc,
        ACT=ACT_IDS[act], PREC=prec, SAVE=save_states, num_warps=CHUNK_WARPS, num_stages=CHUNK_STAGES,
    )
    return (o, *outs, *states) if save_states else (o, *outs)
