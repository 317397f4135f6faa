"""Receptive-field arithmetic along one image axis.

Each feature map carries, per image axis (height, width), three numbers (Dang Ha The Hien, "A guide
to receptive field arithmetic for CNNs", 2017; Araujo et al., "Computing receptive fields of
convolutional neural networks", Distill 2019):

- ``rf``: the receptive field, how many input pixels one output unit can see;
- ``jump``: the distance, in input pixels, between two neighbouring output units (the product of the
  strides so far); ``None`` once the axis has been collapsed to one unit (global pooling, flatten);
- ``start``: the centre of the first output unit's field, in input coordinates where pixel ``i``
  covers ``[i, i + 1)`` (so the input's own ``start`` is 0.5). It goes negative with padding.

A convolution or pooling with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` maps
``(rf, jump, start)`` to::

    k_eff = d (k - 1) + 1
    rf'    = rf + (k_eff - 1) * jump
    jump'  = jump * s
    start' = start + ((k_eff - 1) / 2 - p) * jump

Branches that meet (a residual addition, an Inception concatenation, any element-wise op of several
inputs) take the union of their fields: for centred branches, the largest one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AxisField", "INPUT_FIELD", "conv_field", "transposed_conv_field", "pad_field",
           "slice_field", "resize_field", "adaptive_pool_field", "collapse_field", "union_fields",
           "stack_fields"]


@dataclass(frozen=True)
class AxisField:
    """Receptive field, jump and start of a feature map along one image axis (see the module doc)."""

    rf: float
    jump: float | None
    start: float

    @property
    def lo(self) -> float:
        """Left edge of the first unit's field (input coordinates)."""
        return self.start - self.rf / 2

    @property
    def hi(self) -> float:
        """Right edge of the first unit's field."""
        return self.start + self.rf / 2

    def pixels(self, unit: int = 0) -> range:
        """Input pixel indices inside the field of output unit ``unit`` (before clipping to the image)."""
        shift = 0.0 if self.jump is None else unit * self.jump
        return range(round(self.lo + shift), round(self.hi + shift))


INPUT_FIELD = AxisField(rf=1, jump=1, start=0.5)


def conv_field(f: AxisField, *, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> AxisField:
    """The field after a convolution or a pooling window (see the module doc for the formula)."""
    if f.jump is None:  # one unit left: a window over a 1-unit axis sees nothing new
        return f
    span = dilation * (kernel - 1)  # k_eff - 1
    return AxisField(rf=f.rf + span * f.jump, jump=f.jump * stride, start=f.start + (span / 2 - padding) * f.jump)


def transposed_conv_field(f: AxisField, *, kernel: int, stride: int = 1, padding: int = 0,
                          dilation: int = 1) -> AxisField:
    """The field after a transposed convolution (upsampling by ``stride``).

    Output unit ``o`` reads input units ``i = (o + p - t d) / s`` for the taps ``t`` where that is a
    whole number: which taps depends on ``o mod s``. For each phase the taps ``t_min..t_max`` reach
    ``(t_max - t_min) d / s + 1`` input units; ``rf`` grows by the largest of these, less one, times
    ``jump`` (exact: the widest field over the output units), and the jump shrinks by ``s``. ``start``
    is the centre of the fields averaged over the phases. (With ``d = 1`` the largest reach is
    ``ceil(k / s)``; a dilation sharing a factor with the stride can leave each phase one tap.)
    """
    if f.jump is None:
        return f
    span = dilation * (kernel - 1)
    units = 1
    for phase in range(stride):
        taps = [t for t in range(kernel) if (phase - t * dilation) % stride == 0]
        if taps:
            units = max(units, (taps[-1] - taps[0]) * dilation // stride + 1)
    return AxisField(rf=f.rf + (units - 1) * f.jump, jump=f.jump / stride,
                     start=f.start + (padding - span / 2) / stride * f.jump)


def pad_field(f: AxisField, *, before: int) -> AxisField:
    """Padding ``before`` units on the low side moves the first unit back (negative pads crop)."""
    if f.jump is None:
        return f
    return AxisField(rf=f.rf, jump=f.jump, start=f.start - before * f.jump)


def slice_field(f: AxisField, *, begin: int, step: int) -> AxisField:
    """Keeping units ``begin, begin + step, ...`` of an axis."""
    if f.jump is None:
        return f
    return AxisField(rf=f.rf, jump=f.jump * step, start=f.start + begin * f.jump)


def resize_field(f: AxisField, *, in_size: int, out_size: int) -> AxisField:
    """Nearest/bilinear resizing: units get closer (or further apart); the field itself is unchanged.

    An approximation: bilinear interpolation also mixes two neighbouring units.
    """
    if f.jump is None or in_size == out_size:
        return f
    return AxisField(rf=f.rf, jump=f.jump * in_size / out_size, start=f.start)


def adaptive_pool_field(f: AxisField, *, in_size: int, out_size: int) -> AxisField:
    """Adaptive pooling: output ``i`` pools input units ``floor(i n/m) .. ceil((i+1) n/m) - 1``.

    Exact when ``in_size`` is a multiple of ``out_size`` (the window is then a plain pooling with
    kernel = stride = n/m); otherwise the window size varies and we report the largest one, with the
    mean stride as the jump.
    """
    if out_size == 1:
        return collapse_field(f, size=in_size)
    if f.jump is None:
        return f
    if in_size % out_size == 0:
        k = in_size // out_size
        return conv_field(f, kernel=k, stride=k)
    windows = [math.ceil((i + 1) * in_size / out_size) - (i * in_size) // out_size for i in range(out_size)]
    first = windows[0]
    return AxisField(rf=f.rf + (max(windows) - 1) * f.jump, jump=f.jump * in_size / out_size,
                     start=f.start + (first - 1) / 2 * f.jump)


def collapse_field(f: AxisField, *, size: int) -> AxisField:
    """An axis of ``size`` units reduced to one unit (global pooling, flatten): it sees all of them."""
    if f.jump is None or size <= 1:
        return f if f.jump is None else AxisField(rf=f.rf, jump=None, start=f.start)
    extent = (size - 1) * f.jump
    return AxisField(rf=f.rf + extent, jump=None, start=f.start + extent / 2)


def union_fields(fields: list[AxisField]) -> AxisField:
    """Where branches meet: the first unit sees the union of what each branch's first unit sees."""
    if len(fields) == 1:
        return fields[0]
    lo = min(f.lo for f in fields)
    hi = max(f.hi for f in fields)
    jumps = [f.jump for f in fields if f.jump is not None]
    return AxisField(rf=hi - lo, jump=max(jumps) if jumps else None, start=(lo + hi) / 2)


def stack_fields(layers: list[dict], start: AxisField = INPUT_FIELD) -> list[AxisField]:
    """The field after each layer of a plain stack, given as ``conv_field`` keyword dicts.

    >>> [f.rf for f in stack_fields([dict(kernel=3)] * 3)]
    [3, 5, 7]
    """
    out, f = [], start
    for layer in layers:
        f = conv_field(f, **layer)
        out.append(f)
    return out
