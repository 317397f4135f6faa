"""2-D convolution in NumPy, forward and backward: a direct loop to read, im2col to run.

Arrays are NCHW float64, weights ``(C_out, C_in / groups, kH, kW)`` as in PyTorch. Like every deep
learning library (and the lectures), "convolution" here is cross-correlation: the kernel is not
flipped. For the symmetric kernels of lecture 003 the two are the same.

Output size per axis (lecture 002: ``(N - F + 2P) / S + 1``, with dilation ``d`` the kernel spans
``d (F - 1) + 1`` pixels)::

    out = (N + 2P - d (F - 1) - 1) // S + 1

The backward pass follows from ``y = W * x``: ``dW`` correlates ``dy`` with the input patches, ``dx``
scatters ``dy`` back through the kernel (col2im, the transpose of im2col), ``db`` sums ``dy``.
A transposed convolution is exactly the backward-data pass of a convolution, so it reuses it.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "conv_output_size",
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_forward_loop",
    "conv2d_backward_loop",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
]


IntPair = int | tuple[int, int]  # one value for both axes, or (height, width)


def _pair(v: IntPair) -> tuple[int, int]:
    return (v, v) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def conv_output_size(n: int, f: int, *, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """``(N - F + 2P) / S + 1`` (lecture 002), with a dilated kernel spanning ``d (F - 1) + 1`` pixels."""
    span = dilation * (f - 1) + 1
    if n + 2 * padding < span:
        raise ValueError(f"kernel span {span} is larger than the padded input {n + 2 * padding}")
    return (n + 2 * padding - span) // stride + 1


def _geometry(x_shape, k_shape, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    kh, kw = k_shape
    oh = conv_output_size(x_shape[2], kh, stride=sh, padding=ph, dilation=dh)
    ow = conv_output_size(x_shape[3], kw, stride=sw, padding=pw, dilation=dw)
    return (sh, sw), (ph, pw), (dh, dw), (oh, ow)


def im2col(
    x: np.ndarray, kernel: tuple[int, int], *, stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
    pad_value: float = 0.0,
) -> np.ndarray:
    """Patches of ``x`` as columns: ``(N, C, kH, kW, OH, OW)``; one strided copy per kernel tap."""
    (sh, sw), (ph, pw), (dh, dw), (oh, ow) = _geometry(x.shape, kernel, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    n, c = x.shape[:2]
    cols = np.empty((n, c, kernel[0], kernel[1], oh, ow), dtype=x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r, s = i * dh, j * dw
            cols[:, :, i, j] = xp[:, :, r : r + sh * (oh - 1) + 1 : sh, s : s + sw * (ow - 1) + 1 : sw]
    return cols


def col2im(
    cols: np.ndarray, x_shape: tuple[int, ...], *, stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1
) -> np.ndarray:
    """The transpose of :func:`im2col`: add every column entry back onto the pixel it was read from."""
    n, c, kh, kw, oh, ow = cols.shape
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    h, w = x_shape[2], x_shape[3]
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            r, s = i * dh, j * dw
            xp[:, :, r : r + sh * (oh - 1) + 1 : sh, s : s + sw * (ow - 1) + 1 : sw] += cols[:, :, i, j]
    return xp[:, :, ph : ph + h, pw : pw + w]


def _check(x: np.ndarray, w: np.ndarray, groups: int) -> None:
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"expected NCHW input and (C_out, C_in/groups, kH, kW) weight, got {x.shape} and {w.shape}")
    if x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f"input channels {x.shape[1]} and weight {w.shape} do not fit groups={groups}")


def conv2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: IntPair = 1, padding: IntPair = 0,
    dilation: IntPair = 1, groups: int = 1,
) -> np.ndarray:
    """``y[n, o] = b[o] + sum_{c, i, j} w[o, c, i, j] x[n, g(o) C_g + c, S p + d i, S q + d j]`` via im2col."""
    _check(x, w, groups)
    cols = im2col(x, w.shape[2:], stride=stride, padding=padding, dilation=dilation)
    n, c, kh, kw, oh, ow = cols.shape
    g, og = groups, w.shape[0] // groups
    cols = cols.reshape(n, g, (c // g) * kh * kw, oh * ow)  # N x G x K x L
    y = np.matmul(w.reshape(g, og, -1), cols)  # N x G x O/G x L: one matrix product per group
    y = y.reshape(n, g * og, oh, ow)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def _conv_dx(dy, w, x_shape, stride, padding, dilation, groups):
    n, o, oh, ow = dy.shape
    g, og = groups, o // groups
    kh, kw = w.shape[2:]
    cg = w.shape[1]
    wg = w.reshape(g, og, cg * kh * kw)
    dcols = np.matmul(wg.transpose(0, 2, 1), dy.reshape(n, g, og, oh * ow))  # N x G x K x L
    dcols = dcols.reshape(n, g * cg, kh, kw, oh, ow)
    return col2im(dcols, x_shape, stride=stride, padding=padding, dilation=dilation)


def _conv_dw(dy, x, w_shape, stride, padding, dilation, groups):
    n, o, oh, ow = dy.shape
    g, og = groups, o // groups
    cols = im2col(x, w_shape[2:], stride=stride, padding=padding, dilation=dilation)
    cols = cols[..., :oh, :ow]  # a transposed conv's output_padding can leave input rows no output reads
    cols = cols.reshape(n, g, -1, oh * ow)  # N x G x K x L
    # per image and group (O/G x L) @ (L x K), then the sum over images; the transposed operand is a
    # strided view that BLAS reads in place, so the big column array is never copied
    dw = np.matmul(dy.reshape(n, g, og, oh * ow), cols.transpose(0, 1, 3, 2)).sum(axis=0)
    return dw.reshape(w_shape)


def conv2d_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: IntPair = 1, padding: IntPair = 0,
    dilation: IntPair = 1, groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of :func:`conv2d_forward` given ``dy = dL/dy``."""
    _check(x, w, groups)
    dx = _conv_dx(dy, w, x.shape, stride, padding, dilation, groups)
    dw = _conv_dw(dy, x, w.shape, stride, padding, dilation, groups)
    return dx, dw, dy.sum(axis=(0, 2, 3))


def conv2d_forward_loop(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: IntPair = 1, padding: IntPair = 0,
    dilation: IntPair = 1, groups: int = 1,
) -> np.ndarray:
    """The same convolution as a direct loop over output units: slow, but it reads like the formula."""
    _check(x, w, groups)
    (sh, sw), (ph, pw), (dh, dw), (oh, ow) = _geometry(x.shape, w.shape[2:], stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, o = x.shape[0], w.shape[0]
    og, cg, kh, kw = o // groups, w.shape[1], w.shape[2], w.shape[3]
    y = np.zeros((n, o, oh, ow), dtype=np.result_type(x, w))
    for k in range(n):
        for co in range(o):
            c0 = (co // og) * cg  # first input channel of this output channel's group
            for p in range(oh):
                for q in range(ow):
                    # the receptive field of unit (p, q): kH x kW taps, dilation apart
                    patch = xp[k, c0 : c0 + cg, p * sh : p * sh + dh * (kh - 1) + 1 : dh,
                               q * sw : q * sw + dw * (kw - 1) + 1 : dw]  # fmt: skip
                    y[k, co, p, q] = np.sum(patch * w[co]) + (0.0 if b is None else b[co])
    return y


def conv2d_backward_loop(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: IntPair = 1, padding: IntPair = 0,
    dilation: IntPair = 1, groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward as a loop: each output unit sends ``dy`` back to its patch (``dx``) and kernel (``dw``)."""
    _check(x, w, groups)
    (sh, sw), (ph, pw), (dh, dw_), (oh, ow) = _geometry(x.shape, w.shape[2:], stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    n, o = x.shape[0], w.shape[0]
    og, cg, kh, kw = o // groups, w.shape[1], w.shape[2], w.shape[3]
    for k in range(n):
        for co in range(o):
            c0 = (co // og) * cg
            for p in range(oh):
                for q in range(ow):
                    rows = slice(p * sh, p * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(q * sw, q * sw + dw_ * (kw - 1) + 1, dw_)
                    dw[co] += dy[k, co, p, q] * xp[k, c0 : c0 + cg, rows, cols]
                    dxp[k, c0 : c0 + cg, rows, cols] += dy[k, co, p, q] * w[co]
    dx = dxp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def conv_transpose2d_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: IntPair = 1, padding: IntPair = 0,
    output_padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1,
) -> np.ndarray:
    """Transposed ("de-")convolution, weight ``(C_in, C_out / groups, kH, kW)`` as ``nn.ConvTranspose2d``.

    It is the gradient of a convolution with respect to its input: each input pixel stamps the
    kernel, scaled by its value, onto the output at stride ``S``. Output size ``(N - 1) S - 2P + d (F - 1)
    + output_padding + 1``.
    """
    (sh, sw), (ph, pw), (dh, dw), (oph, opw) = _pair(stride), _pair(padding), _pair(dilation), _pair(output_padding)
    kh, kw = w.shape[2:]
    n, c_in, h, wd = x.shape
    if c_in != w.shape[0] or c_in % groups:
        raise ValueError(f"input channels {c_in} and weight {w.shape} do not fit groups={groups}")
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    y_shape = (n, w.shape[1] * groups, oh, ow)
    # y is the "input" of the convolution whose weight is w: conv weight (C_in, C_out/G, kH, kW) maps
    # y's C_out channels to x's C_in channels, so its input gradient given dy = x is this layer's output.
    y = _conv_dx(x, w, y_shape, (sh, sw), (ph, pw), (dh, dw), groups)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: IntPair = 1, padding: IntPair = 0,
    output_padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of :func:`conv_transpose2d_forward`: a forward convolution of ``dy``."""
    # output_padding only adds output rows that no input reads; the convolution of dy ignores them.
    dx = conv2d_forward(dy, w, None, stride, padding, dilation, groups)[:, :, : x.shape[2], : x.shape[3]]
    dw = _conv_dw(x, dy, w.shape, stride, padding, dilation, groups)
    return dx, dw, dy.sum(axis=(0, 2, 3))
