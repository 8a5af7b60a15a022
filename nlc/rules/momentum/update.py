"""The momentum rule (and gd: `eta` None), see README.md."""
from __future__ import annotations

from nlc.kernels.products import gate_coeffs


def token(lv, li, W, S, grad, x, theta, alpha, eta, W0=None):
    """One token on layer li: S = eta S - theta grad ; W = (1 - alpha) W + S. Gates (B, H); W, S, grad (B, H, o, i)."""
    step = -theta[..., None, None] * grad
    if S is not None:
        step = eta[..., None, None] * S + step
    return (1 - alpha)[..., None, None] * W + step, (step if S is not None else None)


def outer_sum(c, d, a):
    """sum_t c_t d_t a_t^T as one batched matmul: (B,H,n), (B,H,n,o), (B,H,n,i) -> (B,H,o,i)."""
    return (c[..., None] * d).transpose(-1, -2) @ a


def chunk(lv, Ws, Ss, u, theta, alpha, eta, W0s=None):
    """n tokens in closed form. u: [(delta, a)] rank-1 gradient factors per layer; gates (B, H, n)."""
    A, Bc, c, E, s = gate_coeffs(theta, alpha, eta if Ss is not None else None)
    A = A[..., None, None]
    if Ss is None:
        return [A * W + outer_sum(c, d, a) for W, (d, a) in zip(Ws, u)], None
    Bc, E = Bc[..., None, None], E[..., None, None]
    new_W = [A * W + Bc * S + outer_sum(c, d, a) for W, S, (d, a) in zip(Ws, Ss, u)]
    new_S = [E * S + outer_sum(s, d, a) for S, (d, a) in zip(Ss, u)]
    return new_W, new_S
