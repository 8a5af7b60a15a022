"""Shared pieces: available(), the NaN-poisoning hook, the closed-form gate coefficients."""
import torch

from nlc.kernels import available
from nlc.kernels._utils import gate_coeffs


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
