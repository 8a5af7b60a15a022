"""`torch.ops.nlc.linear_memory`: Triton forward and backward, fake impls for torch.compile.

Backward: fused_bwd.py (Titans form) or fused_dgd_bwd.py (dgd, the WY form). Where a kernel does not fit
on the GPU (shared memory for large head dims), the op warns once and runs the chunked torch reference."""
import torch
from torch import Tensor

from .._op_utils import contig, kernel_or_torch, recompute_grads
from .naive import chunk_linear_memory


@torch.library.custom_op("nlc::linear_memory", mutates_args=())
def linear_memory_op(
    q: Tensor, k: Tensor, v: Tensor, lr: Tensor, decay: Tensor, mom: Tensor, W0: Tensor, S0: Tensor,
    chunk: int, dgd: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    from .fused import linear_memory_fwd

    xs = contig(q, k, v, lr, decay, mom, W0, S0)
    return kernel_or_torch("linear_memory forward", lambda: linear_memory_fwd(*xs, chunk, dgd),
                           lambda: tuple(o.contiguous() for o in chunk_linear_memory(*xs, chunk, dgd)))


@linear_memory_op.register_fake
def _(q, k, v, lr, decay, mom, W0, S0, chunk, dgd):
    B, H, T, _ = q.shape
    return q.new_empty(B, H, T, v.shape[-1]), torch.empty_like(W0), torch.empty_like(S0)


@torch.library.custom_op("nlc::linear_memory_bwd", mutates_args=())
def linear_memory_bwd_op(
    q: Tensor, k: Tensor, v: Tensor, lr: Tensor, decay: Tensor, mom: Tensor, W0: Tensor, S0: Tensor,
    do: Tensor, dW: Tensor, dS: Tensor, chunk: int, dgd: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    from .fused_bwd import linear_memory_bwd
    from .fused_dgd_bwd import linear_memory_bwd_dgd

    inputs = contig(q, k, v, lr, decay, mom, W0, S0)
    grads = contig(do, dW, dS)
    bwd = linear_memory_bwd_dgd if dgd else linear_memory_bwd
    return kernel_or_torch("linear_memory backward", lambda: bwd(*inputs, *grads, chunk),
                           lambda: recompute_grads(chunk_linear_memory, inputs, grads, chunk, dgd))


@linear_memory_bwd_op.register_fake
def _(q, k, v, lr, decay, mom, W0, S0, do, dW, dS, chunk, dgd):
    return tuple(torch.empty_like(x) for x in (q, k, v, lr, decay, mom, W0, S0))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:8])
    ctx.chunk, ctx.dgd = inputs[8], inputs[9]


def _backward(ctx, do, dW, dS):
    saved = ctx.saved_tensors
    q, v = saved[0], saved[2]
    outs = [q.new_zeros(*q.shape[:-1], v.shape[-1]), saved[6], saved[7]]
    grads = [torch.zeros_like(o) if g is None else g for g, o in zip((do, dW, dS), outs)]
    return (*linear_memory_bwd_op(*saved, *grads, ctx.chunk, ctx.dgd), None, None)


linear_memory_op.register_autograd(_backward, setup_context=_setup_context)
