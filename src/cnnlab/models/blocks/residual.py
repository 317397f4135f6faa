"""Residual blocks: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.

Every block computes the paper's Eq. (1)/(2), ``y = relu(F(x) + shortcut(x))``, and exposes the two
terms separately so that analyses and lesion studies (Veit et al. 2016) can take a block apart:

- ``block.residual(x)``: F(x), the branch before the addition (including an SE gate, if any);
- ``block.shortcut(x)``: the identity, option A's zero-padded identity, or the projection ``W_s x``;
  for a *plain* block (no shortcut, He et al. Fig. 3 middle) it is the zero map, so
  ``residual(x) + shortcut(x)`` is still the pre-activation output;
- ``block.has_shortcut``: False for plain blocks;
- ``block.downsampling``: True when the output's shape differs from the input's.

The shortcut options are those of He et al. 2016 §3.3 and Table 3:

- ``"A"``: identity; where the shape changes, subsample with the block's stride and pad the new
  channels with zeros (parameter-free);
- ``"B"``: identity; a 1x1 projection (conv + norm) only where the shape changes;
- ``"C"``: a projection in every block;
- ``"none"``: no shortcut at all (the plain nets).

Parameter and module names follow torchvision's ``BasicBlock``/``Bottleneck`` (``conv1``, ``bn1``,
..., ``downsample.0``/``downsample.1`` for a projection), so torchvision state dicts load as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SHORTCUT_OPTIONS",
    "BasicBlock",
    "Bottleneck",
    "ZeroPadShortcut",
    "make_shortcut",
    "conv1x1",
    "conv3x3",
]

SHORTCUT_OPTIONS = ("A", "B", "C", "none")

NormLayer = Callable[[int], nn.Module]
AttnLayer = Callable[[int], nn.Module]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (the norm layer after it has one)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A (He et al. 2016 §3.3): identity, subsampled by ``stride``, extra channels zero.

    "The shortcut still performs identity mapping, with extra zero entries padded for increasing
    dimensions [...] when the shortcuts go across feature maps of two sizes, they are performed with
    a stride of 2." The paper does not say where the zeros go; they are appended after the input's
    channels here (some re-implementations pad both sides; the parameter count is the same).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A cannot reduce channels ({in_channels} -> {out_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:  # a constant of the module, so torch.fx traces one branch
            x = x[:, :, :: self.stride, :: self.stride]  # N x C_in x ceil(H/s) x ceil(W/s)
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))  # N x C_out x ...

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def make_shortcut(
    option: str, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
) -> nn.Module | None:
    """The shortcut module of one block (``None`` = identity, or no shortcut for option "none")."""
    reshapes = stride != 1 or in_channels != out_channels
    if option == "none" or (option in ("A", "B") and not reshapes):
        return None
    if option == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if option in ("B", "C"):
        # W_s of Eq. (2): a strided 1x1 convolution and its norm; torchvision's `downsample`.
        return nn.Sequential(conv1x1(in_channels, out_channels, stride), norm_layer(out_channels))
    raise ValueError(f"shortcut must be one of {SHORTCUT_OPTIONS}, got {option!r}")


class _ResidualBlock(nn.Module):
    """What basic and bottleneck blocks share: the shortcut, the flags and ``forward``.

    Subclasses build their branch, define ``residual(x)`` and name their last norm layer.
    """

    expansion: int = 1
    last_norm_name: str = "bn2"
    downsample: nn.Module | None
    se: nn.Module | None

    def _init_shortcut(
        self, option: str, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
    ) -> None:
        if option not in SHORTCUT_OPTIONS:
            raise ValueError(f"shortcut must be one of {SHORTCUT_OPTIONS}, got {option!r}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.shortcut_option = option
        self.has_shortcut = option != "none"
        self.downsampling = stride != 1 or in_channels != out_channels
        # torchvision's name for the projection, kept so its state dicts load unchanged; it also
        # holds option A's (parameter-free) padding module.
        self.downsample = make_shortcut(option, in_channels, out_channels, stride, norm_layer)
        # Applied after the addition; a separate module from the branch's ReLUs (torchvision shares
        # one in-place ReLU) so that hooks see each activation, and not in place so that a hook's
        # saved tensor is never overwritten by the next layer.
        self.relu = nn.ReLU()

    def shortcut(self, x: Tensor) -> Tensor:
        """The shortcut term of Eq. (1)/(2); zeros shaped like the output for a plain block."""
        if not self.has_shortcut:
            n, _, h, w = x.shape
            s = self.stride  # every conv here maps H to (H - 1) // s + 1 (3x3 pad 1, or 1x1 pad 0)
            return x.new_zeros(n, self.out_channels, (h - 1) // s + 1, (w - 1) // s + 1)
        if self.downsample is None:
            return x  # identity (Eq. 1)
        return self.downsample(x)  # option A's zero-padded identity, or the projection W_s x (Eq. 2)

    def forward(self, x: Tensor) -> Tensor:
        out = self.residual(x)  # F(x): N x C_out x H/s x W/s
        if self.has_shortcut:  # fixed at construction: a plain block adds nothing
            out = out + self.shortcut(x)  # F(x) + x  or  F(x) + W_s x
        return self.relu(out)

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the branch starts at 0 (Goyal et al. 2017, §5.1)."""
        weight = getattr(getattr(self, self.last_norm_name), "weight", None)
        if weight is not None:  # a norm layer without affine parameters has nothing to zero
            nn.init.zeros_(weight)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions (He et al. 2016, Fig. 2 / Fig. 5 left): ResNet-18/34 and the CIFAR nets.

    ``planes`` is the block's width; the output has ``planes * expansion`` (= planes) channels.
    ``attn_layer(channels)`` (e.g. squeeze-and-excitation) gates F(x) before the addition.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        shortcut: str = "B",
        groups: int = 1,
        base_width: int = 64,
        stride_in_1x1: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        attn_layer: AttnLayer | None = None,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock has no groups or bottleneck width (groups=1, base_width=64)")
        if stride_in_1x1:
            raise ValueError("BasicBlock has no 1x1 convolution: stride_in_1x1 applies to bottlenecks")
        out_channels = planes * self.expansion
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(planes, out_channels)
        self.bn2 = norm_layer(out_channels)
        self.se = attn_layer(out_channels) if attn_layer is not None else None
        self._init_shortcut(shortcut, in_channels, out_channels, stride, norm_layer)

    def residual(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))  # N x planes x H/s x W/s
        out = self.bn2(self.conv2(out))  # N x planes x H/s x W/s
        if self.se is not None:
            out = self.se(out)  # SE recalibrates F(x) before the addition (Hu et al. Fig. 3)
        return out


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand (He et al. 2016, Fig. 5 right): ResNet-50/101/152, ResNeXt.

    The 3x3 convolution has ``planes * base_width / 64 * groups`` channels in ``groups`` groups:
    ``groups=32, base_width=4`` is ResNeXt's 32x4d (Xie et al. 2017, Fig. 3c, the grouped form of
    the aggregated transformation). The output has ``planes * 4`` channels.
    """

    expansion = 4
    last_norm_name = "bn3"

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        stride: int = 1,
        shortcut: str = "B",
        groups: int = 1,
        base_width: int = 64,
        stride_in_1x1: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        attn_layer: AttnLayer | None = None,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_channels = planes * self.expansion
        # Departure (torchvision, "ResNet v1.5"): the stride sits on the 3x3 convolution. He et al.
        # 2016 put it on the first 1x1 ("downsampling is performed by conv3_1, conv4_1, and conv5_1
        # with a stride of 2"); stride_in_1x1=True restores that. Xie et al. 2017 (ResNeXt) stride
        # the 3x3, as here.
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_channels, width, s1)
        self.bn1 = norm_layer(width)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(width, width, s3, groups)
        self.bn2 = norm_layer(width)
        self.relu2 = nn.ReLU()
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = norm_layer(out_channels)
        self.se = attn_layer(out_channels) if attn_layer is not None else None
        self._init_shortcut(shortcut, in_channels, out_channels, stride, norm_layer)

    def residual(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))  # N x width x H x W (H/s with stride_in_1x1)
        out = self.relu2(self.bn2(self.conv2(out)))  # N x width x H/s x W/s
        out = self.bn3(self.conv3(out))  # N x 4 planes x H/s x W/s
        if self.se is not None:
            out = self.se(out)  # SE recalibrates F(x) before the addition (Hu et al. Fig. 3)
        return out
