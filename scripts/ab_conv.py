"""The causal conv's two paths (nlc.lower.ops: conv1d, and the windowed product used below
SMALL_CONV elements), interleaved in one process: microseconds per call, forward and fwd+bwd.

    python scripts/ab_conv.py [--rounds 3] [--threads 1]
"""
import argparse
import time
from pathlib import Path

import torch

from nlc.lower.ops import SMALL_CONV, causal_conv, causal_conv_small

SHAPES = [(1, 1, 64), (8, 16, 64), (8, 64, 64), (8, 64, 256), (2, 2048, 256)]  # (B, n, C)


def per_call(f, xx, w, grad, reps):
    t = time.perf_counter()
    for _ in range(reps):
        if grad:
            f(xx, w).sum().backward()
        else:
            with torch.no_grad():
                f(xx, w)
    return (time.perf_counter() - t) / reps * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--window", type=int, default=4)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"causal conv, window {a.window}, threads {a.threads}, SMALL_CONV {SMALL_CONV}; "
          f"load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; min over {a.rounds} rounds, us per call")
    for B, n, C in SHAPES:
        xx = torch.randn(B, n + a.window - 1, C, requires_grad=True)
        w = torch.randn(C, a.window, requires_grad=True)
        reps = 1000 if xx.numel() < 100_000 else 20
        best = {}
        for _ in range(a.rounds):  # interleaved: each round runs every variant once
            for name, f in (("conv1d", causal_conv), ("windowed", causal_conv_small)):
                for grad in (False, True):
                    key = name + (" fwd+bwd" if grad else " fwd")
                    best[key] = min(best.get(key, float("inf")), per_call(f, xx, w, grad, reps))
        fast = "windowed" if xx.numel() <= SMALL_CONV else "conv1d"
        print(f"B {B} n {n} C {C} ({xx.numel()} elements, nlc takes {fast}): "
              + ", ".join(f"{k} {v:.1f}" for k, v in best.items()))


if __name__ == "__main__":
    main()
