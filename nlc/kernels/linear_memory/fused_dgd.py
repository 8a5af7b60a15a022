"""Triton chunk kernel for the dgd linear memory (Hope eqs. 88/93): the WY form of `naive.dgd_block`.

Layout as in `fused.py`: q, k (B,H,T,Dk), v and o (B,H,T,Dv), gates (B,H,T), states (B,H,Dv,Dk), contiguous.
One program per (b, h, block of BV rows of W) walks the sequence chunk by chunk, state in registers (fp32).
A chunk is walked in sub-blocks of BC <= SUB_BLOCK (32) rows; every sub-block reads the chunk-start state W̄ for o and E,
and advances the running state (W, S) by

  w = (I + Lm)^{-1} R,   W <- a W + b S + (gv⊙w + c⊙E)ᵀ K,   S <- sm S + (sd⊙E)ᵀ K
  Lm[i, j] = lr_i G(j+1..i-1) (k_j·k_i)  (j < i),
  R_i = -lr_i (gex_i W k_i + Bex_i S k_i + Σ_{j<i} Cx[i, j] (k_j·k_i) e_j)

with w_i = -lr_i W_{i-1} k_i the kkᵀ term at the running state. Gate products come from in-kernel cumsums
of log-gates with exact zeros counted apart (a zero gate gives an exact 0), and (I + Lm)^{-1} is built
row by row by forward substitution (as fla's chunk_delta_rule), all in fp32.
"""
import triton
import triton.language as tl

from .._triton_common import load_step, log_scan, range_prod


@triton.jit
def dgd_gate_mats(lr, gam, mom, valid):
    """Gate coefficients of one sub-block (rows `valid`; invalid rows act as gam = mom = 1, lr = 0).

    Returns, with G/M the products of gam/mom, B_i = Σ_{t<=i} G(t+1..i) M(1..t), P[j, i] = Σ_t M(j+1..t) G(t+1..i):
      a = G(all), b = B_end, c_j = -lr_j P[j, end], sm = M(all), sd_j = -lr_j M(j+1..end), gv_j = G(j+1..end),
      gex_i = G(1..i-1), Bex_i = B_{i-1}, PGx[i, j] = G(j+1..i-1) (j < i), Cx[i, j] = -lr_j P[j, i-1] (j < i).
    (rows 0-based; products over an empty range are 1; zeros and signs exact, as `chunk_gate_coeffs`.)
    """
    m = tl.where(valid, mom, 1.0)
    g = tl.where(valid, gam, 1.0)
    lr = tl.where(valid, lr, 0.0)
    Lg, Zg, Ng, lg, zg, ng = log_scan(g)
    Lm, Zm, Nm, lm, zm, nm = log_scan(m)
    # exclusive cumsums (through row i-1)
    Lgx, Zgx, Ngx = Lg - lg, Zg - zg, Ng - ng
    Lg_tot, Zg_tot, Ng_tot = tl.sum(lg, 0), tl.sum(zg, 0), tl.sum(ng, 0)
    Lm_tot, Zm_tot, Nm_tot = tl.sum(lm, 0), tl.sum(zm, 0), tl.sum(nm, 0)
    idx = tl.arange(0, lr.shape[0])
    ii = idx[:, None]
    jj = idx[None, :]
    # PGx[i, j] = G(j+1..i-1) for j < i
    PGx = tl.where(jj < ii, range_prod(Lgx[:, None], Zgx[:, None], Ngx[:, None], Lg[None, :], Zg[None, :], Ng[None, :]), 0.0)
    # PMt[t, j] = M(j+1..t) for j <= t
    PMt = tl.where(jj <= ii, range_prod(Lm[:, None], Zm[:, None], Nm[:, None], Lm[None, :], Zm[None, :], Nm[None, :]), 0.0)
    # mcum_t = M(1..t), gv_t = G(t+1..end) (0 on invalid rows: they are no tokens in the sums over t)
    mcum = range_prod(Lm, Zm, Nm, 0.0, 0, 0)
    gv = tl.where(valid, range_prod(Lg_tot, Zg_tot, Ng_tot, Lg, Zg, Ng), 0.0)
    gex = range_prod(Lgx, Zgx, Ngx, 0.0, 0, 0)
    # Bex_i = Σ_{t<i} M(1..t) G(t+1..i-1),  Cx[i, j] = -lr_j Σ_t G(t+1..i-1) M(j+1..t)
    Bex = tl.sum(PGx * mcum[None, :], 1)
    # fp32 products of gates: full precision also for half inputs (a BC^3 product, cheap)
    Cx = -lr[None, :] * tl.dot(PGx, PMt, input_precision="ieee")
    # block end: c_j = -lr_j Σ_t M(j+1..t) gv_t  (PMt[t, j])
    c = -lr * tl.sum(PMt * gv[:, None], 0)
    b = tl.sum(gv * mcum, 0)
    a = range_prod(Lg_tot, Zg_tot, Ng_tot, 0.0, 0, 0)
    sm = range_prod(Lm_tot, Zm_tot, Nm_tot, 0.0, 0, 0)
    sd = -lr * range_prod(Lm_tot, Zm_tot, Nm_tot, Lm, Zm, Nm)
    return a, b, c, sm, sd, gv, gex, Bex, PGx, Cx


@triton.jit
def unit_lower_inverse(Lm, BC: tl.constexpr):
    """(I + Lm)^{-1} for a strictly lower-triangular [BC, BC] Lm, by forward substitution row by row.

    With N = (I + Lm)^{-1} = I + X: X_i = -Lm_i - Σ_{j<i} Lm[i, j] X_j, and X_0 = 0."""
    oc = tl.arange(0, BC)
    X = -Lm
    for i in range(1, BC):
        a = -tl.sum(tl.where(oc[:, None] == i, Lm, 0.0), 0)
        a = a + tl.sum(a[:, None] * X, 0)
        X = tl.where(oc[:, None] == i, a[None, :], X)
    return X + (oc[:, None] == oc[None, :]).to(tl.float32)


@triton.jit
def linear_memory_fwd_kernel_dgd_chunk(
    q, k, v, lr, decay, mom, W0, S0, o, WT, ST, Ws, Ss,
    T, C, NS, NSTEP,
    DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, BC: tl.constexpr,
    PREC: tl.constexpr, SAVE: tl.constexpr,
):
    i_bh = tl.program_id(0).to(tl.int64)
    # rows of W (the Dv dim) evolve independently also with dgd (the kkᵀ term acts on W from the right):
    # program_id(1) takes BV of them
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
        WbT = tl.trans(W)
        # a chunk longer than BC rows is walked in sub-blocks; all of them read the chunk-start W̄
        for s in range(cs, ce, BC):
            if SAVE:
                # the state at the start of every step (chunk j, sub-block m), as the non-dgd chunk kernel
                p_step = (i_bh * NSTEP + (cs // C) * NS + (s - cs) // BC) * DV * DK + ov[:, None] * DK + ok[None, :]
                tl.store(Ws + p_step, W, mask=mvk)
                tl.store(Ss + p_step, S, mask=mvk)
            # Q, K (BC, BK) and V (BC, BV) of the step's rows
            valid, it, m_k, m_v, Q, K, V, lr_c, gam_c, mom_c = load_step(
                q, k, v, lr, decay, mom, i_bh, T, s, ce, ok, ov, mk, mv, DK, DV, BC)
            O = tl.dot(Q, WbT, input_precision=PREC)
            tl.store(o + it[:, None] * DV + ov[None, :], O.to(o.dtype.element_ty), mask=m_v)
            E = tl.dot(K, WbT, input_precision=PREC) - V
            a, b, c, sm, sd, gv, gex, Bex, PGx, Cx = dgd_gate_mats(lr_c, gam_c, mom_c, valid)
            # [BC, BC]: k_i . k_j
            Kk = tl.dot(K, tl.trans(K), input_precision=PREC)
            Lm = lr_c[:, None] * PGx * Kk
            KW = tl.dot(K, tl.trans(W), input_precision=PREC)
            KS = tl.dot(K, tl.trans(S), input_precision=PREC)
            R = -lr_c[:, None] * (gex[:, None] * KW + Bex[:, None] * KS + tl.dot(Cx * Kk, E, input_precision=PREC))
            w = tl.dot(unit_lower_inverse(Lm, BC), R, input_precision=PREC)
            U = gv[:, None] * w + c[:, None] * E
            W = a * W + b * S + tl.dot(tl.trans(U), K, input_precision=PREC)
            S = sm * S + tl.dot(tl.trans(E * sd[:, None]), K, input_precision=PREC)
    tl.store(WT + p_state, W.to(WT.dtype.element_ty), mask=mvk)
    tl.store(ST + p_state, S.to(ST.dtype.element_ty), mask=mvk)


def linear_memory_fwd_dgd_chunk(q, k, v, lr, decay, mom, W0, S0, chunk: int, save_states: bool = False,
                                bv: int | None = None):
    """The dgd chunk kernel through `fused.linear_memory_fwd` (one launcher for both chunk kernels):
    (o, W_T, S_T), plus the step-start states (Ws, Ss) with save_states."""
    from .fused import linear_memory_fwd

    return linear_memory_fwd(q, k, v, lr, decay, mom, W0, S0, chunk, True, impl="chunk", save_states=save_states, bv=bv)
