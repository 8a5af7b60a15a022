"""nlc::cms_update: Triton segmented sum + apply (forward and backward) vs the torch reference."""
import pytest
import torch

pytest.importorskip("triton")  # the fused kernels need it; the suite runs without the extra

from nlc.kernels import cms_update, naive_cms_update
from nlc.kernels.cms.op import cms_update_op
from nlc.kernels.testing import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("N,P,C", [(1, 5, 4), (37, 300, 5), (40, 7, 8), (10, 600, 100), (63, 257, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cms_update(N, P, C, dtype, nan_poison):
    theta = torch.randn(P, device=DEVICE, dtype=dtype)
    grads = torch.randn(N, P, device=DEVICE, dtype=dtype)
    w = torch.randn(-(-N // C), P, device=DEVICE)

    def run(fn, th, g):
        th, g = th.detach().clone().requires_grad_(), g.detach().clone().requires_grad_()
        out = fn(th, g, 0.3, C)
        (out.float() * w).sum().backward()
        return out, th.grad, g.grad

    ref = run(naive_cms_update, theta.float(), grads.float())
    tri = run(cms_update_op, theta, grads)
    assert tri[0].shape == (-(-N // C), P)
    r = 1e-5 if dtype == torch.float32 else 2e-2
    for name, a, b in zip(("theta_j", "dtheta", "dgrads"), ref, tri):
        assert_close(name, a, b, r)


def test_cms_reference_literal():
    """theta changes only at chunk boundaries, by -lr * the chunk's gradient sum (NL eq. 71)."""
    theta, grads, lr, C = torch.randn(3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64), 0.1, 3
    out = naive_cms_update(theta, grads, lr, C)
    th, acc, rows = theta.clone(), torch.zeros(3, dtype=torch.float64), []
    for i in range(7):
        acc += grads[i]
        if (i + 1) % C == 0 or i == 6:
            th, acc = th - lr * acc, torch.zeros(3, dtype=torch.float64)
            rows.append(th)
    assert torch.allclose(out, torch.stack(rows))


def test_cms_compile_no_graph_break():
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    theta, grads = torch.randn(50, device=DEVICE), torch.randn(13, 50, device=DEVICE)

    def f(th, g):
        return cms_update(th, g, 0.5, 4, backend="triton").sum()

    def run(fn):
        th, g = theta.clone().requires_grad_(), grads.clone().requires_grad_()
        loss = fn(th, g)
        loss.backward()
        return loss, th.grad, g.grad

    ref = run(f)
    tri = run(torch.compile(f, fullgraph=True))
    assert not counters["graph_break"], dict(counters["graph_break"])
    for name, a, b in zip(("loss", "dtheta", "dgrads"), ref, tri):
        assert_close(name, a, b, 1e-5)


def test_cms_validation():
    with pytest.raises(ValueError, match="grads must be"):
        cms_update(torch.randn(4), torch.randn(3, 5), 0.1, 2)
    with pytest.raises(ValueError, match="chunk must be"):
        cms_update(torch.randn(4), torch.randn(3, 4), 0.1, 0)


@pytest.mark.gpu
def test_cms_gpu_large():
    theta, grads = torch.randn(1 << 20, device="cuda"), torch.randn(64, 1 << 20, device="cuda")
    assert_close("theta_j", naive_cms_update(theta, grads, 0.1, 16), cms_update_op(theta, grads, 0.1, 16), 1e-5)
