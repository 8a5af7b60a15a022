"""Shared pieces: available(), the NaN-poisoning hook, the closed-form gate coefficients."""
import importlib.util

import pytest
import torch

from nlc.kernels import available

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs the triton extra")

from nlc.kernels._utils import gate_coeffs, step_gate_coeffs, step_starts


@needs_triton
def test_available_here():
    # conftest sets TRITON_INTERPRET=1 when there is no CUDA, so Triton can always run under these tests
    assert available()


def test_nan_poison_hook(nan_poison):
    assert torch.isnan(torch.empty(3)).all()
    assert torch.isnan(torch.empty_like(torch.zeros(2, 2))).all()


def test_gate_coeffs_match_recurrence():
    """W_L = a W_0 + b S_0 + sum c_i g_i and S_L = sm S_0 + sum sd_i g_i against the step-by-step recurrence."""
    L, D = 7, 3
    lr, decay, mom = torch.rand(L, dtype=torch.float64), torch.rand(L, dtype=torch.float64), torch.rand(L, dtype=torch.float64)
    mom[2], decay[4] = 0.0, 1.0
    g = torch.randn(L, D, D, dtype=torch.float64)
    W0, S0 = torch.randn(D, D, dtype=torch.float64), torch.randn(D, D, dtype=torch.float64)
    W, S = W0, S0
    for t in range(L):
        S = mom[t] * S - lr[t] * g[t]
        W = (1 - decay[t]) * W + S
    a, b, c, sm, sd = gate_coeffs(lr, decay, mom)
    assert torch.allclose(a * W0 + b * S0 + (c[:, None, None] * g).sum(0), W)
    assert torch.allclose(sm * S0 + (sd[:, None, None] * g).sum(0), S)


@pytest.mark.parametrize("T,C,bc", [(1, 1, 16), (63, 5, 16), (100, 80, 64), (100, 1000, 64), (40, 16, 16)])
def test_step_gate_coeffs_match_per_step(T, C, bc):
    """The vectorised per-step coefficients (what the backward kernels differentiate through) against
    `gate_coeffs` on each step's rows: values and gradients, with zero gates (mom = 0, decay = 1)."""
    lr, decay, mom = (torch.rand(2, 3, T, dtype=torch.float64, requires_grad=True) for _ in range(3))
    with torch.no_grad():
        mom[0, 0, ::3] = 0.0
        decay[0, 1, ::2] = 1.0
    outs = step_gate_coeffs(lr, decay, mom, C, bc)
    ws = [torch.randn_like(o) for o in outs]
    got = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, ws)), (lr, decay, mom))
    total = 0.0
    for i, s in enumerate(step_starts(T, C, bc)):
        if s is None:
            continue
        e = min(s + bc, (s // C + 1) * C, T)
        a, b, c, sm, sd = gate_coeffs(lr[..., s:e], decay[..., s:e], mom[..., s:e])
        for x, y in ((outs[0][..., i], a), (outs[1][..., i], b), (outs[3][..., i], sm), (outs[2][..., s:e], c), (outs[4][..., s:e], sd)):
            assert torch.allclose(x, y)
        total = total + (a * ws[0][..., i]).sum() + (b * ws[1][..., i]).sum() + (sm * ws[3][..., i]).sum() \
            + (c * ws[2][..., s:e]).sum() + (sd * ws[4][..., s:e]).sum()
    want = torch.autograd.grad(total, (lr, decay, mom))
    for g, w in zip(got, want):
        assert torch.allclose(g, w)


@needs_triton
def test_out_of_resources_falls_back_to_torch(monkeypatch):
    """A kernel that does not fit on the GPU (OutOfResources at launch) -> one warning, the torch path,
    same results and gradients."""
    import warnings

    from triton.runtime.errors import OutOfResources

    from nlc.kernels import _op_utils, chunk_mlp_memory, mlp_memory
    from nlc.kernels.mlp_memory import fused, fused_bwd
    from nlc.kernels.testing import gates, qkv

    def too_big(*a, **kw):
        raise OutOfResources(300000, 232448, "shared memory")

    monkeypatch.setattr(fused, "mlp_memory_fwd", too_big)
    monkeypatch.setattr(fused_bwd, "mlp_memory_bwd", too_big)
    monkeypatch.setattr(_op_utils, "_warned", set())
    q, k, v = qkv(1, 2, 9, 16, 16)
    lr, decay, mom = gates(1, 2, 9)
    W1, W2 = 0.3 * torch.randn(1, 2, 32, 16), 0.3 * torch.randn(1, 2, 16, 32)
    xs = [x.requires_grad_() for x in (q, k, v, lr, decay, mom, W1, W2)]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        outs = mlp_memory(*xs, chunk=4, backend="triton")
        got = torch.autograd.grad(sum(o.sum() for o in outs), xs)
    msgs = [str(w.message) for w in rec if "does not fit" in str(w.message)]
    assert len(msgs) == 2 and "mlp_memory forward" in msgs[0] and "mlp_memory backward" in msgs[1]
    ref = chunk_mlp_memory(*xs, torch.zeros_like(W1), torch.zeros_like(W2), 4, "silu")
    want = torch.autograd.grad(sum(o.sum() for o in ref), xs)
    for a, b in zip(outs, ref):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5)
