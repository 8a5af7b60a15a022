"""Stream ops: the token-parallel, causal pieces of a block (identical in every backend).

Each op maps (B, n, width) segments; `conv` carries its last `window - 1` inputs in the
fast state so that a sequence processed in segments equals the sequence at once.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
        "softplus": F.softplus, "exp": torch.exp}


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
        out = F.conv1d(xx.transpose(1, 2), self.weight.unsqueeze(1), groups=x.shape[-1]).transpose(1, 2)
        return out, xx[:, xx.shape[1] - (self.window - 1):]


class Gate(nn.Module):
    """MAG's non-linear gate: y (x) m = norm(y) * sigmoid(norm(m)), learnable norm weights (Titans §4.2)."""

    def __init__(self, width: int):
        super().__init__()
        self.ny, self.nm = RMSNorm(width), RMSNorm(width)

    def forward(self, y, m):
        return self.ny(y) * torch.sigmoid(self.nm(m))


def make_module(op, widths: dict[str, int]):
    """The parameters an op owns (or None)."""
    a = op.attrs
    if op.op == "linear":
        return nn.Linear(widths[op.inputs[0]], op.width, bias=False)
    if op.op == "rmsnorm":
        return RMSNorm(op.width)
    if op.op == "layernorm":
        return nn.LayerNorm(op.width)
    if op.op == "conv":
        return CausalConv(op.width, a["window"])
    if op.op == "gate":
        return Gate(op.width)
    return None


def apply_op(op, mod, ins):
    """Run one stateless op on its input tensors."""
    name, a = op.op, op.attrs
    if name in ACTS:
        return ACTS[name](ins[0])
    if name in ("linear", "rmsnorm", "layernorm"):
        return mod(ins[0])
    if name == "l2norm":
        x = ins[0]
        g = a.get("groups", 1)
        xs = x.unflatten(-1, (g, x.shape[-1] // g))
        return F.normalize(xs, dim=-1, eps=1e-6).flatten(-2)
    if name == "head_mean":
        x = ins[0]
        return x.unflatten(-1, (a["groups"], -1)).mean(-1)
    if name == "gate":
        return mod(ins[0], ins[1])
    if name == "neg":
        return -ins[0]
    if name == "alias":
        return ins[0]
    if name in ("add", "sub", "mul", "div"):
        it = iter(ins)
        left = a["left"] if "left" in a else next(it)
        right = a["right"] if "right" in a else next(it)
        return {"add": lambda: left + right, "sub": lambda: left - right,
                "mul": lambda: left * right, "div": lambda: left / right}[name]()
    raise ValueError(f"no lowering for op {name}")
