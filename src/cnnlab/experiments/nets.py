"""Small networks the claim experiments need that are not zoo architectures.

- :class:`WideFCNet` (``dropout``): one or two convolution stages and two wide fully connected
  layers with dropout on their outputs, the layout of AlexNet's head (FC6, FC7 with dropout 0.5,
  FC8) on a small trunk, so that most weights are in FC layers that can memorise 4,000 digits.
- :class:`FilterStackNet` (``small-filters``): the same network with each stage's block either
  three stacked 3x3 convolutions or one 7x7 convolution: the same receptive field (lecture 002,
  "stack of three 3x3 conv (stride 1) layers has same effective receptive field as one 7x7").
- :class:`EncoderClassifier` (``autoencoder-pretrain``): a linear classifier on the encoder of the
  zoo's ``ae_conv`` (the same :class:`~cnnlab.models.zoo.autoencoders.ConvEncoder` class), so the
  autoencoder's encoder weights load into the classifier with ``strict=True``.
- :class:`VGGStackNet` (``vgg-filters``, ``batchnorm-more``): VGG's configuration B scaled down,
  each stage two 3x3 convolutions, or the "shallow version of B" of Simonyan & Zisserman §4.1 where
  each pair is one 5x5 convolution (the same receptive field).
- :class:`DropoutHeadNet` (``dropout-conv``, ``batchnorm-more``): one convolutional trunk with either
  a VGG/AlexNet-style head (two wide FC layers, dropout before each) or a fully convolutional head
  (a 1x1 convolution to the classes and global average pooling, dropout on the feature maps, as
  Springenberg et al.'s all-convolutional nets).
- :class:`FrozenExcept` (``transfer``): wraps a model so that only the named modules train; the
  frozen layers keep their pretrained weights *and* their batch-norm statistics.

Every network is a :class:`cnnlab.models.base.Classifier` (``forward_features``/``forward_head``,
``feature_info``), builds under ``torch.device("meta")`` and traces with ``torch.fx``; dropout is
``nn.Dropout`` (so Monte-Carlo dropout can switch those modules alone to training mode).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier, ModelOutput
from cnnlab.models.zoo.autoencoders import ConvEncoder

__all__ = [
    "WideFCConfig",
    "WideFCNet",
    "FilterStackConfig",
    "FilterStackNet",
    "BLOCKS",
    "filter_block",
    "AutoencoderConfig",
    "EncoderClassifier",
    "VGG_BLOCKS",
    "VGGStackConfig",
    "VGGStackNet",
    "DropoutHeadConfig",
    "DropoutHeadNet",
    "FrozenExcept",
    "replace_head",
]


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_ints(values: object) -> bool:
    return isinstance(values, tuple) and len(values) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def _check_size(name: str, value: object) -> tuple[int, int]:
    if not (isinstance(value, tuple) and len(value) == 2 and all(_positive_int(v) for v in value)):
        raise ConfigError(f"{name} must be (height, width) of positive integers, got {value!r}")
    return value  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# dropout: conv trunk + wide FC head
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WideFCConfig:
    in_chans: int = 1
    num_classes: int = 10
    image_size: tuple[int, int] = (28, 28)
    channels: tuple[int, ...] = (16,)  # 5x5 valid convs, each + ReLU + 2x2 max pool (one or two stages)
    fc_width: int = 1024  # FC6 and FC7 neurons
    dropout: float = 0.5  # on FC6's and FC7's outputs, as AlexNet (Krizhevsky et al. 2012 §4.2)

    def __post_init__(self) -> None:
        for field in ("in_chans", "num_classes", "fc_width"):
            if not _positive_int(getattr(self, field)):
                raise ConfigError(f"WideFCConfig.{field} must be a positive integer, got {getattr(self, field)!r}")
        if len(self.channels) not in (1, 2) or not all(_positive_int(c) for c in self.channels):
            raise ConfigError(f"WideFCConfig.channels must be one or two positive integers, got {self.channels!r}")
        _check_size("WideFCConfig.image_size", self.image_size)
        if min(self.image_size) < 6 * len(self.channels) + 4:
            raise ConfigError(f"WideFCConfig.image_size {self.image_size!r} is too small for {len(self.channels)} conv stages")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"WideFCConfig.dropout must be in [0, 1), got {self.dropout!r}")


class WideFCNet(Classifier):
    """One or two (conv5, ReLU, max pool) stages, then FC6, FC7 (both with dropout) and FC8."""

    def __init__(self, cfg: WideFCConfig) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = []
        prev, (h, w) = cfg.in_chans, cfg.image_size
        self.feature_info = []
        for i, c in enumerate(cfg.channels, start=1):
            layers += [(f"conv{i}", nn.Conv2d(prev, c, 5)), (f"relu{i}", nn.ReLU()), (f"pool{i}", nn.MaxPool2d(2))]
            prev, h, w = c, (h - 4) // 2, (w - 4) // 2  # 28 -> 24 -> 12 (-> 8 -> 4)
            self.feature_info.append(dict(module=f"features.pool{i}", num_chs=c, reduction=2**i))
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(prev * h * w, cfg.fc_width)), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(cfg.dropout)),
            ("fc7", nn.Linear(cfg.fc_width, cfg.fc_width)), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(cfg.dropout)),
            ("fc8", nn.Linear(cfg.fc_width, cfg.num_classes)),
        ]))  # fmt: skip

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x 16 x 12 x 12 at 28x28 with one stage of 16 maps

    def forward_head(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(x, 1))  # N x num_classes


# ---------------------------------------------------------------------------------------------
# small-filters: three 3x3 against one 7x7
# ---------------------------------------------------------------------------------------------

# A block of each kind: (kernel, number of convolutions). Both see 7x7 of their input:
# 1 + 3 * (3 - 1) = 7 = 1 + 1 * (7 - 1).
BLOCKS: dict[str, tuple[int, int]] = {"3x3": (3, 3), "7x7": (7, 1)}


@dataclass(frozen=True)
class FilterStackConfig:
    block: str = "3x3"  # "3x3": three stacked 3x3 convs with ReLUs; "7x7": one 7x7 conv
    in_chans: int = 1
    num_classes: int = 10
    width: int = 32  # C: every block maps C channels to C channels (the lecture's 27C^2 vs 49C^2)
    stages: int = 2  # blocks, each followed by a 2x2 max pool
    batch_norm: bool = False  # BN after every convolution of the blocks (before its ReLU)

    def __post_init__(self) -> None:
        if self.block not in BLOCKS:
            raise ConfigError(f"FilterStackConfig.block must be one of {', '.join(BLOCKS)}, got {self.block!r}")
        if not isinstance(self.batch_norm, bool):
            raise ConfigError(f"FilterStackConfig.batch_norm must be True or False, got {self.batch_norm!r}")
        for field in ("in_chans", "num_classes", "width", "stages"):
            if not _positive_int(getattr(self, field)):
                raise ConfigError(f"FilterStackConfig.{field} must be a positive integer, got {getattr(self, field)!r}")


def filter_block(kind: str, channels: int, *, batch_norm: bool = False) -> nn.Sequential:
    """``kind`` of :data:`BLOCKS` mapping ``channels`` to ``channels`` at stride 1, "same" padding."""
    kernel, count = BLOCKS[kind]
    layers: list[tuple[str, nn.Module]] = []
    for i in range(1, count + 1):
        layers.append((f"conv{i}", nn.Conv2d(channels, channels, kernel, padding=kernel // 2)))
        if batch_norm:
            layers.append((f"bn{i}", nn.BatchNorm2d(channels)))
        layers.append((f"relu{i}", nn.ReLU()))
    return nn.Sequential(OrderedDict(layers))


class FilterStackNet(Classifier):
    """stem conv3-C, pool, then ``stages`` x (block, pool), global average pool, FC."""

    def __init__(self, cfg: FilterStackConfig) -> None:
        super().__init__()
        c = cfg.width
        layers: list[tuple[str, nn.Module]] = [
            ("stem", nn.Conv2d(cfg.in_chans, c, 3, padding=1)), ("stem_relu", nn.ReLU()), ("pool0", nn.MaxPool2d(2)),
        ]  # fmt: skip
        self.feature_info = []
        for s in range(1, cfg.stages + 1):
            layers += [(f"block{s}", filter_block(cfg.block, c, batch_norm=cfg.batch_norm)), (f"pool{s}", nn.MaxPool2d(2))]
            self.feature_info.append(dict(module=f"features.block{s}", num_chs=c, reduction=2**s))
        self.features = nn.Sequential(OrderedDict(layers))
        self.fc = nn.Linear(c, cfg.num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x C x 3 x 3 at 28x28 with two stages (28 -> 14 -> 7 -> 3)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean(dim=(2, 3)))  # N x num_classes


# ---------------------------------------------------------------------------------------------
# autoencoder-pretrain
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoencoderConfig:
    in_chans: int = 1
    channels: tuple[int, ...] = (16, 32)  # one 3x3 conv + ReLU + 2x2 max pool per stage (ae_conv's encoder)
    num_classes: int = 10  # of the classifier on the encoder

    def __post_init__(self) -> None:
        if not _positive_int(self.in_chans) or not _positive_int(self.num_classes):
            raise ConfigError(f"AutoencoderConfig: in_chans and num_classes must be positive integers, "
                              f"got {self.in_chans!r}, {self.num_classes!r}")  # fmt: skip
        if not self.channels or not all(_positive_int(c) for c in self.channels):
            raise ConfigError(f"AutoencoderConfig.channels must be positive integers, got {self.channels!r}")


class EncoderClassifier(Classifier):
    """The autoencoder's encoder followed by a linear classifier on its flattened code."""

    def __init__(self, cfg: AutoencoderConfig, *, image_size: tuple[int, int]) -> None:
        super().__init__()
        _check_size("image_size", image_size)
        self.encoder = ConvEncoder(cfg.in_chans, cfg.channels)
        k = len(cfg.channels)
        h, w = (s // 2**k for s in image_size)
        if h < 1 or w < 1:
            raise ConfigError(f"image_size {image_size} is too small for {k} pooling stages")
        self.fc = nn.Linear(cfg.channels[-1] * h * w, cfg.num_classes)
        self.feature_info = [
            dict(module=f"encoder.pool{i}", num_chs=c, reduction=2**i) for i, c in enumerate(cfg.channels, start=1)
        ]

    def forward_features(self, x: Tensor) -> Tensor:
        return self.encoder(x)  # N x C_k x 7 x 7 at 28x28 with two stages

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(x, 1))  # N x num_classes


# ---------------------------------------------------------------------------------------------
# vgg-filters: VGG-B's pairs of 3x3 against single 5x5
# ---------------------------------------------------------------------------------------------

# kind -> (kernel, convolutions per stage): VGG-B's pairs of 3x3 against §4.1's single 5x5.
VGG_BLOCKS: dict[str, tuple[int, int]] = {"3x3x2": (3, 2), "5x5": (5, 1)}


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


def _scale_weights(net: nn.Module, gain: float) -> None:
    """Multiply every conv/linear weight by ``gain`` (an initialisation ``gain`` times PyTorch's)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(gain)


# ---------------------------------------------------------------------------------------------
# dropout-conv: dropout in an FC head or on the feature maps
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# transfer: freezing and new heads
# ---------------------------------------------------------------------------------------------


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class FrozenExcept(Classifier):
    """``model`` with every parameter frozen except those of the modules named in ``trainable``.

    Frozen modules also stay in eval mode when the wrapper is put in training mode, so their batch
    normalisation keeps the pretrained running statistics and their dropout stays off: "fine-tune
    the last layers" changes nothing below them.
    """

    def __init__(self, model: nn.Module, trainable: Sequence[str]) -> None:
        super().__init__()
        names = dict(model.named_modules())
        unknown = [t for t in trainable if t not in names]
        if unknown:
            raise ConfigError(f"{type(model).__name__} has no module {unknown[0]!r} to fine-tune")
        self.model = model
        self.trainable = tuple(trainable)
        for name, p in model.named_parameters():
            p.requires_grad_(_under(name, self.trainable))
        self._frozen = [m for name, m in model.named_modules() if name and not _under(name, self.trainable)
                        and not any(_under(t, [name]) for t in self.trainable)]  # fmt: skip
        self.feature_info = [dict(info, module="model." + info["module"]) for info in getattr(model, "feature_info", [])]

    def train(self, mode: bool = True) -> FrozenExcept:
        super().train(mode)
        for m in self._frozen:
            m.eval()
        return self

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.model.forward_head(x)

    def forward_train(self, x: Tensor) -> ModelOutput:
        return self.model.forward_train(x)


def replace_head(model: nn.Module, name: str, num_classes: int) -> nn.Module:
    """Replace the ``nn.Linear`` called ``name`` by a new one with ``num_classes`` outputs (freshly
    initialised, PyTorch's default); returns ``model``."""
    old = model.get_submodule(name)
    if not isinstance(old, nn.Linear):
        raise ConfigError(f"{type(model).__name__}.{name} is a {type(old).__name__}, not the linear head")
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, nn.Linear(old.in_features, num_classes))
    return model
