"""Chunk-parallel (WY form) dgd linear memory: the torch form in `chunk_linear_memory` and the Triton kernel
`linear_memory_fwd_kernel_dgd_chunk`, both against the per-token `naive_linear_memory` (the contract)."""
import importlib

import pytest
import torch

triton = pytest.importorskip("triton")  # the fused kernels need it; the suite runs without the extra

from nlc.kernels._utils import chunk_block, step_starts
from nlc.kernels.linear_memory.fused_dgd import linear_memory_fwd_dgd_chunk
from nlc.kernels.linear_memory.naive import chunk_linear_memory, dgd_block, naive_linear_memory
from nlc.kernels.testing import assert_close, gates, qkv

# `nlc.kernels.linear_memory` the attribute is the op function, so reach the module through importlib
naive_mod = importlib.import_module("nlc.kernels.linear_memory.naive")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NAMES = ("q", "k", "v", "lr", "decay", "mom", "W0", "S0")
OUTS = ("o", "W_T", "S_T")


def make_inputs(B, H, T, Dk, Dv, dtype, device=DEVICE, max_lr=0.5):
    q, k, v = qkv(B, H, T, Dk, Dv, device, dtype)
    lr, decay, mom = gates(B, H, T, device, dtype, max_lr=max_lr)
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    W0 = (0.1 * torch.randn(B, H, Dv, Dk)).to(device, sdt)
    S0 = (0.1 * torch.randn(B, H, Dv, Dk)).to(device, sdt)
    return [q, k, v, lr, decay, mom, W0, S0]


def zero_gates(xs):
    """Exact gate edges (needs B >= 1, H >= 2): mom = 0 everywhere on head 0 (plain gd), decay = 1 and
    decay = 0 at some tokens, and a few isolated mom = 0 on head 1."""
    decay, mom = xs[4], xs[5]
    mom[:, 0] = 0.0
    decay[:, 0, ::5] = 1.0
    decay[:, 0, 1::4] = 0.0
    decay[:, 1, 2::3] = 1.0
    mom[:, 1, ::7] = 0.0
    decay[:, 1, 3::6] = 0.0
    return xs


def err_ratio(ref, x):
    return ((x.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-12)).item()


# ---------------------------------------------------------------- torch WY form (fp64, exact)

@pytest.mark.parametrize("edges", [False, True], ids=["random", "zero-gates"])
@pytest.mark.parametrize("T", [1, 63, 100])
def test_torch_wy_matches_naive(T, edges):
    xs = make_inputs(2, 2, T, 16, 8, torch.float64, "cpu")
    if edges:
        zero_gates(xs)
    for C in (1, 16, 100, 128):
        ref = naive_linear_memory(*xs, C, True)
        got = chunk_linear_memory(*xs, C, True)
        for name, a, b in zip(OUTS, ref, got):
            assert err_ratio(a, b) < 1e-9, (C, name, err_ratio(a, b))


@pytest.mark.parametrize("block", [1, 7, 1000])
def test_torch_wy_block_sizes(block, monkeypatch):
    """The sub-block length of the torch form does not change the result (1000: whole chunks, one solve)."""
    monkeypatch.setattr(naive_mod, "DGD_BLOCK", block)
    xs = zero_gates(make_inputs(1, 2, 70, 16, 16, torch.float64, "cpu"))
    for C in (16, 70):
        for name, a, b in zip(OUTS, naive_linear_memory(*xs, C, True), chunk_linear_memory(*xs, C, True)):
            assert err_ratio(a, b) < 1e-9, (C, name)


def test_dgd_block_from_any_state():
    """`dgd_block` from an arbitrary (W, S) with surprises E not tied to W: a literal per-token loop."""
    B, H, L, Dk, Dv = 2, 1, 37, 8, 5
    _, k, _ = qkv(B, H, L, Dk, Dv, "cpu", torch.float64)
    lr, decay, mom = gates(B, H, L, "cpu", torch.float64, max_lr=1.5)
    mom[:, :, ::4] = 0.0
    decay[:, :, 5::9] = 1.0
    decay[:, :, 2::7] = 0.0
    E = torch.randn(B, H, L, Dv, dtype=torch.float64)
    W, S = torch.randn(2, B, H, Dv, Dk, dtype=torch.float64).unbind(0)
    Wl, Sl = W, S
    for t in range(L):
        kt = k[:, :, t, :, None]
        Sl = mom[:, :, t, None, None] * Sl - lr[:, :, t, None, None] * (E[:, :, t, :, None] @ kt.mT)
        Wl = (1 - decay[:, :, t, None, None]) * Wl - lr[:, :, t, None, None] * (Wl @ kt @ kt.mT) + Sl
    Wb, Sb = dgd_block(k, E, lr, decay, mom, W, S)
    assert err_ratio(Wl, Wb) < 1e-10 and err_ratio(Sl, Sb) < 1e-10


@pytest.mark.parametrize("edges", [False, True], ids=["random", "zero-gates"])
@pytest.mark.parametrize("T,C", [(1, 1), (40, 1), (63, 16), (100, 100), (100, 128)])
def test_torch_wy_grads_match_naive(T, C, edges):
    xs = make_inputs(1, 2, T, 16, 8, torch.float64, "cpu")
    if edges:
        zero_gates(xs)
    ws = [torch.randn(1, 2, T, 8, dtype=torch.float64), torch.randn(1, 2, 8, 16, dtype=torch.float64),
          torch.randn(1, 2, 8, 16, dtype=torch.float64)]

    def grads(fn):
        inputs = [x.detach().clone().requires_grad_() for x in xs]
        outs = fn(*inputs, C, True)
        sum((o * w).sum() for o, w in zip(outs, ws)).backward()
        return [x.grad for x in inputs]

    for name, a, b in zip(NAMES, grads(naive_linear_memory), grads(chunk_linear_memory)):
        assert torch.isfinite(b).all(), name
        assert err_ratio(a, b) < 1e-9, (name, err_ratio(a, b))


# ---------------------------------------------------------------- Triton dgd chunk kernel

def kparam(B, H, T, Dk, Dv, C, dtype, *marks):
    return pytest.param(B, H, T, Dk, Dv, C, dtype, marks=marks,
                        id=f"B{B}-H{H}-T{T}-Dk{Dk}-Dv{Dv}-C{C}-{str(dtype)[6:]}")


KCASES = [
    kparam(1, 2, 1, 16, 16, 16, torch.float32),
    kparam(1, 2, 63, 16, 32, 16, torch.float32),
    kparam(1, 2, 63, 32, 16, 1, torch.float32),
    kparam(1, 2, 100, 32, 32, 5, torch.float32),
    kparam(1, 2, 100, 32, 16, 100, torch.float32),  # a chunk of 2 sub-blocks, the last one partial
    kparam(1, 2, 100, 64, 64, 128, torch.float32),  # a chunk longer than T
    kparam(2, 1, 100, 64, 32, 64, torch.float32),
    kparam(1, 2, 1, 16, 16, 1, torch.bfloat16),
    kparam(1, 2, 63, 16, 32, 16, torch.bfloat16),
    kparam(1, 2, 100, 64, 64, 100, torch.bfloat16),
    kparam(2, 4, 256, 64, 64, 64, torch.float32, pytest.mark.slow),
    kparam(2, 4, 256, 64, 64, 64, torch.bfloat16, pytest.mark.slow),
]
RATIO = {torch.float32: 1e-4, torch.bfloat16: 2e-2}


@pytest.mark.parametrize("B,H,T,Dk,Dv,C,dtype", KCASES)
def test_dgd_chunk_kernel(B, H, T, Dk, Dv, C, dtype, nan_poison):
    xs = make_inputs(B, H, T, Dk, Dv, dtype)
    # the reference sees the same (rounded) inputs, in fp64
    ref = naive_linear_memory(*[x.double() for x in xs], C, True)
    tri = linear_memory_fwd_dgd_chunk(*xs, C)
    assert tri[0].dtype == dtype and tri[1].dtype == tri[2].dtype == torch.float32
    for name, a, b in zip(OUTS, ref, tri):
        assert_close(name, a, b, RATIO[dtype])


@pytest.mark.parametrize("T,C", [(40, 16), (100, 80)])
def test_dgd_chunk_kernel_gate_edges(T, C, nan_poison):
    """mom = 0 (plain gd), decay = 1 and decay = 0 exactly: zero products counted apart in log space."""
    xs = zero_gates(make_inputs(1, 2, T, 16, 16, torch.float32))
    ref = naive_linear_memory(*[x.double() for x in xs], C, True)
    tri = linear_memory_fwd_dgd_chunk(*xs, C)
    for name, a, b in zip(OUTS, ref, tri):
        assert_close(name, a, b, 1e-4)


def test_dgd_chunk_kernel_large_lr(nan_poison):
    """lr up to 1.9 (|I - lr k kᵀ| near 1 in the k direction): the in-kernel solve stays accurate in fp32."""
    xs = make_inputs(1, 2, 128, 32, 32, torch.float32, max_lr=1.9)
    ref = naive_linear_memory(*[x.double() for x in xs], 64, True)
    tri = linear_memory_fwd_dgd_chunk(*xs, 64)
    for name, a, b in zip(OUTS, ref, tri):
        assert_close(name, a, b, 1e-4)


@pytest.mark.parametrize("bv", [16, 32])
def test_dgd_chunk_kernel_split_dv_and_saved_states(bv, nan_poison):
    """Dv = 48 rows of W over 3 programs (bv=16) or 2 (bv=32, the second one half masked), and the saved
    step-start states against the naive loop run up to each step start."""
    T, C = 100, 80
    xs = zero_gates(make_inputs(1, 2, T, 16, 48, torch.float32))
    x64 = [x.double() for x in xs]
    ref = naive_linear_memory(*x64, C, True)
    o, WT, ST, Ws, Ss = linear_memory_fwd_dgd_chunk(*xs, C, save_states=True, bv=bv)
    for name, a, b in zip(OUTS, ref, (o, WT, ST)):
        assert_close(name, a, b, 1e-4)
    starts = step_starts(T, C, chunk_block(C, T))
    assert Ws.shape == Ss.shape == (1, 2, len(starts), 48, 16)
    for n, s in enumerate(starts):
        if s is None:
            continue
        if s == 0:
            W_s, S_s = x64[6], x64[7]
        else:
            _, W_s, S_s = naive_linear_memory(*[x[:, :, :s] for x in x64[:6]], *x64[6:], C, True)
        assert_close(f"Ws[{n}]", W_s, Ws[:, :, n], 1e-4)
        assert_close(f"Ss[{n}]", S_s, Ss[:, :, n], 1e-4)
