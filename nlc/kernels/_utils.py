"""Helpers shared by the kernels: device checks, block sizes, gate coefficients in torch."""
import functools
import os

import torch

from .products import pair_prod, prod_after


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


def step_layout(chunk: int, T: int) -> tuple[int, int, int]:
    """(BC, NS, NSTEP): rows per sub-block, sub-blocks per chunk, and step slots (chunks x NS; the last
    chunk can leave holes) of the chunk kernels' state buffers (see `step_starts`)."""
    bc = chunk_block(chunk, T)
    ns = -(-chunk // bc)
    return bc, ns, -(-T // chunk) * ns


def v_block(dv: int, programs: int, target: int = 128) -> int:
    """Columns of Dv per program for the linear-memory kernels: rows of W evolve independently (the update
    acts on W from the right), so Dv splits across programs. At most 64; halve it (down to 16) until B·H·NV
    reaches `target` programs: small B·H would leave most of a GPU idle. A heuristic, not tuned on a GPU."""
    bv = min(block(dv), 64)  # a 128-wide block spills (D = 128 on sm_90: `python -m nlc.kernels.aot`)
    while bv > 16 and programs * -(-dv // bv) < target:
        bv //= 2
    return bv


# Sub-block rows and warps of the chunk kernels. They hold several (BC × D) and (D × D) fp32 tiles live;
# compiled for sm_90 at D = 64 (`python -m nlc.kernels.aot`), BC = 64 with 4 warps spilled 0.1-6 KB per
# kernel; BC = 32 with 8 warps spills 0-160 B in the forward kernels and 0.1-2.3 KB in the backward ones.
# Chosen from those compile reports, not from GPU timings (none measured yet).
SUB_BLOCK = 32
CHUNK_WARPS = 8
CHUNK_STAGES = 3


def chunk_block(chunk: int, T: int, cap: int = SUB_BLOCK) -> int:
    """Rows per sub-block of a chunk; a chunk longer than `cap` is walked in several sub-blocks."""
    return min(cap, block(min(chunk, T)))


def upcast(*xs):
    """Half-precision tensors to fp32; fp32 and fp64 stay as they are (references compute at >= fp32)."""
    return [x.float() if x.dtype in (torch.float16, torch.bfloat16) else x for x in xs]


def step_starts(T: int, chunk: int, bc: int) -> list[int]:
    """First row of every kernel step: each chunk is walked in sub-blocks of `bc` rows (the last ones shorter).

    Step (j, m) = rows [j*chunk + m*bc, min(j*chunk + (m+1)*bc, (j+1)*chunk, T)); it is stored at index
    j * ceil(chunk / bc) + m, so the list has holes (None) where the last chunk has fewer sub-blocks."""
    ns = -(-chunk // bc)
    out = []
    for cs in range(0, T, chunk):
        for m in range(ns):
            s = cs + m * bc
            out.append(s if s < min(cs + chunk, T) else None)
    return out


def step_index(T: int, chunk: int, bc: int, device=None):
    """(idx, valid), both (NSTEP, BC): the row each kernel step reads at each position (clamped), and
    whether it is a real row of the step (see `step_starts`). Cached: building them is a Python loop
    and a host-to-device copy that would wait for the GPU stream at every backward."""
    return _step_index(T, chunk, bc, str(torch.device(device or "cpu")))


@functools.lru_cache(maxsize=64)
def _step_index(T: int, chunk: int, bc: int, device: str):
    starts = step_starts(T, chunk, bc)
    st = torch.tensor([-1 if s is None else s for s in starts], device=device)
    ends = torch.tensor([0 if s is None else min(s + bc, (s // chunk + 1) * chunk, T) for s in starts], device=device)
    rows = st[:, None].clamp_min(0) + torch.arange(bc, device=device)
    valid = (rows < ends[:, None]) & (st[:, None] >= 0)
    return rows.clamp_max(T - 1), valid


def to_steps(x, idx, valid, pad: float = 0.0):
    """(…, T) per-row values -> (…, NSTEP, BC) in the step layout, `pad` where a step has no row."""
    return torch.where(valid, x[..., idx], pad)


def step_gate_coeffs(lr, decay, mom, chunk: int, bc: int):
    """`gate_coeffs` of every kernel step at once (vectorised, differentiable, exact at zero gates).

    lr, decay, mom: (B, H, T). Returns a, b, sm: (B, H, NSTEP) and c, sd: (B, H, T) (each row's coefficient
    in its own step), with the steps of `step_starts` (holes give a = sm = 1, b = 0). Products are
    cumprods over masked (.., BC, BC) matrices, so the backward is torch's exact cumprod backward."""
    dev = lr.device
    idx, valid = step_index(lr.shape[-1], chunk, bc, dev)
    # padded rows are no-op steps for a, sm and the products (gates 1, lr 0); b and c mask them below
    lr_, gam, m = to_steps(lr, idx, valid), to_steps(1 - decay, idx, valid, 1.0), to_steps(mom, idx, valid, 1.0)
    P = pair_prod(m)                                                    # [i, t] = M(i+1..t), t >= i
    # gtail[t] = G(t+1..L) over the valid rows (padded gates are 1)
    gv = prod_after(gam) * valid
    c = -lr_ * (P * gv[..., None, :]).sum(-1)
    sd = -lr_ * P[..., -1]
    b = (gv * torch.cumprod(m, -1)).sum(-1)
    a, sm = gam.prod(-1), m.prod(-1)
    flat = lambda x: x.masked_select(valid).view(*x.shape[:-2], -1)   # noqa: E731  (rows back in T order)
    return a, b, flat(c), sm, flat(sd)


from .products import gate_coeffs  # noqa: E402,F401 - the one implementation (naive references import it from here)
