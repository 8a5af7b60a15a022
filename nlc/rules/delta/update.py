"""The delta rule: W_t = a_t W_{t-1} (I - theta_t k k^T) - theta_t u_t, see README.md."""
from __future__ import annotations

import torch

from nlc.kernels.products import pair_prod, prod_after
from nlc.rules.momentum.update import outer_sum


def token(lv, li, W, S, grad, x, theta, alpha, eta, W0=None):
    """One token on layer li (x: the layer's input): decay first, then the delta step from the
    decayed state, then the objective's chunk-start gradient."""
    Wd = (1 - alpha)[..., None, None] * W
    th = theta[..., None, None]
    return Wd - th * (Wd @ x[..., :, None]) * x[..., None, :] - th * grad, None


def chunk(lv, Ws, Ss, u, theta, alpha, eta, W0s=None):
    """n tokens of every layer in closed form (`delta_wy`)."""
    return [delta_wy(W, d, a, theta, alpha) for W, (d, a) in zip(Ws, u)], None


def delta_wy(W0, d, k, theta, alpha):
    """n tokens of W_t = a_t W_{t-1} - r_t k_t^T, r_t = a_t theta_t W_{t-1} k_t + theta_t d_t.

    Unrolling W_{t-1} = A_{1..t-1} W_0 - sum_{s<t} A_{s+1..t-1} r_s k_s^T into r_t gives the unit
    lower-triangular system (I + L) R = theta_t (A_{1..t} W_0 k_t + d_t) with
    L[t, s] = theta_t A_{s+1..t} (k_s . k_t) for s < t; then W_n = A_{1..n} W_0 - sum_t A_{t+1..n} r_t k_t^T.
    Gate products are cumprods: exact for any real gate, zeros included."""
    n = theta.shape[-1]
    A = 1 - alpha
    P = pair_prod(A).transpose(-1, -2)                   # P[t, s] = A_{s+1..t} (s <= t)
    idx = torch.arange(n, device=k.device)
    lower = (idx[:, None] > idx[None, :]).to(k.dtype)
    L = theta[..., :, None] * P * lower * (k @ k.transpose(-1, -2))
    upto = torch.cumprod(A, -1)                          # A_{1..t}
    rhs = theta[..., None] * (upto[..., None] * (k @ W0.transpose(-1, -2)) + d)
    eye = torch.eye(n, dtype=k.dtype, device=k.device)
    R = torch.linalg.solve_triangular(eye + L, rhs, upper=False, unitriangular=True)
    return A.prod(-1)[..., None, None] * W0 - outer_sum(prod_after(A), R, k)
