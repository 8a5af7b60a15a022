"""Compile every Triton kernel for a CUDA target without a GPU: the checks a CPU machine can make.

The Triton interpreter (how the kernels are tested on CPU) runs the kernels as numpy and accepts programs
that the real compiler rejects (shapes, types, layouts). This compiles each kernel through Triton's whole
pipeline to a cubin for an NVIDIA architecture (Triton ships ptxas), then reads the cubin's registers,
stack (spills) and shared memory with cuobjdump: a kernel that spills or fails here will do so on the GPU.

    python -m nlc.kernels.aot                  # sm_90 (H100/H200), D = 64, bf16 inputs
    python -m nlc.kernels.aot --arch 80 --d 128

Must run with TRITON_INTERPRET unset (the kernels are then real JIT functions); `main` re-executes itself
in a clean subprocess when it is set.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

# data tensors in the kernel's half dtype; every other pointer is fp32 (states, partials, coefficients)
HALF = {"q", "k", "v", "o", "do", "dv", "lr", "decay", "mom", "theta", "grads", "out", "dout", "dtheta", "dgrads"}
INTS = {"T", "C", "NS", "NSTEP", "N", "P", "NC"}
FLOATS = {"lr_scalar"}


def kernels(d: int, dh: int, prec: str, bc: int | None = None, bv: int | None = None):
    """(name, jit function, constexprs, extra half pointers) for every kernel at head dim d, hidden dh."""
    from .linear_memory.fused import linear_memory_fwd_kernel_chunk, linear_memory_fwd_kernel_recurrent
    from .linear_memory.fused_bwd import linear_memory_bwd_kernel_chunk
    from .linear_memory.fused_dgd import linear_memory_fwd_kernel_dgd_chunk
    from .linear_memory.fused_dgd_bwd import linear_memory_bwd_kernel_dgd_chunk
    from .mlp_memory.fused import mlp_memory_fwd_kernel_chunk
    from .mlp_memory.fused_bwd import mlp_memory_bwd_kernel_chunk

    from ._utils import SUB_BLOCK

    bc = bc or SUB_BLOCK
    # BV: rows of W per program; `v_block` gives 32 at D = 64 for small B·H, 64 for B·H >= 128
    lin = dict(DK=d, DV=d, BK=d, BV=bv or min(d, 32), PREC=prec)
    mlp = dict(DK=d, DH=dh, DV=d, BK=d, BH=dh, BV=d, BC=bc, ACT=0, PREC=prec)
    return [
        ("linear fwd recurrent", linear_memory_fwd_kernel_recurrent, dict(lin, DGD=False, PREC=None), ()),
        ("linear fwd recurrent dgd", linear_memory_fwd_kernel_recurrent, dict(lin, DGD=True, PREC=None), ()),
        ("linear fwd chunk", linear_memory_fwd_kernel_chunk, dict(lin, BC=bc, SAVE=False), ()),
        ("linear fwd chunk +save", linear_memory_fwd_kernel_chunk, dict(lin, BC=bc, SAVE=True), ()),
        ("linear bwd chunk", linear_memory_bwd_kernel_chunk, dict(lin, BC=bc), ()),
        ("linear dgd fwd chunk", linear_memory_fwd_kernel_dgd_chunk, dict(lin, BC=bc, SAVE=False), ()),
        ("linear dgd bwd chunk", linear_memory_bwd_kernel_dgd_chunk, dict(lin, BC=bc), ()),
        ("mlp fwd chunk", mlp_memory_fwd_kernel_chunk, dict(mlp, SAVE=False), ()),
        ("mlp fwd chunk +save", mlp_memory_fwd_kernel_chunk, dict(mlp, SAVE=True), ()),
        ("mlp bwd chunk", mlp_memory_bwd_kernel_chunk, mlp, ("dq", "dk")),
    ]


def warps_for(name: str) -> int:
    """The launchers' num_warps: Triton's default 4, CHUNK_WARPS for the chunk kernels."""
    from ._utils import CHUNK_WARPS

    return 4 if "recurrent" in name else CHUNK_WARPS


def stages_for(name: str) -> int:
    """The launchers' num_stages: Triton's default 3, CHUNK_STAGES for the chunk kernels."""
    from ._utils import CHUNK_STAGES

    return 3 if "recurrent" in name else CHUNK_STAGES


def signature(fn, const: dict, half_extra=(), half="bf16"):
    sig = {}
    for name in fn.arg_names:
        if name in const:
            sig[name] = "constexpr"
        elif name in INTS:
            sig[name] = "i32"
        elif name == "lr" and "BP" in const:
            sig[name] = "fp32"          # the CMS kernels take lr as a scalar
        else:
            sig[name] = f"*{half}" if (name in HALF or name in half_extra) else "*fp32"
    return sig


def resource_usage(cubin: bytes) -> str:
    """'regs N, stack S B' of the cubin Triton built, from the cuobjdump Triton ships (stack = the local
    memory frame: register spills and arrays that did not fit in registers)."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        log = subprocess.run([tool, "-res-usage", path], capture_output=True, text=True).stdout
    regs, stack = re.search(r"REG:(\d+)", log), re.search(r"STACK:(\d+)", log)
    return f"regs {regs.group(1) if regs else '?'}, stack {stack.group(1) if stack else '?'} B"


def compile_all(arch: int = 90, d: int = 64, dh: int | None = None, half: str = "bf16", only: str | None = None,
                num_warps: int | None = None, num_stages: int | None = None, bv: int | None = None):
    """Compile every kernel; returns [(name, ok, seconds, report or error)]."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    prec = "tf32" if half != "fp32" else "ieee"
    target = GPUTarget("cuda", arch, 32)
    rows = []
    for name, fn, const, extra in kernels(d, dh or d, prec, bv=bv):
        if only and only not in name:
            continue
        const = {k: v for k, v in const.items() if v is not None}
        t0 = time.perf_counter()
        try:
            opts = {"num_warps": num_warps or warps_for(name), "num_stages": num_stages or stages_for(name)}
            k = triton.compile(ASTSource(fn, signature(fn, const, extra, half), const), target=target, options=opts)
            rep = f"warps {opts['num_warps']}, {resource_usage(k.asm['cubin'])}, smem {k.metadata.shared} B"
            rows.append((name, True, time.perf_counter() - t0, rep))
        except Exception as e:  # noqa: BLE001 - report every kernel, then fail
            rows.append((name, False, time.perf_counter() - t0, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nlc.kernels.aot", description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, default=90, help="SM architecture: 80 (A100), 90 (H100/H200); default 90")
    p.add_argument("--d", type=int, default=64, help="head dims Dk = Dv (default 64)")
    p.add_argument("--dh", type=int, default=None, help="MLP hidden dim (default = d)")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"), help="input dtype (default bf16)")
    p.add_argument("--only", default=None, help="only kernels whose name contains this")
    p.add_argument("--warps", type=int, default=None, help="num_warps for every kernel (default: the launchers')")
    p.add_argument("--stages", type=int, default=None, help="num_stages for every kernel (default: the launchers')")
    p.add_argument("--bv", type=int, default=None, help="rows of W per program of the linear kernels (default min(d, 32))")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        cmd = [sys.executable, "-m", "nlc.kernels.aot", *(argv if argv is not None else sys.argv[1:])]
        return subprocess.call(cmd, env=env)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    rows = compile_all(args.arch, args.d, args.dh, args.dtype, args.only, args.warps, args.stages, args.bv)
    print(f"# Triton {__import__('triton').__version__} -> sm_{args.arch} cubin, D = {args.d}, "
          f"Dh = {args.dh or args.d}, BV = {args.bv or min(args.d, 32)}, {args.dtype} inputs (compiled on CPU, not run)")
    for name, ok, sec, rep in rows:
        print(f"{name:<26} {'ok' if ok else 'FAILED':<6} {sec:6.1f} s   {rep}")
    return 0 if all(ok for _, ok, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
