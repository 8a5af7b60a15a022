"""Triton backward of the chunked linear memory (no dgd): one program per (b, h, block of BV rows of W)
walks the steps in reverse.

A step is a sub-block of ≤ BC rows of a chunk (see `step_starts`); with W̄ the chunk-start state, (W, S) the
state at the step start and (a, b, c, sm, sd) the step's gate coefficients, the forward did
    O = Q W̄ᵀ,  E = K W̄ᵀ − V,  W' = a W + b S + (c⊙E)ᵀ K,  S' = sm S + (sd⊙E)ᵀ K.
Given (dW', dS') — the gradient of the state after the step — the step's chain rule is
    dE = c⊙(K dW'ᵀ) + sd⊙(K dS'ᵀ),          dK = (c⊙E) dW' + (sd⊙E) dS' + dE W̄,   dV = −dE,   dQ = dO W̄
    dc = rowsum(E ⊙ K dW'ᵀ),  dsd = rowsum(E ⊙ K dS'ᵀ),  da = ⟨dW', W⟩,  db = ⟨dW', S⟩,  dsm = ⟨dS', S⟩
    dW = a dW' (+ Σ over the chunk's steps of dOᵀQ + dEᵀK, at its first step),   dS = b dW' + sm dS'.
The states (W, S) at each step start come from the forward kernel run with SAVE=True (a recompute, as fla
does for its chunk states). The gate-coefficient grads (dc, dsd per row; da, db, dsm per step) go back to
(lr, decay, mom) through `step_gate_coeffs` in torch: O(T·BC) scalar work next to the O(T·D²) done here.
"""
import torch
import triton
import triton.language as tl

from .._triton_common import chunk_gate_coeffs, load_rows, load_step
from .._utils import CHUNK_STAGES, CHUNK_WARPS, block, step_layout, v_block


@triton.jit
def linear_memory_bwd_kernel_chunk(
    q, k, v, lr, decay, mom, Ws, Ss, do, dWT, dST,
    dq, dk, dv, dc, dsd, da, db, dsm, dW0, dS0,
    T, C, NS, NSTEP,
    DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BC: tl.constexpr,
    PREC: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    # program_id(1) takes BV rows of W; what sums over Dv (dq, dk, dc, dsd, da, db, dsm) is written as this
    # block's partial, at offset i_v of a leading NV dim, and summed by the host
    i_v = tl.program_id(1).to(tl.int64)
    B_H = tl.num_programs(0).to(tl.int64)
    ok = tl.arange(0, BK)
    ov = i_v * BV + tl.arange(0, BV)
    mk = ok < DK
    mv = ov < DV
    mvk = mv[:, None] & mk[None, :]
    p_state = ov[:, None] * DK + ok[None, :]
    dW = tl.load(dWT + i_bh * DV * DK + p_state, mask=mvk, other=0.0).to(tl.float32)
    dS = tl.load(dST + i_bh * DV * DK + p_state, mask=mvk, other=0.0).to(tl.float32)
    NC = tl.cdiv(T, C)
    for jj in range(0, NC):
        j = NC - 1 - jj
        cs = j * C
        ce = tl.minimum(cs + C, T)
        p_chunk = (i_bh * NSTEP + j * NS) * DV * DK
        Wb = tl.load(Ws + p_chunk + p_state, mask=mvk, other=0.0)
        # the gradient reaching W̄ through the reads and surprises of all the chunk's steps
        dWb = tl.zeros([BV, BK], dtype=tl.float32)
        nsub = tl.cdiv(ce - cs, BC)
        for mm in range(0, nsub):
            m = nsub - 1 - mm
            s = cs + m * BC
            i_step = i_bh * NSTEP + j * NS + m
            W = tl.load(Ws + i_step * DV * DK + p_state, mask=mvk, other=0.0)
            S = tl.load(Ss + i_step * DV * DK + p_state, mask=mvk, other=0.0)
            valid, it, m_k, m_v, Q, K, V, lr_c, gam_c, mom_c = load_step(
                q, k, v, lr, decay, mom, i_bh, T, s, tl.minimum(s + BC, ce), ok, ov, mk, mv, DK, DV, BC)
            dO = load_rows(do, it, ov, DV, m_v)
            a, b, c, sm, sd = chunk_gate_coeffs(lr_c, gam_c, mom_c, valid)
            E = tl.dot(K, tl.trans(Wb), input_precision=PREC) - V
            KdW = tl.dot(K, tl.trans(dW), input_precision=PREC)      # [BC, BV]
            KdS = tl.dot(K, tl.trans(dS), input_precision=PREC)
            dE = c[:, None] * KdW + sd[:, None] * KdS
            dK = (tl.dot(E * c[:, None], dW, input_precision=PREC) + tl.dot(E * sd[:, None], dS, input_precision=PREC)
                  + tl.dot(dE, Wb, input_precision=PREC))
            dQ = tl.dot(dO, Wb, input_precision=PREC)
            ip = i_v * B_H * T + it                      # row index into the per-block partials
            tl.store(dq + ip[:, None] * DK + ok[None, :], dQ, mask=m_k)
            tl.store(dk + ip[:, None] * DK + ok[None, :], dK, mask=m_k)
            tl.store(dv + it[:, None] * DV + ov[None, :], (-dE).to(dv.dtype.element_ty), mask=m_v)
            tl.store(dc + ip, tl.sum(E * KdW, 1), mask=valid)
            tl.store(dsd + ip, tl.sum(E * KdS, 1), mask=valid)
            i_sp = i_v * B_H * NSTEP + i_step
            tl.store(da + i_sp, tl.sum(tl.sum(dW * W, 1), 0))
            tl.store(db + i_sp, tl.sum(tl.sum(dW * S, 1), 0))
            tl.store(dsm + i_sp, tl.sum(tl.sum(dS * S, 1), 0))
            dWb += tl.dot(tl.trans(dE), K, input_precision=PREC) + tl.dot(tl.trans(dO), Q, input_precision=PREC)
            dS = b * dW + sm * dS
            dW = a * dW
        dW += dWb
    tl.store(dW0 + i_bh * DV * DK + p_state, dW.to(dW0.dtype.element_ty), mask=mvk)
    tl.store(dS0 + i_bh * DV * DK + p_state, dS.to(dS0.dtype.element_ty), mask=mvk)


def linear_memory_bwd(q, k, v, lr, decay, mom, W0, S0, do, dWT, dST, chunk: int, bv: int | None = None):
    """Gradients of (o, W_T, S_T) = linear_memory(..., dgd=False) w.r.t. all eight inputs, in their dtypes.
    bv: Dv rows of W per program (default `v_block`)."""
    from .._op_utils import gate_grads
    from .fused import linear_memory_fwd

    # the kernels index memory as contiguous (a gradient can arrive as an expanded or transposed view)
    q, k, v, lr, decay, mom, W0, S0, do, dWT, dST = (x.contiguous() for x in (q, k, v, lr, decay, mom, W0, S0, do, dWT, dST))
    B, H, T, DK = q.shape
    chunk = min(chunk, T)  # one chunk either way; keeps the step buffers T-sized
    DV = v.shape[-1]
    bv = bv or v_block(DV, B * H)
    nv = -(-DV // bv)
    _, _, _, Ws, Ss = linear_memory_fwd(q, k, v, lr, decay, mom, W0, S0, chunk, False, impl="chunk",
                                        save_states=True, bv=bv)
    bc, ns, nstep = step_layout(chunk, T)
    f32 = dict(dtype=torch.float32, device=q.device)
    dv = torch.empty_like(v)
    dq, dk = torch.empty(nv, B, H, T, DK, **f32), torch.empty(nv, B, H, T, DK, **f32)
    dc, dsd = torch.empty(nv, B, H, T, **f32), torch.empty(nv, B, H, T, **f32)
    # holes (steps the last chunk does not have) stay 0: step_gate_coeffs gives them constant coefficients
    da, db, dsm = (torch.zeros(nv, B, H, nstep, **f32) for _ in range(3))
    dW0, dS0 = torch.empty_like(W0), torch.empty_like(S0)
    prec = "ieee" if q.dtype == torch.float32 else "tf32"
    linear_memory_bwd_kernel_chunk[(B * H, nv)](
        q, k, v, lr, decay, mom, Ws, Ss, do, dWT, dST,
        dq, dk, dv, dc, dsd, da, db, dsm, dW0, dS0,
        T, chunk, ns, nstep,
        DK=DK, DV=DV, BK=block(DK), BV=bv, BC=bc, PREC=prec, num_warps=CHUNK_WARPS, num_stages=CHUNK_STAGES,
    )
    da, db, dc, dsm, dsd = (x.sum(0) for x in (da, db, dc, dsm, dsd))
    dlr, ddecay, dmom = gate_grads(lr, decay, mom, chunk, bc, (da, db, dc, dsm, dsd))
    return dq.sum(0).to(q.dtype), dk.sum(0).to(k.dtype), dv, dlr, ddecay, dmom, dW0, dS0
