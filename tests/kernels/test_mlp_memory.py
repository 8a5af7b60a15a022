"""nlc::mlp_memory: Triton chunk kernel vs the per-token naive reference, forward and backward."""
import pytest
import torch
import torch.nn.functional as F


pytest.importorskip("triton")  # the fused kernels need it; the suite runs without the extra

from nlc.kernels import chunk_mlp_memory, mlp_memory, naive_mlp_memory
from nlc.kernels.mlp_memory.op import mlp_memory_op
from nlc.kernels.testing import assert_close, gates, qkv

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

RATIO = {torch.float32: 1e-4, torch.bfloat16: 2e-2}
NAMES = ("q", "k", "v", "lr", "decay", "mom", "W1_0", "W2_0", "S1_0", "S2_0")
OUTS = ("o", "W1_T", "W2_T", "S1_T", "S2_T")


def make_inputs(B, H, T, Dk, Dh, Dv, dtype, device=DEVICE):
    q, k, v = qkv(B, H, T, Dk, Dv, device, dtype)
    lr, decay, mom = gates(B, H, T, device, dtype)
    W1 = (torch.randn(B, H, Dh, Dk) / Dk**0.5).to(device)
    W2 = (torch.randn(B, H, Dv, Dh) / Dh**0.5).to(device)
    S1 = (0.1 * torch.randn(B, H, Dh, Dk)).to(device)
    S2 = (0.1 * torch.randn(B, H, Dv, Dh)).to(device)
    return [q, k, v, lr, decay, mom, W1, W2, S1, S2]


def param(B, H, T, Dk, Dh, Dv, C, act, dtype, *marks):
    return pytest.param(B, H, T, Dk, Dh, Dv, C, act, dtype, marks=marks,
                        id=f"B{B}-H{H}-T{T}-Dk{Dk}-Dh{Dh}-Dv{Dv}-C{C}-{act}-{str(dtype)[6:]}")


CASES = [
    param(1, 2, 1, 16, 16, 16, 16, "silu", torch.float32),
    param(1, 1, 63, 16, 32, 16, 1, "silu", torch.float32),
    param(1, 2, 63, 32, 32, 32, 16, "gelu", torch.float32),
    param(2, 1, 100, 16, 32, 16, 128, "relu", torch.float32),
    param(1, 2, 100, 16, 16, 32, 80, "silu", torch.float32),
    param(1, 2, 63, 16, 32, 16, 16, "silu", torch.bfloat16),
    param(2, 4, 256, 64, 64, 64, 64, "silu", torch.float32, pytest.mark.slow),
    param(2, 4, 256, 64, 128, 64, 16, "gelu", torch.float32, pytest.mark.slow),
]


@pytest.mark.parametrize("B,H,T,Dk,Dh,Dv,C,act,dtype", CASES)
def test_mlp_memory_op(B, H, T, Dk, Dh, Dv, C, act, dtype, nan_poison):
    xs = make_inputs(B, H, T, Dk, Dh, Dv, dtype)
    ws = [torch.randn(B, H, T, Dv), *(torch.randn_like(x) for x in xs[6:])]
    ws = [w.to(DEVICE) for w in ws]

    def run(fn, inputs):
        inputs = [x.detach().clone().requires_grad_() for x in inputs]
        outs = fn(*inputs, C, act)
        sum((o.float() * w).sum() for o, w in zip(outs, ws)).backward()
        return outs, [x.grad for x in inputs]

    ref_outs, ref_grads = run(naive_mlp_memory, [x.float() for x in xs])
    tri_outs, tri_grads = run(mlp_memory_op, xs)
    r = RATIO[dtype]
    for name, ref, tri in zip(OUTS, ref_outs, tri_outs):
        assert_close(name, ref, tri, r)
    for name, ref, tri in zip(NAMES, ref_grads, tri_grads):
        assert_close(f"d{name}", ref, tri, r)


def test_mlp_memory_gate_edges():
    xs = make_inputs(1, 2, 40, 16, 16, 16, torch.float32)
    xs[4][0, 0, ::3] = 1.0
    xs[5][0, 1, ::2] = 0.0
    ref = naive_mlp_memory(*xs, 16, "silu")
    tri = mlp_memory_op(*xs, 16, "silu")
    for name, a, b in zip(OUTS, ref, tri):
        assert_close(name, a, b, 1e-4)


@pytest.mark.parametrize("T,C,Dk,Dh,Dv,act", [(1, 16, 16, 16, 16, "silu"), (63, 5, 16, 32, 16, "gelu"),
                                              (100, 80, 16, 16, 32, "relu"), (130, 64, 32, 16, 16, "silu"),
                                              (63, 1, 16, 16, 16, "gelu")])
def test_mlp_memory_bwd_kernel(T, C, Dk, Dh, Dv, act, nan_poison):
    """The Triton backward alone against autograd through the naive loop (fp64): transposed and expanded
    (stride-0) output gradients, chunks within/over a sub-block, gates at the ends of their ranges."""
    from nlc.kernels.mlp_memory.fused_bwd import mlp_memory_bwd

    xs = make_inputs(2, 1, T, Dk, Dh, Dv, torch.float32)
    xs[4][0, 0, ::3] = 1.0
    xs[5][1, 0, ::2] = 0.0
    grads = [torch.randn(2, 1, Dv, T, device=DEVICE).transpose(-1, -2),
             torch.randn(1, 1, Dh, Dk, device=DEVICE).expand(2, 1, Dh, Dk),
             torch.randn(2, 1, Dh, Dv, device=DEVICE).transpose(-1, -2),
             torch.randn(2, 1, Dh, Dk, device=DEVICE),
             torch.randn(1, 1, 1, 1, device=DEVICE).expand(2, 1, Dv, Dh)]
    ref_in = [x.double().requires_grad_() for x in xs]
    outs = naive_mlp_memory(*ref_in, C, act)
    ref = torch.autograd.grad(outs, ref_in, [g.double() for g in grads])
    tri = mlp_memory_bwd(*xs, *grads, C, act)
    for name, a, b in zip(NAMES, ref, tri):
        assert b.dtype == torch.float32
        assert_close(f"d{name}", a, b, 1e-5)


@pytest.mark.parametrize("act", ["silu", "gelu", "relu"])
def test_chunk_reference_matches_naive(act):
    xs = make_inputs(2, 2, 37, 8, 12, 6, torch.float32)
    for C in (1, 5, 16, 64):
        for name, a, b in zip(OUTS, naive_mlp_memory(*xs, C, act), chunk_mlp_memory(*xs, C, act)):
            assert_close(name, a, b, 1e-5)


@pytest.mark.parametrize("act", ["silu", "gelu", "relu"])
def test_naive_matches_literal_autograd_loop(act):
    """The naive reference against a literal per-(b,h) loop whose gradients come from autograd."""
    fact = {"silu": F.silu, "gelu": lambda z: F.gelu(z, approximate="tanh"), "relu": F.relu}[act]
    B, H, T, Dk, Dh, Dv, C = 1, 2, 9, 4, 5, 3, 4
    xs = [x.double() for x in make_inputs(B, H, T, Dk, Dh, Dv, torch.float64, "cpu")]
    q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0 = xs
    ref = naive_mlp_memory(*xs, C, act)
    for b in range(B):
        for h in range(H):
            W1, W2, S1, S2 = W1_0[b, h], W2_0[b, h], S1_0[b, h], S2_0[b, h]
            for t in range(T):
                if t % C == 0:
                    W1b, W2b = W1.clone(), W2.clone()
                assert torch.allclose(ref[0][b, h, t], W2b @ fact(W1b @ q[b, h, t]), atol=1e-8)
                P1, P2 = W1b.clone().requires_grad_(), W2b.clone().requires_grad_()
                loss = 0.5 * ((P2 @ fact(P1 @ k[b, h, t]) - v[b, h, t]) ** 2).sum()
                g1, g2 = torch.autograd.grad(loss, (P1, P2))
                S1 = mom[b, h, t] * S1 - lr[b, h, t] * g1
                S2 = mom[b, h, t] * S2 - lr[b, h, t] * g2
                W1 = (1 - decay[b, h, t]) * W1 + S1
                W2 = (1 - decay[b, h, t]) * W2 + S2
            for i, x in enumerate((W1, W2, S1, S2)):
                assert torch.allclose(ref[1 + i][b, h], x, atol=1e-8), OUTS[1 + i]


def test_mlp_memory_compile_no_graph_break():
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    xs = make_inputs(1, 2, 20, 16, 16, 16, torch.float32)

    def f(*inputs):
        o, W1, W2, S1, S2 = mlp_memory(*inputs, chunk=8, act="gelu", backend="triton")
        return o.sum() + W1.sum() + W2.sum() + S1.sum() + S2.sum()

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


def test_mlp_memory_validation():
    xs = make_inputs(1, 2, 5, 16, 32, 16, torch.float32)
    with pytest.raises(ValueError, match="W2_0 must have shape"):
        mlp_memory(*xs[:7], xs[7][..., :8], chunk=2)
    with pytest.raises(ValueError, match="act must be one of"):
        mlp_memory(*xs, chunk=2, act="tanh")
    outs = mlp_memory(*xs[:8], chunk=2, backend="torch")
    assert [tuple(o.shape) for o in outs] == [(1, 2, 5, 16), (1, 2, 32, 16), (1, 2, 16, 32), (1, 2, 32, 16), (1, 2, 16, 32)]


def check_large(device, T, D, Dh, C, dtype):
    """Forward and backward of the op against the chunked torch reference in fp32."""
    xs = make_inputs(2, 4, T, D, Dh, D, dtype, device)
    ws = [torch.randn(2, 4, T, D, device=device)] + [torch.randn_like(x) for x in xs[6:10]]

    def run(fn, inputs):
        inputs = [x.detach().clone().requires_grad_() for x in inputs]
        outs = fn(*inputs, C, "silu")
        sum((o.float() * w).sum() for o, w in zip(outs, ws)).backward()
        return outs, [x.grad for x in inputs]

    ref_outs, ref_grads = run(chunk_mlp_memory, [x.float() for x in xs])
    tri_outs, tri_grads = run(mlp_memory_op, xs)
    r = 1e-3 if dtype == torch.float32 else 3e-2
    for name, a, b in zip(OUTS, ref_outs, tri_outs):
        assert_close(name, a, b, r)
    for name, a, b in zip(NAMES, ref_grads, tri_grads):
        assert_close(f"d{name}", a, b, r)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mlp_memory_gpu_large(dtype):
    check_large("cuda", 2048, 64, 128, 64, dtype)


@pytest.mark.slow
def test_mlp_memory_large_check_on_cpu():
    """The GPU test's code, at a size the interpreter can run."""
    check_large(DEVICE, 96, 16, 32, 64, torch.float32)
