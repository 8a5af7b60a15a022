"""The update-rule registry (nlc/rules): one entry per rule read by the checker, the schedule and
the lowering; each rule's chunk form against its literal per-token step."""
import pytest
import torch

from nlc.rules import RULES

GATES = {"lr": 0.3, "decay": 0.2, "momentum": 0.7}


class LV:  # the fields of a LevelPlan a rule's update reads
    def __init__(self, rule, **rule_args):
        self.rule, self.rule_args = rule, {o: a[0] for o, a in RULES[rule].options.items()} | rule_args


@pytest.mark.parametrize("rule,args", [("gd", {}), ("momentum", {}), ("dgd", {}), ("dgd", {"normalize": False}),
                                       ("anchored", {}), ("delta", {})])
@pytest.mark.parametrize("n", [1, 5, 12])
def test_chunk_equals_token_steps(rule, args, n):
    """A linear memory: n rank-1 gradients applied by `chunk` = n applications of `token`, fp64."""
    g = torch.Generator().manual_seed(n)
    B, H, o, i = 2, 3, 4, 5
    lv = LV(rule, **args)
    r = RULES[rule]
    upd = r.update()
    mom = rule in ("momentum",) or (r.momentum == "gate")
    W = torch.randn(B, H, o, i, generator=g, dtype=torch.float64)
    W0 = torch.randn(B, H, o, i, generator=g, dtype=torch.float64) if r.uses_init else None
    S = torch.randn(B, H, o, i, generator=g, dtype=torch.float64) if mom else None
    d = torch.randn(B, H, n, o, generator=g, dtype=torch.float64)
    a = torch.randn(B, H, n, i, generator=g, dtype=torch.float64) / 2
    theta, alpha = torch.rand(B, H, n, generator=g, dtype=torch.float64) * 0.3, torch.rand(B, H, n, generator=g, dtype=torch.float64) * 0.3
    eta = torch.rand(B, H, n, generator=g, dtype=torch.float64) if mom else None
    (Wc,), Sc = upd.chunk(lv, [W], [S] if mom else None, [(d, a)], theta, alpha, eta, [W0] if W0 is not None else None)
    Wt, St = W, S
    for t in range(n):
        grad = d[:, :, t, :, None] * a[:, :, t, None, :]
        Wt, St = upd.token(lv, 0, Wt, St, grad, a[:, :, t], theta[..., t], alpha[..., t],
                           eta[..., t] if eta is not None else None, W0)
    torch.testing.assert_close(Wc, Wt, rtol=1e-10, atol=1e-10)
    if mom:
        torch.testing.assert_close(Sc[0], St, rtol=1e-10, atol=1e-10)


def test_anchored_without_decay_is_momentum():
    g = torch.Generator().manual_seed(0)
    W, S, W0 = (torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    u = [(torch.randn(1, 2, 6, 3, generator=g, dtype=torch.float64), torch.randn(1, 2, 6, 4, generator=g, dtype=torch.float64))]
    th, eta = torch.rand(1, 2, 6, generator=g, dtype=torch.float64), torch.rand(1, 2, 6, generator=g, dtype=torch.float64)
    zero = torch.zeros_like(th)
    a = RULES["anchored"].update().chunk(None, [W], [S], u, th, zero, eta, [W0])
    m = RULES["momentum"].update().chunk(None, [W], [S], u, th, zero, eta)
    torch.testing.assert_close(a[0][0], m[0][0], rtol=1e-12, atol=1e-12)


def test_checker_and_schedule_read_the_registry():
    from nlc.ir.schedule import Backend, Impl, Target
    from nlc.passes import run
    from nlc.passes.schedule import build_schedule
    text = """
model A(dim = 16, heads = 2, vocab = 256) {
  block b {
    h = rmsnorm(x)
    level m : linear() per head {
      keys l2norm(linear(h), groups = heads)
      values linear(h)
      rule anchored(lr = 0.2, decay = 0.1)
      clock tokens(4)
    }
    out x + linear(m(linear(h)))
  }
}"""
    c = run("<spec>", {}, text=text)
    lv = c.plan.blocks[0].levels[0]
    assert lv.rule == "anchored" and lv.momentum and set(lv.gates) == set(RULES["anchored"].gates)
    s = build_schedule(c.plan, Target(Backend.TRITON, kernels_runnable=True))
    assert s.levels[0].impl == Impl.CHUNK  # no fused kernel is registered for it
    from nlc.errors import NlcError
    with pytest.raises(NlcError) as e:
        run("<spec>", {}, text=text.replace("anchored(", "anchord("))
    assert "anchored" in e.value.hint  # did-you-mean and the list, from the registry


def test_rule_kernels_name_fused_implementations():
    """A rule's `kernels` are the fused ops the schedule can choose (Impl.TRITON_*), spelled once."""
    from nlc.ir.schedule import Impl
    fused = {i.kernel for i in Impl if i.kernel}
    for r in RULES.values():
        assert set(r.kernels) <= fused, r.name
