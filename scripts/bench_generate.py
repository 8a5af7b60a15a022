"""Generation cost per token against position: `nlc.train.evaluate.generate` (a frozen reader per
token, the writes once per segment) and the loop it replaced (two full model calls per token),
interleaved in one process, timed per window of new tokens.

    python scripts/bench_generate.py RUN [--max-new 520] [--window 100] [--rounds 2] [--threads 1]

RUN: a run directory (`nlc train hope --out RUN`), or a built-in spec name (untrained weights:
the same cost). Prints seconds per token for each window of positions and new tokens per second.
"""
import argparse
import time
from pathlib import Path

import torch

import nlc
from nlc.train.evaluate import generate


def two_calls_per_token(m, prompt, max_new, callback):
    """The loop generate used before nlc.train.stepper (greedy): read each token with a full call,
    then call again with its successor as target to take its writes."""
    m.eval()
    with torch.no_grad():
        ids = torch.tensor([list(prompt)])
        st = {k: v.detach() for k, v in m(ids[:, :-1], state=m.init_state(1), targets=ids[:, 1:]).state.items()}
        last = ids[:, -1:]
        for _ in range(max_new):
            nxt = m(last, state=st).logits[:, -1].argmax(-1).view(1, 1)
            callback(int(nxt))
            st = {k: v.detach() for k, v in m(last, state=st, targets=nxt).state.items()}
            last = nxt


def timed(run, max_new, window):
    stamps = [time.perf_counter()]
    run(lambda _: stamps.append(time.perf_counter()))
    return [(stamps[min(e, max_new)] - stamps[s]) / (min(e, max_new) - s) for s in range(0, max_new, window)
            for e in [s + window]]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--prompt", default="def ")
    p.add_argument("--max-new", type=int, default=520)
    p.add_argument("--legacy-max-new", type=int, default=220, help="new tokens for the old loop (it is slow; 0: skip it)")
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if a.max_new < 1 or a.window < 1 or a.legacy_max_new < 0:
        p.error("--max-new and --window must be at least 1, --legacy-max-new at least 0")
    torch.set_num_threads(a.threads)
    m = nlc.load(a.run) if Path(a.run).is_dir() else nlc.compile(a.run)
    prompt = a.prompt.encode()
    print(f"generation cost per token: {a.run}, {sum(p.numel() for p in m.parameters()):,} params, "
          f"threads {a.threads}, load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    for r in range(a.rounds):
        ld = Path("/proc/loadavg").read_text().split()[0]
        new = timed(lambda cb: generate(m, prompt, max_new=a.max_new, temperature=0, callback=cb), a.max_new, a.window)
        rows = [("generate (stepper)", new, a.max_new)]
        if a.legacy_max_new > 0:  # --legacy-max-new 0: time the stepper only
            old = timed(lambda cb: two_calls_per_token(m, prompt, a.legacy_max_new, cb), a.legacy_max_new, a.window)
            rows.append(("two calls per token", old, a.legacy_max_new))
        for name, w, n in rows:
            cells = ", ".join(f"{s * a.window}-{min((s + 1) * a.window, n)}: {t * 1e3:.1f}" for s, t in enumerate(w))
            print(f"round {r + 1} (load {ld}) {name}: ms/token by new-token window [{cells}]; "
                  f"{n / sum(t * min(a.window, n - i * a.window) for i, t in enumerate(w)):.0f} tok/s")


if __name__ == "__main__":
    main()
