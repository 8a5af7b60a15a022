"""Test helpers for the kernels (fla style): error-ratio comparison and random inputs."""
import torch


def assert_close(name: str, ref: torch.Tensor, tri: torch.Tensor, ratio: float):
    """max|ref - tri| <= ratio * max(max|ref|, 1e-6), and no NaN/Inf in tri."""
    assert tri.shape == ref.shape, f"{name}: shape {tuple(tri.shape)} != {tuple(ref.shape)}"
    tri32, ref32 = tri.detach().float(), ref.detach().float()
    assert torch.isfinite(tri32).all(), f"{name}: non-finite values in the kernel output"
    diff = (tri32 - ref32).abs().max().item()
    scale = max(ref32.abs().max().item(), 1e-6)
    assert diff <= ratio * scale, f"{name}: max diff {diff:.3e} > {ratio:g} * {scale:.3e} (err ratio {diff / scale:.2e})"


def gates(B, H, T, device="cpu", dtype=torch.float32, max_lr=0.5, max_decay=0.3, gen=None):
    """lr in (0, max_lr], decay in [0, max_decay], mom in [0, 1)."""
    lr = (torch.rand(B, H, T, generator=gen) * max_lr + 1e-3).to(device, dtype)
    decay = (torch.rand(B, H, T, generator=gen) * max_decay).to(device, dtype)
    mom = torch.rand(B, H, T, generator=gen).to(device, dtype)
    return lr, decay, mom


def qkv(B, H, T, Dk, Dv, device="cpu", dtype=torch.float32, gen=None):
    """q, k l2-normalised (as in Titans), v standard normal."""
    q = torch.nn.functional.normalize(torch.randn(B, H, T, Dk, generator=gen), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(B, H, T, Dk, generator=gen), dim=-1)
    v = torch.randn(B, H, T, Dv, generator=gen)
    return q.to(device, dtype), k.to(device, dtype), v.to(device, dtype)
