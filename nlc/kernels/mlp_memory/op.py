"""`torch.ops.nlc.mlp_memory`: Triton forward and backward (fused_bwd.py), fake impls for torch.compile."""
import torch
from torch import Tensor

from .._op_utils import contig


@torch.library.custom_op("nlc::mlp_memory", mutates_args=())
def mlp_memory_op(
    q: Tensor, k: Tensor, v: Tensor, lr: Tensor, decay: Tensor, mom: Tensor,
    W1_0: Tensor, W2_0: Tensor, S1_0: Tensor, S2_0: Tensor, chunk: int, act: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    from .fused import mlp_memory_fwd

    return mlp_memory_fwd(*contig(q, k, v, lr, decay, mom, W1_0, W2_0, S1_0, S2_0), chunk, act)


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
    return mlp_memory_bwd(*inputs, *contig(do, dW1, dW2, dS1, dS2), chunk, act)


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
