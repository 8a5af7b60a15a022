"""`torch.ops.nlc.cms_update`: Triton forward and Triton backward, with fake impls for torch.compile."""
import torch
from torch import Tensor

from .._op_utils import contig


@torch.library.custom_op("nlc::cms_update", mutates_args=())
def cms_update_op(theta: Tensor, grads: Tensor, lr: float, chunk: int) -> Tensor:
    from .fused import cms_update_fwd

    return cms_update_fwd(*contig(theta, grads), lr, chunk)


@cms_update_op.register_fake
def _(theta, grads, lr, chunk):
    return theta.new_empty(-(-grads.shape[0] // chunk), grads.shape[1])


@torch.library.custom_op("nlc::cms_update_bwd", mutates_args=())
def cms_update_bwd_op(dout: Tensor, theta: Tensor, grads: Tensor, lr: float, chunk: int) -> tuple[Tensor, Tensor]:
    from .fused import cms_update_bwd

    return cms_update_bwd(*contig(dout, theta, grads), lr, chunk)


@cms_update_bwd_op.register_fake
def _(dout, theta, grads, lr, chunk):
    return torch.empty_like(theta), torch.empty_like(grads)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.lr, ctx.chunk = inputs[2], inputs[3]


def _backward(ctx, dout):
    theta, grads = ctx.saved_tensors
    dtheta, dgrads = cms_update_bwd_op(dout, theta, grads, ctx.lr, ctx.chunk)
    return dtheta, dgrads, None, None


cms_update_op.register_autograd(_backward, setup_context=_setup_context)
