"""torch.profiler over one Hope training step (README size, B 8, T 128, one thread) after one warm-up:
the top ops by self CPU time, and the ops level groups add (stacking, splitting, repeating).

    python scripts/profile_group_step.py 1   # grouped
    python scripts/profile_group_step.py 0   # group_levels=False
"""
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import nlc

torch.set_num_threads(1)
torch.manual_seed(0)
m = nlc.compile("hope", group_levels=sys.argv[1] == "1")
opt = m.optimizer()
x = torch.randint(0, 256, (8, 129))


def step():
    out = m(x[:, :-1], targets=x[:, 1:])
    out.loss.backward()
    opt.step()
    opt.zero_grad()


step()
with profile(activities=[ProfilerActivity.CPU]) as p:
    step()
ev = p.key_averages()
tot = sum(e.self_cpu_time_total for e in ev)
print("grouped" if sys.argv[1] == "1" else "ungrouped", f"total self CPU {tot / 1e3:.1f} ms, load {os.getloadavg()[0]:.2f}")
for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)[:14]:
    print(f"  {e.key:<40} {e.self_cpu_time_total / 1e3:8.1f} ms {e.count:6d} calls")
for k in ("aten::cat", "CatBackward0", "aten::split", "aten::chunk", "SplitBackward0", "aten::repeat", "RepeatBackward0"):
    e = [e for e in ev if e.key == k]
    if e:
        print(f"  [{k}] {e[0].self_cpu_time_total / 1e3:.1f} ms self, {e[0].cpu_time_total / 1e3:.1f} ms total, {e[0].count} calls")
