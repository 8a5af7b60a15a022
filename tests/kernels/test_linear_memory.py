"""nlc::linear_memory: Triton kernels vs the per-token naive reference, forward and backward."""
import pytest
import torch

triton = pytest.importorskip("triton")  # the fused kernels need it; the suite runs without the extra

from nlc.kernels import chunk_linear_memory, linear_memory, naive_linear_memory
from nlc.kernels.linear_memory.fused import linear_memory_fwd
from nlc.kernels.linear_memory.op import linear_memory_op
from nlc.kernels.testing import assert_close, gates, qkv

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

RATIO = {torch.float32: 1e-4, torch.bfloat16: 2e-2}
NAMES = ("q", "k", "v", "lr", "decay", "mom", "W0", "S0")


def make_inputs(B, H, T, Dk, Dv, dtype, device=DEVICE):
    q, k, v = qkv(B, H, T, Dk, Dv, device, dtype)
    lr, decay, mom = gates(B, H, T, device, dtype)
    W0 = (0.1 * torch.randn(B, H, Dv, Dk)).to(device)
    S0 = (0.1 * torch.randn(B, H, Dv, Dk)).to(device)
    return [q, k, v, lr, decay, mom, W0, S0]


def param(B, H, T, Dk, Dv, C, dgd, dtype, *marks):
    return pytest.param(B, H, T, Dk, Dv, C, dgd, dtype, marks=marks,
                        id=f"B{B}-H{H}-T{T}-Dk{Dk}-Dv{Dv}-C{C}-{'dgd' if dgd else 'titans'}-{str(dtype)[6:]}")


CASES = [
    param(1, 2, 1, 16, 16, 16, False, torch.float32),
    param(1, 2, 63, 16, 32, 1, False, torch.float32),
    param(1, 2, 63, 32, 32, 16, False, torch.float32),
    param(2, 1, 100, 16, 16, 128, False, torch.float32),
    param(1, 2, 1, 16, 16, 1, True, torch.float32),
    param(1, 2, 63, 16, 16, 16, True, torch.float32),
    param(1, 1, 100, 32, 16, 1, True, torch.float32),
    param(1, 2, 63, 16, 16, 16, False, torch.bfloat16),
    param(1, 2, 100, 16, 16, 16, True, torch.bfloat16),
    param(2, 4, 256, 64, 64, 64, False, torch.float32, pytest.mark.slow),
    param(2, 4, 256, 64, 64, 64, True, torch.float32, pytest.mark.slow),
]


@pytest.mark.parametrize("B,H,T,Dk,Dv,C,dgd,dtype", CASES)
def test_linear_memory_op(B, H, T, Dk, Dv, C, dgd, dtype, nan_poison):
    xs = make_inputs(B, H, T, Dk, Dv, dtype)
    ws = [torch.randn(B, H, T, Dv), torch.randn(B, H, Dv, Dk), torch.randn(B, H, Dv, Dk)]
    ws = [w.to(DEVICE) for w in ws]

    def run(fn, inputs):
        inputs = [x.detach().clone().requires_grad_() for x in inputs]
        outs = fn(*inputs, C, dgd)
        loss = sum((o.float() * w).sum() for o, w in zip(outs, ws))
        loss.backward()
        return outs, [x.grad for x in inputs]

    # the reference sees the same (rounded) inputs, upcast to fp32
    ref_outs, ref_grads = run(naive_linear_memory, [x.float() for x in xs])
    tri_outs, tri_grads = run(linear_memory_op, xs)
    r = RATIO[dtype]
    for name, ref, tri in zip(("o", "W_T", "S_T"), ref_outs, tri_outs):
        assert_close(name, ref, tri, r)
    for name, ref, tri in zip(NAMES, ref_grads, tri_grads):
        assert_close(f"d{name}", ref, tri, r)


@pytest.mark.parametrize("impl", ["recurrent", "chunk"])
@pytest.mark.parametrize("T,C", [(1, 1), (63, 1), (63, 5), (100, 80), (100, 1000)])
@pytest.mark.parametrize("bv", [16, 32], ids=["bv16", "bvDv"])
def test_linear_memory_kernels(impl, T, C, bv, nan_poison):
    """Both Triton kernels (forward only) against the naive loop, incl. chunks longer than a sub-block (C=80),
    with the Dv = 32 rows of W in one program or split over two."""
    for dgd in ([False, True] if impl == "recurrent" else [False]):
        xs = make_inputs(1, 1, T, 16, 32, torch.float32)
        ref = naive_linear_memory(*xs, C, dgd)
        tri = linear_memory_fwd(*xs, C, dgd, impl=impl, bv=bv)
        for name, a, b in zip(("o", "W_T", "S_T"), ref, tri):
            assert_close(f"{impl}-{name}", a, b, 1e-4)


@pytest.mark.parametrize("impl", ["recurrent", "chunk"])
def test_linear_memory_gate_edges(impl):
    """Gates exactly at the ends of their ranges: mom = 0, decay = 1 (zero products in the closed form)."""
    xs = make_inputs(1, 2, 40, 16, 16, torch.float32)
    xs[4][0, 0, ::3] = 1.0
    xs[5][0, 1, ::2] = 0.0
    xs[5][0, 0, 7] = 1.0
    ref = naive_linear_memory(*xs, 16, False)
    tri = linear_memory_fwd(*xs, 16, False, impl=impl)
    for name, a, b in zip(("o", "W_T", "S_T"), ref, tri):
        assert_close(name, a, b, 1e-4)


@pytest.mark.parametrize("T,C,Dk,Dv", [(1, 16, 16, 16), (63, 1, 16, 32), (63, 5, 32, 16), (100, 80, 16, 16),
                                       (130, 64, 16, 16), (100, 128, 64, 64), (63, 16, 32, 48)])
@pytest.mark.parametrize("bv", [16, None], ids=["bv16", "bvDv"])
def test_linear_memory_bwd_kernel(T, C, Dk, Dv, bv, nan_poison):
    """The Triton backward alone against autograd through the naive loop (fp64), with transposed and
    expanded (stride-0) output gradients, chunks shorter than, equal to and spanning several sub-blocks,
    gates at the ends of their ranges, and Dv split over programs (bv=16) or not."""
    from nlc.kernels.linear_memory.fused_bwd import linear_memory_bwd

    xs = make_inputs(2, 1, T, Dk, Dv, torch.float32)
    xs[4][0, 0, ::3] = 1.0
    xs[5][1, 0, ::2] = 0.0
    do = torch.randn(2, 1, Dv, T, device=DEVICE).transpose(-1, -2)          # non-contiguous
    dW = torch.randn(1, 1, Dv, Dk, device=DEVICE).expand(2, 1, Dv, Dk)      # stride 0 on the batch dim
    dS = torch.randn(2, 1, Dk, Dv, device=DEVICE).transpose(-1, -2)
    ref_in = [x.double().requires_grad_() for x in xs]
    outs = naive_linear_memory(*ref_in, C, False)
    ref = torch.autograd.grad(outs, ref_in, [g.double() for g in (do, dW, dS)])
    tri = linear_memory_bwd(*xs, do, dW, dS, C, bv=bv or max(16, 1 << (Dv - 1).bit_length()))
    for name, a, b in zip(NAMES, ref, tri):
        assert b.dtype == torch.float32
        assert_close(f"d{name}", a, b, 1e-5)


@pytest.mark.parametrize("T,C,Dk,Dv", [(1, 16, 16, 16), (63, 5, 16, 32), (100, 80, 16, 16), (130, 64, 16, 32),
                                       (40, 16, 32, 16)])
@pytest.mark.parametrize("bv", [16, None], ids=["bv16", "bvDv"])
def test_linear_memory_bwd_dgd_kernel(T, C, Dk, Dv, bv, nan_poison):
    """The dgd (WY) Triton backward alone against autograd through the naive loop (fp64), as above."""
    from nlc.kernels.linear_memory.fused_dgd_bwd import linear_memory_bwd_dgd

    xs = make_inputs(2, 1, T, Dk, Dv, torch.float32)
    xs[4][0, 0, ::3] = 1.0
    xs[5][1, 0, ::2] = 0.0
    do = torch.randn(2, 1, Dv, T, device=DEVICE).transpose(-1, -2)
    dW = torch.randn(1, 1, Dv, Dk, device=DEVICE).expand(2, 1, Dv, Dk)
    dS = torch.randn(2, 1, Dk, Dv, device=DEVICE).transpose(-1, -2)
    ref_in = [x.double().requires_grad_() for x in xs]
    outs = naive_linear_memory(*ref_in, C, True)
    ref = torch.autograd.grad(outs, ref_in, [g.double() for g in (do, dW, dS)])
    tri = linear_memory_bwd_dgd(*xs, do, dW, dS, C, bv=bv or max(16, 1 << (Dv - 1).bit_length()))
    for name, a, b in zip(NAMES, ref, tri):
        assert b.dtype == torch.float32
        assert_close(f"d{name}", a, b, 1e-5)


@pytest.mark.parametrize("dgd", [False, True])
def test_chunk_reference_matches_naive(dgd):
    xs = make_inputs(2, 2, 37, 16, 8, torch.float32)
    for C in (1, 5, 16, 64):
        for name, a, b in zip(("o", "W_T", "S_T"), naive_linear_memory(*xs, C, dgd), chunk_linear_memory(*xs, C, dgd)):
            assert_close(name, a, b, 1e-5)


@pytest.mark.parametrize("dgd", [False, True])
def test_naive_matches_literal_autograd_loop(dgd):
    """The naive reference against a literal per-(b,h) loop whose surprise u_t comes from autograd."""
    B, H, T, D, C = 1, 2, 11, 4, 3
    q, k, v, lr, decay, mom, W0, S0 = make_inputs(B, H, T, D, D, torch.float64, "cpu")
    o_ref, W_ref, S_ref = naive_linear_memory(q, k, v, lr, decay, mom, W0.double(), S0.double(), C, dgd)
    for b in range(B):
        for h in range(H):
            W, S = W0[b, h].double(), S0[b, h].double()
            for t in range(T):
                if t % C == 0:
                    Wbar = W.clone()
                assert torch.allclose(o_ref[b, h, t].double(), Wbar @ q[b, h, t], atol=1e-5)
                Wg = Wbar.clone().requires_grad_()
                (u,) = torch.autograd.grad(0.5 * ((Wg @ k[b, h, t] - v[b, h, t]) ** 2).sum(), Wg)
                S = mom[b, h, t] * S - lr[b, h, t] * u
                if dgd:
                    A = (1 - decay[b, h, t]) * torch.eye(D, dtype=W.dtype) - lr[b, h, t] * torch.outer(k[b, h, t], k[b, h, t])
                    W = W @ A + S
                else:
                    W = (1 - decay[b, h, t]) * W + S
            assert torch.allclose(W_ref[b, h].double(), W, atol=1e-5)
            assert torch.allclose(S_ref[b, h].double(), S, atol=1e-5)


@pytest.mark.parametrize("dgd", [False, True])
def test_linear_memory_compile_no_graph_break(dgd):
    """torch.compile(fullgraph=True) through the custom op, forward and backward with a .sum() loss."""
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    xs = make_inputs(1, 2, 20, 16, 16, torch.float32)

    def f(q, k, v, lr, decay, mom, W0, S0):
        o, W, S = linear_memory(q, k, v, lr, decay, mom, W0, S0, chunk=8, dgd=dgd, backend="triton")
        return o.sum() + W.sum() + S.sum()

    def grads(fn):
        inputs = [x.detach().clone().requires_grad_() for x in xs]
        loss = fn(*inputs)
        loss.backward()
        return loss, [x.grad for x in inputs]

    ref_loss, ref_grads = grads(f)
    loss, tri_grads = grads(torch.compile(f, fullgraph=True))
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert_close("loss", ref_loss, loss, 1e-5)
    for name, a, b in zip(NAMES, ref_grads, tri_grads):
        assert_close(f"d{name}", a, b, 1e-5)


def test_linear_memory_validation():
    xs = make_inputs(1, 2, 5, 16, 16, torch.float32)
    with pytest.raises(ValueError, match="k must have shape"):
        linear_memory(xs[0], xs[1][..., :8], *xs[2:], chunk=2)
    with pytest.raises(ValueError, match="chunk must be an int"):
        linear_memory(*xs, chunk=0)
    with pytest.raises(ValueError, match="lr must have shape"):
        linear_memory(xs[0], xs[1], xs[2], xs[3][..., :4], *xs[4:], chunk=2)
    with pytest.raises(ValueError, match="must be float32"):
        linear_memory(*xs[:6], xs[6].double(), xs[7], chunk=2)
    o, W, S = linear_memory(*xs[:6], chunk=2, backend="torch")
    assert o.shape == (1, 2, 5, 16) and W.shape == S.shape == (1, 2, 16, 16)


def check_large(device, T, D, C, dgd, dtype):
    """Forward and backward of the op against the chunked torch reference in fp32 (the naive loop is too
    slow at these sizes; the reference matches it in the tests above)."""
    xs = make_inputs(2, 4, T, D, D, dtype, device)
    ws = [torch.randn(2, 4, T, D, device=device), torch.randn(2, 4, D, D, device=device), torch.randn(2, 4, D, D, device=device)]

    def run(fn, inputs):
        inputs = [x.detach().clone().requires_grad_() for x in inputs]
        outs = fn(*inputs, C, dgd)
        sum((o.float() * w).sum() for o, w in zip(outs, ws)).backward()
        return outs, [x.grad for x in inputs]

    ref_outs, ref_grads = run(chunk_linear_memory, [x.float() for x in xs])
    tri_outs, tri_grads = run(linear_memory_op, xs)
    r = 1e-3 if dtype == torch.float32 else 3e-2
    for name, a, b in zip(("o", "W_T", "S_T"), ref_outs, tri_outs):
        assert_close(name, a, b, r)
    for name, a, b in zip(NAMES, ref_grads, tri_grads):
        assert_close(f"d{name}", a, b, r)


@pytest.mark.gpu
@pytest.mark.parametrize("dgd", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_memory_gpu_large(dgd, dtype):
    check_large("cuda", 2048, 64, 64, dgd, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dgd", [False, True])
def test_linear_memory_large_check_on_cpu(dgd):
    """The GPU test's code, at a size the interpreter can run."""
    check_large(DEVICE, 96, 16, 64, dgd, torch.float32)


def test_chunk_longer_than_the_sequence_keeps_buffers_small():
    """chunk >> T is one chunk: the launchers clamp it, so the step buffers follow T, not chunk."""
    from nlc.kernels.linear_memory import fused

    xs = make_inputs(1, 1, 20, 16, 16, torch.float32)
    o, W, S, Ws, Ss = fused.linear_memory_fwd(*xs, 1 << 20, False, save_states=True)
    assert Ws.shape[2] == Ss.shape[2] == 1, Ws.shape
    for name, a, b in zip(("o", "W_T", "S_T"), naive_linear_memory(*xs, 20, False), (o, W, S)):
        assert_close(name, a, b, 1e-4)


@pytest.mark.parametrize("dgd", [False, True])
def test_signed_gates(dgd):
    """Gates outside [0, 1] (mom < 0, decay > 1 so 1 - decay < 0, and exact zeros): the chunk kernels'
    log-space products keep the sign, as the references multiply it through; forward and backward."""
    from nlc.kernels.linear_memory.fused_bwd import linear_memory_bwd
    from nlc.kernels.linear_memory.fused_dgd_bwd import linear_memory_bwd_dgd

    xs = make_inputs(1, 2, 40, 16, 16, torch.float32)
    xs[3] = xs[3] * 0.3
    xs[4][0, 0, ::3] = 1.4                       # 1 - decay = -0.4
    xs[4][0, 1, 5] = 1.0                         # an exact zero beside them
    xs[5][0, 0, ::2] = -0.6
    xs[5][0, 1, ::5] = -0.9
    ref_in = [x.double().requires_grad_() for x in xs]
    ref = naive_linear_memory(*ref_in, 16, dgd)
    tri = linear_memory_fwd(*xs, 16, dgd, impl="chunk")
    for name, a, b in zip(("o", "W_T", "S_T"), ref, tri):
        assert_close(name, a, b, 1e-4)
    gs = [torch.randn_like(o, dtype=torch.float32) for o in tri]
    want = torch.autograd.grad(ref, ref_in, [g.double() for g in gs])
    got = (linear_memory_bwd_dgd if dgd else linear_memory_bwd)(*xs, *gs, 16)
    for name, a, b in zip(NAMES, want, got):
        assert_close(f"d{name}", a, b, 1e-4)
