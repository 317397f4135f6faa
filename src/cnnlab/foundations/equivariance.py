"""Translation equivariance, measured (lecture 001: ``f(translate(x)) = translate(f(x))``).

A convolution with circular padding commutes exactly with circular shifts. A stride-``s``
operation (strided convolution, pooling) only commutes with shifts by multiples of ``s``: a shift by
one pixel moves the output by ``1/s`` of a sample, which no output shift can represent, so the
output changes (Azulay & Weiss, "Why do deep convolutional networks generalize so poorly to small
image transformations?", JMLR 2019: the sampling theorem is ignored by subsampling).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["shift", "circular_conv2d", "equivariance_error"]


def shift(x: np.ndarray, dy: int = 0, dx: int = 0) -> np.ndarray:
    """Circular shift of the last two axes by ``(dy, dx)`` pixels (down, right)."""
    return np.roll(x, (dy, dx), axis=(-2, -1))


def circular_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *, stride: int = 1) -> np.ndarray:
    """A "same" convolution whose padding wraps around (the image lives on a torus), NCHW."""
    from cnnlab.foundations.conv import conv2d_forward

    kh, kw = w.shape[2:]
    pads = ((0, 0), (0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2))
    return conv2d_forward(np.pad(x, pads, mode="wrap"), w, b, stride=stride)


def equivariance_error(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, *, pixels: int = 1, reduction: int = 1
) -> float:
    """``min_t ||f(shift(x, p)) - shift(f(x), t)|| / ||f(x)||`` over output shifts ``t`` in
    ``{floor(p / r), ceil(p / r)}``, for a horizontal shift by ``p`` pixels: 0 for an exactly equivariant ``f``.

    ``reduction`` is ``f``'s total stride ``r``; a shift by a multiple of ``r`` should move the
    output by ``p / r`` samples.
    """
    y = f(x)
    ys = f(shift(x, 0, pixels))  # a horizontal shift
    candidates = sorted({pixels // reduction, -(-pixels // reduction)})
    best = min(np.linalg.norm(ys - shift(y, 0, t)) for t in candidates)
    return float(best / max(np.linalg.norm(y), 1e-300))
