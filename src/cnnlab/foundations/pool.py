"""Max, average and sum pooling over space, and maxout across channels, in NumPy, forward and backward
(NCHW float64), as ``F.max_pool2d`` / ``F.avg_pool2d`` / ``cnnlab.models.pooling``.

Lecture 001: max pooling ``z_k = max_{j in N(k)} y_j`` sends the whole gradient of ``z_k`` to the
unit that won; mean pooling ``z_k = (1/|N|) sum_j y_j`` shares it equally among the window; sum
pooling (lectures 000, 003) ``z_k = sum_j y_j`` gives each pixel of the window the whole gradient.
Maxout (Goodfellow et al. 2013; lecture 001's "pooling across feature channels") is max pooling over
groups of ``k`` consecutive channels instead of a spatial window.
Padding counts as ``-inf`` for max pooling and as zeros included in the mean for average pooling
(PyTorch's defaults, ``count_include_pad=True``). The stride defaults to the window size.
"""

from __future__ import annotations

import numpy as np

from cnnlab.foundations.conv import IntPair, col2im, im2col

__all__ = ["maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward",
           "sumpool2d_forward", "sumpool2d_backward", "maxout_forward", "maxout_backward"]


def _args(kernel_size, stride, padding):
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    s = k if stride is None else ((stride, stride) if isinstance(stride, int) else tuple(stride))
    p = (padding, padding) if isinstance(padding, int) else tuple(padding)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding {p} must be at most half the window {k}")
    return k, s, p


def maxpool2d_forward(
    x: np.ndarray, kernel_size: IntPair = 2, stride: IntPair | None = None, padding: IntPair = 0
) -> np.ndarray:
    """The largest value in each ``kernel_size`` window."""
    k, s, p = _args(kernel_size, stride, padding)
    cols = im2col(x, k, stride=s, padding=p, pad_value=-np.inf)  # N x C x kH x kW x OH x OW
    return cols.max(axis=(2, 3))


def maxpool2d_backward(
    dy: np.ndarray, x: np.ndarray, kernel_size: IntPair = 2, stride: IntPair | None = None, padding: IntPair = 0
) -> np.ndarray:
    """``dx``: each window's gradient goes to its (first) maximum; overlapping windows add up."""
    k, s, p = _args(kernel_size, stride, padding)
    cols = im2col(x, k, stride=s, padding=p, pad_value=-np.inf)
    n, c, kh, kw, oh, ow = cols.shape
    flat = cols.reshape(n, c, kh * kw, oh, ow)
    winner = flat.argmax(axis=2)  # the first maximum in row-major window order, as PyTorch
    dcols = np.zeros_like(flat)
    np.put_along_axis(dcols, winner[:, :, None], dy[:, :, None], axis=2)
    return col2im(dcols.reshape(cols.shape), x.shape, stride=s, padding=p)


def avgpool2d_forward(
    x: np.ndarray, kernel_size: IntPair = 2, stride: IntPair | None = None, padding: IntPair = 0
) -> np.ndarray:
    """The mean of each window (zero padding counted in the mean)."""
    k, s, p = _args(kernel_size, stride, padding)
    return im2col(x, k, stride=s, padding=p).mean(axis=(2, 3))


def avgpool2d_backward(
    dy: np.ndarray, x: np.ndarray, kernel_size: IntPair = 2, stride: IntPair | None = None, padding: IntPair = 0
) -> np.ndarray:
    """``dx``: each window spreads ``dy / (kH kW)`` over its pixels."""
    k, s, p = _args(kernel_size, stride, padding)
    n, c, oh, ow = dy.shape
    dcols = np.broadcast_to((dy / (k[0] * k[1]))[:, :, None, None], (n, c, k[0], k[1], oh, ow))
    return col2im(np.ascontiguousarray(dcols), x.shape, stride=s, padding=p)


def sumpool2d_forward(
    x: np.ndarray, kernel_size: IntPair = 2, stride: IntPair | None = None, padding: IntPair = 0
) -> np.ndarray:
    """The sum of each window: average pooling times the window's area ``kH kW``."""
    k, s, p = _args(kernel_size, stride, padding)
    return im2col(x, k, stride=s, padding=p).sum(axis=(2, 3))


def sumpool2d_backward(
    dy: np.ndarray, x: np.ndarray, kernel_size: IntPair = 2, stride: IntPair | None = None, padding: IntPair = 0
) -> np.ndarray:
    """``dx``: every pixel of a window receives the window's whole ``dy``; overlapping windows add up."""
    k, s, p = _args(kernel_size, stride, padding)
    n, c, oh, ow = dy.shape
    dcols = np.broadcast_to(dy[:, :, None, None], (n, c, k[0], k[1], oh, ow))
    return col2im(np.ascontiguousarray(dcols), x.shape, stride=s, padding=p)


def _groups(z: np.ndarray, pieces: int) -> np.ndarray:
    n, c = z.shape[:2]
    if pieces < 1 or c % pieces:
        raise ValueError(f"maxout: {c} channels do not split into groups of {pieces}")
    return z.reshape(n, c // pieces, pieces, *z.shape[2:])


def maxout_forward(z: np.ndarray, pieces: int) -> np.ndarray:
    """``h_i = max_{j < k} z_{ik+j}``: the largest of each group of ``pieces`` consecutive channels,
    (N, C k, ...) -> (N, C, ...)."""
    return _groups(z, pieces).max(axis=2)


def maxout_backward(dh: np.ndarray, z: np.ndarray, pieces: int) -> np.ndarray:
    """``dz``: each unit's gradient goes to the (first) piece that won, the others get zero."""
    g = _groups(z, pieces)
    winner = g.argmax(axis=2)
    dz = np.zeros_like(g)
    np.put_along_axis(dz, winner[:, :, None], dh[:, :, None], axis=2)
    return dz.reshape(z.shape)
