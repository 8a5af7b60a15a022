"""The chunk-parallel program equals the per-token reference interpreter: outputs, final fast
state, and gradients of every outer parameter (meta-learned initial states included)."""
import pytest
import torch

import nlc

# tiny configurations of every built-in model (the reference is a per-token loop)
SMALL = dict(dim=16, heads=2, layers=1)
CASES = [
    ("specs/hope.nl", None, dict(chunk=4, mem_chunk=8, decay_max=0.1)),  # the decay on: Hope's default is 0
    ("specs/titans.nl", "TitansLMM", dict(chunk=4)),
    ("specs/titans.nl", "TitansMAC", dict(chunk=4, persistent=2)),
    ("specs/titans.nl", "TitansMAG", dict(chunk=4, window=6, persistent=2)),
    ("specs/titans.nl", "TitansMAL", dict(chunk=4, window=6, persistent=2)),
    ("specs/cms.nl", None, dict(fast=2, mid=4, slow=8)),
    ("specs/hope_attention.nl", None, dict(chunk=4, mem_chunk=8)),
    ("specs/transformer.nl", None, {}),
]


def pair(spec, model, ov, dtype=torch.float64):
    torch.manual_seed(0)
    ref = nlc.compile(spec, backend="reference", model=model, **SMALL, **ov).to(dtype)
    fast = nlc.compile(spec, backend="torch", model=model, **SMALL, **ov).to(dtype)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def run(m, x):
    out = m(x, targets=x)
    params = [p for p in m.parameters()]
    grads = torch.autograd.grad(out.loss, params, allow_unused=True)
    return out, dict(zip([n for n, _ in m.named_parameters()], grads))


def assert_close(name, a, b, rtol):
    scale = a.abs().max().clamp_min(1e-12)
    err = ((a - b).abs().max() / scale).item()
    assert err <= rtol, f"{name}: relative error {err:.2e} > {rtol:.0e}"


def compare(ref, fast, x, rtol):
    o1, g1 = run(ref, x)
    o2, g2 = run(fast, x)
    assert_close("logits", o1.logits, o2.logits, rtol)
    assert_close("loss", o1.loss.detach().reshape(1), o2.loss.detach().reshape(1), rtol)
    assert set(o1.state) == set(o2.state)
    for k in o1.state:
        if o1.state[k].is_floating_point():
            assert_close(f"state {k}", o1.state[k].detach(), o2.state[k].detach(), rtol)
        else:
            assert torch.equal(o1.state[k], o2.state[k])
    for k in g1:
        if g1[k] is None or g2[k] is None:
            assert g1[k] is None and g2[k] is None, k
            continue
        assert_close(f"grad {k}", g1[k], g2[k], rtol)


@pytest.mark.parametrize("spec,model,ov", CASES, ids=[f"{s.split('/')[-1][:-3]}-{m or ''}" for s, m, _ in CASES])
@pytest.mark.parametrize("B,T", [(2, 3), (2, 11)], ids=["T<chunk", "T%chunk!=0"])
def test_chunk_equals_reference_fp64(spec, model, ov, B, T):
    ref, fast = pair(spec, model, ov)
    x = torch.randint(0, 256, (B, T))
    compare(ref, fast, x, 1e-9)


@pytest.mark.parametrize("spec,model,ov", CASES[:2] + CASES[5:6], ids=["hope", "titans-lmm", "cms"])
def test_chunk_equals_reference_fp32(spec, model, ov):
    ref, fast = pair(spec, model, ov, torch.float32)
    x = torch.randint(0, 256, (2, 9))
    compare(ref, fast, x, 1e-5)


@pytest.mark.parametrize("rule", ["gd(lr = 0.3, decay = 0.1)", "momentum(lr = 0.3, momentum = 0.8, decay = 0.05)",
                                  "dgd(lr = 0.3, decay = 0.1)", "dgd(lr = 0.3, decay = 0.1, layers = all)",
                                  "dgd(lr = 0.3, decay = 0.1, momentum = 0.5)",
                                  # gates outside [0, 1] (a learned gate can drift there): signs kept exactly
                                  "momentum(lr = 0.3, momentum = -0.5, decay = 1.2)", "dgd(lr = 0.3, decay = 1.3)",
                                  # nlc/rules/anchored: forget toward M_0 (a rule added as a folder)
                                  "anchored(lr = 0.3, momentum = 0.8, decay = 0.2)", "anchored(lr = 0.3, momentum = 0, decay = 0.3)",
                                  # nlc/rules/delta: the gated delta rule on every layer (specs/deltanet.nl)
                                  "delta(lr = 0.3, decay = 0.1)"])
@pytest.mark.parametrize("memory,objective", [("linear()", "l2"), ("mlp(depth = 2, expansion = 2, act = silu)", "dot"),
                                              ("mlp(depth = 3, expansion = 1, act = gelu)", "huber(delta = 0.5)"),
                                              ("residual_mlp(expansion = 2, act = tanh)", "lp(p = 3)")])
def test_random_levels(rule, memory, objective):
    """Small random specs: every memory x objective x rule combination."""
    _reference_vs_torch(_level_spec(memory, rule, 3, objective=objective), seed=1, B=2, T=8)


def _level_spec(memory, rule, chunk, objective="l2", keys="l2norm(linear(h), groups = heads)"):
    """A one-block model around one memory level (the random-level and curvature-step tests)."""
    return f"""
model R(dim = 8, heads = 2, vocab = 256) {{
  block b {{
    h = rmsnorm(x)
    k = {keys}
    level m : {memory} per head {{
      keys k
      values linear(h)
      learn {objective}
      rule {rule}
      clock tokens({chunk})
    }}
    out x + m(l2norm(linear(h), groups = heads))
  }}
}}"""


def _reference_vs_torch(text, seed, B, T):
    """The spec on the reference interpreter and the torch program, same weights: compare at (B, T), fp64."""
    torch.manual_seed(seed)
    ref = nlc.compile_text(text, backend="reference").double()
    fast = nlc.compile_text(text, backend="torch").double()
    fast.load_state_dict(ref.state_dict())
    compare(ref, fast, torch.randint(0, 256, (B, T)), 1e-9)


CURVATURE_MEMORIES = ["linear()", "mlp(depth = 2, expansion = 2, act = silu)", "mlp(depth = 3, expansion = 1, act = gelu)",
                      "residual_mlp(expansion = 2, act = tanh)"]


@pytest.mark.parametrize("rule", ["gd(lr = 0.3, decay = 0.1, normalize = true)",
                                  "momentum(lr = 0.3, momentum = 0.8, decay = 0.05, normalize = true)"])
@pytest.mark.parametrize("memory", CURVATURE_MEMORIES)
@pytest.mark.parametrize("chunk,B,T", [(1, 2, 5), (3, 2, 8), (4, 1, 11)])
def test_curvature_step_equals_reference(rule, memory, chunk, B, T):
    """`normalize = true` on gd / momentum: the closed-form tangent pass (memory.gn_curvature) against
    the reference's torch.func.jvp, outputs, state and outer gradients."""
    _reference_vs_torch(_level_spec(memory, rule, chunk), seed=2, B=B, T=T)


def test_curvature_step_changes_the_update():
    """normalize = true is not the plain step: the state after a sequence differs, by a smaller update."""
    x = torch.randint(0, 256, (2, 8))
    out = {}
    for norm in ("false", "true"):
        torch.manual_seed(3)
        m = nlc.compile_text(_level_spec(CURVATURE_MEMORIES[1], f"gd(lr = 1, normalize = {norm})", 4),
                             backend="torch").double()
        out[norm] = m(x, targets=x).stats["b.0.m/update_norm"]
    assert 0 < out["true"] < out["false"]


def test_curvature_of_a_linear_memory_is_the_key_norm():
    """c_t = |J g|^2 / |g|^2 = |k_t|^2 for W k: the step is theta / (1 + C theta |k|^2) (NLMS at C = 1)."""
    from nlc.lower import memory as mem
    lv = nlc.compile_text(_level_spec("linear()", "gd(lr = 1, normalize = true)", 4)).plan.blocks[0].levels[0]
    torch.manual_seed(4)
    W = [torch.randn(2, 2, 4, 4, dtype=torch.float64)]
    k, v = 3 * torch.randn(2, 2, 6, 4, dtype=torch.float64), torch.randn(2, 2, 6, 4, dtype=torch.float64)
    y, acts = mem.forward_layers(lv, W, k)
    u, _, _ = mem.chunk_grads(lv, W, k, v, torch.ones(2, 2, 6, dtype=torch.float64))
    c = mem.gn_curvature(lv, W, acts, u)
    torch.testing.assert_close(c, (k * k).sum(-1))
    theta = torch.full((2, 2, 6), 0.5, dtype=torch.float64)
    torch.testing.assert_close(mem.chunk_grads(lv, W, k, v, theta)[2], theta / (1 + 4 * theta * c))


def test_curvature_step_stays_finite_where_the_plain_step_blows_up():
    """Keys of norm 3 and lr 1 on a 2-layer MLP memory: the plain step overshoots and the memory blows up
    (NaN within 64 tokens); the curvature-following step stays finite and small."""
    x = torch.randint(0, 256, (2, 64))
    stats = {}
    for norm in ("false", "true"):
        torch.manual_seed(5)
        m = nlc.compile_text(_level_spec(CURVATURE_MEMORIES[1], f"gd(lr = 1, normalize = {norm})", 4,
                                             keys="3 * l2norm(linear(h), groups = heads)"), backend="torch").double()
        with torch.no_grad():
            stats[norm] = m(x, targets=x).stats["b.0.m/surprise"]
    assert not torch.isfinite(torch.as_tensor(stats["false"])) or stats["false"] > 1e6
    assert torch.isfinite(torch.as_tensor(stats["true"])) and stats["true"] < 10
