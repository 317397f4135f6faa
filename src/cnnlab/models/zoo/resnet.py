"""Residual networks and their plain counterparts: He, Zhang, Ren & Sun, "Deep Residual Learning for
Image Recognition", CVPR 2016.

ImageNet (Table 1)::

    conv1 7x7, 64, /2 -> 3x3 max pool, /2 -> conv2_x .. conv5_x (64, 128, 256, 512 filters,
    /2 at the first block of conv3_x .. conv5_x) -> global average pool -> 1000-d fc

CIFAR-10 (§4.2)::

    conv 3x3, 16 on 32x32 -> 3 stages of n basic blocks (16, 32, 64 filters on 32x32, 16x16, 8x8
    maps; /2 at the first block of stages 2 and 3) -> global average pool -> 10-d fc; 6n+2 layers,
    option-A (zero-padding) shortcuts

One generic constructor, :class:`ResNet`, builds every residual family of the zoo (ResNeXt and
SE-ResNet too, in ``resnext.py`` and ``senet.py``) from a :class:`ResNetConfig`. The paper's tables
are the data below; the named builders are one line each. The stages are ``layer1``, ``layer2``, ...
for both the ImageNet and the CIFAR nets (torchvision's names, so its state dicts load), and the
blocks are addressed as ``layer2.0`` and so on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier
from cnnlab.models.blocks.residual import SHORTCUT_OPTIONS, BasicBlock, Bottleneck
from cnnlab.models.blocks.se import SqueezeExcitation
from cnnlab.models.registry import build_config, register_model

__all__ = [
    "ResNetConfig",
    "ResNet",
    "IMAGENET_TABLE1",
    "CIFAR_TABLE6",
    "build_resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "plain18",
    "plain34",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet1202",
    "plain20",
    "plain32",
    "plain44",
    "plain56",
    "plain110",
]

# He et al. 2016, Table 1: block type and blocks per stage (conv2_x, conv3_x, conv4_x, conv5_x).
IMAGENET_TABLE1: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)

# He et al. 2016, §4.2 and Table 6: depth 6n+2 -> n blocks per stage, and the parameter counts the
# paper reports (tests check the models against them).
CIFAR_TABLE6: dict[int, tuple[int, str]] = {
    20: (3, "0.27M"),
    32: (5, "0.46M"),
    44: (7, "0.66M"),
    56: (9, "0.85M"),
    110: (18, "1.7M"),
    1202: (200, "19.4M"),
}
CIFAR_WIDTHS = (16, 32, 64)

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
_STEMS = ("imagenet", "cifar")


def _positive_ints(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    )


@dataclass(frozen=True)
class ResNetConfig:
    """Everything that defines a residual (or plain) network; validated at construction."""

    layers: tuple[int, ...]  # blocks per stage: (2, 2, 2, 2) is ResNet-18 (Table 1), (n, n, n) CIFAR
    block: str = "basic"  # "basic" (two 3x3) or "bottleneck" (1x1, 3x3, 1x1 with expansion 4)
    widths: tuple[int, ...] = IMAGENET_WIDTHS  # "planes" per stage; outputs are widths * expansion
    stem: str = "imagenet"  # "imagenet": 7x7/2 conv + 3x3/2 max pool; "cifar": one 3x3 conv
    shortcut: str = "B"  # "A", "B", "C" (§3.3, Table 3) or "none" (plain net)
    stride_in_1x1: bool = False  # bottlenecks: stride on the first 1x1 (paper) or on the 3x3 (torchvision)
    groups: int = 1  # ResNeXt cardinality (bottlenecks only)
    width_per_group: int = 64  # ResNeXt bottleneck width d; 64 with groups=1 is plain ResNet
    se_reduction: int | None = None  # squeeze-and-excitation ratio r (Hu et al. 2018: 16); None = no SE
    zero_init_residual: bool = False  # zero each branch's last norm scale (Goyal et al. 2017)

    def __post_init__(self) -> None:
        # Accept lists (create_model(..., layers=[1, 1, 1, 1])) but store tuples: the config is frozen.
        for name in ("layers", "widths"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if not _positive_ints(self.layers):
            raise ConfigError(f"layers must be a non-empty tuple of block counts >= 1, got {self.layers!r}")
        if not _positive_ints(self.widths) or len(self.widths) != len(self.layers):
            raise ConfigError(
                f"widths must be {len(self.layers)} positive integers (one per stage), got {self.widths!r}"
            )
        if self.block not in _BLOCKS:
            raise ConfigError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
        if self.stem not in _STEMS:
            raise ConfigError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
        if self.shortcut not in SHORTCUT_OPTIONS:
            raise ConfigError(f"shortcut must be 'A', 'B', 'C' or 'none' (plain), got {self.shortcut!r}")
        for name in ("stride_in_1x1", "zero_init_residual"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("groups", "width_per_group"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.block == "basic":
            if self.stride_in_1x1:
                raise ConfigError("stride_in_1x1 applies to bottleneck blocks; this net has basic blocks")
            if self.groups != 1 or self.width_per_group != 64:
                raise ConfigError(
                    "groups and width_per_group apply to bottleneck blocks only "
                    f"(got groups={self.groups}, width_per_group={self.width_per_group})"
                )
        r = self.se_reduction
        if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r < 1):
            raise ConfigError(f"se_reduction must be None or a positive integer, got {r!r}")


class ResNet(Classifier):
    """The generic residual network: a stem, stages of blocks, global average pooling, one fc."""

    def __init__(self, cfg: ResNetConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        block = _BLOCKS[cfg.block]
        norm_layer = nn.BatchNorm2d
        attn_layer = None
        if cfg.se_reduction is not None:
            attn_layer = partial(SqueezeExcitation, reduction=cfg.se_reduction)

        # Stem. ImageNet: "7x7 conv, 64, /2" then "3x3 max pool, /2" (Table 1); CIFAR: "the first
        # layer is 3x3 convolutions" with 16 filters (§4.2), no pooling.
        if cfg.stem == "imagenet":
            stem_width, reduction = 64, 4
            self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module | None = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            stem_width, reduction = cfg.widths[0], 1
            self.conv1 = nn.Conv2d(in_chans, stem_width, 3, stride=1, padding=1, bias=False)
            self.maxpool = None
        self.bn1 = norm_layer(stem_width)
        self.relu = nn.ReLU()

        # Stages: the first block of every stage but the first halves the map and the widths grow
        # ("if the feature map size is halved, the number of filters is doubled", §3.3).
        in_channels = stem_width
        self.stage_names: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(cfg.layers)))
        for i, (name, depth, planes) in enumerate(zip(self.stage_names, cfg.layers, cfg.widths)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            blocks = []
            for j in range(depth):
                blocks.append(
                    block(
                        in_channels,
                        planes,
                        stride=stride if j == 0 else 1,
                        shortcut=cfg.shortcut,
                        groups=cfg.groups,
                        base_width=cfg.width_per_group,
                        stride_in_1x1=cfg.stride_in_1x1,
                        norm_layer=norm_layer,
                        attn_layer=attn_layer,
                    )
                )
                in_channels = planes * block.expansion
            self.add_module(name, nn.Sequential(*blocks))
            self.feature_info.append(dict(module=name, num_chs=in_channels, reduction=reduction))

        self.num_features = in_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He, Zhang, Ren & Sun 2015, "Delving Deep into Rectifiers", §2.2: zero-mean Gaussian with
        # std sqrt(2 / n_l), the initialisation He et al. 2016 use ("we initialize the weights as in
        # [13]"). n_l is taken as the fan-out (k^2 x output channels, the paper's backward-propagation
        # case, Eq. 14), as torchvision does; the paper shows either fan suffices. Norm layers start
        # as the identity; the fc keeps PyTorch's default, as torchvision.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:  # only the SE gate's 1x1 convolutions have biases
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.cfg.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last()

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """Every residual block with its name (``"layer2.0"``, ...), in forward order."""
        return [(f"{stage}.{i}", b) for stage in self.stage_names for i, b in enumerate(getattr(self, stage))]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # ImageNet N x 64 x 112 x 112; CIFAR N x 16 x 32 x 32
        if self.maxpool is not None:  # fixed at construction (ImageNet stem only)
            x = self.maxpool(x)  # N x 64 x 56 x 56
        for name in self.stage_names:
            x = getattr(self, name)(x)
        # ImageNet at 224 (e = expansion, 1 or 4): layer1 N x 64e x 56 x 56, layer2 N x 128e x 28 x 28,
        #   layer3 N x 256e x 14 x 14, layer4 N x 512e x 7 x 7.
        # CIFAR at 32: layer1 N x 16 x 32 x 32, layer2 N x 32 x 16 x 16, layer3 N x 64 x 8 x 8.
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x C
        return self.fc(x)  # N x num_classes


def build_resnet(
    model: str, config: dict[str, Any], *, num_classes: int, in_chans: int, **defaults: Any
) -> ResNet:
    """Build ``model`` from the builder's ``defaults`` overridden by the user's ``config``."""
    cfg = build_config(ResNetConfig, model, config, **defaults)
    return ResNet(cfg, num_classes=num_classes, in_chans=in_chans)


def _imagenet(
    model: str, depth: int, config: dict[str, Any], num_classes: int, in_chans: int, **defaults: Any
) -> ResNet:
    """A Table 1 net; ``defaults`` (e.g. ``shortcut="none"``) complete the table's row."""
    block, layers = IMAGENET_TABLE1[depth]
    defaults = dict(block=block, layers=layers) | defaults
    return build_resnet(model, config, num_classes=num_classes, in_chans=in_chans, **defaults)


def _cifar(
    model: str, depth: int, config: dict[str, Any], num_classes: int, in_chans: int, **defaults: Any
) -> ResNet:
    """A §4.2 net of depth 6n+2: basic blocks, 16/32/64 filters, 3x3 stem, option-A shortcuts."""
    n = CIFAR_TABLE6[depth][0]
    table = dict(block="basic", layers=(n, n, n), widths=CIFAR_WIDTHS, stem="cifar", shortcut="A")
    defaults = table | defaults
    return build_resnet(model, config, num_classes=num_classes, in_chans=in_chans, **defaults)


_PAPER = "He et al., 2016"
_IMAGENET = dict(paper=_PAPER, input_size=(3, 224, 224), num_classes=1000, recipe="resnet_imagenet")
_CIFAR = dict(paper=_PAPER, input_size=(3, 32, 32), num_classes=10, recipe="resnet_cifar")
# §4.2: for 110 layers "the initial learning rate of 0.1 is slightly too large to start converging",
# so 0.01 warms up the first 400 updates; ResNet-1202 "is trained as described above".
_CIFAR_DEEP = {**_CIFAR, "recipe": "resnet110_cifar"}

_BASIC_DEPARTURES = (
    "option-B shortcuts as torchvision (the paper's Table 2 ResNet-18/34 use option A: shortcut='A')"
)
_BOTTLENECK_DEPARTURES = (
    "stride on the bottleneck's 3x3 conv as torchvision (v1.5); the paper strides the first 1x1 "
    "(stride_in_1x1=True)"
)
_PLAIN_DEPARTURES = "none: the plain counterpart of Table 2 / Fig. 3 (middle), same layers, no shortcuts"
_CIFAR_DEPARTURES = "none (§4.2); option A appends the zero channels after the identity's"


# ---------------------------------------------------------------------------------------- ImageNet


@register_model(family="resnet", torchvision="resnet18", departures=_BASIC_DEPARTURES, **_IMAGENET)
def resnet18(*, num_classes: int = 1000, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-18 (Table 1), torchvision-compatible: 11.7M parameters, 1.8 GMACs at 224x224."""
    return _imagenet("resnet18", 18, config, num_classes, in_chans)


@register_model(family="resnet", torchvision="resnet34", departures=_BASIC_DEPARTURES, **_IMAGENET)
def resnet34(*, num_classes: int = 1000, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-34 (Table 1), torchvision-compatible: 21.8M parameters, 3.6 GMACs."""
    return _imagenet("resnet34", 34, config, num_classes, in_chans)


@register_model(family="resnet", torchvision="resnet50", departures=_BOTTLENECK_DEPARTURES, **_IMAGENET)
def resnet50(*, num_classes: int = 1000, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-50 (Table 1), torchvision-compatible: 25.6M parameters, 4.1 GMACs (3.8 as in the paper)."""
    return _imagenet("resnet50", 50, config, num_classes, in_chans)


@register_model(family="resnet", torchvision="resnet101", departures=_BOTTLENECK_DEPARTURES, **_IMAGENET)
def resnet101(*, num_classes: int = 1000, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-101 (Table 1), torchvision-compatible: 44.5M parameters, 7.8 GMACs."""
    return _imagenet("resnet101", 101, config, num_classes, in_chans)


@register_model(family="resnet", torchvision="resnet152", departures=_BOTTLENECK_DEPARTURES, **_IMAGENET)
def resnet152(*, num_classes: int = 1000, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-152 (Table 1), torchvision-compatible: 60.2M parameters, 11.5 GMACs."""
    return _imagenet("resnet152", 152, config, num_classes, in_chans)


@register_model(family="plain", departures=_PLAIN_DEPARTURES, **_IMAGENET)
def plain18(*, num_classes: int = 1000, in_chans: int = 3, **config: Any) -> ResNet:
    """Plain-18 (Table 2): ResNet-18's layers without shortcuts (as many parameters as option A)."""
    return _imagenet("plain18", 18, config, num_classes, in_chans, shortcut="none")


@register_model(family="plain", departures=_PLAIN_DEPARTURES, **_IMAGENET)
def plain34(*, num_classes: int = 1000, in_chans: int = 3, **config: Any) -> ResNet:
    """Plain-34 (Table 2, Fig. 3 middle): ResNet-34's layers without shortcuts."""
    return _imagenet("plain34", 34, config, num_classes, in_chans, shortcut="none")


# ---------------------------------------------------------------------------------------- CIFAR-10


@register_model(family="resnet_cifar", departures=_CIFAR_DEPARTURES, **_CIFAR)
def resnet20(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-20 for CIFAR-10 (§4.2, n = 3): 0.27M parameters."""
    return _cifar("resnet20", 20, config, num_classes, in_chans)


@register_model(family="resnet_cifar", departures=_CIFAR_DEPARTURES, **_CIFAR)
def resnet32(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-32 for CIFAR-10 (§4.2, n = 5): 0.46M parameters."""
    return _cifar("resnet32", 32, config, num_classes, in_chans)


@register_model(family="resnet_cifar", departures=_CIFAR_DEPARTURES, **_CIFAR)
def resnet44(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-44 for CIFAR-10 (§4.2, n = 7): 0.66M parameters."""
    return _cifar("resnet44", 44, config, num_classes, in_chans)


@register_model(family="resnet_cifar", departures=_CIFAR_DEPARTURES, **_CIFAR)
def resnet56(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-56 for CIFAR-10 (§4.2, n = 9): 0.85M parameters."""
    return _cifar("resnet56", 56, config, num_classes, in_chans)


@register_model(family="resnet_cifar", departures=_CIFAR_DEPARTURES, **_CIFAR_DEEP)
def resnet110(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-110 for CIFAR-10 (§4.2, n = 18): 1.7M parameters."""
    return _cifar("resnet110", 110, config, num_classes, in_chans)


@register_model(family="resnet_cifar", departures=_CIFAR_DEPARTURES, **_CIFAR_DEEP)
def resnet1202(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """ResNet-1202 for CIFAR-10 (§4.2, n = 200): 19.4M parameters (the paper's overfitting example)."""
    return _cifar("resnet1202", 1202, config, num_classes, in_chans)


@register_model(family="plain", departures=_PLAIN_DEPARTURES, **_CIFAR)
def plain20(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """Plain-20 for CIFAR-10 (§4.2, Fig. 6 left): ResNet-20 without shortcuts."""
    return _cifar("plain20", 20, config, num_classes, in_chans, shortcut="none")


@register_model(family="plain", departures=_PLAIN_DEPARTURES, **_CIFAR)
def plain32(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """Plain-32 for CIFAR-10 (§4.2, Fig. 6 left): ResNet-32 without shortcuts."""
    return _cifar("plain32", 32, config, num_classes, in_chans, shortcut="none")


@register_model(family="plain", departures=_PLAIN_DEPARTURES, **_CIFAR)
def plain44(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """Plain-44 for CIFAR-10 (§4.2, Fig. 6 left): ResNet-44 without shortcuts."""
    return _cifar("plain44", 44, config, num_classes, in_chans, shortcut="none")


@register_model(family="plain", departures=_PLAIN_DEPARTURES, **_CIFAR)
def plain56(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """Plain-56 for CIFAR-10 (§4.2, Fig. 6 left): ResNet-56 without shortcuts."""
    return _cifar("plain56", 56, config, num_classes, in_chans, shortcut="none")


@register_model(
    family="plain",
    departures="not in the paper (Fig. 6 shows plain nets up to 56 layers): ResNet-110 without shortcuts",
    **_CIFAR_DEEP,
)
def plain110(*, num_classes: int = 10, in_chans: int = 3, **config: Any) -> ResNet:
    """Plain-110 for CIFAR-10: ResNet-110 without shortcuts, extending Fig. 6 (left) past plain-56."""
    return _cifar("plain110", 110, config, num_classes, in_chans, shortcut="none")
