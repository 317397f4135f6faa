"""Convolution as a matrix, and what weight sharing saves (lecture 001).

A convolution is a linear map, so it is a matrix acting on the flattened image: for one channel,
stride 1 and no padding it is *doubly block Toeplitz*, a Toeplitz matrix of blocks (one per kernel
row) that are themselves Toeplitz (one kernel row sliding along an image row). "Constrained linear
layer": a fully connected layer has one free weight per (input, output) pair; a locally connected
layer keeps only the weights inside each output's patch but does not share them; a convolution
also shares them across positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.foundations.conv import conv_output_size

__all__ = ["conv_matrix", "LayerParams", "connection_params", "LocallyConnected2d"]


def conv_matrix(
    w: np.ndarray, input_size: tuple[int, int], *, stride: int = 1, padding: int = 0, dilation: int = 1
) -> np.ndarray:
    """The matrix ``M`` with ``M @ x.ravel() == conv2d(x, w).ravel()`` for a ``C_in x H x W`` input.

    ``w`` is ``(C_out, C_in, kH, kW)`` (or a 2-D kernel: one channel in and out). Rows are output units
    (C_out, OH, OW), columns input pixels (C_in, H, W); zero padding just drops the taps that fall
    outside the image.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 2:
        w = w[None, None]
    o, c, kh, kw = w.shape
    h, wd = input_size
    oh = conv_output_size(h, kh, stride=stride, padding=padding, dilation=dilation)
    ow = conv_output_size(wd, kw, stride=stride, padding=padding, dilation=dilation)
    m = np.zeros((o, oh, ow, c, h, wd))
    for p in range(oh):
        for q in range(ow):
            for i in range(kh):
                for j in range(kw):
                    r, s = p * stride - padding + i * dilation, q * stride - padding + j * dilation
                    if 0 <= r < h and 0 <= s < wd:
                        m[:, p, q, :, r, s] = w[:, :, i, j]
    return m.reshape(o * oh * ow, c * h * wd)


@dataclass(frozen=True)
class LayerParams:
    """Weights (and biases) of three layers with the same input and output shapes."""

    input_shape: tuple[int, int, int]  # C, H, W
    output_shape: tuple[int, int, int]  # C_out, OH, OW
    kernel: int
    fully_connected: int
    locally_connected: int
    convolutional: int
    bias: bool

    def rows(self) -> list[tuple[str, int, str]]:
        """(layer, parameters, formula), for a table."""
        (c, h, w), (o, oh, ow), k = self.input_shape, self.output_shape, self.kernel
        b = " + biases" if self.bias else ""
        return [
            ("fully connected", self.fully_connected, f"({c}*{h}*{w}) * ({o}*{oh}*{ow}){b}"),
            ("locally connected (unshared)", self.locally_connected, f"({k}*{k}*{c}) * ({o}*{oh}*{ow}){b}"),
            ("convolutional (shared)", self.convolutional, f"({k}*{k}*{c}) * {o}{b}"),
        ]


def connection_params(
    input_shape: tuple[int, int, int], out_channels: int, kernel: int, *, stride: int = 1, padding: int = 0,
    bias: bool = False,
) -> LayerParams:
    """Parameters of FC / locally connected / conv layers mapping ``input_shape`` to the conv's output shape.

    Biases: one per output unit for FC and locally connected layers, one per output map for a conv.
    """
    c, h, w = input_shape
    oh = conv_output_size(h, kernel, stride=stride, padding=padding)
    ow = conv_output_size(w, kernel, stride=stride, padding=padding)
    units = out_channels * oh * ow
    fc = c * h * w * units + (units if bias else 0)
    lc = kernel * kernel * c * units + (units if bias else 0)
    conv = kernel * kernel * c * out_channels + (out_channels if bias else 0)
    return LayerParams((c, h, w), (out_channels, oh, ow), kernel, fc, lc, conv, bias)


class LocallyConnected2d(nn.Module):
    """A convolution without weight sharing: every output position has its own kernel (and bias).

    Weight ``(OH * OW, C_out, C_in * k * k)``; the input size is fixed at construction, since the
    number of kernels depends on it (DeepFace, Taigman et al. 2014, used such layers for aligned faces).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, input_size: tuple[int, int], *,
        stride: int = 1, padding: int = 0, bias: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.input_size = tuple(input_size)
        self.out_size = tuple(conv_output_size(n, kernel_size, stride=stride, padding=padding) for n in input_size)
        positions = self.out_size[0] * self.out_size[1]
        fan_in = in_channels * kernel_size**2
        bound = 1.0 / fan_in**0.5  # nn.Conv2d's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), per position
        self.weight = nn.Parameter(torch.empty(positions, out_channels, fan_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_channels, *self.out_size).uniform_(-bound, bound)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"LocallyConnected2d was built for {self.input_size} inputs, got {tuple(x.shape[-2:])}")
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # N x (C k k) x L
        y = torch.einsum("nkl,lok->nol", cols, self.weight)  # each position l with its own kernel
        y = y.reshape(x.shape[0], -1, *self.out_size)  # N x C_out x OH x OW
        return y if self.bias is None else y + self.bias

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, input_size: tuple[int, int]) -> LocallyConnected2d:
        """The locally connected layer whose every position holds ``conv``'s kernel: equal outputs."""
        k = conv.kernel_size[0]
        lc = cls(conv.in_channels, conv.out_channels, k, input_size, stride=conv.stride[0], padding=conv.padding[0],
                 bias=conv.bias is not None)
        with torch.no_grad():
            lc.weight.copy_(conv.weight.reshape(conv.out_channels, -1).expand_as(lc.weight))
            if conv.bias is not None:
                lc.bias.copy_(conv.bias.view(-1, 1, 1).expand_as(lc.bias))
        return lc
