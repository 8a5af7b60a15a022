"""Plain PyTorch references for the linear memory (Titans eqs. 13-14, Hope eqs. 88/93 with chunk-start reads).

`naive_linear_memory` is the contract: a per-token loop, written to be read, not to be fast.
`chunk_linear_memory` is the same math with each chunk as matmuls (closed-form gate coefficients);
it is what the fused op's backward recomputes through, and the torch.compile baseline in the benchmark.
Both compute in fp32 (fp64 stays fp64) and return outputs in the input dtypes.
"""
import torch

from .._utils import gate_coeffs, upcast
from ..products import pair_prod


def naive_linear_memory(q, k, v, lr, decay, mom, W0, S0, chunk: int, dgd: bool = False):
    """q,k: (B,H,T,Dk); v: (B,H,T,Dv); lr, decay, mom: (B,H,T); W0, S0: (B,H,Dv,Dk).
    Returns o (B,H,T,Dv), W_T, S_T (B,H,Dv,Dk)."""
    dt, sdt = q.dtype, W0.dtype
    q, k, v, lr, decay, mom, W, S = upcast(q, k, v, lr, decay, mom, W0, S0)
    T = q.shape[2]
    eye = torch.eye(k.shape[-1], dtype=W.dtype, device=W.device)
    o = []
    Wbar = W
    for t in range(T):
        if t % chunk == 0:
            Wbar = W
        o.append(Wbar @ q[:, :, t, :, None])
        # momentary surprise of 1/2 ||W k - v||^2 at the chunk-start state
        e = Wbar @ k[:, :, t, :, None] - v[:, :, t, :, None]
        u = e @ k[:, :, t, None, :]
        S = mom[:, :, t, None, None] * S - lr[:, :, t, None, None] * u
        if dgd:
            kk = k[:, :, t, :, None] @ k[:, :, t, None, :]
            A = (1 - decay[:, :, t, None, None]) * eye - lr[:, :, t, None, None] * kk
            W = W @ A + S
        else:
            W = (1 - decay[:, :, t, None, None]) * W + S
    o = torch.cat(o, -1).transpose(-1, -2)
    return o.to(dt), W.to(sdt), S.to(sdt)


def _chunks(T: int, chunk: int):
    return [(s, min(s + chunk, T)) for s in range(0, T, chunk)]


# rows per block of the dgd WY form (as the Triton kernel's sub-blocks): bounds the L x L matrices and the solve
DGD_BLOCK = 64


def dgd_gate_mats(lr: torch.Tensor, decay: torch.Tensor, mom: torch.Tensor):
    """Gate coefficients of the dgd WY form of a block of L tokens (last dim = L, 0-based rows).

    With PG[j, i] = G(j+1..i), PM[j, i] = M(j+1..i) (`products.pair_prod`), gcum/mcum the inclusive cumprods and
    P = PM @ PG, the state after row i is
      W_i = gcum_i W_0 + B_i S_0 + sum_{j<=i} (PG[j, i] w_j - lr_j P[j, i] e_j) k_j^T,  B = mcum @ PG.
    Returns
      end:  (a, b, c, sm, sd, gv)  - the block end (i = L-1): a, b, c, sm, sd as `gate_coeffs`, gv_j = G(j+1..L)
      excl: (gex, Bex, PGx, Cx)    - the same after i-1 rows (what row i's k k^T term reads):
            gex_i = gcum_{i-1}, Bex_i = B_{i-1}, PGx[j, i] = PG[j, i-1], Cx[j, i] = -lr_j P[j, i-1] (0 for j >= i).
    """
    gam = 1.0 - decay
    PG, PM = pair_prod(gam), pair_prod(mom)
    gcum, mcum = torch.cumprod(gam, -1), torch.cumprod(mom, -1)
    Bv = (mcum[..., None, :] @ PG)[..., 0, :]
    C = -lr[..., :, None] * (PM @ PG)
    shift = torch.nn.functional.pad
    end = (gcum[..., -1], Bv[..., -1], C[..., -1], mcum[..., -1], -lr * PM[..., -1], PG[..., -1])
    excl = (shift(gcum[..., :-1], (1, 0), value=1.0), shift(Bv[..., :-1], (1, 0)),
            shift(PG[..., :-1], (1, 0)), shift(C[..., :-1], (1, 0)))
    return end, excl


def dgd_block(K, E, lr, decay, mom, W, S):
    """L tokens of the dgd recurrence in WY form, from the state (W, S) at the block start.

    K: (..., L, Dk); E: (..., L, Dv) the surprises (at the chunk-start state); lr, decay, mom: (..., L);
    W, S: (..., Dv, Dk). Every term stays in span{x k_j^T}: with w_i = -lr_i W_{i-1} k_i (the k k^T term at the
    running state)
      W_L = a W + b S + sum_i (gv_i w_i + c_i e_i) k_i^T,   S_L = sm S + sum_i sd_i e_i k_i^T,
    and w solves the unit lower-triangular system (I + Lm) w = R,
      Lm[i, j] = lr_i G(j+1..i-1) (k_j . k_i)   (j < i),
      R_i = -lr_i (gex_i W k_i + Bex_i S k_i + sum_{j<i} Cx[j, i] (k_j . k_i) e_j).
    Returns (W_L, S_L).
    """
    (a, b, c, sm, sd, gv), (gex, Bex, PGx, Cx) = dgd_gate_mats(lr, decay, mom)
    Kk = K @ K.transpose(-1, -2)  # [i, j] = k_i . k_j
    Lm = lr[..., :, None] * PGx.transpose(-1, -2) * Kk
    R = -lr[..., None] * (gex[..., None] * (K @ W.transpose(-1, -2)) + Bex[..., None] * (K @ S.transpose(-1, -2))
                          + (Cx.transpose(-1, -2) * Kk) @ E)
    eye = torch.eye(K.shape[-2], dtype=K.dtype, device=K.device)
    w = torch.linalg.solve_triangular(eye + Lm, R, upper=False, unitriangular=True)
    W = (a[..., None, None] * W + b[..., None, None] * S
         + (gv[..., None] * w + c[..., None] * E).transpose(-1, -2) @ K)
    S = sm[..., None, None] * S + (sd[..., None] * E).transpose(-1, -2) @ K
    return W, S


def chunk_linear_memory(q, k, v, lr, decay, mom, W0, S0, chunk: int, dgd: bool = False):
    """Chunk-parallel torch form of `naive_linear_memory` (same signature and results).

    Without dgd a chunk of length L is W_end = a W + b S + (c*E)^T K, S_end = sm S + (sd*E)^T K with
    E = K W^T - V and (a, b, c, sm, sd) from `gate_coeffs`. With dgd each chunk is walked in blocks of
    at most `DGD_BLOCK` rows in the WY form of `dgd_block` (one unit lower-triangular solve per block);
    all blocks of a chunk read the chunk-start state for o and E.
    """
    dt, sdt = q.dtype, W0.dtype
    q, k, v, lr, decay, mom, W, S = upcast(q, k, v, lr, decay, mom, W0, S0)
    T = q.shape[2]
    os_ = []
    for s, e_ in _chunks(T, chunk):
        K = k[:, :, s:e_]
        os_.append(q[:, :, s:e_] @ W.transpose(-1, -2))
        E = K @ W.transpose(-1, -2) - v[:, :, s:e_]  # (B,H,L,Dv)
        if dgd:
            for bs in range(s, e_, DGD_BLOCK):
                be = min(bs + DGD_BLOCK, e_)
                W, S = dgd_block(k[:, :, bs:be], E[:, :, bs - s:be - s], lr[:, :, bs:be], decay[:, :, bs:be],
                                 mom[:, :, bs:be], W, S)
        else:
            a, b, c, sm, sd = gate_coeffs(lr[:, :, s:e_], decay[:, :, s:e_], mom[:, :, s:e_])
            W, S = (a[..., None, None] * W + b[..., None, None] * S + (c[..., None] * E).transpose(-1, -2) @ K,
                    sm[..., None, None] * S + (sd[..., None] * E).transpose(-1, -2) @ K)
    o = torch.cat(os_, 2)
    return o.to(dt), W.to(sdt), S.to(sdt)
