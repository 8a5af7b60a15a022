"""Optimizers written in .nl behave like their definitions (and like torch's where they coincide)."""
import torch

import nlc
from nlc.frontend.parse import parse_file
from nlc.ir import nodes as ir
from nlc.lower.optim import NLOptimizer, newton_schulz
from nlc.passes.optimizer import check_optimizer


def opt_def(path, name):
    """The checked optimizer `name` of a spec file (what NLOptimizer runs; the tests pass its args)."""
    return check_optimizer(next(i for i in parse_file(path).items if isinstance(i, ir.Optimizer) and i.name == name))


def run(opt_factory, steps=5, seed=0):
    torch.manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(6, 4))
    target = torch.randn(6, 4)
    opt = opt_factory([w])
    for _ in range(steps):
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
    return w.detach()


def test_adam_matches_torch():
    d = opt_def("specs/optim/adam.nl", "Adam")
    a = run(lambda p: NLOptimizer(p, d, {"lr": 1e-2}))
    b = run(lambda p: torch.optim.Adam(p, lr=1e-2, eps=1e-8))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_momentum_matches_sgd_momentum():
    d = opt_def("specs/optim/momentum.nl", "Momentum")
    a = run(lambda p: NLOptimizer(p, d, {"lr": 1e-2, "beta": 0.9}))
    b = run(lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_slow_slot_updates_every_f_steps():
    """M3's slow momentum m2 (clock steps(f)) changes only every f steps, with summed gradients."""
    d = opt_def("specs/optim/m3.nl", "M3")
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 4))
    opt = NLOptimizer([w], d, {"f": 3})
    prev = None
    for step in range(1, 8):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
        m2 = opt.state[w]["m2"].clone()
        if prev is not None:
            assert (not torch.equal(m2, prev)) == (step % 3 == 0), step
        prev = m2


def test_dmgd_differs_from_momentum_and_descends():
    d = opt_def("specs/optim/dmgd.nl", "DMGD")
    dm = opt_def("specs/optim/momentum.nl", "Momentum")
    a = run(lambda p: NLOptimizer(p, d, {"lr": 1e-2, "inner_lr": 0.1}), steps=20)
    b = run(lambda p: NLOptimizer(p, dm, {"lr": 1e-2, "beta": 0.9}), steps=20)
    assert not torch.allclose(a, b)


def test_delta_momentum_forgets_along_gradient():
    d = opt_def("specs/optim/delta_momentum.nl", "DeltaMomentum")
    w = torch.nn.Parameter(torch.zeros(3))
    opt = NLOptimizer([w], d, {"lr": 1.0, "beta": 0.5})
    for g in (torch.tensor([1.0, 0, 0]), torch.tensor([2.0, 0, 0])):
        w.grad = g.clone()
        opt.step()
    # m = (0.5 I - e1 e1^T) [1,0,0] + [2,0,0] = [-0.5 + 2, 0, 0]
    torch.testing.assert_close(opt.state[w]["m"], torch.tensor([1.5, 0.0, 0.0]))


def test_newton_schulz_orthogonalises():
    g = torch.randn(8, 5)
    o = newton_schulz(g, 10)
    s = torch.linalg.svdvals(o)
    assert s.min() > 0.5 and s.max() < 1.5


def test_model_optimizer_from_spec_trains():
    text = open("specs/hope.nl").read().replace('import "optim/adamw.nl"', 'import "optim/m3.nl"').replace(
        "rule AdamW(lr = 3e-3, weight_decay = 0.01)", "rule M3(lr = 1e-3, f = 2, eps = 1e-3)")
    # eps 1e-3: M3's first step is lr * NS(g) / |g| per entry (V additive), unbounded where a gradient is
    # ~1e-7 (head rows of bytes absent from this 2 x 16-byte batch); with eps 1e-8 the loss jumped on 2
    # of 3 seeds, before and after issue 16's memory init alike (seed 0 only passed by luck)
    torch.manual_seed(0)
    m = nlc.compile_text(text, dim=16, heads=2, layers=1, chunk=4, mem_chunk=8)
    opt = m.optimizer()
    assert isinstance(opt, NLOptimizer)
    x = torch.randint(0, 256, (2, 17))
    losses = []
    for _ in range(6):
        out = m(x[:, :-1], targets=x[:, 1:])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0]


def test_step_count_survives_state_dict():
    d = opt_def("specs/optim/adamw.nl", "AdamW")
    w = torch.nn.Parameter(torch.ones(3))
    a = NLOptimizer([w], d, {})
    for _ in range(3):
        w.grad = torch.ones(3)
        a.step()
    b = NLOptimizer([torch.nn.Parameter(torch.ones(3))], d, {})
    b.load_state_dict(a.state_dict())
    assert b.nsteps == 3
