"""Outer optimizers written in .nl (`optimizer` definitions): slot levels + a step expression.

Each slot level is a memory of the gradient stream, one buffer per parameter, updated
every C steps (NL §4: optimizers are associative memories):
    ema(b):        m <- b m + (1 - b) k          accumulate(b):  m <- m + b k
    momentum(b):   m <- b m + k                  delta(b):       m <- b m - <m, k^> k^ + k  (k^ = k/||k||)
    deep(b, hidden, lr): m <- b m + f(k), f(u) = u + w1 . silu(w2 u) per entry, whose parameters take
                   one GD step with decay b on <f(u), 1> each time (DMGD, eq. 50; a small shared MLP)
A slot with clock steps(C) sees the gradients summed over its C steps (M3's slow momentum, eq. 75).
`step` is the parameter update: param <- param - step.
"""
from __future__ import annotations

import torch

from nlc.ir import nodes as ir


def newton_schulz(g, steps: int = 5):
    """Orthogonalise a matrix (Muon's quintic iteration); vectors are normalised."""
    if g.ndim < 2:
        return g / (g.norm() + 1e-7)
    shape = g.shape
    x = g.reshape(shape[0], -1).float()
    a, b, c = 3.4445, -4.7750, 2.0315
    x = x / (x.norm() + 1e-7)
    tr = x.shape[0] > x.shape[1]
    if tr:
        x = x.T
    for _ in range(int(steps)):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    if tr:
        x = x.T
    return x.reshape(shape).to(g.dtype)


class NLOptimizer(torch.optim.Optimizer):
    def __init__(self, params, definition: ir.Optimizer, args: dict):
        from nlc.passes.consts import eval_const
        env = {}
        for p in definition.params:
            env[p.name] = args[p.name] if p.name in args else eval_const(p.default, env)
        self.env = env
        self.slots = [s for s in definition.body if isinstance(s, ir.LevelDef)]
        self.step_expr = next(s.value for s in definition.body if isinstance(s, ir.Step))
        # the step count lives in the param group, so it is saved and restored with the optimizer
        super().__init__(params, {"lr": env.get("lr", 1e-3), "nsteps": 0})

    @property
    def nsteps(self) -> int:
        return self.param_groups[0]["nsteps"]

    def _eval(self, e, names):
        if isinstance(e, ir.Num):
            return e.value
        if isinstance(e, ir.Name):
            return names[e.id] if e.id in names else self.env[e.id]
        if isinstance(e, ir.Neg):
            return -self._eval(e.operand, names)
        if isinstance(e, ir.BinOp):
            a, b = self._eval(e.left, names), self._eval(e.right, names)
            return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[e.op]()
        if isinstance(e, ir.Call):
            args = [self._eval(a, names) for a in e.args]
            if e.func == "sqrt":
                return torch.sqrt(args[0])
            if e.func == "abs":
                return torch.abs(args[0])
            if e.func == "sign":
                return torch.sign(args[0])
            if e.func == "unbias":
                return args[0] / (1 - float(args[1]) ** self.nsteps)
            if e.func == "newton_schulz":
                return newton_schulz(args[0], args[1] if len(args) > 1 else 5)
        raise ValueError(f"cannot evaluate {e}")

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            g["nsteps"] += 1
        scale = self.param_groups[0]["lr"] / self.env.get("lr", 1e-3) if self.env.get("lr") else 1.0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                names = {"grad": p.grad, "param": p}
                for s in self.slots:
                    name = s.names[0]
                    clock = next((q.clock for q in s.props if isinstance(q, ir.ClockProp)), None)
                    every = int(self._eval(clock.every, {})) if clock is not None and clock.every is not None else 1
                    key = next(q.value for q in s.props if isinstance(q, ir.StreamProp) and q.role == "keys")
                    rule = next(q.rule for q in s.props if isinstance(q, ir.RuleProp))
                    k = self._eval(key, names)
                    acc = st.setdefault(name + ".acc", torch.zeros_like(p))
                    acc.add_(k)
                    m = st.setdefault(name, torch.zeros_like(p))
                    if self.nsteps % every == 0:
                        kk = acc.clone()
                        acc.zero_()
                        b = float(self._eval(rule.args[0], {})) if rule.args else 0.9
                        if rule.func == "ema":
                            m.mul_(b).add_((1 - b) * kk)
                        elif rule.func == "accumulate":
                            m.add_(b * kk)
                        elif rule.func == "momentum":
                            m.mul_(b).add_(kk)
                        elif rule.func == "delta":
                            # (b I - k^ k^T) m + k: forget m's component along the new gradient (eqs. 48-49)
                            kh = kk / (kk.norm() + 1e-12)
                            proj = (m * kh).sum() * kh
                            m.mul_(b).sub_(proj).add_(kk)
                        elif rule.func == "deep":
                            m.mul_(b).add_(self._deep(st, name, kk, rule))
                        else:
                            raise ValueError(f"unknown slot rule {rule.func}")
                    names[name] = m
                p.sub_(scale * self._eval(self.step_expr, names))

    def _deep(self, st, name, u, rule):
        """DMGD (eq. 50): the momentum is an MLP memory f(u) = u + w1 . silu(w2 u), applied to every
        gradient entry with parameters shared per tensor; each step it takes one GD step on its value-less
        objective <f(u), 1> (mean over entries; retention b on w1) and outputs f(u)."""
        b = float(self._eval(rule.args[0], {})) if rule.args else 0.9
        kw = {k.name: float(self._eval(k.value, {})) for k in rule.kwargs}
        h, lr = int(kw.get("hidden", 16)), kw.get("lr", 1e-3)
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
