"""Helpers shared by the kernels: device checks, block sizes, gate coefficients in torch."""
import os

import torch


def available() -> bool:
    """True when the Triton kernels can run here: a CUDA device, or TRITON_INTERPRET=1 (CPU interpreter)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") == "1"


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def block(n: int, lo: int = 16) -> int:
    """Power-of-two block covering n, at least `lo` (tl.dot wants dims >= 16 on GPU)."""
    return max(lo, next_pow2(n))


def chunk_block(chunk: int, T: int, cap: int = 64) -> int:
    """Rows per sub-block of a chunk; a chunk longer than `cap` is walked in several sub-blocks."""
    return min(cap, block(min(chunk, T)))


def gate_coeffs(lr: torch.Tensor, decay: torch.Tensor, mom: torch.Tensor):
    """Closed form of L steps of `S_t = m_t S_{t-1} - lr_t g_t ; W_t = (1-d_t) W_{t-1} + S_t` (last dim = L).

    Returns (a, b, c, sm, sd) with
      W_L = a W_0 + b S_0 + sum_i c_i g_i,   S_L = sm S_0 + sum_i sd_i g_i.
    Computed by exact sequential recurrences over the L positions (no log-space division), so it is
    exact and differentiable also where a gate is exactly 0. Leading dims are batched (e.g. B, H, chunks).
    """
    gam = 1.0 - decay
    L = lr.shape[-1]
    # r_i = sum_{t>=i} G(t+1..L) M(i+1..t), by r_{L-1} = 1, r_i = G(i+1..L) + m_{i+1} r_{i+1}
    ones = torch.ones_like(lr[..., 0])
    r = [None] * L
    sd = [None] * L
    gtail = ones  # G(i+1..L)
    mtail = ones  # M(i+1..L)
    r_next = None
    for i in range(L - 1, -1, -1):
        r_i = gtail if r_next is None else gtail + mom[..., i + 1] * r_next
        r[i] = r_i
        sd[i] = -lr[..., i] * mtail
        r_next = r_i
        gtail = gtail * gam[..., i]
        mtail = mtail * mom[..., i]
    a, sm = gtail, mtail
    # b = sum_t G(t+1..L) M(1..t), forward: b_t = gam_t b_{t-1} + M(1..t)
    b = torch.zeros_like(ones)
    mh = ones
    for t in range(L):
        mh = mh * mom[..., t]
        b = gam[..., t] * b + mh
    c = -lr * torch.stack(r, -1)
    return a, b, c, sm, torch.stack(sd, -1)


def upcast(*xs):
    """Half-precision tensors to fp32; fp32 and fp64 stay as they are (references compute at >= fp32)."""
    return [x.float() if x.dtype in (torch.float16, torch.bfloat16) else x for x in xs]
