"""Triton kernels for the linear memory: fused recurrent (any chunk, dgd or not) and chunked (no dgd; the
dgd chunk kernel is in fused_dgd.py).

Layout: q, k (B,H,T,Dk), v and o (B,H,T,Dv), gates (B,H,T), states (B,H,Dv,Dk), all contiguous.
One program per (b, h, block of BV rows of W) walks the whole sequence and keeps the state on chip,
in fp32.
"""
import torch
import triton
import triton.language as tl

from .._triton_common import chunk_gate_coeffs, load_step
from .._utils import CHUNK_STAGES, CHUNK_WARPS, block, step_layout, v_block


@triton.jit
def linear_memory_fwd_kernel_recurrent(
    q, k, v, lr, decay, mom, W0, S0, o, WT, ST,
    T, C,
    DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, DGD: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    # rows of W (the Dv dim) evolve independently: program_id(1) takes BV of them
    ok = tl.arange(0, BK)
    ov = tl.program_id(1) * BV + tl.arange(0, BV)
    mk = ok < DK
    mv = ov < DV
    mvk = mv[:, None] & mk[None, :]
    p_state = i_bh * DV * DK + ov[:, None] * DK + ok[None, :]
    # [BV, BK]
    W = tl.load(W0 + p_state, mask=mvk, other=0.0).to(tl.float32)
    S = tl.load(S0 + p_state, mask=mvk, other=0.0).to(tl.float32)
    Wb = W
    for t in range(0, T):
        it = i_bh * T + t
        q_t = tl.load(q + it * DK + ok, mask=mk, other=0.0).to(tl.float32)
        k_t = tl.load(k + it * DK + ok, mask=mk, other=0.0).to(tl.float32)
        v_t = tl.load(v + it * DV + ov, mask=mv, other=0.0).to(tl.float32)
        lr_t = tl.load(lr + it).to(tl.float32)
        gam_t = 1.0 - tl.load(decay + it).to(tl.float32)
        mom_t = tl.load(mom + it).to(tl.float32)
        # reads and surprises see the chunk-start state Wb
        o_t = tl.sum(Wb * q_t[None, :], 1)
        tl.store(o + it * DV + ov, o_t.to(o.dtype.element_ty), mask=mv)
        e_t = tl.sum(Wb * k_t[None, :], 1) - v_t
        S = mom_t * S - lr_t * (e_t[:, None] * k_t[None, :])
        if DGD:
            Wk = tl.sum(W * k_t[None, :], 1)
            W = gam_t * W - lr_t * (Wk[:, None] * k_t[None, :]) + S
        else:
            W = gam_t * W + S
        Wb = tl.where((t + 1) % C == 0, W, Wb)
    tl.store(WT + p_state, W.to(WT.dtype.element_ty), mask=mvk)
    tl.store(ST + p_state, S.to(ST.dtype.element_ty), mask=mvk)


@triton.jit
def linear_memory_fwd_kernel_chunk(
    q, k, v, lr, decay, mom, W0, S0, o, WT, ST, Ws, Ss,
    T, C, NS, NSTEP,
    DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BC: tl.constexpr,
    PREC: tl.constexpr, SAVE: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    # rows of W (the Dv dim) evolve independently: program_id(1) takes BV of them
    ok = tl.arange(0, BK)
    ov = tl.program_id(1) * BV + tl.arange(0, BV)
    mk = ok < DK
    mv = ov < DV
    mvk = mv[:, None] & mk[None, :]
    p_state = i_bh * DV * DK + ov[:, None] * DK + ok[None, :]
    W = tl.load(W0 + p_state, mask=mvk, other=0.0).to(tl.float32)
    S = tl.load(S0 + p_state, mask=mvk, other=0.0).to(tl.float32)
    for cs in range(0, T, C):
        ce = tl.minimum(cs + C, T)
        Wb = W
        # a chunk longer than BC rows is walked in sub-blocks; all of them read Wb
        for s in range(cs, ce, BC):
            if SAVE:
                # the backward's recompute: the state at the start of every step (chunk j, sub-block m)
                p_step = (i_bh * NSTEP + (cs // C) * NS + (s - cs) // BC) * DV * DK + ov[:, None] * DK + ok[None, :]
                tl.store(Ws + p_step, W, mask=mvk)
                tl.store(Ss + p_step, S, mask=mvk)
            # Q, K (BC, BK) and V (BC, BV) of the step's rows
            valid, it, m_k, m_v, Q, K, V, lr_c, gam_c, mom_c = load_step(
                q, k, v, lr, decay, mom, i_bh, T, s, ce, ok, ov, mk, mv, DK, DV, BC)
            WbT = tl.trans(Wb)
            O = tl.dot(Q, WbT, input_precision=PREC)
            tl.store(o + it[:, None] * DV + ov[None, :], O.to(o.dtype.element_ty), mask=m_v)
            E = tl.dot(K, WbT, input_precision=PREC) - V
            a, b, c, sm, sd = chunk_gate_coeffs(lr_c, gam_c, mom_c, valid)
            W = a * W + b * S + tl.dot(tl.trans(E * c[:, None]), K, input_precision=PREC)
            S = sm * S + tl.dot(tl.trans(E * sd[:, None]), K, input_precision=PREC)
    tl.store(WT + p_state, W.to(WT.dtype.element_ty), mask=mvk)
    tl.store(ST + p_state, S.to(ST.dtype.element_ty), mask=mvk)


def linear_memory_fwd(q, k, v, lr, decay, mom, W0, S0, chunk: int, dgd: bool, impl: str = "auto",
                      save_states: bool = False, bv: int | None = None):
    """Host launcher. impl: 'recurrent' (token loop), 'chunk' (matmuls per sub-block; with dgd the WY kernel of
    fused_dgd.py) or 'auto' (chunk when chunk >= 16).

    save_states (chunk kernel only): also return the fp32 states (W, S) at the start of every kernel step,
    (B, H, NSTEP, Dv, Dk) each with the steps of `step_starts`: what the backward kernel walks back through.
    bv: rows of W (of Dv) per program (default `v_block`); the grid is (B·H, ceil(Dv / bv))."""
    q, k, v, lr, decay, mom, W0, S0 = (x.contiguous() for x in (q, k, v, lr, decay, mom, W0, S0))
    B, H, T, DK = q.shape
    chunk = min(chunk, T)  # one chunk either way; keeps the step buffers T-sized
    DV = v.shape[-1]
    if impl == "auto":
        # a chunk shorter than a 16-row tl.dot tile would waste most of each tile: token loop instead
        impl = "chunk" if (chunk >= 16 or save_states) else "recurrent"
    if save_states and impl != "chunk":
        raise ValueError("save_states needs the chunk kernel")
    o = torch.empty(B, H, T, DV, dtype=q.dtype, device=q.device)
    WT = torch.empty_like(W0)
    ST = torch.empty_like(S0)
    bv = bv or v_block(DV, B * H)
    grid = (B * H, -(-DV // bv))
    meta = dict(DK=DK, DV=DV, BK=block(DK), BV=bv)
    if impl == "recurrent":
        linear_memory_fwd_kernel_recurrent[grid](q, k, v, lr, decay, mom, W0, S0, o, WT, ST, T, chunk,
                                                     DGD=dgd, **meta)
        return o, WT, ST
    bc, ns, nstep = step_layout(chunk, T)
    Ws = Ss = o  # unused placeholders when not saving
    if save_states:
        Ws = torch.empty(B, H, nstep, DV, DK, dtype=torch.float32, device=q.device)
        Ss = torch.empty_like(Ws)
    prec = "ieee" if q.dtype == torch.float32 else "tf32"
    kernel = linear_memory_fwd_kernel_chunk
    if dgd:  # the WY form of fused_dgd.py: same arguments, same layout
        from .fused_dgd import linear_memory_fwd_kernel_dgd_chunk as kernel
    kernel[grid](q, k, v, lr, decay, mom, W0, S0, o, WT, ST, Ws, Ss, T, chunk, ns, nstep,
                 BC=bc, PREC=prec, SAVE=save_states, num_warps=CHUNK_WARPS, num_stages=CHUNK_STAGES, **meta)
    return (o, WT, ST, Ws, Ss) if save_states else (o, WT, ST)
