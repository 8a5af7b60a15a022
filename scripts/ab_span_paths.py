"""The torch path of a whole-layer span, memory only (Titans layer shapes: B 2, H 4, dk 64, hidden 256,
chunk 64), fwd+bwd: the kernels' chunked torch reference `chunk_mlp_memory` (no stats) vs nlc/lower/span.py's
chunk loop (`memory.chunk_grads` + `memory.chunk_write`, stats included), alternating, min of 3.

    python scripts/ab_span_paths.py [T]
"""
import sys
import time

import torch

import nlc
from nlc.kernels import chunk_mlp_memory
from nlc.lower import span

torch.set_num_threads(1)
m = nlc.compile("titans", backend="torch", model="TitansLMM", layers=1, dim=256, heads=4, chunk=64)
mm = m.blocks["lmm"][0].mems["mem"]
B, H, T, dk, C = 2, 4, int(sys.argv[1]) if len(sys.argv) > 1 else 2048, 64, 64
torch.manual_seed(0)
q, k, v = (torch.nn.functional.normalize(torch.randn(B, H, T, dk), dim=-1).requires_grad_() for _ in range(3))
lr, dec, mom = (torch.rand(B, H, T).mul(s).requires_grad_() for s in (0.01, 0.01, 0.9))
W1, W2 = (w.detach().unsqueeze(0).expand(B, -1, -1, -1).contiguous().requires_grad_() for w in mm.init)
S1, S2 = torch.zeros_like(W1), torch.zeros_like(W2)


def kernels_torch():
    o, *st = chunk_mlp_memory(q, k, v, lr, dec, mom, W1, W2, S1, S2, C, "silu")
    (o.square().sum() + sum(s.square().sum() for s in st)).backward()


def span_loop():
    o, Ws, Ss, _, _ = span._torch_span(mm, [W1, W2], [S1, S2], q, k, v, lr, dec, mom, C)
    (o.square().sum() + sum(s.square().sum() for s in Ws + Ss)).backward()


fns = {"kernels.chunk_mlp_memory": kernels_torch, "span._torch_span": span_loop}
for f in fns.values():
    f()
res = {name: [] for name in fns}
for _ in range(3):
    for name, f in fns.items():
        t0 = time.perf_counter()
        f()
        res[name].append(time.perf_counter() - t0)
for name, ts in res.items():
    print(f"{name}: min {min(ts):.3f} s  [{', '.join(f'{t:.3f}' for t in ts)}]")
