"""Hope training step (forward with targets, so the CMS teaching runs; then loss.backward()) in ms
per token against T: the cut, stitched forward (nlc/lower/stitch.py) against the uncut reference
(`NLModel.cut_teaching = False`), interleaved in one process (A B A B ...), same weights and data.

    python scripts/bench_teach.py [--T 256,512,1024] [--B 1] [--reps 2] [--threads 1] [--only cut,uncut]

Each round times every (T, path) once (after one warm-up step per path at the smallest T); prints
each step with the load average (1 min), then a table: the median over rounds in ms per token, and
the median (min-max) over rounds of the ratio uncut / cut of the two adjacent steps.

    MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=0 python scripts/bench_teach.py --peak cut --T 1024

instead prints the peak RSS rise of one step of that path (after a warm-up step at T 32): run it
once per path, each in a fresh process (glibc told to return freed blocks, as `nlc bench` does).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch

import nlc


def step(m, x):
    out = m(x, state=m.init_state(x.size(0)), targets=x)
    out.loss.backward()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--T", default="256,512,1024")
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="cut,uncut")
    ap.add_argument("--spec", default="hope")
    ap.add_argument("--peak", choices=("cut", "uncut"), help="the peak RSS rise of one step of this path")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = nlc.compile(a.spec)
    if a.peak:
        m.cut_teaching = a.peak == "cut"
        step(m, torch.randint(0, m.plan.vocab, (a.B, 32)))
        T = int(a.T.split(",")[-1])
        x = torch.randint(0, m.plan.vocab, (a.B, T))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step(m, x)
        rise = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
        print(f"{a.spec} {a.peak} T {T} B {a.B}: peak RSS rise of one step {rise:.1f} MiB")
        return 0
    paths = [p for p in ("cut", "uncut") if p in a.only.split(",")]
    print(f"{a.spec}: {sum(p.numel() for p in m.parameters()):,} params, B {a.B}, threads {a.threads}, "
          f"torch {torch.__version__}")
    Ts = [int(t) for t in a.T.split(",")]
    xs = {T: torch.randint(0, m.plan.vocab, (a.B, T)) for T in Ts}
    for p in paths:  # warm-up, at the smallest T
        m.cut_teaching = p == "cut"
        step(m, xs[Ts[0]])
    times = {(T, p): [] for T in Ts for p in paths}
    loads = [os.getloadavg()[0]]
    for r in range(a.reps):  # rounds: every (T, path) once per round, interleaved
        for T in Ts:
            for p in paths:
                m.cut_teaching = p == "cut"
                m.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                step(m, xs[T])
                times[(T, p)].append(time.perf_counter() - t0)
                loads.append(os.getloadavg()[0])
                print(f"round {r}  T {T:5d}  {p:5s}  {times[(T, p)][-1]:8.2f} s  load {loads[-1]:.2f}", flush=True)
    print(f"\nload average (1 min) over the run: {min(loads):.2f}-{max(loads):.2f}")
    print("| T | " + " | ".join(f"{p} ms/token" for p in paths) + (" | uncut / cut |" if len(paths) == 2 else " |"))
    print("|---|" + "---|" * (len(paths) + (len(paths) == 2)))
    for T in Ts:
        ms = {p: 1e3 * statistics.median(times[(T, p)]) / (a.B * T) for p in paths}
        row = " | ".join(f"{ms[p]:.2f}" for p in paths)
        if len(paths) == 2:
            ratios = [u / c for u, c in zip(times[(T, "uncut")], times[(T, "cut")])]  # same round: adjacent
            row += f" | {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        print(f"| {T} | {row} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
