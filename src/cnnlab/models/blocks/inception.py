"""Inception modules: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, §4 and Figure 2.

- :class:`NaiveInception` (Figure 2a): 1x1, 3x3 and 5x5 convolutions and a 3x3 max-pool applied to
  the same input and concatenated. The pool branch passes all input channels through, so the output
  grows with every module and the 5x5 convolutions see the full input depth.
- :class:`Inception` (Figure 2b): the same four branches with 1x1 convolutions ("reductions") before
  the 3x3 and 5x5 convolutions and after the pool ("pool proj"). Lecture 004's example (28x28x192
  input, 5x5 branch with 32 filters) costs 120M multiply-adds naively and 12.4M with a 16-filter 1x1
  reduction in front.
- :class:`InceptionAux`: the auxiliary classifier of §5 attached to 4a and 4d.

Every convolution is a :class:`BasicConv2d` (conv -> [BN] -> ReLU; §4: "All the convolutions,
including those inside the Inception modules, use rectified linear activation"). Module names follow
torchvision's ``googlenet.py`` (``branch1``..``branch4``, ``conv``/``bn``), so its state dicts load
unchanged into the torchvision-compatible GoogLeNet.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["InceptionWidths", "BasicConv2d", "Inception", "NaiveInception", "InceptionAux"]


class InceptionWidths(NamedTuple):
    """One row of Szegedy et al. 2015, Table 1, with the paper's column names.

    ``n1x1`` is "#1x1", ``n3x3_reduce`` "#3x3 reduce", ``n3x3`` "#3x3", ``n5x5_reduce``
    "#5x5 reduce", ``n5x5`` "#5x5" and ``pool_proj`` "pool proj" (1x1 filters after the max-pool).
    """

    n1x1: int
    n3x3_reduce: int
    n3x3: int
    n5x5_reduce: int
    n5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.n1x1 + self.n3x3 + self.n5x5 + self.pool_proj


class BasicConv2d(nn.Module):
    """``conv`` -> ``bn`` -> ReLU (torchvision, BN eps 0.001) or ``conv`` (with bias) -> ReLU (paper).

    The paper predates batch normalisation; torchvision's GoogLeNet adds BN after every convolution.
    Without BN, ``bn`` is an ``nn.Identity`` (no parameters, so no state-dict keys). The ReLU is not
    in-place (torchvision's is), so a forward hook on ``conv`` or ``bn`` sees that layer's own output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=not batch_norm)
        # eps=0.001 as torchvision's BasicConv2d (its weights were ported from TensorFlow, whose default it is)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001) if batch_norm else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Inception module with dimension reductions (Figure 2b): four branches concatenated on channels.

    ``kernel_5x5`` is the kernel of the "#5x5" branch: 5 in the paper, 3 in torchvision's GoogLeNet
    (a known departure kept for weight compatibility, see ``zoo/googlenet.py``).
    """

    def __init__(self, in_channels: int, widths: InceptionWidths, *, batch_norm: bool = True, kernel_5x5: int = 5) -> None:
        super().__init__()
        w = widths
        self.in_channels, self.out_channels = in_channels, w.out_channels

        def conv(cin: int, cout: int, k: int) -> BasicConv2d:
            return BasicConv2d(cin, cout, k, padding=k // 2, batch_norm=batch_norm)

        self.branch1 = conv(in_channels, w.n1x1, 1)
        self.branch2 = nn.Sequential(conv(in_channels, w.n3x3_reduce, 1), conv(w.n3x3_reduce, w.n3x3, 3))
        self.branch3 = nn.Sequential(conv(in_channels, w.n5x5_reduce, 1), conv(w.n5x5_reduce, w.n5x5, kernel_5x5))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), conv(in_channels, w.pool_proj, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        # N x in x H x W -> N x (#1x1 + #3x3 + #5x5 + pool proj) x H x W
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class NaiveInception(nn.Module):
    """The naive Inception module (Figure 2a): no 1x1 reductions, the max-pool output is concatenated as is.

    Output channels: ``n1x1 + n3x3 + n5x5 + in_channels``. Kept for the 1x1-saving comparison; no zoo
    model uses it.
    """

    def __init__(self, in_channels: int, n1x1: int, n3x3: int, n5x5: int, *, batch_norm: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, n1x1 + n3x3 + n5x5 + in_channels
        self.branch1 = BasicConv2d(in_channels, n1x1, 1, batch_norm=batch_norm)
        self.branch2 = BasicConv2d(in_channels, n3x3, 3, padding=1, batch_norm=batch_norm)
        self.branch3 = BasicConv2d(in_channels, n5x5, 5, padding=2, batch_norm=batch_norm)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        # N x in x H x W -> N x (n1x1 + n3x3 + n5x5 + in) x H x W
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier (Szegedy et al. 2015 §5): pool -> 1x1 conv 128 -> FC 1024 + ReLU -> dropout -> FC.

    ``pool="avg5s3"`` is the paper's 5x5 average pool with stride 3 (4x4 output on the 14x14 maps of
    4a/4d, so the classifier needs a 224x224 input); ``pool="adaptive4"`` is torchvision's adaptive
    average pool to 4x4, which works at any input size but averages 4x4 windows at offsets 0, 3, 7, 10
    on a 14x14 map where the paper averages 5x5 windows at offsets 0, 3, 6, 9.
    """

    def __init__(self, in_channels: int, num_classes: int, *, dropout: float, batch_norm: bool, pool: str) -> None:
        super().__init__()
        if pool not in ("avg5s3", "adaptive4"):
            raise ValueError(f"pool must be 'avg5s3' or 'adaptive4', got {pool!r}")
        self.pool = nn.AvgPool2d(5, stride=3) if pool == "avg5s3" else nn.AdaptiveAvgPool2d(4)
        self.conv = BasicConv2d(in_channels, 128, 1, batch_norm=batch_norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(x)  # aux1: N x 512 x 4 x 4, aux2: N x 528 x 4 x 4
        x = self.conv(x)  # N x 128 x 4 x 4
        x = torch.flatten(x, 1)  # N x 2048
        x = self.dropout(self.relu(self.fc1(x)))  # N x 1024
        return self.fc2(x)  # N x num_classes
