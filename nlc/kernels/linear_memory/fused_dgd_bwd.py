"""Triton backward of the dgd chunk kernel (fused_dgd.py): one program per (b, h, block of BV rows of W)
walks the steps in reverse with the state gradient (dW, dS) on chip.

Per step (rows i of a sub-block; W̄ the chunk-start state, (W, S) the step-start state; gate matrices of
`fused_dgd.dgd_gate_mats`, PGx and Cx indexed [i, j]), the forward did
    E = K W̄ᵀ − V,  Kk = K Kᵀ,  Lm = lr⊙PGx⊙Kk,  M = Cx⊙Kk,
    X = gex⊙K Wᵀ + Bex⊙K Sᵀ + M E,  R = −lr⊙X,  w = (I + Lm)⁻¹ R,  U = gv⊙w + c⊙E,
    W' = a W + b S + Uᵀ K,  S' = sm S + (sd⊙E)ᵀ K,  O = Q W̄ᵀ.
Given (dW', dS') the chain rule (rowwise ⊙; checked against torch.autograd in tests) is
    dU = K dW'ᵀ,  dw = gv⊙dU,  dR = (I + Lm)⁻ᵀ dw,  dLm = −tril₋₁(dR wᵀ),  dX = −lr⊙dR,  dM = dX Eᵀ,
    dE = c⊙dU + sd⊙K dS'ᵀ + Mᵀ dX,   dKk = dM⊙Cx + dLm⊙lr⊙PGx,
    dK = U dW' + (sd⊙E) dS' + (gex⊙dX) W + (Bex⊙dX) S + (dKk + dKkᵀ) K + dE W̄,
    dW = a dW' + (gex⊙dX)ᵀ K (+ dEᵀK + dOᵀQ summed over the chunk, at its first step),
    dS = b dW' + sm dS' + (Bex⊙dX)ᵀ K,   dV = −dE,   dQ = dO W̄,
and the gate-matrix gradients (da, db, dsm per step; dc, dsd, dgv, dgex, dBex per row; dPGx = dLm⊙lr⊙Kk,
dCx = dM⊙Kk per step) go back to (lr, decay, mom) through `step_dgd_gate_mats` with torch.autograd, plus
lr's direct terms −rowsum(dR⊙X) + rowsum(dLm⊙PGx⊙Kk). Everything that sums over Dv is written per Dv block
and summed by the host.
"""
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .._triton_common import load_rows, load_step
from .._utils import CHUNK_STAGES, CHUNK_WARPS, block, step_index, step_layout, to_steps, v_block
from ..products import pair_prod
from .fused_dgd import dgd_gate_mats, unit_lower_inverse


@triton.jit
def linear_memory_bwd_kernel_dgd_chunk(
    q, k, v, lr, decay, mom, Ws, Ss, do, dWT, dST,
    dq, dk, dv, drow, dstep, dmat, dW0, dS0,
    T, C, NS, NSTEP,
    DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BC: tl.constexpr,
    PREC: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    i_v = tl.program_id(1).to(tl.int64)
    B_H = tl.num_programs(0).to(tl.int64)
    ok = tl.arange(0, BK)
    ov = i_v * BV + tl.arange(0, BV)
    oc = tl.arange(0, BC)
    mk = ok < DK
    mv = ov < DV
    mvk = mv[:, None] & mk[None, :]
    p_state = ov[:, None] * DK + ok[None, :]
    lower = oc[None, :] < oc[:, None]        # [i, j]: j < i
    p_mat = oc[:, None] * BC + oc[None, :]
    dW = tl.load(dWT + i_bh * DV * DK + p_state, mask=mvk, other=0.0).to(tl.float32)
    dS = tl.load(dST + i_bh * DV * DK + p_state, mask=mvk, other=0.0).to(tl.float32)
    NC = tl.cdiv(T, C)
    for jj in range(0, NC):
        j = NC - 1 - jj
        cs = j * C
        ce = tl.minimum(cs + C, T)
        Wb = tl.load(Ws + (i_bh * NSTEP + j * NS) * DV * DK + p_state, mask=mvk, other=0.0)
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
            a, b, c, sm, sd, gv, gex, Bex, PGx, Cx = dgd_gate_mats(lr_c, gam_c, mom_c, valid)
            # recompute the step's forward
            E = tl.dot(K, tl.trans(Wb), input_precision=PREC) - V
            Kk = tl.dot(K, tl.trans(K), input_precision=PREC)
            Lm = lr_c[:, None] * PGx * Kk
            Mx = Cx * Kk
            KW = tl.dot(K, tl.trans(W), input_precision=PREC)
            KS = tl.dot(K, tl.trans(S), input_precision=PREC)
            X = gex[:, None] * KW + Bex[:, None] * KS + tl.dot(Mx, E, input_precision=PREC)
            Ainv = unit_lower_inverse(Lm, BC)
            w = tl.dot(Ainv, -lr_c[:, None] * X, input_precision=PREC)
            U = gv[:, None] * w + c[:, None] * E
            # through W' = a W + b S + Uᵀ K and S' = sm S + (sd⊙E)ᵀ K
            dU = tl.dot(K, tl.trans(dW), input_precision=PREC)           # [BC, BV]
            KdS = tl.dot(K, tl.trans(dS), input_precision=PREC)
            dK = tl.dot(U, dW, input_precision=PREC) + tl.dot(E * sd[:, None], dS, input_precision=PREC)
            dE = c[:, None] * dU + sd[:, None] * KdS
            ip = i_v * B_H * T + it
            tl.store(drow + 0 * (B_H * T * tl.num_programs(1)) + ip, tl.sum(E * dU, 1), mask=valid)    # dc
            tl.store(drow + 1 * (B_H * T * tl.num_programs(1)) + ip, tl.sum(E * KdS, 1), mask=valid)   # dsd
            tl.store(drow + 2 * (B_H * T * tl.num_programs(1)) + ip, tl.sum(w * dU, 1), mask=valid)    # dgv
            i_sp = i_v * B_H * NSTEP + i_step
            n_sp = B_H * NSTEP * tl.num_programs(1)
            tl.store(dstep + 0 * n_sp + i_sp, tl.sum(tl.sum(dW * W, 1), 0))    # da
            tl.store(dstep + 1 * n_sp + i_sp, tl.sum(tl.sum(dW * S, 1), 0))    # db
            tl.store(dstep + 2 * n_sp + i_sp, tl.sum(tl.sum(dS * S, 1), 0))    # dsm
            # through w = (I + Lm)⁻¹ R, R = −lr⊙X
            dR = tl.dot(tl.trans(Ainv), gv[:, None] * dU, input_precision=PREC)
            dLm = tl.where(lower, -tl.dot(dR, tl.trans(w), input_precision=PREC), 0.0)
            dX = -lr_c[:, None] * dR
            dlr = -tl.sum(dR * X, 1) + tl.sum(dLm * PGx * Kk, 1)
            tl.store(drow + 3 * (B_H * T * tl.num_programs(1)) + ip, tl.sum(dX * KW, 1), mask=valid)   # dgex
            tl.store(drow + 4 * (B_H * T * tl.num_programs(1)) + ip, tl.sum(dX * KS, 1), mask=valid)   # dBex
            tl.store(drow + 5 * (B_H * T * tl.num_programs(1)) + ip, dlr, mask=valid)                  # lr, direct
            gdX = gex[:, None] * dX
            bdX = Bex[:, None] * dX
            dK += tl.dot(gdX, W, input_precision=PREC) + tl.dot(bdX, S, input_precision=PREC)
            dM = tl.dot(dX, tl.trans(E), input_precision=PREC)
            dE += tl.dot(tl.trans(Mx), dX, input_precision=PREC)
            dKk = dM * Cx + dLm * lr_c[:, None] * PGx
            p_m = i_sp * BC * BC + p_mat
            tl.store(dmat + p_m, dLm * lr_c[:, None] * Kk)                 # dPGx
            tl.store(dmat + n_sp * BC * BC + p_m, dM * Kk)                 # dCx
            dK += tl.dot(dKk + tl.trans(dKk), K, input_precision=PREC)
            # through E = K W̄ᵀ − V and O = Q W̄ᵀ
            dK += tl.dot(dE, Wb, input_precision=PREC)
            tl.store(dq + ip[:, None] * DK + ok[None, :], tl.dot(dO, Wb, input_precision=PREC), mask=m_k)
            tl.store(dk + ip[:, None] * DK + ok[None, :], dK, mask=m_k)
            tl.store(dv + it[:, None] * DV + ov[None, :], (-dE).to(dv.dtype.element_ty), mask=m_v)
            dWb += tl.dot(tl.trans(dE), K, input_precision=PREC) + tl.dot(tl.trans(dO), Q, input_precision=PREC)
            dS_new = b * dW + sm * dS + tl.dot(tl.trans(bdX), K, input_precision=PREC)
            dW = a * dW + tl.dot(tl.trans(gdX), K, input_precision=PREC)
            dS = dS_new
        dW += dWb
    tl.store(dW0 + i_bh * DV * DK + p_state, dW.to(dW0.dtype.element_ty), mask=mvk)
    tl.store(dS0 + i_bh * DV * DK + p_state, dS.to(dS0.dtype.element_ty), mask=mvk)


def step_dgd_gate_mats(lr, decay, mom, chunk: int, bc: int):
    """The gate matrices of `fused_dgd.dgd_gate_mats` for every kernel step at once, in torch (exact at
    zero gates, differentiable): per step (a, b, sm) (B, H, NSTEP); per row in the step layout
    (c, sd, gv, gex, Bex) (B, H, NSTEP, BC); (PGx, Cx) (B, H, NSTEP, BC, BC) indexed [i, j] as the kernel."""
    idx, valid = step_index(lr.shape[-1], chunk, bc, lr.device)
    lr_, gam, m = to_steps(lr, idx, valid), to_steps(1 - decay, idx, valid, 1.0), to_steps(mom, idx, valid, 1.0)
    PG, PM = pair_prod(gam), pair_prod(m)               # [j, i]
    gcum, mcum = torch.cumprod(gam, -1), torch.cumprod(m, -1)
    Bv = (mcum[..., None, :] @ PG)[..., 0, :]
    Cm = -lr_[..., :, None] * (PM @ PG)
    # the step end is its last real row (padded rows would act as steps W += S)
    last = (valid.sum(-1) - 1).clamp_min(0).expand(*lr_.shape[:-1])[..., None]
    at_end = lambda x: x.gather(-1, last)[..., 0]                                  # noqa: E731
    col_end = lambda x: x.gather(-1, last[..., None, :].expand(*x.shape[:-1], 1))[..., 0]  # noqa: E731
    a, b, sm = at_end(gcum), at_end(Bv), at_end(mcum)
    c, sd, gv = col_end(Cm), -lr_ * col_end(PM), col_end(PG)
    gex, Bex = F.pad(gcum[..., :-1], (1, 0), value=1.0), F.pad(Bv[..., :-1], (1, 0))
    PGx, Cx = (F.pad(x[..., :-1], (1, 0)).transpose(-1, -2) for x in (PG, Cm))
    return (a, b, sm), (c, sd, gv, gex, Bex), (PGx, Cx)


def linear_memory_bwd_dgd(q, k, v, lr, decay, mom, W0, S0, do, dWT, dST, chunk: int, bv: int | None = None):
    """Gradients of (o, W_T, S_T) = linear_memory(..., dgd=True) w.r.t. all eight inputs, in their dtypes."""
    from .._op_utils import autograd_inside_op
    from .fused_dgd import linear_memory_fwd_dgd_chunk

    xs = [x.contiguous() for x in (q, k, v, lr, decay, mom, W0, S0, do, dWT, dST)]
    q, k, v, lr, decay, mom, W0, S0, do, dWT, dST = xs
    B, H, T, DK = q.shape
    chunk = min(chunk, T)  # one chunk either way; keeps the step buffers T-sized
    DV = v.shape[-1]
    bv = bv or v_block(DV, B * H)
    nv = -(-DV // bv)
    _, _, _, Ws, Ss = linear_memory_fwd_dgd_chunk(q, k, v, lr, decay, mom, W0, S0, chunk, save_states=True, bv=bv)
    bc, ns, nstep = step_layout(chunk, T)
    f32 = dict(dtype=torch.float32, device=q.device)
    dv = torch.empty_like(v)
    dq, dk = torch.empty(nv, B, H, T, DK, **f32), torch.empty(nv, B, H, T, DK, **f32)
    drow = torch.empty(6, nv, B, H, T, **f32)
    # holes (steps the last chunk does not have) are never written: zeros
    dstep = torch.zeros(3, nv, B, H, nstep, **f32)
    dmat = torch.zeros(2, nv, B, H, nstep, bc, bc, **f32)
    dW0, dS0 = torch.empty_like(W0), torch.empty_like(S0)
    linear_memory_bwd_kernel_dgd_chunk[(B * H, nv)](
        q, k, v, lr, decay, mom, Ws, Ss, do, dWT, dST,
        dq, dk, dv, drow, dstep, dmat, dW0, dS0,
        T, chunk, ns, nstep,
        DK=DK, DV=DV, BK=block(DK), BV=bv, BC=bc, PREC="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=CHUNK_WARPS, num_stages=CHUNK_STAGES,
    )
    drow, dstep, dmat = drow.sum(1), dstep.sum(1), dmat.sum(1)
    idx, valid = step_index(T, chunk, bc, q.device)
    with autograd_inside_op():
        gs = [x.detach().float().requires_grad_() for x in (lr, decay, mom)]
        per_step, per_row, mats = step_dgd_gate_mats(*gs, chunk, bc)
        grads = (*dstep, *(to_steps(g, idx, valid) for g in drow[:5]), *dmat)
        dlr, ddecay, dmom = torch.autograd.grad((*per_step, *per_row, *mats), gs, grads, allow_unused=True)
    dlr = dlr + drow[5]
    gate = [g.to(x.dtype) for g, x in zip((dlr, ddecay, dmom), (lr, decay, mom))]
    return (dq.sum(0).to(q.dtype), dk.sum(0).to(k.dtype), dv, *gate, dW0, dS0)
