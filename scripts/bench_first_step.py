"""Time to the first training step of a spec under a backend (compilation included), then the steady
step time. A benchmark prints figures; run it at two commits to compare (PYTHONPATH=<checkout>):

    python scripts/bench_first_step.py hope --backend compile --steps 3
    python scripts/bench_first_step.py hope --backend torch --no-group   # identical levels one by one
"""
import argparse
import os
import time

ap = argparse.ArgumentParser()
ap.add_argument("spec", nargs="?", default="hope")
ap.add_argument("--backend", default="compile")
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seq-len", type=int, default=128)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--no-group", action="store_true", help="run identical memories one by one (group_levels=False)")
a = ap.parse_args()

import torch  # noqa: E402

import nlc  # noqa: E402

torch.set_num_threads(a.threads)
torch.manual_seed(0)
m = nlc.compile(a.spec, backend=a.backend, group_levels=not a.no_group)
opt = m.optimizer()
x = torch.randint(0, m.plan.vocab, (a.batch, a.seq_len + 1))
times = []
for i in range(a.steps):
    t0 = time.perf_counter()
    out = m(x[:, :-1], targets=x[:, 1:])
    out.loss.backward()
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t0)
    print(f"step {i}: {times[-1]:.2f} s  loss {out.loss.item():.4f}", flush=True)
print(f"{a.spec} [{a.backend}{', ungrouped' if a.no_group else ''}] first step {times[0]:.1f} s, then {min(times[1:] or times):.3f} s/step; "
      f"load {os.getloadavg()[0]:.1f}; torch {torch.__version__}")
