"""The `triton` backend's fused writes. Which levels a kernel covers is the schedule's decision
(nlc/passes/schedule.py: `fused_kernel`); `--emit schedule` prints it. The rest stays on the
chunk-parallel torch path.

Covered (nlc/kernels): l2-objective memories whose gradients the kernels compute in closed form,
    linear memory, rules gd / momentum / dgd          -> nlc::linear_memory
    2-layer mlp memory (silu or relu), gd / momentum   -> nlc::mlp_memory
A kernel call covers a whole chunk from its start, so a segment that begins mid-chunk (streaming
from an arbitrary position) takes the torch path for that segment; results are the same.
Without CUDA the kernels run only in the Triton interpreter (TRITON_INTERPRET=1); otherwise the
backend falls back to torch with a one-line note.
"""
from __future__ import annotations

from nlc.ir.schedule import Impl


def fused_write(lv, kernel, Ws, Ss, k, v, theta, alpha, eta):
    """One chunk-aligned segment through a fused kernel. Returns new (Ws, Ss)."""
    import torch
    from nlc import kernels
    mom = eta if eta is not None else torch.zeros_like(theta)
    # the kernel also reads o = M(q); the program already read at the chunk-start state, so q = k
    from nlc.rules import RULES
    if kernel == Impl.TRITON_LINEAR.kernel:
        upd = RULES[lv.rule].update()  # eager only: fused kernels are not traced by dynamo here
        if hasattr(upd, "kernel_lr"):
            theta = upd.kernel_lr(lv, theta, k)  # e.g. dgd: the kernel takes the normalised step size as its lr
        S0 = Ss[0] if Ss is not None else torch.zeros_like(Ws[0])
        _, W, S = kernels.linear_memory(k, k, v, theta, alpha, mom, Ws[0], S0, chunk=k.shape[2],
                                        dgd=RULES[lv.rule].key_projection,  # the kernel's k k^T term
                                        backend="triton")
        return [W], ([S] if Ss is not None else None)
    S1 = Ss[0] if Ss is not None else torch.zeros_like(Ws[0])
    S2 = Ss[1] if Ss is not None else torch.zeros_like(Ws[1])
    _, W1, W2, S1, S2 = kernels.mlp_memory(k, k, v, theta, alpha, mom, Ws[0], Ws[1], S1, S2, chunk=k.shape[2],
                                           act=lv.memory.act, backend="triton")
    return [W1, W2], ([S1, S2] if Ss is not None else None)
