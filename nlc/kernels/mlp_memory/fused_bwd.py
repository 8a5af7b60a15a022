"""Triton backward of the 2-layer MLP memory: one program per (b, h) walks the steps in reverse.

A step is a sub-block of ≤ BC rows of a chunk (see `step_starts`). With (W̄1, W̄2) the chunk-start weights,
(W1, W2, S1, S2) the state at the step start and (a, b, c, sm, sd) the step's gate coefficients, the forward did
    read:      Zq = Q W̄1ᵀ,  O = act(Zq) W̄2ᵀ
    surprise:  Z = K W̄1ᵀ,  A = act(Z),  E = A W̄2ᵀ − V,  P = E W̄2,  D = P ⊙ act'(Z)
    update:    W1' = a W1 + b S1 + (c⊙D)ᵀ K,  S1' = sm S1 + (sd⊙D)ᵀ K   (and W2, S2 with E and A)
Given the gradient of the state after the step (dW1', dW2', dS1', dS2') and dO, the chain rule (⊙ rowwise)
    dD = c⊙K dW1'ᵀ + sd⊙K dS1'ᵀ,   dE = c⊙A dW2'ᵀ + sd⊙A dS2'ᵀ + (dD⊙act'(Z)) W̄2ᵀ,
    dA = (c⊙E) dW2' + (sd⊙E) dS2' + dE W̄2,   dZ = dA⊙act'(Z) + dD⊙P⊙act''(Z),
    dK = (c⊙D) dW1' + (sd⊙D) dS1' + dZ W̄1,   dV = −dE,   dQ = (dO W̄2 ⊙ act'(Zq)) W̄1,
    dW̄2 += dOᵀ act(Zq) + dEᵀ A + Eᵀ(dD⊙act'(Z)),   dW̄1 += (dO W̄2 ⊙ act'(Zq))ᵀ Q + dZᵀ K,
    dc = rowsum(D ⊙ K dW1'ᵀ + E ⊙ A dW2'ᵀ) (dsd alike with dS'),  da = ⟨dW1', W1⟩ + ⟨dW2', W2⟩, ...
    dW = a dW' (+ dW̄ at the chunk's first step),  dS = b dW' + sm dS'.
States come from the forward kernel run with SAVE=True; the gate-coefficient grads go back to
(lr, decay, mom) through `step_gate_coeffs` in torch (`gate_grads`), as for the linear memory.
"""
import torch
import triton
import triton.language as tl

from .._utils import CHUNK_STAGES, CHUNK_WARPS, block, step_layout
from .._triton_common import chunk_gate_coeffs, load_rows, load_step
from .fused import ACT_IDS, _act, _act_d2, _load_state, _store_state


@triton.jit
def mlp_memory_bwd_kernel_chunk(
    q, k, v, lr, decay, mom, W1s, W2s, S1s, S2s, do, dW1T, dW2T, dS1T, dS2T,
    dq, dk, dv, dc, dsd, da, db, dsm, dW1_0, dW2_0, dS1_0, dS2_0,
    T, C, NS, NSTEP,
    DK: tl.constexpr, DH: tl.constexpr, DV: tl.constexpr,
    BK: tl.constexpr, BH: tl.constexpr, BV: tl.constexpr, BC: tl.constexpr,
    ACT: tl.constexpr, PREC: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    ok = tl.arange(0, BK)
    ov = tl.arange(0, BV)
    mk = ok < DK
    mv = ov < DV
    dW1 = _load_state(dW1T, i_bh, DH, DK, BH, BK)
    dS1 = _load_state(dS1T, i_bh, DH, DK, BH, BK)
    dW2 = _load_state(dW2T, i_bh, DV, DH, BV, BH)
    dS2 = _load_state(dS2T, i_bh, DV, DH, BV, BH)
    NC = tl.cdiv(T, C)
    for jj in range(0, NC):
        j = NC - 1 - jj
        cs = j * C
        ce = tl.minimum(cs + C, T)
        i_first = i_bh * NSTEP + j * NS
        W1b = _load_state(W1s, i_first, DH, DK, BH, BK)
        W2b = _load_state(W2s, i_first, DV, DH, BV, BH)
        # the gradient reaching the chunk-start weights through the reads and surprises of all its steps
        dW1b = tl.zeros([BH, BK], dtype=tl.float32)
        dW2b = tl.zeros([BV, BH], dtype=tl.float32)
        nsub = tl.cdiv(ce - cs, BC)
        for mm in range(0, nsub):
            m = nsub - 1 - mm
            s = cs + m * BC
            i_step = i_first + m
            W1 = _load_state(W1s, i_step, DH, DK, BH, BK)
            S1 = _load_state(S1s, i_step, DH, DK, BH, BK)
            W2 = _load_state(W2s, i_step, DV, DH, BV, BH)
            S2 = _load_state(S2s, i_step, DV, DH, BV, BH)
            valid, it, m_k, m_v, Q, K, V, lr_c, gam_c, mom_c = load_step(
                q, k, v, lr, decay, mom, i_bh, T, s, tl.minimum(s + BC, ce), ok, ov, mk, mv, DK, DV, BC)
            dO = load_rows(do, it, ov, DV, m_v)
            a, b, c, sm, sd = chunk_gate_coeffs(lr_c, gam_c, mom_c, valid)
            W1bT = tl.trans(W1b)
            W2bT = tl.trans(W2b)
            # the read
            Zq = tl.dot(Q, W1bT, input_precision=PREC)
            Aq, dAq_dz = _act(Zq, ACT)
            dZq = tl.dot(dO, W2b, input_precision=PREC) * dAq_dz
            tl.store(dq + it[:, None] * DK + ok[None, :], tl.dot(dZq, W1b, input_precision=PREC).to(dq.dtype.element_ty), mask=m_k)
            dW2b += tl.dot(tl.trans(dO), Aq, input_precision=PREC)
            dW1b += tl.dot(tl.trans(dZq), Q, input_precision=PREC)
            # the surprise, recomputed at the chunk-start weights
            Z = tl.dot(K, W1bT, input_precision=PREC)
            A, dA_dz = _act(Z, ACT)
            E = tl.where(valid[:, None], tl.dot(A, W2bT, input_precision=PREC) - V, 0.0)
            P = tl.dot(E, W2b, input_precision=PREC)
            D = P * dA_dz
            # the update's chain rule
            KdW1 = tl.dot(K, tl.trans(dW1), input_precision=PREC)   # [BC, BH]
            KdS1 = tl.dot(K, tl.trans(dS1), input_precision=PREC)
            AdW2 = tl.dot(A, tl.trans(dW2), input_precision=PREC)   # [BC, BV]
            AdS2 = tl.dot(A, tl.trans(dS2), input_precision=PREC)
            dD = c[:, None] * KdW1 + sd[:, None] * KdS1
            dE = c[:, None] * AdW2 + sd[:, None] * AdS2
            dA = tl.dot(E * c[:, None], dW2, input_precision=PREC) + tl.dot(E * sd[:, None], dS2, input_precision=PREC)
            dK = tl.dot(D * c[:, None], dW1, input_precision=PREC) + tl.dot(D * sd[:, None], dS1, input_precision=PREC)
            tl.store(dc + it, tl.sum(D * KdW1, 1) + tl.sum(E * AdW2, 1), mask=valid)
            tl.store(dsd + it, tl.sum(D * KdS1, 1) + tl.sum(E * AdS2, 1), mask=valid)
            tl.store(da + i_step, tl.sum(tl.sum(dW1 * W1, 1), 0) + tl.sum(tl.sum(dW2 * W2, 1), 0))
            tl.store(db + i_step, tl.sum(tl.sum(dW1 * S1, 1), 0) + tl.sum(tl.sum(dW2 * S2, 1), 0))
            tl.store(dsm + i_step, tl.sum(tl.sum(dS1 * S1, 1), 0) + tl.sum(tl.sum(dS2 * S2, 1), 0))
            # through D = P * act'(Z), P = E W̄2, E = A W̄2ᵀ - V, A = act(Z), Z = K W̄1ᵀ
            dP = dD * dA_dz
            dE += tl.dot(dP, W2bT, input_precision=PREC)
            dW2b += tl.dot(tl.trans(E), dP, input_precision=PREC) + tl.dot(tl.trans(dE), A, input_precision=PREC)
            dA += tl.dot(dE, W2b, input_precision=PREC)
            dZ = dA * dA_dz + dD * P * _act_d2(Z, ACT)
            dK += tl.dot(dZ, W1b, input_precision=PREC)
            dW1b += tl.dot(tl.trans(dZ), K, input_precision=PREC)
            tl.store(dk + it[:, None] * DK + ok[None, :], dK.to(dk.dtype.element_ty), mask=m_k)
            tl.store(dv + it[:, None] * DV + ov[None, :], (-dE).to(dv.dtype.element_ty), mask=m_v)
            dS1 = b * dW1 + sm * dS1
            dS2 = b * dW2 + sm * dS2
            dW1 = a * dW1
            dW2 = a * dW2
        dW1 += dW1b
        dW2 += dW2b
    _store_state(dW1_0, dW1, i_bh, DH, DK, BH, BK)
    _store_state(dS1_0, dS1, i_bh, DH, DK, BH, BK)
    _store_state(dW2_0, dW2, i_bh, DV, DH, BV, BH)
    _store_state(dS2_0, dS2, i_bh, DV, DH, BV, BH)


def mlp_memory_bwd(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, do, dW1T, dW2T, dS1T, dS2T, chunk: int,
                   act: str = "silu"):
    """Gradients of (o, W1_T, W2_T, S1_T, S2_T) = mlp_memory(...) w.r.t. all ten inputs, in their dtypes."""
    from .._op_utils import gate_grads
    from .fused import mlp_memory_fwd

    # the kernels index memory as contiguous (a gradient can arrive as an expanded or transposed view)
    xs = [x.contiguous() for x in (q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, do, dW1T, dW2T, dS1T, dS2T)]
    q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, do, dW1T, dW2T, dS1T, dS2T = xs
    B, H, T, DK = q.shape
    chunk = min(chunk, T)  # one chunk either way; keeps the step buffers T-sized
    DV, DH = v.shape[-1], W1_0.shape[-2]
    *_, W1s, W2s, S1s, S2s = mlp_memory_fwd(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, chunk, act,
                                            save_states=True)
    bc, ns, nstep = step_layout(chunk, T)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    f32 = dict(dtype=torch.float32, device=q.device)
    dc, dsd = torch.empty(B, H, T, **f32), torch.empty(B, H, T, **f32)
    # holes (steps the last chunk does not have) stay 0: step_gate_coeffs gives them constant coefficients
    da, db, dsm = (torch.zeros(B, H, nstep, **f32) for _ in range(3))
    dstate = [torch.empty_like(x) for x in (W1_0, W2_0, S1_0, S2_0)]
    prec = "ieee" if q.dtype == torch.float32 else "tf32"
    mlp_memory_bwd_kernel_chunk[(B * H,)](
        q, k, v, lr, decay, mom, W1s, W2s, S1s, S2s, do, dW1T, dW2T, dS1T, dS2T,
        dq, dk, dv, dc, dsd, da, db, dsm, *dstate,
        T, chunk, ns, nstep,
        DK=DK, DH=DH, DV=DV, BK=block(DK), BH=block(DH), BV=block(DV), BC=bc,
        ACT=ACT_IDS[act], PREC=prec, num_warps=CHUNK_WARPS, num_stages=CHUNK_STAGES,
    )
    dlr, ddecay, dmom = gate_grads(lr, decay, mom, chunk, bc, (da, db, dc, dsm, dsd))
    return (dq, dk, dv, dlr, ddecay, dmom, *dstate)
