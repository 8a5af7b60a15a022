"""Triton kernels for the CMS update: a segmented sum over chunks of rows, applied to theta at each boundary.

Layout: theta (P,), grads (N, P) row-major, out (ceil(N/C), P). One program per block of BP parameters
walks the N rows in order, so theta and the running sum stay in registers (fp32).
"""
import torch
import triton
import triton.language as tl

BP = 256
BR = 16


@triton.jit
def cms_update_fwd_kernel(theta, grads, out, N, P, C, lr, BP: tl.constexpr, BR: tl.constexpr):
    i_p = tl.program_id(0)
    op = i_p * BP + tl.arange(0, BP)
    orr = tl.arange(0, BR)
    mp = op < P
    th = tl.load(theta + op, mask=mp, other=0.0).to(tl.float32)
    j = 0
    for cs in range(0, N, C):
        ce = tl.minimum(cs + C, N)
        acc = tl.zeros([BP], dtype=tl.float32)
        for s in range(cs, ce, BR):
            rows = (s + orr).to(tl.int64)
            m = (rows[:, None] < ce) & mp[None, :]
            acc += tl.sum(tl.load(grads + rows[:, None] * P + op[None, :], mask=m, other=0.0).to(tl.float32), 0)
        th = th - lr * acc
        tl.store(out + j.to(tl.int64) * P + op, th.to(out.dtype.element_ty), mask=mp)
        j += 1


@triton.jit
def cms_update_bwd_kernel(dout, dtheta, dgrads, N, P, C, NC, lr, BP: tl.constexpr, BR: tl.constexpr):
    # d theta = sum_j dout_j ; d g_t = -lr * sum_{j >= chunk(t)} dout_j, a reverse scan over chunks
    i_p = tl.program_id(0)
    op = i_p * BP + tl.arange(0, BP)
    orr = tl.arange(0, BR)
    mp = op < P
    acc = tl.zeros([BP], dtype=tl.float32)
    for jj in range(0, NC):
        j = NC - 1 - jj
        acc += tl.load(dout + j.to(tl.int64) * P + op, mask=mp, other=0.0).to(tl.float32)
        cs = j * C
        ce = tl.minimum(cs + C, N)
        val = (-lr * acc).to(dgrads.dtype.element_ty)
        for s in range(cs, ce, BR):
            rows = (s + orr).to(tl.int64)
            m = (rows[:, None] < ce) & mp[None, :]
            tl.store(dgrads + rows[:, None] * P + op[None, :], tl.broadcast_to(val[None, :], (BR, BP)), mask=m)
    tl.store(dtheta + op, acc.to(dtheta.dtype.element_ty), mask=mp)


def cms_update_fwd(theta, grads, lr: float, chunk: int):
    N, P = grads.shape
    NC = -(-N // chunk)
    out = torch.empty(NC, P, dtype=theta.dtype, device=theta.device)
    cms_update_fwd_kernel[(triton.cdiv(P, BP),)](theta, grads, out, N, P, chunk, lr, BP=BP, BR=BR)
    return out


def cms_update_bwd(dout, theta, grads, lr: float, chunk: int):
    N, P = grads.shape
    dtheta = torch.empty_like(theta)
    dgrads = torch.empty_like(grads)
    cms_update_bwd_kernel[(triton.cdiv(P, BP),)](dout, dtheta, dgrads, N, P, chunk, dout.shape[0], lr, BP=BP, BR=BR)
    return dtheta, dgrads
