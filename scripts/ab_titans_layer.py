"""Titans LMM layer fwd+bwd time at one T, in this process: min of 3 timed calls after a warm-up.
Compare two commits by alternating them (PYTHONPATH=<checkout A>, then <checkout B>, A, B ...):

    for T in 2048 8192; do for r in 1 2; do
      PYTHONPATH=/tmp/before python scripts/ab_titans_layer.py $T; PYTHONPATH=. python scripts/ab_titans_layer.py $T
    done; done

The layer as `nlc bench layer` measures it (TitansLMM, layers 1, dim 256, 4 heads, chunk 64, B 2,
norm and head removed), one torch thread. Prints seconds.
"""
import sys
import time

import torch

import nlc

torch.set_num_threads(1)
torch.manual_seed(0)
T = int(sys.argv[1])
m = nlc.compile("titans", backend="torch", model="TitansLMM", layers=1, dim=256, heads=4, chunk=64)
m.norm, m.head = torch.nn.Identity(), torch.nn.Identity()
x = torch.randn(2, T, 256, requires_grad=True)


def step():
    m(embeddings=x).logits.square().mean().backward()


step()
times = []
for _ in range(3):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
print(f"{min(times):.3f}")
