"""Glue for the custom ops: contiguous inputs, autograd inside an op, the gate chain rule of the backward kernels."""
import contextlib

import torch


def contig(*xs):
    # under torch.compile a custom op can receive stride-0 expanded tensors (e.g. the gradient of .sum())
    return [x.contiguous() for x in xs]


@contextlib.contextmanager
def autograd_inside_op():
    """Re-enable autograd recording inside a custom op implementation.

    The dispatcher runs an op's implementation with the autograd keys excluded from the thread-local
    dispatch set, so torch.autograd.grad there sees no graph. Remove them from the exclude set for the block.
    """
    incl = torch._C._dispatch_tls_local_include_set()
    excl = torch._C._dispatch_tls_local_exclude_set()
    for key in ("AutogradFunctionality", "AutogradOther", "ADInplaceOrView", "AutogradCPU", "AutogradCUDA"):
        k = getattr(torch._C.DispatchKey, key, None)
        if k is not None and excl.has(k):
            excl = excl.remove(k)
    with torch._C._ForceDispatchKeyGuard(incl, excl), torch.enable_grad():
        yield


def gate_grads(lr, decay, mom, chunk: int, bc: int, coeff_grads):
    """(dlr, ddecay, dmom) from the gradients of the step gate coefficients (da, db, dc, dsm, dsd)
    that a backward kernel produced: the chain rule through `step_gate_coeffs`, by torch.autograd."""
    from ._utils import step_gate_coeffs

    with autograd_inside_op():
        xs = [x.detach().float().requires_grad_() for x in (lr, decay, mom)]
        outs = step_gate_coeffs(*xs, chunk, bc)
        gs = torch.autograd.grad(outs, xs, coeff_grads, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g.to(x.dtype).contiguous() for g, x in zip(gs, (lr, decay, mom)))


def recompute_grads(fn, inputs, grad_outputs, *args):
    """Gradients of fn(*inputs, *args) w.r.t. inputs, recomputed in fp32 with torch.autograd."""
    with autograd_inside_op():
        xs = [x.detach().float().requires_grad_() for x in inputs]
        outs = fn(*xs, *args)
        gs = torch.autograd.grad(outs, xs, [g.float() for g in grad_outputs], allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g.to(x.dtype).contiguous() for g, x in zip(gs, inputs))


_warned: set = set()


def kernel_or_torch(what: str, kernel, fallback):
    """Run `kernel()`; if the GPU lacks the resources it needs (shared memory or registers for these head
    dims: `python -m nlc.kernels.aot` reports them), warn once per `what` and run `fallback()`, the chunked
    torch path, instead. Any other error propagates."""
    from triton.runtime.errors import OutOfResources

    try:
        return kernel()
    except OutOfResources as e:
        if what not in _warned:
            _warned.add(what)
            import warnings

            warnings.warn(f"nlc: the Triton kernel for {what} does not fit on this GPU ({e}); "
                          "running the chunked torch path for it instead", RuntimeWarning, stacklevel=2)
        return fallback()
