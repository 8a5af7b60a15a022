"""`torch.ops.nlc.mlp_memory`: Triton forward and backward (fused_bwd.py), fake impls for torch.compile.

The kernels keep W1, W2 (and their momenta, gradients) on chip: for D·Dh beyond what an SM's shared memory
holds (`python -m nlc.kernels.aot` reports it per shape) the op warns once and runs the chunked torch path."""
import torch
from torch import Tensor

from .._op_utils import contig, kernel_or_torch, recompute_grads
from .naive import chunk_mlp_memory


@torch.library.custom_op("nlc::mlp_memory", mutates_args=())
def mlp_memory_op(
    q: Tensor, k: Tensor, v: Tensor, lr: Tensor, decay: Tensor, mom: Tensor,
    W1_0: Tensor, W2_0: Tensor, S1_0: Tensor, S2_0: Tensor, chunk: int, act: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    from .fused import mlp_memory_fwd

    xs = contig(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0)
    return kernel_or_torch("mlp_memory forward", lambda: mlp_memory_fwd(*xs, chunk, act),
                           lambda: tuple(o.contiguous() for o in chunk_mlp_memory(*xs, chunk, act)))


@mlp_memory_op.register_fake
def _(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, chunk, act):
    B, H, T, _ = q.shape
    return (q.new_empty(B, H, T, v.shape[-1]), *(torch.empty_like(x) for x in (W1_0, W2_0, S1_0, S2_0)))


@torch.library.custom_op("nlc::mlp_memory_bwd", mutates_args=())
def mlp_memory_bwd_op(
    q: Tensor, k: Tensor, v: Tensor, lr: Tensor, decay: Tensor, mom: Tensor,
    W1_0: Tensor, W2_0: Tensor, S1_0: Tensor, S2_0: Tensor,
    do: Tensor, dW1: Tensor, dW2: Tensor, dS1: Tensor, dS2: Tensor, chunk: int, act: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    from .fused_bwd import mlp_memory_bwd

    inputs = contig(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0)
    grads = contig(do, dW1, dW2, dS1, dS2)
    return kernel_or_torch("mlp_memory backward", lambda: mlp_memory_bwd(*inputs, *grads, chunk, act),
                           lambda: recompute_grads(chunk_mlp_memory, inputs, grads, chunk, act))


@mlp_memory_bwd_op.register_fake
def _(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0, do, dW1, dW2, dS1, dS2, chunk, act):
    return tuple(torch.empty_like(x) for x in (q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:10])
    ctx.chunk, ctx.act = inputs[10], inputs[11]


def _backward(ctx, do, dW1, dW2, dS1, dS2):
    saved = ctx.saved_tensors
    q, v = saved[0], saved[2]
    outs = [q.new_zeros(*q.shape[:-1], v.shape[-1]), *saved[6:10]]
    grads = [torch.zeros_like(o) if g is None else g for g, o in zip((do, dW1, dW2, dS1, dS2), outs)]
    return (*mlp_memory_bwd_op(*saved, *grads, ctx.chunk, ctx.act), None, None)


mlp_memory_op.register_autograd(_backward, setup_context=_setup_context)
