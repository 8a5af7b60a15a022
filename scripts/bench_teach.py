"""Hope training step (forward with targets, so the CMS teaching runs; then loss.backward()) in ms
per token against T: the cut, stitched forward (nlc/lower/stitch.py) against the uncut reference
(`NLModel.cut_teaching = False`), interleaved in one process (A B A B ...), same weights and data.

    python scripts/bench_teach.py [--T 256,512,1024] [--B 1] [--reps 2] [--threads 1] [--only cut,uncut]

Prints one row per (T, path): the median of --reps timed steps after one warm-up, ms per token,
and the load average (1 min) before and after the row; then the ratio uncut/cut of each T.
"""
from __future__ import annotations

import argparse
import os
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
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = nlc.compile(a.spec)
    paths = [p for p in ("cut", "uncut") if p in a.only.split(",")]
    print(f"{a.spec}: {sum(p.numel() for p in m.parameters()):,} params, B {a.B}, threads {a.threads}, "
          f"torch {torch.__version__}")
    ms = {}
    for T in (int(t) for t in a.T.split(",")):
        x = torch.randint(0, m.plan.vocab, (a.B, T))
        times = {p: [] for p in paths}
        load0 = os.getloadavg()[0]
        for r in range(a.reps + 1):  # round 0: warm-up
            for p in paths:
                m.cut_teaching = p == "cut"
                m.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                step(m, x)
                if r:
                    times[p].append(time.perf_counter() - t0)
        load1 = os.getloadavg()[0]
        for p in paths:
            ms[(T, p)] = 1e3 * statistics.median(times[p]) / (a.B * T)
            print(f"T {T:5d}  {p:5s}  {ms[(T, p)]:8.2f} ms/token  (steps {', '.join(f'{t:.2f}' for t in times[p])} s; "
                  f"load {load0:.2f} -> {load1:.2f})", flush=True)
        if len(paths) == 2:
            print(f"T {T:5d}  uncut/cut {ms[(T, 'uncut')] / ms[(T, 'cut')]:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
