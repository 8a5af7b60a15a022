"""The triton backend (fused kernels, here in the Triton interpreter) equals the torch backend."""
import os

if not os.environ.get("TRITON_INTERPRET"):
    try:
        import torch
        if not torch.cuda.is_available():
            os.environ["TRITON_INTERPRET"] = "1"  # must be set before triton is imported
    except ImportError:
        pass

import pytest
import torch

import nlc

pytest.importorskip("triton")

SPEC = """
model K(dim = 16, heads = 2, vocab = 256) {{
  block b {{
    h = rmsnorm(x)
    k = l2norm(linear(h), groups = heads)
    level m : {memory} per head {{
      keys k
      values linear(h)
      learn l2
      rule {rule}
      clock tokens({chunk})
    }}
    out x + linear(m(l2norm(linear(h), groups = heads)))
  }}
}}"""

CASES = [("linear()", "gd(lr = 0.3, decay = 0.1)"),
         ("linear()", "momentum(lr = 0.3, momentum = 0.8, decay = sigmoid(linear(h, out = heads)))"),
         ("linear()", "dgd(lr = 0.2 * sigmoid(linear(h, out = heads)), decay = 0.05)"),
         ("mlp(depth = 2, expansion = 2, act = silu)", "momentum(lr = 0.3, momentum = 0.5, decay = 0.1)"),
         # learned gates: per-head parameters, their gradients through the kernels' gate chain rule
         ("linear()", "momentum(lr = learned(0.3), momentum = learned(0.7), decay = learned(0.05))"),
         ("linear()", "dgd(lr = learned(0.2), decay = 0.05)"),
         # gates a learned value can drift to: negative momentum, decay past 1 (kept signs)
         ("linear()", "momentum(lr = learned(0.3), momentum = learned(-0.5), decay = learned(1.2))")]


@pytest.mark.parametrize("chunk,T", [(4, 10), (16, 40)], ids=["C4-recurrent-fwd", "C16-chunk-fwd"])
@pytest.mark.parametrize("memory,rule", CASES)
def test_triton_equals_torch(memory, rule, chunk, T):
    """Outputs, state and every parameter gradient; chunk 4 takes the recurrent forward kernel, 16 the
    chunk (and dgd WY) kernels; the backward kernels in both."""
    text = SPEC.format(memory=memory, rule=rule, chunk=chunk)
    torch.manual_seed(0)
    ref = nlc.compile_text(text, backend="torch")
    tri = nlc.compile_text(text, backend="triton")
    tri.load_state_dict(ref.state_dict())
    assert any(ls.impl.kernel for ls in tri.schedule.levels)  # the schedule chose a fused kernel
    x = torch.randint(0, 256, (2, T))
    o1, o2 = ref(x, targets=x), tri(x, targets=x)
    torch.testing.assert_close(o2.logits, o1.logits, rtol=1e-4, atol=1e-5)
    for k in o1.state:
        torch.testing.assert_close(o2.state[k], o1.state[k], rtol=1e-4, atol=1e-5)
    g1 = torch.autograd.grad(o1.loss, list(ref.parameters()))
    g2 = torch.autograd.grad(o2.loss, list(tri.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)


def test_schedule_names_fused_levels(capsys):
    from nlc.cli import main
    assert main(["compile", "specs/titans.nl", "--backend", "triton", "--emit", "schedule"]) == 0
    out = capsys.readouterr().out
    assert "lmm.mem" in out and "triton:mlp_memory" in out
