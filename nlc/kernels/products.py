"""Exact running products of gates in torch: cumprods, no logs and no division, so zeros and negative
gates come out as the per-token recurrences multiply them, and torch's cumprod backward is exact at
zeros. Shared by the kernels' references and backward glue and by the lowering's chunk program."""
import torch


def prod_after(x):
    """y[..., t] = prod(x[..., t+1:]) (exclusive reverse cumprod along the last dim)."""
    shifted = torch.cat([x[..., 1:], torch.ones_like(x[..., :1])], -1)
    return torch.flip(torch.cumprod(torch.flip(shifted, (-1,)), -1), (-1,))


def prod_before(x):
    """y[..., t] = prod(x[..., :t]) (exclusive cumprod along the last dim)."""
    return torch.cumprod(torch.cat([torch.ones_like(x[..., :1]), x[..., :-1]], -1), -1)


def pair_prod(x):
    """P[..., i, t] = prod(x[..., i+1..t]) for t >= i (1 on the diagonal), 0 for t < i."""
    n = x.shape[-1]
    idx = torch.arange(n, device=x.device)
    later = idx[None, :] > idx[:, None]
    P = torch.cumprod(torch.where(later, x[..., None, :], torch.ones((), dtype=x.dtype, device=x.device)), -1)
    return P * (idx[None, :] >= idx[:, None]).to(x.dtype)


def gate_coeffs(lr, decay, mom):
    """Closed form of L steps of `S_t = m_t S_{t-1} - lr_t g_t ; W_t = (1 - d_t) W_{t-1} + S_t` (last dim = L).

    Returns (a, b, c, sm, sd) with
      W_L = a W_0 + b S_0 + sum_i c_i g_i,   S_L = sm S_0 + sum_i sd_i g_i,
    a = G(1..L), b = sum_t G(t+1..L) M(1..t), c_i = -lr_i sum_{t>=i} G(t+1..L) M(i+1..t), sm = M(1..L),
    sd_i = -lr_i M(i+1..L) (G = 1 - d). The one torch implementation of these gate products: the
    momentum rule's chunk form (nlc/rules/momentum) and the kernels' references use it. Cumprods:
    exact and differentiable where a gate is exactly 0. `mom` None: no momentum (b, sm, sd are None)."""
    g = 1 - decay
    g_after = prod_after(g)
    a = g.prod(-1)
    if mom is None:
        return a, None, -lr * g_after, None, None
    c = -lr * (pair_prod(mom) * g_after[..., None, :]).sum(-1)
    b = (g_after * torch.cumprod(mom, -1)).sum(-1)
    return a, b, c, mom.prod(-1), -lr * prod_after(mom)
