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
