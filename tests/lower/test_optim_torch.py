"""NLOptimizer runs the checked optimizer plan and matches torch.optim exactly (float64): per-group
hyperparameters, per-parameter step counts, state_dict round trips; what `nlc check` accepts runs."""
import copy
import io

import pytest
import torch

from nlc.errors import NlcError
from nlc.frontend.parse import parse_file, parse_text
from nlc.ir import nodes as ir
from nlc.lower.optim import NLOptimizer
from nlc.passes.optimizer import check_optimizer

SHAPES = [(), (5,), (3, 4), (2, 3, 4)]
STEPS = 8


def spec_of(source, args=None, name=None):
    """The checked OptimizerSpec of a spec file (path) or of spec text."""
    prog = parse_file(source) if source.endswith(".nl") else parse_text(source)
    d = next(i for i in prog.items if isinstance(i, ir.Optimizer) and name in (None, i.name))
    return check_optimizer(d, args or {})


def make_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64)) for s in SHAPES]


def groups(params, per_group):
    """Two groups: the first two shapes and the rest, each with its own hyperparameters."""
    return [dict(params=params[:2], **per_group[0]), dict(params=params[2:], **per_group[1])]


def drive(opt, params, steps=STEPS, late=(), k=3, seed=1, start=0):
    """`steps` steps with seeded gradients; the parameters in `late` get no gradient in the first k steps."""
    g = torch.Generator().manual_seed(seed)
    for t in range(start + steps):
        grads = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
        if t < start:
            continue
        for i, (p, gr) in enumerate(zip(params, grads)):
            p.grad = None if (i in late and t < k) else gr
        opt.step()
    return [p.detach().clone() for p in params]


def assert_same(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


ADAM_GROUPS = [dict(lr=0.1, beta1=0.9, beta2=0.999), dict(lr=0.01, beta1=0.5, beta2=0.99)]
TORCH_ADAM_GROUPS = [dict(lr=0.1, betas=(0.9, 0.999)), dict(lr=0.01, betas=(0.5, 0.99))]


@pytest.mark.parametrize("late", [(), (0, 3)])
def test_adamw_matches_torch_per_group(late):
    """Groups at lr 0.1 and 0.01 with their own betas and weight decay; parameters 0 and 3 (one per
    group) get no gradient in the first 3 steps, so their bias correction counts their own steps."""
    ours, theirs = make_params(), make_params()
    wd = [dict(weight_decay=0.01), dict(weight_decay=0.2)]
    a = NLOptimizer(groups(ours, [g | w for g, w in zip(ADAM_GROUPS, wd)]), spec_of("specs/optim/adamw.nl"))
    b = torch.optim.AdamW(groups(theirs, [g | w for g, w in zip(TORCH_ADAM_GROUPS, wd)]), eps=1e-8, foreach=False)
    assert_same(drive(a, ours, late=late), drive(b, theirs, late=late))


def test_adam_matches_torch_per_group_late_params():
    ours, theirs = make_params(), make_params()
    a = NLOptimizer(groups(ours, ADAM_GROUPS), spec_of("specs/optim/adam.nl"))
    b = torch.optim.Adam(groups(theirs, TORCH_ADAM_GROUPS), eps=1e-8, foreach=False)
    assert_same(drive(a, ours, late=(1, 2)), drive(b, theirs, late=(1, 2)))


def test_momentum_matches_sgd_per_group():
    ours, theirs = make_params(), make_params()
    a = NLOptimizer(groups(ours, [dict(lr=0.1, beta=0.9), dict(lr=0.01, beta=0.5)]), spec_of("specs/optim/momentum.nl"))
    b = torch.optim.SGD(groups(theirs, [dict(lr=0.1, momentum=0.9), dict(lr=0.01, momentum=0.5)]), foreach=False)
    assert_same(drive(a, ours, late=(0,)), drive(b, theirs, late=(0,)))


NESTEROV = """
optimizer Nesterov(lr = 1e-2, beta = 0.9) {
  level m : slot {
    clock steps(1)
    keys grad
    rule momentum(beta)
  }
  step lr * (grad + beta * m)
}
"""


def test_nesterov_written_in_nl_matches_sgd_nesterov():
    ours, theirs = make_params(), make_params()
    a = NLOptimizer(groups(ours, [dict(lr=0.1), dict(lr=0.01, beta=0.5)]), spec_of(NESTEROV))
    b = torch.optim.SGD(groups(theirs, [dict(lr=0.1, momentum=0.9), dict(lr=0.01, momentum=0.5)]),
                        momentum=0.9, nesterov=True, foreach=False)
    assert_same(drive(a, ours, late=(3,)), drive(b, theirs, late=(3,)))


def roundtrip(opt):
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("path", ["specs/optim/adamw.nl", "specs/optim/m3.nl", "specs/optim/dmgd.nl"])
def test_state_dict_round_trip_resumes_exactly(path):
    """Stop after 5 steps (a late parameter has taken 2), save, load into a fresh optimizer on copies
    of the parameters, run 4 more: the same as running 9 without stopping (M3's slow slot is mid-period)."""
    args = {"f": 3} if path.endswith("m3.nl") else {}
    spec = spec_of(path, args)
    per_group = [dict(lr=0.05), dict(lr=0.01)]
    full = make_params()
    want = drive(NLOptimizer(groups(full, per_group), spec), full, steps=9, late=(2,))
    first = make_params()
    a = NLOptimizer(groups(first, per_group), spec)
    drive(a, first, steps=5, late=(2,))
    saved = roundtrip(a)
    second = [torch.nn.Parameter(p.detach().clone()) for p in first]
    b = NLOptimizer(groups(second, [dict(lr=1.0), dict(lr=1.0)]), spec)  # the loaded groups bring their lr back
    b.load_state_dict(saved)
    assert [g["lr"] for g in b.param_groups] == [0.05, 0.01]
    assert b.state[second[2]]["step"] == 2 and b.nsteps == 5
    got = drive(b, second, steps=4, late=(2,), start=5)
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_adamw_round_trip_matches_torch():
    ours, theirs = make_params(), make_params()
    a = NLOptimizer(groups(ours, ADAM_GROUPS), spec_of("specs/optim/adamw.nl"))
    b = torch.optim.AdamW(groups(theirs, TORCH_ADAM_GROUPS), foreach=False)
    drive(a, ours, steps=4, late=(0,))
    drive(b, theirs, steps=4, late=(0,))
    a2 = NLOptimizer(groups(ours, ADAM_GROUPS), spec_of("specs/optim/adamw.nl"))
    a2.load_state_dict(roundtrip(a))
    b2 = torch.optim.AdamW(groups(theirs, TORCH_ADAM_GROUPS), foreach=False)
    b2.load_state_dict(roundtrip(b))
    assert_same(drive(a2, ours, steps=4, late=(0,), start=4), drive(b2, theirs, steps=4, late=(0,), start=4))


TWICE = """
optimizer Twice(lr = 1e-2, beta = 0.9) {
  level m : slot {
    clock steps(1)
    keys grad
    rule momentum(beta)
  }
  u = m * 2
  step lr * u
}
"""


def test_local_definition_in_step_runs():
    """`u = m * 2; step lr * u` passes nlc check; the optimizer used to raise KeyError: 'u'."""
    ours, theirs = make_params(), make_params()
    a = NLOptimizer(groups(ours, [dict(lr=0.1), dict(lr=0.01)]), spec_of(TWICE))
    b = torch.optim.SGD(groups(theirs, [dict(lr=0.2), dict(lr=0.02)]), momentum=0.9, foreach=False)
    assert_same(drive(a, ours), drive(b, theirs))


def test_surface_definition_still_accepted():
    """api.make_optimizer passes the ir.Optimizer and its args: checked at construction, same result."""
    d = next(i for i in parse_text(TWICE).items if isinstance(i, ir.Optimizer))
    ours, theirs = make_params(), make_params()
    a = NLOptimizer(ours, d, {"lr": 0.1})
    b = torch.optim.SGD(theirs, lr=0.2, momentum=0.9, foreach=False)
    assert_same(drive(a, ours), drive(b, theirs))


TWO_NAMES = """
optimizer Two(lr = 1e-2, beta1 = 0.9) {
  level a, b : slot {
    keys grad
    rule ema(beta = beta1)
  }
  step lr * (a + b) / sqrt(4)
}
"""


def test_two_names_keyword_beta_and_a_scalar_function():
    """`level a, b`, `ema(beta = beta1)` and `sqrt(4)` pass nlc check: both slots exist, the keyword beta
    is the group's beta1 (not a default 0.9), sqrt of a number is a number. (a + b) / 2 = m of
    SGD(momentum = beta1, dampening = 1 - beta1)."""
    ours, theirs = make_params(), make_params()
    a = NLOptimizer(ours, spec_of(TWO_NAMES), {"beta1": 0.5, "lr": 0.1})
    b = torch.optim.SGD(theirs, lr=0.1, momentum=0.5, dampening=0.5, foreach=False)
    # torch's first momentum buffer is the gradient itself (no dampening); ours starts from 0: skip step 1
    drive(a, ours, steps=1)
    for p, q in zip(ours, theirs):
        q.data.copy_(p.data)
        b.state[q]["momentum_buffer"] = a.state[p]["a"].clone()
    assert a.state[ours[0]]["a"].equal(a.state[ours[0]]["b"])
    assert_same(drive(a, ours, steps=4, start=1), drive(b, theirs, steps=4, start=1))


def test_slow_slot_period_per_group():
    """M3 with f = 2 in one group and f = 3 in the other: each group's slow slot m2 changes on its own period."""
    params = make_params()
    opt = NLOptimizer(groups(params, [dict(f=2), dict(f=3)]), spec_of("specs/optim/m3.nl"))
    g = torch.Generator().manual_seed(0)
    prev = None
    for t in range(1, 8):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64)
        opt.step()
        now = [opt.state[p]["m2"].clone() for p in params]
        if prev is not None:
            for i, (x, y) in enumerate(zip(now, prev)):
                f = 2 if i < 2 else 3
                assert (not torch.equal(x, y)) == (t % f == 0), (t, i)
        prev = now


NO_LR = """
optimizer Plain(eta = 0.1, beta = 0.9) {
  level m : slot {
    keys grad
    rule momentum(beta)
  }
  step eta * m
}
"""


def test_spec_without_lr_is_scaled_by_the_group_lr():
    """A spec that declares no `lr` gets lr = 1 per group, multiplying its step (so schedules apply)."""
    ours, theirs = make_params(), make_params()
    a = NLOptimizer(groups(ours, [dict(), dict(lr=0.5)]), spec_of(NO_LR))
    assert a.param_groups[0]["lr"] == 1.0
    b = torch.optim.SGD(groups(theirs, [dict(lr=0.1), dict(lr=0.05)]), momentum=0.9, foreach=False)
    assert_same(drive(a, ours), drive(b, theirs))


def test_every_spec_in_specs_optim_steps():
    import glob
    paths = sorted(glob.glob("specs/optim/*.nl"))
    assert len(paths) >= 7
    for path in paths:
        for d in (i for i in parse_file(path).items if isinstance(i, ir.Optimizer)):
            params = make_params()
            before = [p.detach().clone() for p in params]
            after = drive(NLOptimizer(params, check_optimizer(d, {})), params, steps=3)
            for x, y in zip(after, before):
                assert torch.isfinite(x).all() and not torch.equal(x, y), (path, x.shape)


@pytest.mark.parametrize("group,msg", [
    (dict(beta1=1.5), r"ema\(beta\) of level 'm' is beta1 = 1.5; it must be a number in \[0, 1\]"),
    (dict(beta2=1.0), r"unbias\(x, beta\) is beta2 = 1.0; it must be a number in \[0, 1\)"),
    (dict(eps="small"), r"eps = 'small'; it must be a finite number"),
    (dict(lr=float("nan")), r"lr = nan; it must be a finite number"),
])
def test_bad_group_values_fail_at_construction(group, msg):
    with pytest.raises(NlcError, match=msg):
        NLOptimizer(groups(make_params(), [dict(), group]), spec_of("specs/optim/adamw.nl"))


def test_a_bad_group_added_later_is_refused_and_not_kept():
    params = make_params()
    opt = NLOptimizer(params[:2], spec_of("specs/optim/adamw.nl"))
    with pytest.raises(NlcError, match=r"ema\(beta\) of level 'v' is beta2 = -1.0"):
        opt.add_param_group(dict(params=params[2:], beta2=-1.0))
    assert len(opt.param_groups) == 1


def test_bad_values_set_after_construction_fail_at_the_step():
    params = make_params()
    opt = NLOptimizer(params, spec_of("specs/optim/m3.nl"))
    opt.param_groups[0]["f"] = 0
    for p in params:
        p.grad = torch.ones_like(p)
    with pytest.raises(NlcError, match="clock period of level 'm2' is f = 0"):
        opt.step()


ZERO_DIV = """
optimizer Div(lr = 1e-2, beta = 0.9, c = 0.9) {
  level m : slot {
    keys grad
    rule momentum(beta)
  }
  step lr / (beta - c) * m
}
"""


def test_what_cannot_be_computed_fails_at_construction():
    with pytest.raises(NlcError, match="ZeroDivisionError"):
        NLOptimizer(make_params(), spec_of(ZERO_DIV))
    NLOptimizer(make_params(), spec_of(ZERO_DIV, {"c": 0.5}))  # fine with other values


def test_what_is_not_a_checked_optimizer_is_an_nlc_error():
    with pytest.raises(NlcError, match="checked optimizer"):
        NLOptimizer(make_params(), {"lr": 1e-3})
    with pytest.raises(NlcError, match="has no parameter 'lrr'"):
        NLOptimizer(make_params(), spec_of("specs/optim/adamw.nl"), {"lrr": 1e-3})
    bad = next(i for i in parse_text(TWICE.replace("lr * u", "lr * u * w")).items if isinstance(i, ir.Optimizer))
    with pytest.raises(NlcError, match="unknown name 'w'"):
        NLOptimizer(make_params(), bad, {})
    params_named = TWICE.replace("beta = 0.9)", "beta = 0.9, params = 1)").replace("lr * u", "lr * u * params")
    with pytest.raises(NlcError, match="cannot be called 'params'"):
        NLOptimizer(make_params(), spec_of(params_named))


def test_state_from_the_older_optimizer_resumes():
    """A checkpoint of the older NLOptimizer counted steps per group (`nsteps`) and kept no per-parameter
    step: its state resumes at that count (unbias is continuous)."""
    spec = spec_of("specs/optim/adam.nl")
    params = make_params()
    a = NLOptimizer(params, spec)
    drive(a, params, steps=3)
    old = copy.deepcopy(a.state_dict())
    for st in old["state"].values():
        del st["step"]
    for g in old["param_groups"]:
        g["nsteps"] = 3
        del g["beta1"]
    b = NLOptimizer([torch.nn.Parameter(p.detach().clone()) for p in params], spec)
    b.load_state_dict(old)
    assert b.param_groups[0]["beta1"] == 0.9  # a hyperparameter the saved group lacks gets its default
    fresh = copy.deepcopy(a)
    want = drive(fresh, [p for p in fresh.param_groups[0]["params"]], steps=1, start=3)
    got = drive(b, b.param_groups[0]["params"], steps=1, start=3)
    assert_same(got, want)
