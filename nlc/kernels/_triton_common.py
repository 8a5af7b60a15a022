"""Triton helpers shared by the kernels (imported lazily: TRITON_INTERPRET is read when a kernel is defined)."""
import triton
import triton.language as tl


@triton.jit
def chunk_gate_coeffs(lr, gam, mom, valid):
    """Closed form of the L = sum(valid) steps `S_t = m_t S_{t-1} - lr_t g_t ; W_t = gam_t W_{t-1} + S_t`.

    lr, gam, mom, valid: [BC] vectors (fp32; invalid rows may hold anything). Returns (a, b, c, sm, sd):
    W_L = a W_0 + b S_0 + sum_i c_i g_i,  S_L = sm S_0 + sum_i sd_i g_i.
    Products of gates are taken in log space; entries <= 0 are counted apart as exact zeros, so a zero gate
    gives an exact 0. Gates must lie in [0, 1] (a negative one would be taken as 0).
    """
    m = tl.where(valid, mom, 1.0)
    g = tl.where(valid, gam, 1.0)
    lr = tl.where(valid, lr, 0.0)
    lm = tl.cumsum(tl.log(tl.where(m > 0, m, 1.0)), 0)
    zm = tl.cumsum((m <= 0).to(tl.int32), 0)
    lg = tl.cumsum(tl.log(tl.where(g > 0, g, 1.0)), 0)
    zg = tl.cumsum((g <= 0).to(tl.int32), 0)
    lm_tot = tl.sum(tl.where(m > 0, tl.log(tl.where(m > 0, m, 1.0)), 0.0), 0)
    zm_tot = tl.sum((m <= 0).to(tl.int32), 0)
    lg_tot = tl.sum(tl.where(g > 0, tl.log(tl.where(g > 0, g, 1.0)), 0.0), 0)
    zg_tot = tl.sum((g <= 0).to(tl.int32), 0)
    # gv[t] = G(t+1..L) for valid t
    gv_ok = valid & (zg == zg_tot)
    gv = tl.where(gv_ok, tl.exp(tl.where(gv_ok, lg_tot - lg, 0.0)), 0.0)
    # P[i, t] = M(i+1..t) for i <= t
    idx = tl.arange(0, lr.shape[0])
    p_ok = (idx[None, :] >= idx[:, None]) & (zm[None, :] == zm[:, None])
    P = tl.where(p_ok, tl.exp(tl.where(p_ok, lm[None, :] - lm[:, None], 0.0)), 0.0)
    c = -lr * tl.sum(P * gv[None, :], 1)
    m0_ok = zm == 0
    b = tl.sum(gv * tl.where(m0_ok, tl.exp(tl.where(m0_ok, lm, 0.0)), 0.0), 0)
    a = tl.where(zg_tot == 0, tl.exp(lg_tot), 0.0)
    sm = tl.where(zm_tot == 0, tl.exp(lm_tot), 0.0)
    sd_ok = zm == zm_tot
    sd = -lr * tl.where(sd_ok, tl.exp(tl.where(sd_ok, lm_tot - lm, 0.0)), 0.0)
    return a, b, c, sm, sd


@triton.jit
def load_gates(lr, decay, mom, it, valid):
    """The rows' gates as fp32 [BC] vectors: lr, gam = 1 - decay, mom (rows past the end: 0, 1, 1)."""
    lr_c = tl.load(lr + it, mask=valid, other=0.0).to(tl.float32)
    gam_c = 1.0 - tl.load(decay + it, mask=valid, other=0.0).to(tl.float32)
    mom_c = tl.load(mom + it, mask=valid, other=1.0).to(tl.float32)
    return lr_c, gam_c, mom_c


@triton.jit
def load_rows(p, it, cols, D: tl.constexpr, mask):
    """Rows `it` (global row indices) x columns `cols` of a contiguous (rows, D) tensor, as fp32 (0 outside mask)."""
    return tl.load(p + it[:, None] * D + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def load_step(q, k, v, do, lr, decay, mom, i_bh, T, s, end, ok, ov, mk, mv,
              DK: tl.constexpr, DV: tl.constexpr, BC: tl.constexpr):
    """What a backward kernel reads for the step of rows [s, end) of sequence i_bh: the masks, the row
    indices `it`, Q, K (BC, BK), V, dO (BC, BV) as fp32 and the gates (as `load_gates`)."""
    rows = s + tl.arange(0, BC)
    valid = rows < end
    it = i_bh * T + rows
    m_k = valid[:, None] & mk[None, :]
    m_v = valid[:, None] & mv[None, :]
    Q = load_rows(q, it, ok, DK, m_k)
    K = load_rows(k, it, ok, DK, m_k)
    V = load_rows(v, it, ov, DV, m_v)
    dO = load_rows(do, it, ov, DV, m_v)
    lr_c, gam_c, mom_c = load_gates(lr, decay, mom, it, valid)
    return valid, it, m_k, m_v, Q, K, V, dO, lr_c, gam_c, mom_c
