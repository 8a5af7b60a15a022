"""The `triton` backend's fused writes. Which levels a kernel covers is the schedule's decision
(nlc/passes/schedule.py: `fused_kernel`); `--emit schedule` prints it. The rest stays on the
chunk-parallel torch path.

Covered (nlc/kernels): l2-objective memories whose gradients the kernels compute in closed form,
    linear memory, rules gd / momentum / dgd          -> nlc::linear_memory
    2-layer mlp memory (silu or relu), gd / momentum   -> nlc::mlp_memory
A kernel call covers a whole chunk from its start, so a segment that begins mid-chunk (streaming
from an arbitrary position) takes the torch path for that segment; results are the same.
In a whole-layer span (the schedule's `BlockSpan`, nlc/lower/span.py) one call covers the call's
chunk-aligned prefix with the real queries (`fused_span`); per segment (`fused_write`) the program
has already read, and the kernel is called with q = k.
Without CUDA the kernels run only in the Triton interpreter (TRITON_INTERPRET=1); otherwise the
backend falls back to torch with a one-line note.
"""
from __future__ import annotations

from nlc.ir.schedule import Impl


def _operands(lv, kernel, Ws, Ss, k, theta, eta):
    """The op's lr, momentum gate and start states (W0, S0 or W1, W2, S1, S2) for a level."""
    import torch
    from nlc.rules import RULES
    mom = eta if eta is not None else torch.zeros_like(theta)
    if kernel == Impl.TRITON_LINEAR.kernel:
        upd = RULES[lv.rule].update()  # eager only: fused kernels are not traced by dynamo here
        if hasattr(upd, "kernel_lr"):
            theta = upd.kernel_lr(lv, theta, k)  # e.g. dgd: the kernel takes the normalised step size as its lr
    Ss = Ss if Ss is not None else [torch.zeros_like(w) for w in Ws]
    return theta, mom, [*Ws, *Ss]


def _call(lv, kernel, q, k, v, theta, alpha, mom, states, chunk):
    """The fused op: (o, new states) with states as `_operands` orders them."""
    from nlc import kernels
    from nlc.rules import RULES
    if kernel == Impl.TRITON_LINEAR.kernel:
        o, W, S = kernels.linear_memory(q, k, v, theta, alpha, mom, *states, chunk=chunk,
                                        dgd=RULES[lv.rule].key_projection,  # the kernel's k k^T term
                                        backend="triton")
        return o, [W, S]
    o, *out = kernels.mlp_memory(q, k, v, theta, alpha, mom, *states, chunk=chunk, act=lv.memory.act, backend="triton")
    return o, out


def fused_write(lv, kernel, Ws, Ss, k, v, theta, alpha, eta):
    """One chunk-aligned segment through a fused kernel. Returns new (Ws, Ss)."""
    theta, mom, states = _operands(lv, kernel, Ws, Ss, k, theta, eta)
    # the kernel also reads o = M(q); the program already read at the chunk-start state, so q = k
    _, out = _call(lv, kernel, k, k, v, theta, alpha, mom, states, k.shape[2])
    n = len(Ws)
    return out[:n], (out[n:] if Ss is not None else None)


def fused_span(lv, kernel, Ws, Ss, q, k, v, theta, alpha, eta, chunk):
    """A whole-layer span (nlc/lower/span.py): tokens that start and end on chunk boundaries, through one
    fused op call with the real queries q. Returns (o, Ws, Ss, starts): `starts` are the chunk-start
    weights per memory layer, (B, H, chunks, out, in), detached: the stats need them and the op returns
    only the final state, so they come from a second forward launch that saves its states (no_grad)."""
    theta, mom, states = _operands(lv, kernel, Ws, Ss, k, theta, eta)
    o, out = _call(lv, kernel, q, k, v, theta, alpha, mom, states, chunk)
    n = len(Ws)
    starts = chunk_starts(lv, kernel, q, k, v, theta, alpha, mom, states, chunk, n)
    return o, out[:n], (out[n:] if Ss is not None else None), starts


def chunk_starts(lv, kernel, q, k, v, theta, alpha, mom, states, chunk, n):
    """The weights (first `n` states) at every chunk start, (B, H, chunks, ...) each, without autograd: the
    forward kernel's saved step states (a chunk is `ns` steps), or the torch chunk form chunk by chunk where
    the kernel does not fit on the GPU."""
    import torch
    from nlc.kernels._op_utils import kernel_or_torch
    from nlc.kernels._utils import step_layout
    from nlc.rules import RULES
    T = k.shape[2]
    ns = step_layout(min(chunk, T), T)[1]
    linear = kernel == Impl.TRITON_LINEAR.kernel
    flag = RULES[lv.rule].key_projection if linear else lv.memory.act
    with torch.no_grad():
        xs = [t.detach() for t in (q, k, v, theta, alpha, mom, *states)]
        if linear:
            from nlc.kernels.linear_memory.fused import linear_memory_fwd as fwd
            from nlc.kernels.linear_memory.naive import chunk_linear_memory as ref
            launch = lambda: [s[:, :, ::ns] for s in fwd(*xs, chunk, flag, impl="chunk", save_states=True)[3:3 + n]]  # noqa: E731
        else:
            from nlc.kernels.mlp_memory.fused import mlp_memory_fwd as fwd
            from nlc.kernels.mlp_memory.naive import chunk_mlp_memory as ref
            launch = lambda: [s[:, :, ::ns] for s in fwd(*xs, chunk, flag, save_states=True)[5:5 + n]]  # noqa: E731

        def by_chunk():
            cur, out = xs[6:], []
            for cs in range(0, T, chunk):
                out.append(cur[:n])
                c = slice(cs, cs + chunk)
                cur = list(ref(*(t[:, :, c] for t in xs[:6]), *cur, chunk, flag)[1:])
            return [torch.stack([w[j] for w in out], 2) for j in range(n)]
        return kernel_or_torch(f"{kernel} forward (span stats)", launch, by_chunk)
