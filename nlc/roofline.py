"""Roofline figures for the benchmarks: analytic FLOPs of the memory levels, counted FLOPs and
bytes of a call, and the machine's fp32 matmul peak and memory bandwidth, measured in-process.

Analytic FLOPs (matmul multiply-adds x 2; what torch.utils.flop_counter counts) per token and
per head of a memory level with per-head layer shapes (o_l, i_l), P = sum_l o_l i_l and
P' = sum over layers after the first of o_l i_l (the rank-1 gradient factors need the error
propagated back through them), chunk program segment length n:
    read  M_Wbar(q)                              2 P      (each read op of the level)
    gradients at Wbar (forward, backprop)        2 P + 2 P'
    curvature of normalize = true (gd, momentum) 2 P'     (the tangent pass through the layers after the first)
    update, momentum / gd rules                  2 P per running buffer: 4 P with momentum (W, S), 2 P without
    update, dgd without momentum (WY form)       per dgd layer 2 n i_l (k k^T) + 4 o_l i_l; other layers 2 o_l i_l
The DGD triangular solve (n o_l per token per layer) and elementwise work are not matmuls: not
counted here, nor by FlopCounterMode. docs/performance.md ("Roofline") writes these out.
"""
from __future__ import annotations

import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from nlc.ir.kinds import OpKind, Role
from nlc.ir.schedule import Impl
from nlc.lower import memory as mem
from nlc.rules import RULES


def level_flops(lv, n: int, reads: int = 1) -> int | None:
    """Matmul FLOPs per token per head of a memory level: `reads` reads, the gradients and the
    update, in segments of n tokens. None for a rule this formula does not cover (dgd with momentum)."""
    shapes = mem.layer_shapes(lv)
    P = sum(o * i for o, i in shapes)
    P2 = sum(o * i for o, i in shapes[1:])
    momentum = lv.momentum
    grads = 2 * P + 2 * P2
    if RULES[lv.rule].curvature_step(lv):
        grads += 2 * P2
    if not RULES[lv.rule].key_projection:
        update = (4 if momentum else 2) * P
    elif momentum:
        return None
    else:
        every = lv.rule_args.get("layers", "first") == "all"
        update = sum(2 * n * i + 4 * o * i if (li == 0 or every) else 2 * o * i for li, (o, i) in enumerate(shapes))
    return reads * 2 * P + grads + update


def model_memory_flops(model) -> int | None:
    """Analytic matmul FLOPs per token of every in-context memory level of an nlc model (reads,
    gradients, updates), all heads and layers; None if a level's rule is not covered."""
    total = 0
    for b in model.plan.blocks:
        for lv in b.levels:
            if lv.role != Role.MEMORY:
                continue
            reads = sum(1 for op in b.ops if op.op == OpKind.READ and op.attrs.get("level") == lv.name)
            if model.schedule.impl(b.name, lv.name) == Impl.FROZEN:  # reads only
                f = reads * 2 * sum(o * i for o, i in mem.layer_shapes(lv))
            else:
                f = level_flops(lv, min(model.seg, lv.clock.period), reads)
            if f is None:
                return None
            total += f * lv.heads * b.repeat
    return total


class _Bytes(TorchDispatchMode):
    """Bytes every aten op reads and writes (its tensor arguments and results): an upper bound on
    the memory traffic of a call (caches keep some of it on chip)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves((args, kwargs or {}, out)):
            if isinstance(t, torch.Tensor):
                self.bytes += t.numel() * t.element_size()
        return out


def count(fn) -> tuple[int, int]:
    """(FLOPs, bytes moved) of one call of fn (FLOPs: torch.utils.flop_counter's matmul count)."""
    fc, nb = FlopCounterMode(display=False), _Bytes()
    with fc, nb:
        fn()
    return fc.get_total_flops(), nb.bytes


def matmul_peak(n: int = 1024, reps: int = 6) -> float:
    """fp32 GFLOP/s of the best of `reps` n x n torch.mm (at the caller's thread count)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def bandwidth(mib: int = 256, reps: int = 4) -> float:
    """GB/s of the best of `reps` copies of a `mib` MiB fp32 tensor (bytes read + bytes written)."""
    x = torch.randn(mib * 2 ** 18)
    y = torch.empty_like(x)
    y.copy_(x)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        y.copy_(x)
        best = min(best, time.perf_counter() - t0)
    return 2 * x.numel() * 4 / best / 1e9
