"""Plain PyTorch reference of the CMS chunk-accumulated update (NL eq. 71)."""
import torch


def naive_cms_update(theta, grads, lr: float, chunk: int):
    """theta (P,), grads (N, P) -> (ceil(N/C), P): row j is theta after the j-th update
    theta_{j+1} = theta_j - lr * sum_{t in chunk j} g_t (the last chunk may be shorter and is applied too)."""
    th = theta.float()
    outs = []
    for s in range(0, grads.shape[0], chunk):
        th = th - lr * grads[s:s + chunk].float().sum(0)
        outs.append(th)
    return torch.stack(outs).to(theta.dtype)
