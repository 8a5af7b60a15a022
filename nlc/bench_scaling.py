"""`nlc bench scaling`: time and peak memory against T and against dim, for the Titans memory
layer (fwd+bwd, as `nlc bench layer`) and a Hope training step (as `nlc bench hope`), nlc's
`torch` backend, B 1. Prints a table, the log-log slope of each series (1.0 = linear), and
with --plot draws them.

    nlc bench scaling [--what layer,hope] [--T 512,1024,...] [--dim 64,128,...] [--dim-T 1024]
                      [--threads 1] [--reps 2] [--plot scaling.png]

Every point runs in a fresh subprocess (glibc told to return freed blocks, as for `peak MiB` in
nlc.bench): one warm-up call, then the peak RSS rise of one call and the median time of --reps calls.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

from nlc.bench import run_result

T_DEFAULT = "512,1024,2048,4096,8192"
DIM_DEFAULT = "64,128,256,512,1024"
FIXED = {"layer": dict(heads=4, chunk=64), "hope": dict(heads=4, layers=2, vocab=256, chunk=16, mem_chunk=64)}


def point(cfg: dict) -> dict:
    """One (model, T, dim) point, in this (fresh) process."""
    import torch

    from nlc.bench import _calls, _peak_of
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    _, calls = _calls(cfg)
    fn = next(iter(calls.values())) if cfg["bench"] == "hope" else calls["fwdbwd"]
    fn()
    res = {"peak_mib": _peak_of(fn)}
    ts = []
    for _ in range(cfg["reps"]):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    res["s"] = statistics.median(ts)
    return res


def _run(cfg, timeout):
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    return run_result([sys.executable, "-m", "nlc.bench_scaling", "--point", json.dumps(cfg)], env, timeout, width=200)


def slope(xs, ys) -> float | None:
    """Least-squares slope of log y against log x (1.0: y grows linearly in x)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if y and y > 0]
    if len(pts) < 2:
        return None
    mx, my = statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def _ints(s):
    return [int(v) for v in s.split(",") if v.strip()]


def main(argv=None) -> int:
    from nlc.bench import _f, header, load, table
    p = argparse.ArgumentParser(prog="nlc bench scaling", description=__doc__.split("\n\n")[0])
    p.add_argument("--what", default="layer,hope", help="layer, hope or both (comma-separated)")
    p.add_argument("--T", default=T_DEFAULT, help=f"sequence lengths at dim 256 (default {T_DEFAULT})")
    p.add_argument("--dim", default=DIM_DEFAULT, help=f"model widths at --dim-T (default {DIM_DEFAULT})")
    p.add_argument("--dim-T", type=int, default=1024, help="sequence length of the dim series (default 1024)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=2, help="timed calls per point (median)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per point")
    p.add_argument("--plot", help="PNG path for the figure")
    a = p.parse_args(argv)
    whats = [w for w in a.what.split(",") if w]
    bad = [w for w in whats if w not in FIXED]
    if bad:
        print(f"nlc bench scaling: unknown --what {','.join(bad)} (layer, hope)", file=sys.stderr)
        return 2
    print(header("nlc bench scaling: time and peak memory against T (dim 256) and dim (T "
                 f"{a.dim_T}); layer = TitansLMM 1 layer fwd+bwd, hope = Hope training step; torch backend, B 1",
                 a.threads), flush=True)
    series = {}
    rows = []
    for what in whats:
        for axis, values in (("T", _ints(a.T)), ("dim", _ints(a.dim))):
            pts = []
            for v in values:
                T, dim = (v, 256) if axis == "T" else (a.dim_T, v)
                cfg = dict(bench=what, impl="torch", T=T, dim=dim, B=1, threads=a.threads, reps=a.reps, **FIXED[what])
                ld = load().split()[0]
                r = _run(cfg, a.timeout)
                pts.append((v, r))
                rows.append([what, axis, T, dim, _f(r.get("s"), 3), _f(T / r["s"] if r.get("s") else None),
                             _f(r.get("peak_mib")), ld, r.get("error", "")])
                print(f"  {what} T {T} dim {dim}: " + (f"{r['s']:.3f} s, peak {_f(r.get('peak_mib'))} MiB"
                                                      if "s" in r else "FAILED " + r["error"]), flush=True)
                if "error" in r:
                    break  # longer / wider points would fail too (time or memory)
            series[(what, axis)] = pts
    print()
    print(table(["model", "vary", "T", "dim", "s/call", "tok/s", "peak MiB", "load", "note"], rows))
    print()
    for (what, axis), pts in series.items():
        ok = [(v, r) for v, r in pts if "s" in r]
        st = slope([v for v, _ in ok], [r["s"] for _, r in ok])
        sm = slope([v for v, _ in ok], [r["peak_mib"] for _, r in ok])
        verdict = ""
        if axis == "T" and st is not None:
            verdict = " (linear in T)" if st < 1.15 else " (faster than linear in T)"
        print(f"{what} vs {axis}: log-log slope of time {_f(st, 2)}{verdict}, of peak memory {_f(sm, 2)}"
              f" over {axis} {ok[0][0] if ok else '-'}..{ok[-1][0] if ok else '-'}")
    if a.plot:
        print(f"plot: {plot(series, a.plot)}")
    return 0


def plot(series, path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for (what, axis), pts in series.items():
        ok = [(v, r) for v, r in pts if "s" in r]
        col = 0 if axis == "T" else 1
        for row, key, label in ((0, "s", "seconds per call"), (1, "peak_mib", "peak MiB (RSS rise)")):
            ax = axes[row][col]
            ax.loglog([v for v, _ in ok], [r[key] or float("nan") for _, r in ok], "o-", label=what, base=2)
            ax.set_xlabel(axis + (" (dim 256)" if axis == "T" else ""))
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.suptitle("nlc bench scaling (torch backend, B 1): layer fwd+bwd, Hope training step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--point":
        print("RESULT " + json.dumps(point(json.loads(sys.argv[2]))), flush=True)
    else:
        sys.exit(main(sys.argv[1:]))
