"""Hope's training step with its identical memories grouped (one batched level) against ungrouped
(`group_levels=False`), interleaved in one process: rounds of one step each, A B then B A, the ratio
per round from the two adjacent steps; then the aten ops each issues per step (load-independent).

    python scripts/ab_group.py [--rounds 7] [--batch 8] [--seq-len 128] [--threads 1] [--set dim=64 ...]

The same weights in both (the state_dict is shared); each model keeps its own optimizer.
"""
import argparse
import collections
import os
import statistics
import time

ap = argparse.ArgumentParser()
ap.add_argument("spec", nargs="?", default="hope")
ap.add_argument("--rounds", type=int, default=7)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seq-len", type=int, default=128)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--set", action="append", default=[], help="a model parameter, name=value")
a = ap.parse_args()

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import nlc  # noqa: E402

torch.set_num_threads(a.threads)
ov = {k: float(v) if "." in v else int(v) for k, v in (s.split("=", 1) for s in a.set)}
torch.manual_seed(0)
models = {"grouped": nlc.compile(a.spec, **ov)}
models["ungrouped"] = nlc.compile(a.spec, group_levels=False, **ov)
models["ungrouped"].load_state_dict(models["grouped"].state_dict())
opts = {k: m.optimizer() for k, m in models.items()}
x = torch.randint(0, models["grouped"].plan.vocab, (a.batch, a.seq_len + 1))


def step(name):
    m, opt = models[name], opts[name]
    t0 = time.perf_counter()
    out = m(x[:, :-1], targets=x[:, 1:])
    out.loss.backward()
    opt.step()
    opt.zero_grad()
    return time.perf_counter() - t0, out.loss.item()


class Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


for name in models:  # warm up
    step(name)
times = {k: [] for k in models}
ratios, loads = [], []
for r in range(a.rounds):
    order = ["grouped", "ungrouped"] if r % 2 == 0 else ["ungrouped", "grouped"]
    t = {}
    for name in order:
        t[name], loss = step(name)
        times[name].append(t[name])
    ratios.append(t["ungrouped"] / t["grouped"])
    loads.append(os.getloadavg()[0])
    print(f"round {r}: grouped {t['grouped']:.3f} s, ungrouped {t['ungrouped']:.3f} s, "
          f"speedup {ratios[-1]:.2f}x, load {loads[-1]:.2f}", flush=True)
for name in models:
    print(f"{name}: median {statistics.median(times[name]):.3f} s/step, min {min(times[name]):.3f}")
print(f"grouped vs ungrouped: {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] "
      f"(n {len(ratios)}), load {min(loads):.2f}-{max(loads):.2f}, B {a.batch}, T {a.seq_len}, "
      f"threads {a.threads}, torch {torch.__version__}")
for name in models:
    c = Count()
    with c:
        step(name)
    top = ", ".join(f"{k} {v}" for k, v in c.ops.most_common(6))
    print(f"{name}: {sum(c.ops.values())} aten ops per step (forward, backward, optimizer); most: {top}")
