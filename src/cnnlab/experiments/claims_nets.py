"""Small networks of the claim experiments, as configs (tables) and one class each.

- :class:`VGGStackNet` (``vgg-filters``): VGG's configuration B scaled down, each stage two 3x3
  convolutions, or the "shallow version of B" of Simonyan & Zisserman §4.1 where each pair is one
  5x5 convolution (the same receptive field).
- :class:`DropoutHeadNet` (``dropout-conv``): one convolutional trunk with either a VGG/AlexNet-style
  head (two wide FC layers, dropout before each) or a fully convolutional head (a 1x1 convolution to
  the classes and global average pooling, dropout on the feature maps, as Springenberg et al.'s
  all-convolutional nets).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier

__all__ = ["VGG_BLOCKS", "VGGStackConfig", "VGGStackNet", "DropoutHeadConfig", "DropoutHeadNet", "rescale_center"]

# kind -> (kernel, convolutions per stage): VGG-B's pairs of 3x3 against §4.1's single 5x5.
VGG_BLOCKS: dict[str, tuple[int, int]] = {"3x3x2": (3, 2), "5x5": (5, 1)}


def _positive_ints(values: object) -> bool:
    return isinstance(values, tuple) and len(values) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


@dataclass(frozen=True)
class VGGStackConfig:
    block: str = "3x3x2"
    in_chans: int = 1
    num_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 64)  # one stage per width, each followed by a 2x2 max pool
    batch_norm: bool = True
    bn_after_relu: bool = False  # conv-relu-bn instead of Ioffe & Szegedy's conv-bn-relu
    init_gain: float = 1.0  # every conv/linear weight scaled by this after PyTorch's default init

    def __post_init__(self) -> None:
        if not isinstance(self.init_gain, (int, float)) or isinstance(self.init_gain, bool) or not self.init_gain > 0:
            raise ConfigError(f"VGGStackConfig.init_gain must be a positive number, got {self.init_gain!r}")
        if self.block not in VGG_BLOCKS:
            raise ConfigError(f"VGGStackConfig.block must be one of {', '.join(VGG_BLOCKS)}, got {self.block!r}")
        if not _positive_ints(self.widths):
            raise ConfigError(f"VGGStackConfig.widths must be a tuple of positive integers, got {self.widths!r}")


class VGGStackNet(Classifier):
    """``len(widths)`` stages of (conv [bn] relu) x count + pool, global average pool, FC."""

    def __init__(self, cfg: VGGStackConfig) -> None:
        super().__init__()
        kernel, count = VGG_BLOCKS[cfg.block]
        layers: list[tuple[str, nn.Module]] = []
        c_in = cfg.in_chans
        for s, c in enumerate(cfg.widths, start=1):
            for i in range(1, count + 1):
                layers.append((f"conv{s}_{i}", nn.Conv2d(c_in, c, kernel, padding=kernel // 2)))
                bn_relu = [(f"bn{s}_{i}", nn.BatchNorm2d(c))] if cfg.batch_norm else []
                relu = [(f"relu{s}_{i}", nn.ReLU(inplace=True))]
                layers += relu + bn_relu if cfg.bn_after_relu else bn_relu + relu
                c_in = c
            layers.append((f"pool{s}", nn.MaxPool2d(2)))
            self.feature_info.append(dict(module=f"features.pool{s}", num_chs=c, reduction=2**s))
        self.features = nn.Sequential(OrderedDict(layers))
        self.fc = nn.Linear(c_in, cfg.num_classes)
        if cfg.init_gain != 1.0:
            _scale_weights(self, cfg.init_gain)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x widths[-1] x H/2^S x W/2^S

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean(dim=(2, 3)))  # N x num_classes


@dataclass(frozen=True)
class DropoutHeadConfig:
    head: str = "fc"  # "fc": two wide FC layers; "conv": 1x1 convolution + global average pooling
    dropout: float = 0.0  # p, where the head puts it (0: none)
    in_chans: int = 1
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64)  # trunk: per stage conv3 [bn] relu + pool
    fc_width: int = 512  # the FC head's hidden layers
    conv_width: int = 128  # the conv head's 3x3 layer
    input_hw: int = 16  # image side, which sizes the FC head (no lazy layers)
    batch_norm: bool = False  # BN after every trunk convolution and FC hidden layer (before its ReLU)

    def __post_init__(self) -> None:
        if self.head not in ("fc", "conv"):
            raise ConfigError(f"DropoutHeadConfig.head must be 'fc' or 'conv', got {self.head!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"DropoutHeadConfig.dropout must be a probability in [0, 1), got {self.dropout!r}")
        if not isinstance(self.input_hw, int) or self.input_hw < 2 ** len(self.widths):
            raise ConfigError(f"DropoutHeadConfig.input_hw must be at least {2 ** len(self.widths)}, got {self.input_hw!r}")
        if not _positive_ints(self.widths):
            raise ConfigError(f"DropoutHeadConfig.widths must be a tuple of positive integers, got {self.widths!r}")


class DropoutHeadNet(Classifier):
    """A conv trunk and one of two heads; ``dropout`` goes where each kind of net has it:
    before each FC layer (AlexNet, VGG), or after each pooled stage (all-convolutional nets)."""

    def __init__(self, cfg: DropoutHeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[tuple[str, nn.Module]] = []
        c_in = cfg.in_chans
        conv_drop = cfg.dropout if cfg.head == "conv" else 0.0
        for s, c in enumerate(cfg.widths, start=1):
            layers += [(f"conv{s}", nn.Conv2d(c_in, c, 3, padding=1)),
                       *([(f"bn{s}", nn.BatchNorm2d(c))] if cfg.batch_norm else []),
                       (f"relu{s}", nn.ReLU(inplace=True)), (f"pool{s}", nn.MaxPool2d(2))]  # fmt: skip
            if conv_drop:
                layers.append((f"drop{s}", nn.Dropout(conv_drop)))
            self.feature_info.append(dict(module=f"features.pool{s}", num_chs=c, reduction=2**s))
            c_in = c
        self.features = nn.Sequential(OrderedDict(layers))
        p = cfg.dropout
        if cfg.head == "fc":
            spatial = cfg.input_hw // 2 ** len(cfg.widths)
            self.head = nn.Sequential(OrderedDict([
                ("flatten", nn.Flatten()),
                *([("drop6", nn.Dropout(p))] if p else []),
                ("fc6", nn.Linear(c_in * spatial * spatial, cfg.fc_width)),
                *([("bn6", nn.BatchNorm1d(cfg.fc_width))] if cfg.batch_norm else []), ("relu6", nn.ReLU(inplace=True)),
                *([("drop7", nn.Dropout(p))] if p else []),
                ("fc7", nn.Linear(cfg.fc_width, cfg.fc_width)),
                *([("bn7", nn.BatchNorm1d(cfg.fc_width))] if cfg.batch_norm else []), ("relu7", nn.ReLU(inplace=True)),
                ("fc8", nn.Linear(cfg.fc_width, cfg.num_classes)),
            ]))  # fmt: skip
        else:
            self.head = nn.Sequential(OrderedDict([
                ("conv6", nn.Conv2d(c_in, cfg.conv_width, 3, padding=1)), ("relu6", nn.ReLU(inplace=True)),
                *([("drop6", nn.Dropout(p))] if p else []),
                ("conv7", nn.Conv2d(cfg.conv_width, cfg.num_classes, 1)),
            ]))  # fmt: skip

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x widths[-1] x H/2^S x W/2^S

    def forward_head(self, x: Tensor) -> Tensor:
        out = self.head(x)
        return out if self.cfg.head == "fc" else out.mean(dim=(2, 3))  # N x num_classes


def _scale_weights(net: nn.Module, gain: float) -> None:
    """Multiply every conv/linear weight by ``gain`` (an initialisation ``gain`` times PyTorch's)."""
    import torch

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(gain)


def rescale_center(x: Tensor, factor: float) -> Tensor:
    """Each image magnified (factor > 1) or shrunk (< 1) about its centre, same size out; shrunk
    images are padded with the border value 0 of normalised data's mean."""
    n, c, h, w = x.shape
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=factor < 1)
    if factor >= 1:
        top, left = (size[0] - h) // 2, (size[1] - w) // 2
        return y[:, :, top : top + h, left : left + w].contiguous()
    pad_h, pad_w = h - size[0], w - size[1]
    return F.pad(y, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
