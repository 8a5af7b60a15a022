"""The causal conv's small-input fast path (a windowed product) against the conv1d reference."""
import pytest
import torch

from nlc.lower.ops import SMALL_CONV, CausalConv, causal_conv, causal_conv_small


@pytest.mark.parametrize("B,n,C,window", [(1, 1, 64, 4), (2, 16, 8, 4), (8, 16, 64, 2), (3, 37, 5, 3), (2, 64, 256, 4)])
def test_small_conv_matches_conv1d(B, n, C, window):
    g = torch.Generator().manual_seed(n * C + window)
    xx = torch.randn(B, window - 1 + n, C, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(C, window, dtype=torch.float64, generator=g, requires_grad=True)
    up = torch.randn(B, n, C, dtype=torch.float64, generator=g)
    outs, grads = [], []
    for f in (causal_conv, causal_conv_small):
        y = f(xx, w)
        outs.append(y)
        grads.append(torch.autograd.grad((y * up).sum(), (xx, w)))
    assert outs[0].shape == (B, n, C)
    torch.testing.assert_close(outs[1], outs[0])
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b)


def test_module_takes_both_paths_and_streams():
    """A sequence long enough for conv1d equals it streamed token by token (the small path)."""
    C, window = 64, 4
    conv = CausalConv(C, window).double()
    n = SMALL_CONV // C  # (window-1+n) * C elements: above the threshold
    x = torch.randn(1, n, C, dtype=torch.float64)
    prev = torch.zeros(1, window - 1, C, dtype=torch.float64)
    whole, last = conv(x, prev)
    outs, st = [], prev
    for t in range(n):
        y, st = conv(x[:, t:t + 1], st)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), whole)
    torch.testing.assert_close(st, last)
