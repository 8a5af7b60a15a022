"""Benchmark the fused kernels against torch.compile of the chunked torch path (and fla, if importable).

    python -m nlc.kernels.bench                 # table: T = 2k, 8k, 32k, bf16, B=1..2, H=4, D=64
    python -m nlc.kernels.bench --T 2048        # one length
    python -m nlc.kernels.bench --check         # GPU kernel tests (pytest -m gpu), then the table
    python -m nlc.kernels.bench --smoke         # CPU: every row once in the Triton interpreter, tiny shapes

Needs a CUDA GPU; on CPU it prints one line and exits 0. Timings are triton.testing.do_bench medians in ms.
`--smoke` runs the same rows on CPU tensors in the Triton interpreter (T = 64, D = 16), to check that the
script works before GPU time is spent on it; its times are of the interpreter and mean nothing.
"""
import argparse
import os
import subprocess
import sys
import time

import torch

from ._utils import gate_coeffs
from .mlp_memory.naive import mlp_read, mlp_surprise


# ---
# torch baselines: one compiled chunk step, called in a Python loop over the chunks

def _linear_step(W, S, Q, K, V, lr, decay, mom):
    o = Q @ W.transpose(-1, -2)
    E = K @ W.transpose(-1, -2) - V
    a, b, c, sm, sd = gate_coeffs(lr, decay, mom)
    W2 = a[..., None, None] * W + b[..., None, None] * S + (c[..., None] * E).transpose(-1, -2) @ K
    S2 = sm[..., None, None] * S + (sd[..., None] * E).transpose(-1, -2) @ K
    return o, W2, S2


def _dgd_step(W, S, Q, K, V, lr, decay, mom):
    from .linear_memory.naive import dgd_block

    o = Q @ W.transpose(-1, -2)
    W2, S2 = dgd_block(K, K @ W.transpose(-1, -2) - V, lr, decay, mom, W, S)  # the chunk as one WY block
    return o, W2, S2


def _mlp_step(W1, W2, S1, S2, Q, K, V, lr, decay, mom):
    o = mlp_read(W1, W2, Q, "silu")
    E, A, D = mlp_surprise(W1, W2, K, V, "silu")
    a, b, c, sm, sd = (x[..., None, None] if x.dim() == 2 else x[..., None] for x in gate_coeffs(lr, decay, mom))
    return (o, a * W1 + b * S1 + (c * D).transpose(-1, -2) @ K, a * W2 + b * S2 + (c * E).transpose(-1, -2) @ A,
            sm * S1 + (sd * D).transpose(-1, -2) @ K, sm * S2 + (sd * E).transpose(-1, -2) @ A)


def _run_chunks(step, states, seq, gates_, C):
    T = seq[0].shape[2]
    outs = []
    for s in range(0, T, C):
        o, *states = step(*states, *(x[:, :, s:s + C].float() for x in seq), *(g[:, :, s:s + C].float() for g in gates_))
        outs.append(o)
    return (torch.cat(outs, 2), *states)


# ---
# timing

def _time(fn, backward: bool, inputs):
    def run():
        outs = fn()
        if backward:
            torch.autograd.grad(sum(o.float().sum() for o in outs), inputs, allow_unused=True)
    if inputs[0].device.type != "cuda":
        t0 = time.perf_counter()
        run()
        return 1e3 * (time.perf_counter() - t0)
    import triton

    return triton.testing.do_bench(run)


def _inputs(B, H, T, D, dtype, mlp: bool, device="cuda"):
    from .testing import gates, qkv
    q, k, v = qkv(B, H, T, D, D, device, dtype)
    lr, decay, mom = gates(B, H, T, device, dtype, max_lr=0.1)
    states = [0.01 * torch.randn(B, H, D, D, device=device) for _ in range(4 if mlp else 2)]
    xs = [q, k, v, lr, decay, mom, *states]
    return [x.requires_grad_() for x in xs]


def bench_rows(Ts, Bs, H=4, D=64, C=64, dtype=torch.bfloat16, device="cuda"):
    from .linear_memory.op import linear_memory_op
    from .mlp_memory.op import mlp_memory_op
    chunk_gated_delta_rule = None
    if device == "cuda":  # fla's kernels need a GPU (importing it on CPU already fails)
        try:
            from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        except Exception as e:  # noqa: BLE001 - an optional reference: say why it is missing, go on
            print(f"# fla not usable ({type(e).__name__}: {e}); no fla rows")
    lin_c = torch.compile(_linear_step, dynamic=False)
    dgd_c = torch.compile(_dgd_step, dynamic=False)
    mlp_c = torch.compile(_mlp_step, dynamic=False)
    rows = []
    for B in Bs:
        for T in Ts:
            xs = _inputs(B, H, T, D, dtype, mlp=False, device=device)
            cands = {
                "linear fused": lambda: linear_memory_op(*xs, C, False),
                "linear dgd fused": lambda: linear_memory_op(*xs, C, True),
                "linear torch.compile": lambda: _run_chunks(lin_c, xs[6:8], xs[:3], xs[3:6], C),
                "linear dgd torch.compile": lambda: _run_chunks(dgd_c, xs[6:8], xs[:3], xs[3:6], C),
            }
            if chunk_gated_delta_rule is not None:
                # layout (B, T, H, D); g = log forget gate, beta = lr (no momentum): a speed reference only
                qf, kf, vf = (x.detach().transpose(1, 2).contiguous().requires_grad_() for x in xs[:3])
                g = torch.log1p(-xs[4].detach().float()).transpose(1, 2).contiguous().requires_grad_()
                beta = xs[3].detach().transpose(1, 2).contiguous().requires_grad_()
                cands["fla chunk_gated_delta_rule"] = lambda: chunk_gated_delta_rule(qf, kf, vf, g, beta)[:1]
            ms = _inputs(B, H, T, D, dtype, mlp=True, device=device)
            cands["mlp fused"] = lambda: mlp_memory_op(*ms, C, "silu")
            cands["mlp torch.compile"] = lambda: _run_chunks(mlp_c, ms[6:10], ms[:3], ms[3:6], C)
            for name, fn in cands.items():
                inputs = xs if not name.startswith("mlp") else ms
                if name.startswith("fla"):
                    inputs = [qf, kf, vf, g, beta]
                rows.append((name, B, T, _time(fn, False, inputs), _time(fn, True, inputs)))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="nlc bench kernels", description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, nargs="+", default=[2048, 8192, 32768], help="sequence lengths (tokens)")
    p.add_argument("--B", type=int, nargs="+", default=[1, 2], help="batch sizes")
    p.add_argument("--chunk", type=int, default=64, help="chunk size C (tokens), default 64")
    p.add_argument("--check", action="store_true", help="run the GPU kernel tests (pytest -m gpu) before the table")
    p.add_argument("--smoke", action="store_true",
                   help="no GPU needed: run every row once on CPU in the Triton interpreter at tiny shapes "
                        "(checks the script; the times are the interpreter's and mean nothing)")
    args = p.parse_args(argv)
    if args.smoke:
        # must be set before the first kernel is defined (the kernel modules are imported lazily)
        os.environ["TRITON_INTERPRET"] = "1"
        rows = bench_rows([64], [1], H=2, D=16, C=16, dtype=torch.float32, device="cpu")
        _print(rows, "smoke run in the Triton interpreter on CPU: not a measurement")
        return 0
    if not torch.cuda.is_available():
        print("nlc bench kernels: needs a CUDA GPU (none found); nothing to do")
        return 0
    if args.check:
        rc = subprocess.call([sys.executable, "-m", "pytest", "tests/kernels", "-m", "gpu", "-q"])
        if rc != 0:
            print("GPU kernel tests failed; not reporting timings")
            return rc
    rows = bench_rows(args.T, args.B, C=args.chunk)
    _print(rows, f"{torch.cuda.get_device_name()}, bf16, H=4, D=64, C={args.chunk}, do_bench median")
    return 0


def _print(rows, title: str):
    print(f"# {title}")
    print(f"{'kernel':<28} {'B':>2} {'T':>6} {'fwd ms':>9} {'fwd+bwd ms':>11}")
    for name, B, T, f, fb in rows:
        print(f"{name:<28} {B:>2} {T:>6} {f:>9.3f} {fb:>11.3f}")


if __name__ == "__main__":
    sys.exit(main())
