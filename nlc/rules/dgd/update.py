"""The dgd rule, see README.md."""
from __future__ import annotations

import torch

from nlc.kernels.products import pair_prod, prod_after, prod_before
from nlc.rules.momentum import update as momentum
from nlc.rules.momentum.update import outer_sum


def dgd_layer(lv, li) -> bool:
    """Whether layer li gets the (a I - theta k k^T) term (`layers = first`: only the layer reading k)."""
    return li == 0 or lv.rule_args.get("layers", "first") == "all"


def token(lv, li, W, S, grad, x, theta, alpha, eta, W0=None):
    """One token on layer li: S = eta S - theta' grad ; W = W ((1 - alpha) I - theta' x x^T) + S, where x is the
    layer's input and theta' the Sherman-Morrison step (normalize); layers without the term: momentum."""
    if not dgd_layer(lv, li):
        return momentum.token(lv, li, W, S, grad, x, theta, alpha, eta)
    lr = dgd_lr(lv, theta, x)                                                  # eta' = eta / (1 + eta ||k||^2)
    th = lr[..., None, None]
    step = -th * grad                                                          # -theta_t grad l(M_tbar; x_t)
    if S is not None:
        step = eta[..., None, None] * S + step                                 # S_t = eta S_{t-1} - theta u_t
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device).expand(*x.shape[:2], -1, -1)
    P = (1 - alpha)[..., None, None] * eye - th * x[..., :, None] * x[..., None, :]   # (alpha I - eta k k^T), eq. 88
    return W @ P + step, (step if S is not None else None)


def kernel_lr(lv, theta, k):
    """The fused kernel takes the (normalised) DGD step size as its lr."""
    return dgd_lr(lv, theta, k)


def chunk(lv, Ws, Ss, u, theta, alpha, eta, W0s=None):
    """DGD without momentum in closed form: the layers with the k k^T term by the WY/UT
    triangular solve (`dgd_wy`), the others by the scalar scan. With momentum: `dgd_momentum`."""
    if Ss is not None:
        return dgd_momentum(lv, Ws, Ss, u, theta, alpha, eta)
    layers = lv.rule_args.get("layers", "first")
    out = []
    for li, (W, (d, a)) in enumerate(zip(Ws, u)):
        if li == 0 or layers == "all":
            out.append(dgd_wy(W, d, a, dgd_lr(lv, theta, a), alpha))
        else:
            out.append(momentum.chunk(lv, [W], None, [(d, a)], theta, alpha, None)[0][0])
    return out, None


def dgd_lr(lv, theta, k):
    """The DGD step size on a layer with input k: theta, or theta / (1 + theta ||k||^2) (Sherman-Morrison)."""
    if not lv.rule_args.get("normalize", True):
        return theta
    return theta / (1 + theta * (k * k).sum(-1))


def dgd_wy(W0, d, k, theta, alpha):
    """n tokens of W_t = a_t W_{t-1} - b_t (W_{t-1} k_t + d_t) k_t^T  (a = 1 - alpha, b = theta).

    With u_t = W_{t-1} k_t + d_t:  W_n = A_{1..n} W_0 - sum_t A_{t+1..n} b_t u_t k_t^T, and the u_t
    solve the unit lower-triangular system (I + L) U = R,
        L[t, s] = A_{s+1..t-1} b_s (k_s . k_t)  (s < t),   R_t = A_{1..t-1} W_0 k_t + d_t,
    the UT/WY form of a product of (a I - b k k^T) factors (as fla's delta rule): matmuls only.
    The gate products are cumprods, exact for any real a (zeros and signs included)."""
    n = theta.shape[-1]
    A = 1 - alpha
    # P[s, t'] = A_{s+1..t'}; L needs A_{s+1..t-1} = P[s, t-1]: transpose and shift down one row
    P = pair_prod(A).transpose(-1, -2)
    decay = torch.cat([torch.zeros_like(P[..., :1, :]), P[..., :-1, :]], -2)
    idx = torch.arange(n, device=theta.device)
    lower = (idx[:, None] > idx[None, :]).to(k.dtype)
    L = decay * lower * theta[..., None, :] * (k @ k.transpose(-1, -2))
    R = prod_before(A)[..., None] * (k @ W0.transpose(-1, -2)) + d
    eye = torch.eye(n, dtype=k.dtype, device=k.device)
    U = torch.linalg.solve_triangular(eye + L, R, upper=False, unitriangular=True)
    c = theta * prod_after(A)                      # A_{t+1..n} b_t
    return A.prod(-1)[..., None, None] * W0 - outer_sum(c, U, k)


def dgd_momentum(lv, Ws, Ss, u, theta, alpha, eta):
    """DGD with momentum: W <- W (a I - theta k k^T) + S, S <- eta S - theta d k^T (gradients at the
    chunk start). The dgd layers go through the WY form of `dgd_block` in blocks of DGD_BLOCK tokens
    (matmuls and one triangular solve per block, as the Triton kernel), the others by the scalar scan."""
    from nlc.kernels.linear_memory.naive import DGD_BLOCK, dgd_block

    layers = lv.rule_args.get("layers", "first")
    n = theta.shape[-1]
    new_W, new_S = [], []
    for li, (W, S, (d, a)) in enumerate(zip(Ws, Ss, u)):
        if li == 0 or layers == "all":
            th = dgd_lr(lv, theta, a)
            for s in range(0, n, DGD_BLOCK):
                b = slice(s, s + DGD_BLOCK)
                W, S = dgd_block(a[:, :, b], d[:, :, b], th[..., b], alpha[..., b], eta[..., b], W, S)
        else:
            (W,), (S,) = momentum.chunk(lv, [W], [S], [(d, a)], theta, alpha, eta)
        new_W.append(W)
        new_S.append(S)
    return new_W, new_S
