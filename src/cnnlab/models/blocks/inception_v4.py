"""The blocks of Inception-v4: Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4, Inception-ResNet and
the Impact of Residual Connections on Learning", AAAI 2017 (arXiv:1602.07261), Figures 3-8.

Every block is a set of parallel branches concatenated on channels, so one module,
:class:`MixedBlock`, builds them all from a table of branches (``zoo/inception_v4.py`` holds the
paper's figures as such tables). A branch is a sequence of :class:`Conv` and :class:`Pool` steps,
optionally ending in a :class:`Fork` (Inception-C: a 1x3 and a 3x1 convolution read the same map and
their outputs are concatenated). Every convolution is conv (no bias) -> batch norm -> ReLU (§3: batch
normalisation "on top of the traditional layers"), BN eps 0.001 as in the TensorFlow reference.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch import Tensor, nn

__all__ = ["Conv", "Pool", "Fork", "Branch", "ConvBNReLU", "MixedBlock", "branch_channels"]


class Conv(NamedTuple):
    """One convolution of a figure: ``out`` filters of ``kernel`` (rows, cols), ``stride``;
    ``valid``: no padding (the figures' "V"), else "same" padding."""

    out: int
    kernel: tuple[int, int]
    stride: int = 1
    valid: bool = False


class Pool(NamedTuple):
    """A 3x3 pooling of a figure: ``kind`` "max" or "avg", ``stride``, ``valid`` as for :class:`Conv`."""

    kind: str
    stride: int = 1
    valid: bool = False


class Fork(NamedTuple):
    """Convolutions that all read the branch's last map, their outputs concatenated (Figure 6)."""

    convs: tuple[Conv, ...]


Step = Union[Conv, Pool, Fork]
Branch = tuple[Step, ...]


def k(text: str) -> tuple[int, int]:
    """A kernel as the figures write it: ``"1x7"`` is 1 row by 7 columns."""
    rows, cols = text.split("x")
    return int(rows), int(cols)


class ConvBNReLU(nn.Module):
    """``conv`` (no bias) -> ``bn`` (eps 0.001) -> ReLU."""

    def __init__(self, in_channels: int, spec: Conv) -> None:
        super().__init__()
        padding = (0, 0) if spec.valid else (spec.kernel[0] // 2, spec.kernel[1] // 2)
        self.conv = nn.Conv2d(in_channels, spec.out, spec.kernel, stride=spec.stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(spec.out, eps=0.001)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class _Fork(nn.Module):
    def __init__(self, in_channels: int, spec: Fork) -> None:
        super().__init__()
        self.paths = nn.ModuleList(ConvBNReLU(in_channels, c) for c in spec.convs)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([path(x) for path in self.paths], 1)


def _pool(spec: Pool) -> nn.Module:
    padding = 0 if spec.valid else 1
    if spec.kind == "max":
        return nn.MaxPool2d(3, stride=spec.stride, padding=padding)
    if spec.kind == "avg":
        # TensorFlow's SAME average pooling divides by the cells inside the image (count_include_pad=False)
        return nn.AvgPool2d(3, stride=spec.stride, padding=padding, count_include_pad=False)
    raise ValueError(f"pool kind must be 'max' or 'avg', got {spec.kind!r}")


def branch_channels(branch: Branch, in_channels: int) -> int:
    """Channels a branch outputs, given its input's."""
    channels = in_channels
    for step in branch:
        if isinstance(step, Conv):
            channels = step.out
        elif isinstance(step, Fork):
            channels = sum(c.out for c in step.convs)
    return channels


class MixedBlock(nn.Module):
    """Parallel branches (``branch0``, ``branch1``, ...) concatenated on channels, in table order."""

    def __init__(self, in_channels: int, branches: tuple[Branch, ...]) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = sum(branch_channels(b, in_channels) for b in branches)
        for i, branch in enumerate(branches):
            layers: list[nn.Module] = []
            channels = in_channels
            for step in branch:
                if isinstance(step, Conv):
                    layers.append(ConvBNReLU(channels, step))
                elif isinstance(step, Pool):
                    layers.append(_pool(step))
                else:
                    layers.append(_Fork(channels, step))
                channels = branch_channels((step,), channels)
            self.add_module(f"branch{i}", layers[0] if len(layers) == 1 else nn.Sequential(*layers))
        self.n_branches = len(branches)

    def forward(self, x: Tensor) -> Tensor:
        # N x in x H x W -> N x (sum of the branches' widths) x H' x W'
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.n_branches)], 1)
