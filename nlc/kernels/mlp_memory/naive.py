"""Plain PyTorch references for the 2-layer MLP memory M(x) = W2 act(W1 x) with chunk-start gradients.

`naive_mlp_memory` is the contract (per-token loop); `chunk_mlp_memory` does each chunk as matmuls with
the closed-form gate coefficients and is what the fused op's backward recomputes through.
Both compute in fp32 (fp64 stays fp64) and return outputs in the input dtypes.
"""
import math

import torch

from .._utils import gate_coeffs, upcast

ACTS = ("silu", "gelu", "relu")
_GELU_C = math.sqrt(2.0 / math.pi)


def act_and_grad(z, act: str):
    """act(z) and act'(z); gelu is the tanh approximation."""
    if act == "silu":
        s = torch.sigmoid(z)
        return z * s, s * (1 + z * (1 - s))
    if act == "gelu":
        u = _GELU_C * (z + 0.044715 * z**3)
        th = torch.tanh(u)
        return 0.5 * z * (1 + th), 0.5 * (1 + th) + 0.5 * z * (1 - th * th) * _GELU_C * (1 + 3 * 0.044715 * z * z)
    if act == "relu":
        return torch.relu(z), (z > 0).to(z.dtype)
    raise ValueError(f"unknown act {act!r}, expected one of {ACTS}")


def mlp_read(W1, W2, x, act: str):
    """M(x) = W2 act(W1 x) for rows x (..., L, Dk) -> (..., L, Dv)."""
    return act_and_grad(x @ W1.transpose(-1, -2), act)[0] @ W2.transpose(-1, -2)


def mlp_surprise(W1, W2, k, v, act: str):
    """Per-row closed-form gradient factors of 1/2 ||M(k) - v||^2: gW2 = e a^T, gW1 = delta k^T."""
    z = k @ W1.transpose(-1, -2)
    a, da = act_and_grad(z, act)
    e = a @ W2.transpose(-1, -2) - v
    delta = (e @ W2) * da
    return e, a, delta


def naive_mlp_memory(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, chunk: int, act: str = "silu"):
    """q,k: (B,H,T,Dk); v: (B,H,T,Dv); gates (B,H,T); W1,S1: (B,H,Dh,Dk); W2,S2: (B,H,Dv,Dh).
    Returns o (B,H,T,Dv), W1_T, W2_T, S1_T, S2_T."""
    dt, sdt = q.dtype, W1_0.dtype
    q, k, v, lr, decay, mom, W1, W2, S1, S2 = upcast(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0)
    T = q.shape[2]
    o = []
    for t in range(T):
        if t % chunk == 0:
            W1b, W2b = W1, W2
        o.append(mlp_read(W1b, W2b, q[:, :, t:t + 1], act))
        e, a, delta = mlp_surprise(W1b, W2b, k[:, :, t:t + 1], v[:, :, t:t + 1], act)
        g1 = delta.transpose(-1, -2) @ k[:, :, t:t + 1]
        g2 = e.transpose(-1, -2) @ a
        m, l, gam = mom[:, :, t, None, None], lr[:, :, t, None, None], 1 - decay[:, :, t, None, None]
        S1 = m * S1 - l * g1
        S2 = m * S2 - l * g2
        W1 = gam * W1 + S1
        W2 = gam * W2 + S2
    o = torch.cat(o, 2)
    return o.to(dt), W1.to(sdt), W2.to(sdt), S1.to(sdt), S2.to(sdt)


def chunk_mlp_memory(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, chunk: int, act: str = "silu"):
    """Chunk-parallel torch form of `naive_mlp_memory` (same signature and results):
    W_end = a W + b S + sum_t c_t g_t = a W + b S + (c*E)^T A (W2) or (c*Delta)^T K (W1)."""
    dt, sdt = q.dtype, W1_0.dtype
    q, k, v, lr, decay, mom, W1, W2, S1, S2 = upcast(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0)
    T = q.shape[2]
    os_ = []
    for s in range(0, T, chunk):
        e_ = min(s + chunk, T)
        K = k[:, :, s:e_]
        os_.append(mlp_read(W1, W2, q[:, :, s:e_], act))
        E, A, D = mlp_surprise(W1, W2, K, v[:, :, s:e_], act)
        a, b, c, sm, sd = (x[..., None, None] if x.dim() == 2 else x[..., None]
                           for x in gate_coeffs(lr[:, :, s:e_], decay[:, :, s:e_], mom[:, :, s:e_]))
        W1, S1 = (a * W1 + b * S1 + (c * D).transpose(-1, -2) @ K, sm * S1 + (sd * D).transpose(-1, -2) @ K)
        W2, S2 = (a * W2 + b * S2 + (c * E).transpose(-1, -2) @ A, sm * S2 + (sd * E).transpose(-1, -2) @ A)
    o = torch.cat(os_, 2)
    return o.to(dt), W1.to(sdt), W2.to(sdt), S1.to(sdt), S2.to(sdt)
