"""Decompositions for ops that torch-mlir cannot lower, applied before import.

``torch.linalg.solve_triangular`` (nlc's closed-form DGD: a UT/WY triangular solve per
chunk) has no torch-mlir lowering. A triangular ``A = D (I + N)`` with ``N`` strictly
triangular, hence nilpotent (``N^n = 0``), has the exact inverse
``(I + N)^-1 = (I - N)(I + N^2)(I + N^4)...`` (``ceil(log2 n)`` factors): a few batched
matmuls, which every dialect and IREE handle well.
"""

from __future__ import annotations

import math

import torch

aten = torch.ops.aten


def _nilpotent_inverse(n_mat: torch.Tensor, n: int) -> torch.Tensor:
    """``(I + N)^-1`` for strictly triangular ``N`` of size ``n``."""
    eye = torch.eye(n, dtype=n_mat.dtype, device=n_mat.device)
    power = -n_mat
    inv = eye + power
    for _ in range(max(0, math.ceil(math.log2(max(n, 1))) - 1)):
        power = power @ power
        inv = inv @ (eye + power)
    return inv


def solve_triangular(A, B, *, upper: bool, left: bool = True, unitriangular: bool = False):
    n = A.shape[-1]
    rows = torch.arange(n, device=A.device)
    strict = (rows[None, :] > rows[:, None]) if upper else (rows[:, None] > rows[None, :])
    zero = torch.zeros((), dtype=A.dtype, device=A.device)
    if unitriangular:
        n_mat, diag = torch.where(strict, A, zero), None
    else:
        diag = torch.diagonal(A, dim1=-2, dim2=-1)
        # left: A = D (I + D^-1 N);  right: A = (I + N D^-1) D
        scaled = A / diag[..., :, None] if left else A / diag[..., None, :]
        n_mat = torch.where(strict, scaled, zero)
    inv = _nilpotent_inverse(n_mat, n)
    if left:  # A X = B  ->  X = (I + N')^-1 D^-1 B
        return inv @ (B if diag is None else B / diag[..., :, None])
    # X A = B  ->  X = B D^-1 (I + N')^-1
    return (B if diag is None else B / diag[..., None, :]) @ inv


def decomposition_table(base: dict) -> dict:
    """torch-mlir's table plus nlc's decompositions."""
    table = dict(base)
    table[aten.linalg_solve_triangular.default] = solve_triangular
    return table
