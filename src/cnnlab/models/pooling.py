"""Pooling over space (max, average, sum) and across feature channels (maxout).

- **Sum pooling** adds the values of each window: lecture 000's "sum or max" (citing Boureau, Ponce
  & LeCun, "A theoretical analysis of feature pooling in visual recognition", ICML 2010) and lecture
  003's "average pooling, max pooling, sum pooling". It is average pooling times the window's area,
  so it scales a map's values by ``k*k`` where average pooling keeps them. LeCun et al. 1998's
  subsampling layers are sum pooling with a trainable coefficient: "the four inputs to a unit in S2
  are added, then multiplied by a trainable coefficient, and added to a trainable bias" (§II.B).
- **Maxout** (Goodfellow, Warde-Farley, Mirza, Courville & Bengio, "Maxout networks", ICML 2013)
  pools across feature channels: ``h_i(x) = max_{j in 1..k} z_ij``, the largest of ``k``
  consecutive channels (``z`` = the linear or convolutional layer before it, with ``k`` times the
  channels). Lecture 001: "pooling across feature channels (filter outputs) can achieve other kinds
  of invariances". It is the activation function of a maxout network (no other non-linearity).

This module imports nothing from cnnlab but the errors.
"""

from __future__ import annotations

from torch import Tensor, nn

from cnnlab.errors import ConfigError

__all__ = ["POOLS", "SumPool2d", "Maxout", "make_pool", "check_pool"]

POOLS = ("max", "avg", "sum")


class SumPool2d(nn.AvgPool2d):
    """The sum of each ``kernel_size`` window: average pooling times the window area ``kH * kW``.

    Computed as average pooling with divisor 1 (``divisor_override=1``), so windows cut by the
    border (zero padding, ``ceil_mode``) sum what they cover.
    """

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode, divisor_override=1)


class Maxout(nn.Module):
    """Goodfellow et al. 2013, Eq. 1: ``h_i = max_{j=1..k} z_{ik+j}``, channels ``C*k`` -> ``C``.

    Groups are ``k`` consecutive channels (dimension 1), so a layer with ``k`` times the outputs
    feeding it gives one maxout unit per group; works on (N, C) and (N, C, H, W) tensors.
    """

    def __init__(self, pieces: int) -> None:
        super().__init__()
        if isinstance(pieces, bool) or not isinstance(pieces, int) or pieces < 1:
            raise ConfigError(f"Maxout pieces must be a positive integer, got {pieces!r}")
        self.pieces = pieces

    def forward(self, z: Tensor) -> Tensor:
        n, c = z.shape[:2]
        if c % self.pieces:
            raise ValueError(f"Maxout({self.pieces}): {c} channels is not a multiple of {self.pieces}")
        return z.reshape(n, c // self.pieces, self.pieces, *z.shape[2:]).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def check_pool(owner: str, value: object, *, extra: tuple[str, ...] = ()) -> None:
    """Raise :class:`ConfigError` naming ``owner`` unless ``value`` is in ``extra`` or :data:`POOLS`."""
    valid = (*extra, *POOLS)
    if value not in valid:
        raise ConfigError(f"{owner} must be one of {', '.join(repr(v) for v in valid)}, got {value!r}")


def make_pool(kind: str, kernel_size: int, stride: int | None = None, *, ceil_mode: bool = False) -> nn.Module:
    """``nn.MaxPool2d``, ``nn.AvgPool2d`` or :class:`SumPool2d` for ``kind`` = "max", "avg", "sum"."""
    check_pool("pool", kind)
    if kind == "max":
        return nn.MaxPool2d(kernel_size, stride, ceil_mode=ceil_mode)
    if kind == "avg":
        return nn.AvgPool2d(kernel_size, stride, ceil_mode=ceil_mode)
    return SumPool2d(kernel_size, stride, ceil_mode=ceil_mode)

