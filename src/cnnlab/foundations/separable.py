"""Separable filters: a kernel that is an outer product ``v h^T`` is a column pass then a row pass.

Lecture 001 ("Chaining convolutions"): two chained 3x3 kernels make a 5x5 kernel with 25
coefficients but only 18 degrees of freedom; a 3x1 then a 1x3 makes a 3x3 with 9 coefficients but
6 degrees of freedom, and only separable (rank-1) 3x3 kernels can be made that way. The rank of a
kernel is its number of non-zero singular values; by Eckart-Young the best rank-1 approximation
keeps the largest singular value and its Frobenius error is the norm of the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["kernel_rank", "SeparableApprox", "best_separable", "separable_multiplications", "compose_kernels"]


def kernel_rank(kernel: np.ndarray, *, tol: float = 1e-10) -> int:
    """Number of singular values above ``tol`` times the largest: 1 means separable."""
    s = np.linalg.svd(np.asarray(kernel, dtype=np.float64), compute_uv=False)
    return int((s > tol * max(s[0], 1e-300)).sum())


@dataclass(frozen=True)
class SeparableApprox:
    vertical: np.ndarray  # (kH,) column filter
    horizontal: np.ndarray  # (kW,) row filter
    error: float  # Frobenius norm of kernel - outer(vertical, horizontal)
    relative_error: float  # error / Frobenius norm of the kernel
    singular_values: np.ndarray

    @property
    def kernel(self) -> np.ndarray:
        return np.outer(self.vertical, self.horizontal)


def best_separable(kernel: np.ndarray) -> SeparableApprox:
    """The closest rank-1 kernel ``v h^T`` in Frobenius norm (Eckart-Young), split evenly ``sqrt(s1)`` each."""
    k = np.asarray(kernel, dtype=np.float64)
    u, s, vt = np.linalg.svd(k)
    v, h = u[:, 0] * np.sqrt(s[0]), vt[0] * np.sqrt(s[0])
    if v.sum() < 0:  # the SVD's sign is arbitrary; prefer a non-negative-sum column filter
        v, h = -v, -h
    err = float(np.sqrt((s[1:] ** 2).sum()))
    norm = float(np.linalg.norm(k))
    return SeparableApprox(v, h, err, err / norm if norm else 0.0, s)


def separable_multiplications(kh: int, kw: int, *, out_h: int = 1, out_w: int = 1) -> tuple[int, int]:
    """Multiplications per output map: ``(direct kH kW, separable kH + kW)`` times ``out_h out_w``.

    (Ignoring the border, where the intermediate map of the first pass is slightly larger.)
    """
    pixels = out_h * out_w
    return kh * kw * pixels, (kh + kw) * pixels


def compose_kernels(k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
    """The single kernel equal to correlating with ``k1`` then with ``k2`` (valid, stride 1).

    Its size is ``k1 + k2 - 1`` per axis (two 3x3 -> 5x5): ``K[a, b] = sum_{i, j} k2[i, j] k1[a - i, b - j]``.
    """
    k1, k2 = np.asarray(k1, dtype=np.float64), np.asarray(k2, dtype=np.float64)
    out = np.zeros((k1.shape[0] + k2.shape[0] - 1, k1.shape[1] + k2.shape[1] - 1))
    for i in range(k2.shape[0]):
        for j in range(k2.shape[1]):
            out[i : i + k1.shape[0], j : j + k1.shape[1]] += k2[i, j] * k1
    return out
