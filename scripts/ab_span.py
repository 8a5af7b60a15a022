"""Whole-layer span vs the per-segment path, interleaved in one process: the Titans LMM layer as `nlc bench
layer` measures it (layers 1, dim 256, 4 heads, chunk 64, B 2, norm and head removed), one torch thread.

    python scripts/ab_span.py [T] [rounds]

The per-segment twin is the same model and weights with the schedule's spans switched off. Each round
times one fwd+bwd and one fwd of each, alternating; prints the times and the per-round ratios.
"""
import statistics
import sys
import time
from dataclasses import replace

import torch

import nlc
from nlc.lower.program import NLModel

torch.set_num_threads(1)
torch.manual_seed(0)
T = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
span = nlc.compile("titans", backend="torch", model="TitansLMM", layers=1, dim=256, heads=4, chunk=64)
assert span.schedule.span("lmm").span
seg = NLModel(span.plan, replace(span.schedule, spans=tuple(replace(b, span=False) for b in span.schedule.spans)))
seg.load_state_dict(span.state_dict())
for m in (span, seg):
    m.norm, m.head = torch.nn.Identity(), torch.nn.Identity()
x = torch.randn(2, T, 256, requires_grad=True)


def fwd_bwd(m):
    m(embeddings=x).logits.square().mean().backward()


def fwd(m):
    with torch.no_grad():
        m(embeddings=x)


def timed(f, m):
    t0 = time.perf_counter()
    f(m)
    return time.perf_counter() - t0


for m in (span, seg):
    fwd_bwd(m)
res = {k: [] for k in ("span fwd+bwd", "seg fwd+bwd", "span fwd", "seg fwd")}
for _ in range(rounds):
    res["span fwd+bwd"].append(timed(fwd_bwd, span))
    res["seg fwd+bwd"].append(timed(fwd_bwd, seg))
    res["span fwd"].append(timed(fwd, span))
    res["seg fwd"].append(timed(fwd, seg))
for k, v in res.items():
    print(f"{k:14s} min {min(v):.3f} s  [{', '.join(f'{t:.3f}' for t in v)}]")
for what in ("fwd+bwd", "fwd"):
    r = [a / b for a, b in zip(res[f"seg {what}"], res[f"span {what}"])]
    print(f"per-segment / span, {what}: median {statistics.median(r):.3f} [{min(r):.3f}-{max(r):.3f}] (n {len(r)})")
