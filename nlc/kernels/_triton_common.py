"""Triton helpers shared by the kernels (imported lazily: TRITON_INTERPRET is read when a kernel is defined)."""
import triton
import triton.language as tl


@triton.jit
def log_scan(x):
    """Running products of a [BC] gate vector in log space, exact at zeros and signs: inclusive cumsums
    (L, Z, N) of log|x| (0 at zeros), of the zero count and of the negative count, and the per-entry terms
    (l, z, n). `range_prod` turns two positions of them into the product between."""
    ax = tl.abs(x)
    l = tl.log(tl.where(ax > 0, ax, 1.0))
    z = (x == 0).to(tl.int32)
    n = (x < 0).to(tl.int32)
    return tl.cumsum(l, 0), tl.cumsum(z, 0), tl.cumsum(n, 0), l, z, n


@triton.jit
def range_prod(l_hi, z_hi, n_hi, l_lo, z_lo, n_lo):
    """The product of x over the positions (lo, hi] from `log_scan`'s cumsums at hi and lo (lo = 0, 0, 0
    for the start): an exact 0 if a zero lies in the range, else sign · exp(Σ log|x|), the sign from the
    parity of the negatives. Broadcasts; ranges with hi < lo must be masked by the caller."""
    ok = z_hi == z_lo
    sign = 1.0 - 2.0 * ((n_hi - n_lo) & 1).to(tl.float32)
    return tl.where(ok, sign * tl.exp(tl.where(ok, l_hi - l_lo, 0.0)), 0.0)


@triton.jit
def chunk_gate_coeffs(lr, gam, mom, valid):
    """Closed form of the L = sum(valid) steps `S_t = m_t S_{t-1} - lr_t g_t ; W_t = gam_t W_{t-1} + S_t`.

    lr, gam, mom, valid: [BC] vectors (fp32; invalid rows may hold anything). Returns (a, b, c, sm, sd):
    W_L = a W_0 + b S_0 + sum_i c_i g_i,  S_L = sm S_0 + sum_i sd_i g_i.
    Products of gates are taken in log space with zeros and signs counted apart (`range_prod`), so a zero
    gate gives an exact 0 and a negative one its sign, as the torch references multiply them.
    """
    m = tl.where(valid, mom, 1.0)
    g = tl.where(valid, gam, 1.0)
    lr = tl.where(valid, lr, 0.0)
    Lm, Zm, Nm, lm, zm, nm = log_scan(m)
    Lg, Zg, Ng, lg, zg, ng = log_scan(g)
    Lm_tot, Zm_tot, Nm_tot = tl.sum(lm, 0), tl.sum(zm, 0), tl.sum(nm, 0)
    Lg_tot, Zg_tot, Ng_tot = tl.sum(lg, 0), tl.sum(zg, 0), tl.sum(ng, 0)
    # gv[t] = G(t+1..L) for valid t
    gv = tl.where(valid, range_prod(Lg_tot, Zg_tot, Ng_tot, Lg, Zg, Ng), 0.0)
    # P[i, t] = M(i+1..t) for i <= t
    idx = tl.arange(0, lr.shape[0])
    P = tl.where(idx[None, :] >= idx[:, None],
                 range_prod(Lm[None, :], Zm[None, :], Nm[None, :], Lm[:, None], Zm[:, None], Nm[:, None]), 0.0)
    c = -lr * tl.sum(P * gv[None, :], 1)
    b = tl.sum(gv * range_prod(Lm, Zm, Nm, 0.0, 0, 0), 0)
    a = range_prod(Lg_tot, Zg_tot, Ng_tot, 0.0, 0, 0)
    sm = range_prod(Lm_tot, Zm_tot, Nm_tot, 0.0, 0, 0)
    sd = -lr * range_prod(Lm_tot, Zm_tot, Nm_tot, Lm, Zm, Nm)
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
def load_step(q, k, v, lr, decay, mom, i_bh, T, s, end, ok, ov, mk, mv,
              DK: tl.constexpr, DV: tl.constexpr, BC: tl.constexpr):
    """What a chunk kernel reads for the step of rows [s, end) of sequence i_bh: the row mask `valid`, the
    row indices `it`, the (rows x K) and (rows x V) masks, Q, K (BC, BK), V (BC, BV) as fp32 and the gates
    (as `load_gates`)."""
    rows = s + tl.arange(0, BC)
    valid = rows < end
    it = i_bh * T + rows
    m_k = valid[:, None] & mk[None, :]
    m_v = valid[:, None] & mv[None, :]
    Q = load_rows(q, it, ok, DK, m_k)
    K = load_rows(k, it, ok, DK, m_k)
    V = load_rows(v, it, ov, DV, m_v)
    lr_c, gam_c, mom_c = load_gates(lr, decay, mom, it, valid)
    return valid, it, m_k, m_v, Q, K, V, lr_c, gam_c, mom_c
