"""Outer optimizers written in .nl (`optimizer` definitions): slot levels + a step expression.

Each slot level is a memory of the gradient stream, one buffer per parameter, updated
every C steps (NL §4: optimizers are associative memories):
    ema(b):        m <- b m + (1 - b) k          accumulate(b):  m <- m + b k
    momentum(b):   m <- b m + k                  delta(b):       m <- b m - <m, k^> k^ + k  (k^ = k/||k||)
    deep(b, hidden, lr): m <- b m + f(k), f(u) = u + w1 . silu(w2 u) per entry, whose parameters take
                   one GD step with decay b on <f(u), 1> each time (DMGD, eq. 50; a small shared MLP)
A slot with clock steps(C) sees the gradients summed over its C steps (M3's slow momentum, eq. 75).
`step` is the parameter update: param <- param - step.

The spec is compiled once (`optim_program.compile_program`) into a per-parameter program; each
param group carries every declared parameter as its own hyperparameter (torch style: groups may
set their own lr, beta1, weight_decay, ...), and each parameter counts its own steps
(`state[p]["step"]`, as torch.optim does), which drive its slot clocks and `unbias`.
"""
from __future__ import annotations

from typing import Any

import torch

from nlc.errors import NlcError
from nlc.lower.optim_program import STEP, Program, check_group, compile_program, newton_schulz

__all__ = ["NLOptimizer", "SLOT_UPDATES", "newton_schulz"]


def _ema(m, k, a, st, name):
    m.mul_(a["beta"]).add_((1 - a["beta"]) * k)


def _accumulate(m, k, a, st, name):
    m.add_(a["beta"] * k)


def _momentum(m, k, a, st, name):
    m.mul_(a["beta"]).add_(k)


def _delta(m, k, a, st, name):
    # (b I - k^ k^T) m + k: forget m's component along the new gradient (eqs. 48-49)
    kh = k / (k.norm() + 1e-12)
    proj = (m * kh).sum() * kh
    m.mul_(a["beta"]).sub_(proj).add_(k)


def _deep(m, k, a, st, name):
    m.mul_(a["beta"]).add_(deep_memory(st, name, k, a["beta"], int(a["hidden"]), float(a["lr"])))


# slot rule (passes.optimizer.SLOT_RULES) -> update(state m, summed keys k, rule args, param state, level name)
SLOT_UPDATES = {"ema": _ema, "accumulate": _accumulate, "momentum": _momentum, "delta": _delta, "deep": _deep}


class NLOptimizer(torch.optim.Optimizer):
    """Runs a checked `optimizer` definition. `spec` is its OptimizerSpec (the model plan's
    `optimizer.spec`); `args` override its parameters' values for every group. An `ir.Optimizer`
    definition is still accepted and checked here with `args` (the older call)."""

    def __init__(self, params, spec, args: dict | None = None):
        self.spec = _checked(spec, args)
        self.program: Program = compile_program(self.spec, SLOT_UPDATES)
        defaults = dict(self.program.hyper)
        if self.program.implicit_lr:
            defaults["lr"] = 1.0  # multiplies the step, so schedules and --lr apply (see Program.implicit_lr)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        i = len(self.param_groups) - 1
        try:
            check_group(self.program, self.param_groups[i], i)
            self._dry_run(self.param_groups[i], i)
        except NlcError:
            self.param_groups.pop()  # a group it cannot run is not added
            raise

    def __getstate__(self) -> dict:
        # torch keeps only defaults, state and groups; the spec travels too (copy, pickle) and the
        # program, made of closures, is compiled again from it
        return super().__getstate__() | {"spec": self.spec}

    def __setstate__(self, state: dict) -> None:
        if "spec" in state:
            state = dict(state)
            self.spec = state.pop("spec")
            self.program = compile_program(self.spec, SLOT_UPDATES)
        super().__setstate__(state)
        # groups saved before a hyperparameter was declared (or by the older optimizer) get its default
        for g in self.param_groups:
            for k, v in self.defaults.items():
                g.setdefault(k, v)

    @property
    def nsteps(self) -> int:
        """The most steps any parameter has taken."""
        return max((int(st.get("step", 0)) for st in self.state.values()), default=0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for i, group in enumerate(self.param_groups):
            check_group(self.program, group, i)  # a schedule or a user may have changed the group's values
            for p in group["params"]:
                if p.grad is not None:
                    self._step_param(p, self.state[p], group, i)
        return loss

    def _step_param(self, p, st: dict, group: dict, index: int) -> None:
        if "step" not in st:
            # state saved by the older optimizer counted steps per group ("nsteps"); fresh state starts at 0
            st["step"] = int(group.get("nsteps", 0)) if st else 0
        st["step"] += 1
        env: dict[str, Any] = {k: group[k] for k in self.program.hyper}
        env.update(grad=p.grad, param=p)
        env[STEP] = st["step"]
        try:
            for s in self.program.slots:
                k = s.keys(env)
                every = int(s.every(group))
                m = st.setdefault(s.name, torch.zeros_like(p))
                if every > 1:  # a slow slot sees the keys summed over its period (M3's slow momentum, eq. 75)
                    acc = st.setdefault(s.name + ".acc", torch.zeros_like(p))
                    acc.add_(k)
                    if st["step"] % every == 0:
                        k = acc.clone()
                        acc.zero_()
                if st["step"] % every == 0:
                    SLOT_UPDATES[s.rule](m, k, {a: f(group) for a, f in s.args.items()}, st, s.name)
                env[s.name] = m
            d = self.program.step(env)
        except (ArithmeticError, ValueError) as e:
            raise NlcError(f"optimizer {self.program.name}, parameter group {index}: the step cannot be computed "
                           f"({type(e).__name__}: {e})", hint="check the group's values") from None
        scale = group["lr"] if self.program.implicit_lr else 1.0
        p.sub_(d * scale if scale != 1.0 else d)

    def _dry_run(self, group: dict, index: int) -> None:
        """Run the program once on a scratch parameter, so what cannot be computed (a constant divided
        by zero) is an NlcError now, not at the first step."""
        p = torch.zeros(2, 2, dtype=torch.float64)
        p.grad = torch.ones_like(p)
        self._step_param(p, {}, group, index)


def _checked(spec, args: dict | None):
    from nlc.passes.optimizer import OptimizerSpec
    if isinstance(spec, OptimizerSpec):
        if args:
            # values for a checked spec are checked like a group's (per hyperparameter, at add_param_group)
            unknown = [k for k in args if k not in spec.params]
            if unknown:
                raise NlcError(f"optimizer {spec.name} has no parameter {', '.join(map(repr, unknown))}",
                               hint=f"parameters: {', '.join(spec.params) or 'none'}")
            spec = spec.model_copy(update={"params": spec.params | dict(args)})
        return spec
    from nlc.ir import nodes as ir
    if isinstance(spec, ir.Optimizer):
        from nlc.passes.optimizer import check_optimizer
        return check_optimizer(spec, args)
    raise NlcError(f"NLOptimizer needs a checked optimizer (OptimizerSpec), got {type(spec).__name__}")


def deep_memory(st: dict, name: str, u, b: float, h: int, lr: float):
    """DMGD (eq. 50): the momentum is an MLP memory f(u) = u + w1 . silu(w2 u), applied to every
    gradient entry with parameters shared per tensor; each step it takes one GD step on its value-less
    objective <f(u), 1> (mean over entries; retention b on w1) and outputs f(u)."""
    w1 = st.setdefault(name + ".w1", torch.zeros(h, dtype=u.dtype, device=u.device))
    w2 = st.setdefault(name + ".w2", torch.linspace(-1, 1, h, dtype=u.dtype, device=u.device))
    x = u.reshape(-1, 1)
    z = x * w2
    sz = torch.nn.functional.silu(z)
    sg = torch.sigmoid(z)
    g1 = sz.mean(0)                                       # d<f(u), 1>/d w1
    g2 = (w1 * (sg * (1 + z * (1 - sg))) * x).mean(0)     # d<f(u), 1>/d w2
    w1.mul_(b).sub_(lr * g1)   # the memory's output weights decay (retention b, eq. 50)
    w2.sub_(lr * g2)           # its input features do not, or f would collapse to the identity
    return (x + torch.nn.functional.silu(x * w2) @ w1.reshape(-1, 1)).reshape(u.shape)
