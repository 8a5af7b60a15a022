"""Where generation's time goes, and two A/B probes of it (docs/performance.md, "generation: the causal conv").

    python scripts/probe_generate.py RUN                     # ms per token: the frozen reader's reads vs the commits
    python scripts/probe_generate.py RUN --ab-conv 4         # conv1d vs the windowed conv, interleaved rounds
    python scripts/probe_generate.py RUN --backend compile   # the same stepper on a compiled model (compile time included)

RUN: a run directory (`nlc train specs/hope.nl --steps 20 --out RUN`). Greedy, 160 new tokens, one thread.
"""
import argparse
import time
from pathlib import Path

import torch

import nlc
import nlc.lower.ops as ops
from nlc.train.stepper import Stepper


def load():
    return Path("/proc/loadavg").read_text().split()[:3]


class TimedStepper(Stepper):
    """The stepper with its reads' and commits' seconds summed into `timers` ({name: [seconds, calls]})."""

    def __init__(self, *a, timers, **k):
        self.timers = timers
        super().__init__(*a, **k)

    def _timed(self, name, fn, *a):
        t = time.perf_counter()
        fn(*a)
        self.timers[name][0] += time.perf_counter() - t
        self.timers[name][1] += 1

    def _read(self, tok):
        self._timed("_read", super()._read, tok)

    def _commit(self, toks, succ=None):
        self._timed("_commit", super()._commit, toks, succ)


def generate(m, n, timers=None):
    """n greedy tokens after 'def '; with `timers`, the reader's and the commits' seconds are summed into it."""
    with torch.no_grad():
        st = (Stepper(m, list(b"def "), teach=True, device="cpu") if timers is None else
              TimedStepper(m, list(b"def "), teach=True, device="cpu", timers=timers))
        for v in (timers or {}).values():
            v[:] = [0.0, 0]  # the prompt's read and commit are not generation
        tok, t0 = 100, time.perf_counter()
        for _ in range(n):
            st.push(tok)
            tok = int(st.logits.argmax())
        return (time.perf_counter() - t0) / n * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--backend", default="torch")
    p.add_argument("--ab-conv", type=int, default=0, metavar="ROUNDS")
    p.add_argument("--tokens", type=int, default=160)
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    m = nlc.load(a.run, backend=a.backend).eval()
    if a.ab_conv:
        res = {"conv1d": [], "windowed": []}
        small = ops.SMALL_CONV
        for _ in range(a.ab_conv):
            for name, thr in (("conv1d", 0), ("windowed", small)):
                ops.SMALL_CONV = thr
                res[name].append(generate(m, a.tokens))
        ops.SMALL_CONV = small
        print("ms per token:", {k: [round(x, 2) for x in v] for k, v in res.items()}, "load", load())
        print("conv1d / windowed per round:", [round(x / y, 2) for x, y in zip(res["conv1d"], res["windowed"])])
        return
    first = generate(m, 40)
    print(f"backend {a.backend}: load + first 40 tokens {time.perf_counter() - t0:.1f} s ({first:.2f} ms/token)")
    timers = {"_read": [0.0, 0], "_commit": [0.0, 0]}
    total = generate(m, a.tokens, timers)
    (tr, nr), (tc, nc) = timers["_read"], timers["_commit"]
    print(f"{total:.2f} ms/token; reads {tr / nr * 1e3:.2f} ms x{nr}, commits {tc / max(nc, 1) * 1e3:.2f} ms x{nc}; "
          f"load {load()}")


if __name__ == "__main__":
    main()
