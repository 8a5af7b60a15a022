"""The analytic FLOP formula of a memory level (nlc.roofline.level_flops) equals what
torch.utils.flop_counter counts when the chunk program's read, gradients and update run."""
import pytest
import torch

import nlc
from nlc import roofline
from nlc.lower import memory as mem

LINEAR = """
model Lin(dim = 16, heads = 2, vocab = 256, chunk = 8) {
  block b {
    k = l2norm(linear(x), groups = heads)
    level m : linear() per head {
      keys k
      values linear(x)
      rule momentum(lr = 0.1, momentum = 0.9, decay = 0.01)
      clock tokens(chunk)
    }
    out x + m(k)
  }
}"""

MODELS = {
    "linear, momentum": (LINEAR, {}),
    "mlp depth 2 x4, momentum (TitansLMM)": ("titans", dict(model="TitansLMM", dim=32, heads=2, layers=1, chunk=8)),
    "residual mlp, dgd (Hope)": ("hope", dict(dim=32, heads=2, layers=1, chunk=4, mem_chunk=8)),
    "mlp depth 2 x4, momentum, normalize = true": ("titans", dict(model="TitansLMM", dim=32, heads=2, layers=1, chunk=8,
                                                                  normalize=True)),
}


def _counted(lv, level, n, B=2):
    """FLOPs counted for one read of n queries, the gradients and the update of n tokens."""
    g = torch.Generator().manual_seed(0)
    shapes = mem.layer_shapes(lv)
    H, i0, o_last = lv.heads, shapes[0][1], shapes[-1][0]
    Wbar = [w.detach() for w in level.initial(B, torch.device("cpu"), torch.float32)]
    Ss = [torch.zeros_like(w) for w in Wbar] if level.momentum else None
    k, q = torch.randn(B, H, n, i0, generator=g), torch.randn(B, n, H * i0, generator=g)
    v = torch.randn(B, H, n, o_last, generator=g)
    theta, alpha, eta = (torch.rand(B, H, n, generator=g) * s for s in (0.1, 0.05, 0.9))
    upd = mem.chunk_write  # the level's rule in closed form (nlc/rules/<rule>)

    def run():
        mem.read(lv, Wbar, q)
        u, _, th = mem.chunk_grads(lv, Wbar, k, v, theta)
        upd(lv, Wbar, Ss, u, th, alpha, eta if level.momentum else None)
    flops, _ = roofline.count(run)
    return flops, B * H * n


@pytest.mark.parametrize("name", list(MODELS))
def test_level_flops_formula_matches_flop_counter(name):
    spec, kw = MODELS[name]
    m = nlc.compile_text(spec, **kw) if "\n" in spec else nlc.compile(spec, **kw)
    levels = [(lv, layer.mems[lv.name]) for _, layer in m.layers() for lv in layer.block.levels if lv.role == "memory"]
    assert levels
    for lv, level in levels:
        n = min(m.seg, lv.clock.period)
        flops, tokens_x_heads = _counted(lv, level, n)
        assert flops == roofline.level_flops(lv, n, reads=1) * tokens_x_heads, lv.name


def test_model_memory_flops_sums_its_levels():
    m = nlc.compile("hope", dim=32, heads=2, layers=2, chunk=4, mem_chunk=8)
    per_layer = sum(roofline.level_flops(lv, 4, reads=2) * lv.heads for lv in m.plan.blocks[0].levels
                    if lv.role == "memory")  # each Hope level is read twice: its stream and its values
    assert roofline.model_memory_flops(m) == 2 * per_layer


def test_peak_and_bandwidth_are_positive():
    assert roofline.matmul_peak(n=64, reps=2) > 0 and roofline.bandwidth(mib=1, reps=1) > 0
