"""Plain PyTorch references for the linear memory (Titans eqs. 13-14, Hope eqs. 88/93 with chunk-start reads).

`naive_linear_memory` is the contract: a per-token loop, written to be read, not to be fast.
`chunk_linear_memory` is the same math with each chunk as matmuls (closed-form gate coefficients);
it is what the fused op's backward recomputes through, and the torch.compile baseline in the benchmark.
Both compute in fp32 (fp64 stays fp64) and return outputs in the input dtypes.
"""
import torch

from .._utils import gate_coeffs, upcast


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


def chunk_linear_memory(q, k, v, lr, decay, mom, W0, S0, chunk: int, dgd: bool = False):
    """Chunk-parallel torch form of `naive_linear_memory` (same signature and results).

    Without dgd a chunk of length L is W_end = a W + b S + (c*E)^T K, S_end = sm S + (sd*E)^T K with
    E = K W^T - V and (a, b, c, sm, sd) from `gate_coeffs`. With dgd the W recurrence is run per token
    (the k k^T term uses the running state), the reads and surprises are still one matmul per chunk.
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
            for t in range(s, e_):
                kt = k[:, :, t]
                u = E[:, :, t - s, :, None] * kt[:, :, None, :]
                S = mom[:, :, t, None, None] * S - lr[:, :, t, None, None] * u
                Wk = (W @ kt[..., None]) * kt[:, :, None, :]
                W = (1 - decay[:, :, t, None, None]) * W - lr[:, :, t, None, None] * Wk + S
        else:
            a, b, c, sm, sd = gate_coeffs(lr[:, :, s:e_], decay[:, :, s:e_], mom[:, :, s:e_])
            W, S = (a[..., None, None] * W + b[..., None, None] * S + (c[..., None] * E).transpose(-1, -2) @ K,
                    sm[..., None, None] * S + (sd[..., None] * E).transpose(-1, -2) @ K)
    o = torch.cat(os_, 2)
    return o.to(dt), W.to(sdt), S.to(sdt)
