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
    "FrozenExcept",
    "replace_head",
]


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


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
