"""The `scale` op (x * exp(w), one learned w per channel on a log ladder lo..hi) and the model built
on it, GatedDeltaNetLadder (specs/deltanet.nl): its decay is 1 - exp(-A_h softplus(w_a h)) with
A_h = exp(w_h) learned per head, fla's and Mamba-2's parameterisation."""
import math

import pytest
import torch
import torch.nn.functional as F

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


@pytest.mark.parametrize("bad", ["0", "-1", "true", "1 / 0"])
def test_bad_ladder_is_a_positioned_error(bad, tmp_path):
    f = tmp_path / "s.nl"
    f.write_text("model M(dim = 16, heads = 2, vocab = 32) {\n  block b {\n    h = rmsnorm(x)\n"
                 f"    a = scale(linear(h, out = heads), lo = 0.1, hi = {bad})\n"
                 "    out x + linear(h * sigmoid(head_mean(h, groups = 1) + a[0]))\n  }\n}\n")
    with pytest.raises(NlcError):
        nlc.compile(str(f))


def test_size_pass_counts_the_ladder():
    m = nlc.compile("specs/deltanet.nl", model="GatedDeltaNetLadder", dim=16, heads=2, layers=1, vocab=64)
    assert sum(p.numel() for p in m.parameters()) == parameter_count(m.plan)
    assert [p.elements for p in estimate(m.plan) if p.what.startswith("scale")] == [2]


def _decay_of(m, tokens):
    """The decay stream of the first layer, and the layer (the streams before its read)."""
    (block,) = m.plan.blocks
    layer = m.blocks[block.name][0]
    before, _, _ = layer._partition()
    st = layer.local(m.init_state(tokens.shape[0]))
    v = {"x": m.embed(tokens)}
    for op in before:
        v[op.name] = layer._run_op(op, v, st)
    lv = block.levels[0]
    return v, v[lv.gates["decay"].stream], layer


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_ladder_decay_is_fla_gate(heads):
    """1 - decay = exp(-exp(w_h) softplus(w_a h)), each head at its own rate, read off the parameters."""
    torch.manual_seed(0)
    m = nlc.compile("specs/deltanet.nl", model="GatedDeltaNetLadder", dim=16, heads=heads, layers=1, vocab=64,
                    gate_lo=1e-3, gate_hi=1.0).double()
    tokens = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        v, decay, layer = _decay_of(m, tokens)
        (scale_name,) = [n for n, mod in layer.mods.items() if isinstance(mod, ops.Scale)]
        w = layer.mods[scale_name].log_scale
        start = torch.logspace(-3, 0, heads, dtype=torch.float64) if heads > 1 else torch.tensor([1e-3]).double()
        torch.testing.assert_close(w.exp(), start)
        (a_op,) = [op for op in layer.block.ops if op.op == OpKind.SCALE]
        pre = v[a_op.inputs[0]]  # softplus(w_a h), one column per head
        assert pre.shape[-1] == heads and (pre > 0).all()
        torch.testing.assert_close(1 - decay, torch.exp(-w.exp() * pre))


def test_one_rung_ladder_at_init_is_gated_deltanet_at_that_scale():
    """With lo = hi = g the ladder starts at GatedDeltaNet(gate_scale = g): same logits from the same seed
    (the ladder draws no random numbers, so every other parameter is the same draw)."""
    x = torch.randint(0, 64, (2, 13), generator=torch.Generator().manual_seed(2))
    outs = []
    for model, ov in [("GatedDeltaNet", dict(gate_scale=0.05)), ("GatedDeltaNetLadder", dict(gate_lo=0.05, gate_hi=0.05))]:
        torch.manual_seed(0)
        m = nlc.compile("specs/deltanet.nl", model=model, dim=16, heads=2, layers=2, vocab=64, **ov).double()
        outs.append(m(x).logits)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    assert not math.isclose(outs[0].abs().sum().item(), 0.0)
