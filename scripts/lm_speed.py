"""Training speed of the six ~1M-parameter LM models of `scripts/sweeps.sh lm_equal_params`, measured
interleaved in one process (so that the box's load falls on all of them alike): a warm-up round,
then ROUNDS-1 timed rounds of 3 AdamW steps of 8 x 128 random bytes per model, one torch thread.
Prints each model's parameters and its median s/step over the timed rounds (the upper median), and
the load average. Used to size the sweep's token budget (docs/results.md, "Language modelling at
~1M parameters").

    python scripts/lm_speed.py [ROUNDS]      # default 3
"""
import os
import sys
import time

import torch

import nlc
from nlc.train.ontask import param_count

# (label, spec, model, dim): the sizes of sweeps.sh's LM_SET (2 layers, 4 heads)
MODELS = [("transformer", "specs/transformer.nl", None, 192), ("TitansLMM", "specs/titans.nl", "TitansLMM", 264),
          ("TitansMAG", "specs/titans.nl", "TitansMAG", 208), ("hope", "specs/hope.nl", None, 168),
          ("cms", "specs/cms.nl", None, 168), ("GatedDeltaNet", "specs/deltanet.nl", "GatedDeltaNet", 288)]


def main():
    torch.set_num_threads(1)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    ms = {}
    for name, path, model, dim in MODELS:
        m = nlc.compile(path, model=model, dim=dim, layers=2, heads=4)
        ms[name] = (m, torch.optim.AdamW(m.parameters(), 1e-3))
        print(f"{name}: dim {dim}, {param_count(m):,} parameters", flush=True)
    times = {n: [] for n in ms}
    x = torch.randint(0, 256, (8, 129))
    for r in range(rounds):
        for n, (m, opt) in ms.items():
            t0 = time.time()
            for _ in range(3):
                o = m(x[:, :-1], state=m.init_state(8), targets=x[:, 1:])
                opt.zero_grad()
                o.loss.backward()
                opt.step()
            times[n].append((time.time() - t0) / 3)
        print(f"round {r}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in times.items()), flush=True)
    print("load average", os.getloadavg())
    for n, v in times.items():
        timed = sorted(v[1:] or v)
        s = timed[len(timed) // 2]
        print(f"{n}: {s:.3f} s/step, {8 * 128 / s:,.0f} tok/s")


if __name__ == "__main__":
    main()
