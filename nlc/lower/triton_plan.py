"""The `triton` backend: pick fused kernels for the levels they cover; the rest stays on
the chunk-parallel torch path. Which level runs where is printed by `--emit plan`.

Covered (nlc/kernels): l2-objective memories whose gradients the kernels compute in closed form,
    linear memory, rules gd / momentum / dgd          -> nlc::linear_memory
    2-layer mlp memory (silu or relu), gd / momentum   -> nlc::mlp_memory
A kernel call covers a whole chunk from its start, so a segment that begins mid-chunk (streaming
from an arbitrary position) takes the torch path for that segment; results are the same.
Without CUDA the kernels run only in the Triton interpreter (TRITON_INTERPRET=1); otherwise the
backend falls back to torch with a one-line note.
"""
from __future__ import annotations

import sys


def kernel_for(lv) -> str | None:
    m = lv.memory
    if lv.role != "memory" or lv.clock != "tokens" or lv.objective != "l2":
        return None
    if m.kind == "linear" or (m.kind == "mlp" and m.depth == 1):
        return "linear_memory" if lv.rule in ("gd", "momentum", "dgd") else None
    if m.kind == "mlp" and m.depth == 2 and m.act in ("silu", "relu") and lv.rule in ("gd", "momentum"):
        return "mlp_memory"
    return None


def apply_triton(model) -> None:
    from nlc import kernels
    fused, runnable = {}, kernels.available()
    for key, layer in model.layers():
        for name, mem in layer.mems.items():
            k = kernel_for(mem.lv)
            if k is None:
                continue
            fused[f"{key}.{name}"] = f"triton {k}" + ("" if runnable else " (fallback: torch, no GPU/interpreter)")
            if runnable:
                mem.kernel = k
    model.fused_levels = fused
    if not runnable and fused:
        print("nlc: triton backend: no CUDA device and TRITON_INTERPRET is not set; "
              f"{len(fused)} fusable level(s) run on the torch path", file=sys.stderr)


def fused_write(lv, kernel, Ws, Ss, k, v, theta, alpha, eta):
    """One chunk-aligned segment through a fused kernel. Returns new (Ws, Ss)."""
    import torch
    from nlc import kernels
    mom = eta if eta is not None else torch.zeros_like(theta)
    # the kernel also reads o = M(q); the program already read at the chunk-start state, so q = k
    if kernel == "linear_memory":
        if lv.rule == "dgd":
            from nlc.lower.memory import dgd_lr
            theta = dgd_lr(lv, theta, k)  # the kernel takes the (normalised) DGD step size as its lr
        S0 = Ss[0] if Ss is not None else torch.zeros_like(Ws[0])
        _, W, S = kernels.linear_memory(k, k, v, theta, alpha, mom, Ws[0], S0, chunk=k.shape[2], dgd=lv.rule == "dgd",
                                        backend="triton")
        return [W], ([S] if Ss is not None else None)
    S1 = Ss[0] if Ss is not None else torch.zeros_like(Ws[0])
    S2 = Ss[1] if Ss is not None else torch.zeros_like(Ws[1])
    _, W1, W2, S1, S2 = kernels.mlp_memory(k, k, v, theta, alpha, mom, Ws[0], Ws[1], S1, S2, chunk=k.shape[2],
                                           act=lv.memory.act, backend="triton")
    return [W1, W2], ([S1, S2] if Ss is not None else None)
