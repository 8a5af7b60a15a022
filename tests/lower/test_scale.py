"""The `scale` op: x * exp(w), one learned w per channel started on a log ladder lo..hi (the model
built on it, GatedDeltaNetLadder, is tested with the other delta-rule specs in test_archs.py)."""
import pytest
import torch

import nlc
from nlc.errors import NlcError
from nlc.ir.kinds import OpKind
from nlc.ir.resolved import Op
from nlc.lower import ops
from nlc.passes.size import estimate, parameter_count


@pytest.mark.parametrize("width, lo, hi", [(1, 0.01, 1.0), (4, 1e-3, 1.0), (5, 0.5, 0.5), (3, 2.0, 0.02)])
def test_ladder_starts_equally_spaced_in_log(width, lo, hi):
    op = Op(name="y", op=OpKind.SCALE, inputs=["a"], attrs={"lo": lo, "hi": hi}, width=width)
    mod = ops.make_module(op, {"a": width})
    start = mod.log_scale.detach().exp()
    assert start[0].item() == pytest.approx(lo) and start[-1].item() == pytest.approx(lo if width == 1 else hi)
    if width > 2:  # a constant ratio between neighbours
        r = start[1:] / start[:-1]
        torch.testing.assert_close(r, torch.full_like(r, r[0].item()))


def test_scale_is_x_times_exp_w_with_its_gradient():
    op = Op(name="y", op=OpKind.SCALE, inputs=["a"], attrs={"lo": 1e-3, "hi": 1.0}, width=4)
    mod = ops.make_module(op, {"a": 4}).double()
    with torch.no_grad():
        mod.log_scale.add_(torch.randn(4, dtype=torch.float64))  # away from the ladder
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    y = ops.apply_op(op, mod, [x])
    torch.testing.assert_close(y, x * torch.exp(mod.log_scale))
    # d/dw sum(y * g) = sum over tokens of x * exp(w) * g
    g = torch.randn_like(y)
    (y * g).sum().backward()
    torch.testing.assert_close(mod.log_scale.grad, (x * mod.log_scale.exp() * g).sum((0, 1)).detach())
    torch.testing.assert_close(x.grad, (mod.log_scale.exp() * g).detach().expand_as(x))


SPEC = """model M(dim = 16, heads = 2, vocab = 32) {
  block b {
    h = rmsnorm(x)
    a = scale(linear(h, out = heads), lo = 0.1, hi = HI)
    out x + linear(h) * sigmoid(head_mean(a, groups = 1))
  }
}
"""


def test_a_good_ladder_compiles(tmp_path):
    # the control of the next test: the spec is valid but for hi
    f = tmp_path / "s.nl"
    f.write_text(SPEC.replace("HI", "0.5"))
    nlc.compile(str(f))


@pytest.mark.parametrize("bad", ["0", "-1", "true", '"a"'])
def test_bad_ladder_is_a_positioned_error(bad, tmp_path):
    f = tmp_path / "s.nl"
    f.write_text(SPEC.replace("HI", bad))
    with pytest.raises(NlcError, match="hi must be a positive number") as e:
        nlc.compile(str(f))
    assert str(e.value.span).endswith(":4:9")  # at the scale(...) call


def test_size_pass_counts_the_ladder():
    m = nlc.compile("specs/deltanet.nl", model="GatedDeltaNetLadder", dim=16, heads=2, layers=1, vocab=64)
    assert sum(p.numel() for p in m.parameters()) == parameter_count(m.plan)
    assert [p.elements for p in estimate(m.plan) if p.what.startswith("scale")] == [2]
