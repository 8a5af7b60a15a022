"""Stream ops: the token-parallel, causal pieces of a block (identical in every backend).

The op set is written once, as plain data, in nlc/ir/kinds.py (`OPS`: names, arity, arguments,
which own parameters, which the program runs itself); here torch is bound to the same keys:
`MODULES` builds the parameters of the ops that own some, `APPLY` runs every op the program does
not run itself (tests/lower/test_ops_registry.py checks both against `OPS`).

Each op maps (B, n, width) segments; `conv` carries its last `window - 1` inputs in the
fast state so that a sequence processed in segments equals the sequence at once.
"""
from __future__ import annotations

import math
import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from nlc.ir.kinds import OpKind

ACTS = {OpKind.SILU: F.silu, OpKind.GELU: F.gelu, OpKind.RELU: F.relu, OpKind.SIGMOID: torch.sigmoid,
        OpKind.TANH: torch.tanh, OpKind.SOFTPLUS: F.softplus, OpKind.EXP: torch.exp}


def act_grad(name: str, z: torch.Tensor) -> torch.Tensor:
    """d act(z) / dz, in closed form (used by the chunk-parallel memory gradients)."""
    if name == "silu":
        s = torch.sigmoid(z)
        return s * (1 + z * (1 - s))
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "tanh":
        return 1 - torch.tanh(z) ** 2
    if name == "gelu":  # exact erf gelu, as F.gelu
        return 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    raise ValueError(name)


class RMSNorm(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class CausalConv(nn.Module):
    """Depthwise causal conv over time; the last window-1 inputs are carried across segments."""

    def __init__(self, width: int, window: int):
        super().__init__()
        self.window = window
        w = torch.zeros(width, window)
        w[:, -1] = 1.0  # starts as the identity, so a fresh model is not blurred in time
        self.weight = nn.Parameter(w + 0.02 * torch.randn(width, window))

    def forward(self, x, prev):
        # x: (B, n, C); prev: (B, window-1, C) inputs before this segment
        xx = torch.cat([prev, x], dim=1)
        conv = causal_conv_small if xx.numel() <= SMALL_CONV else causal_conv
        return conv(xx, self.weight), xx[:, xx.shape[1] - (self.window - 1):]


# F.conv1d costs ~150-200 us per call on CPU whatever the size (a 1-token read of generation, a
# 16-token Hope segment); up to this many elements the windowed product is 1.3-15x faster, above it
# conv1d is (scripts/ab_conv.py; docs/performance.md, "2026-11-30 (night)")
SMALL_CONV = 65536


def causal_conv(xx, weight):
    """The reference: a depthwise conv over time. xx (B, window-1+n, C) -> (B, n, C)."""
    return F.conv1d(xx.transpose(1, 2), weight.unsqueeze(1), groups=xx.shape[-1]).transpose(1, 2)


def causal_conv_small(xx, weight):
    """The same as a windowed product: out[t, c] = sum_j xx[t+j, c] w[c, j] (two ops, no conv setup)."""
    return (xx.unfold(1, weight.shape[1], 1) * weight).sum(-1)


class Gate(nn.Module):
    """MAG's non-linear gate: y (x) m = norm(y) * sigmoid(norm(m)), learnable norm weights (Titans §4.2)."""

    def __init__(self, width: int):
        super().__init__()
        self.ny, self.nm = RMSNorm(width), RMSNorm(width)

    def forward(self, y, m):
        return self.ny(y) * torch.sigmoid(self.nm(m))


class Scale(nn.Module):
    """y = x * exp(s), one learned s per channel, started on a geometric ladder from lo to hi.

    Gated DeltaNet's and Mamba-2's per-head decay rate `A = exp(A_log)` (log-parameterised, so it
    stays positive under any step): fla draws each head's rate at random over decades; a ladder
    spans the same decades deterministically (RetNet's fixed per-head decays, but learned), so a
    run is reproducible from its seed and every head count covers lo..hi."""

    def __init__(self, width: int, lo: float = 1.0, hi: float = 1.0):
        super().__init__()
        # width values from lo to hi, equally spaced in log (lo alone when width is 1)
        self.log_scale = nn.Parameter(torch.logspace(math.log10(lo), math.log10(hi), width).log())

    def forward(self, x):
        return x * self.log_scale.exp()


# the parameters of each op that owns some: op kind -> (op, input widths) -> module
MODULES = {
    OpKind.LINEAR: lambda op, widths: nn.Linear(widths[op.inputs[0]], op.width, bias=False),
    OpKind.RMSNORM: lambda op, widths: RMSNorm(op.width),
    OpKind.LAYERNORM: lambda op, widths: nn.LayerNorm(op.width),
    OpKind.CONV: lambda op, widths: CausalConv(op.width, op.attrs["window"]),
    OpKind.GATE: lambda op, widths: Gate(op.width),
    OpKind.SCALE: lambda op, widths: Scale(op.width, **op.attrs),  # lo, hi when the spec gives them
}


def make_module(op, widths: dict[str, int]):
    """The parameters an op owns (or None)."""
    make = MODULES.get(op.op)
    return make(op, widths) if make is not None else None


def _act(fn):
    return lambda op, mod, ins: fn(ins[0])


def _l2norm(op, mod, ins):
    x, g = ins[0], op.attrs.get("groups", 1)
    return F.normalize(x.unflatten(-1, (g, x.shape[-1] // g)), dim=-1, eps=1e-6).flatten(-2)


def _binary(fn):
    """A binary op; a constant operand is the attribute `left` or `right`, not an input."""
    def run(op, mod, ins):
        it = iter(ins)
        left = op.attrs["left"] if "left" in op.attrs else next(it)
        right = op.attrs["right"] if "right" in op.attrs else next(it)
        return fn(left, right)
    return run


# every op the program does not run itself: op kind -> (op, its module or None, input tensors) -> tensor
APPLY = {
    **{k: _act(f) for k, f in ACTS.items()},
    OpKind.LINEAR: lambda op, mod, ins: mod(ins[0]),
    OpKind.RMSNORM: lambda op, mod, ins: mod(ins[0]),
    OpKind.LAYERNORM: lambda op, mod, ins: mod(ins[0]),
    OpKind.L2NORM: _l2norm,
    OpKind.HEAD_MEAN: lambda op, mod, ins: ins[0].unflatten(-1, (op.attrs["groups"], -1)).mean(-1),
    OpKind.GATE: lambda op, mod, ins: mod(ins[0], ins[1]),
    OpKind.SCALE: lambda op, mod, ins: mod(ins[0]),
    OpKind.NEG: lambda op, mod, ins: -ins[0],
    OpKind.ALIAS: lambda op, mod, ins: ins[0],
    OpKind.ADD: _binary(operator.add),
    OpKind.SUB: _binary(operator.sub),
    OpKind.MUL: _binary(operator.mul),
    OpKind.DIV: _binary(operator.truediv),
}


def apply_op(op, mod, ins):
    """Run one stateless op on its input tensors."""
    return APPLY[op.op](op, mod, ins)
