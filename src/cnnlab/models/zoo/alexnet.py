"""AlexNet and ZFNet.

- ``alexnet_2012``: Krizhevsky, Sutskever & Hinton, "ImageNet classification with deep convolutional
  neural networks", NIPS 2012, laid out as lecture 002's table (227x227x3 input)::

      [55x55x96]   CONV1 96 11x11/4 pad 0      [13x13x384] CONV3 384 3x3/1 pad 1 (across towers)
      [27x27x96]   MAX POOL1 3x3/2             [13x13x384] CONV4 384 3x3/1 pad 1 (2 towers)
      [27x27x96]   NORM1                       [13x13x256] CONV5 256 3x3/1 pad 1 (2 towers)
      [27x27x256]  CONV2 256 5x5/1 pad 2 (2 towers)   [6x6x256] MAX POOL3 3x3/2
      [13x13x256]  MAX POOL2 3x3/2             [4096] FC6, [4096] FC7, [1000] FC8
      [13x13x256]  NORM2

  Module names are the lecture's labels (``features.conv1``, ``features.pool1``, ``features.norm1``,
  ..., ``classifier.fc6``), so a per-layer table reads like the lecture's. 60,965,224 parameters.
- ``alexnet``: the single-tower network of Krizhevsky, "One weird trick for parallelizing
  convolutional neural networks", arXiv:1404.5997, 2014 (64-192-384-256-256, no LRN), with
  torchvision's module layout, so ``load_state_dict(torchvision.models.alexnet().state_dict())``
  works with ``strict=True``. 61,100,840 parameters.
- ``zfnet``: Zeiler & Fergus, "Visualizing and understanding convolutional networks", ECCV 2014,
  as the lecture summarises it: AlexNet with CONV1 7x7/2 and CONV3,4,5 of 512, 1024, 512 filters.

Options (``create_model(name, **config)``, see :class:`AlexNetConfig`): ``width`` scales every conv
and FC6/FC7 (so the nets run on a CPU at reduced width), ``pool_size`` puts an adaptive average pool
in front of FC6 (what lets ``alexnet`` take any input of at least 63x63; the paper nets without it
need their own input size), ``norm_before_pool`` switches to the paper's order, ``two_towers=False``
removes the grouped convolutions, ``init`` picks an initialisation, ``norm="lcn"`` puts local contrast
normalisation (Jarrett et al. 2009, 7x7 Gaussian, across maps) at the NORM rows in place of LRN: the
"contrast normalized across feature maps" of Zeiler & Fergus 2014 (Fig. 3) and of lecture 000's
AlexNet slides, and ``pooling`` ("max", the paper's; "avg" or "sum", lecture 000's "sum or max")
changes the POOL rows.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier
from cnnlab.models.contrast_norm import LocalContrastNorm
from cnnlab.models.pooling import check_pool, make_pool
from cnnlab.models.layers import local_response_norm, scale_channels
from cnnlab.models.registry import build_config, register_model

__all__ = [
    "AlexNetConfig",
    "AlexNet",
    "Conv",
    "Pool",
    "Norm",
    "KRIZHEVSKY_2012",
    "ONE_WEIRD_TRICK_2014",
    "ZEILER_FERGUS_2014",
    "alexnet",
    "alexnet_2012",
    "zfnet",
]


class Conv(NamedTuple):
    name: str  # the lecture's label
    out_channels: int
    kernel: int
    stride: int
    padding: int
    groups: int = 1  # 2: the paper's two GPU towers, each reading only its own half of the maps


class Pool(NamedTuple):
    name: str
    kernel: int = 3  # overlapping pooling, 3x3 at stride 2 (Krizhevsky et al. 2012 §3.4)
    stride: int = 2
    ceil_mode: bool = False


class Norm(NamedTuple):
    name: str  # local response normalisation (Krizhevsky et al. 2012 §3.3)


Layer = Conv | Pool | Norm

# Lecture 002's table, rows in its order (POOL then NORM). Shapes at 227x227x3.
KRIZHEVSKY_2012: tuple[Layer, ...] = (
    Conv("conv1", 96, 11, 4, 0),  # 55x55x96; 11*11*3*96 + 96 = 34,944 params
    Pool("pool1"),  # 27x27x96
    Norm("norm1"),  # 27x27x96
    Conv("conv2", 256, 5, 1, 2, groups=2),  # 27x27x256
    Pool("pool2"),  # 13x13x256
    Norm("norm2"),  # 13x13x256
    Conv("conv3", 384, 3, 1, 1),  # 13x13x384; "the kernels of the third layer are connected to all maps"
    Conv("conv4", 384, 3, 1, 1, groups=2),  # 13x13x384
    Conv("conv5", 256, 3, 1, 1, groups=2),  # 13x13x256
    Pool("pool3"),  # 6x6x256
)

# torchvision's alexnet (Krizhevsky 2014, one tower). Shapes at 224x224x3.
ONE_WEIRD_TRICK_2014: tuple[Layer, ...] = (
    Conv("conv1", 64, 11, 4, 2),  # 55x55x64 (pad 2 makes 224 work where the 2012 table needs 227)
    Pool("pool1"),  # 27x27x64
    Conv("conv2", 192, 5, 1, 2),  # 27x27x192
    Pool("pool2"),  # 13x13x192
    Conv("conv3", 384, 3, 1, 1),  # 13x13x384
    Conv("conv4", 256, 3, 1, 1),  # 13x13x256
    Conv("conv5", 256, 3, 1, 1),  # 13x13x256
    Pool("pool3"),  # 6x6x256
)

# Zeiler & Fergus Fig. 3 at 224x224x3, with the lecture's CONV3,4,5 widths (512, 1024, 512: the
# paper's Table 2 variant (b); its Fig. 3 net keeps AlexNet's 384, 384, 256). Dense connections
# throughout: "we use dense connections in layers 3,4,5 [...] since our model is trained on a single GPU".
ZEILER_FERGUS_2014: tuple[Layer, ...] = (
    # 110x110x96. The lecture only says "7x7 stride 2"; pad 1 gives Fig. 3's 110 ((224+2-7)//2+1).
    Conv("conv1", 96, 7, 2, 1),
    # 55x55x96. Fig. 3's sizes (110 -> 55, 26 -> 13) need Caffe's rounding up of pooled sizes.
    Pool("pool1", ceil_mode=True),
    Norm("norm1"),  # 55x55x96
    # 26x26x256. Stride 2 as in Fig. 3 (AlexNet's CONV2 has stride 1): the lecture's "AlexNet but"
    # leaves it out, yet without it FC6 would read 13x13 maps instead of the paper's 6x6.
    Conv("conv2", 256, 5, 2, 0),
    Pool("pool2", ceil_mode=True),  # 13x13x256
    Norm("norm2"),  # 13x13x256
    Conv("conv3", 512, 3, 1, 1),  # 13x13x512
    Conv("conv4", 1024, 3, 1, 1),  # 13x13x1024
    Conv("conv5", 512, 3, 1, 1),  # 13x13x512
    Pool("pool3"),  # 6x6x512
)

FC_WIDTH = 4096  # FC6 and FC7 neurons in all three networks

INITS = ("krizhevsky2012", "zeiler_fergus2014", "pytorch")
NORMS = ("lrn", "lcn")


@dataclass(frozen=True)
class AlexNetConfig:
    width: float = 1.0  # multiplies every conv's channels (and FC6/FC7 unless fc_width is given)
    fc_width: int | None = None  # FC6/FC7 neurons; None: 4096 * width
    dropout: float = 0.5  # on FC6's and FC7's outputs (§4.2) (torchvision: on their inputs)
    pool_size: int | None = None  # adaptive average pool to pool_size^2 before FC6; None: none (paper)
    norm_before_pool: bool = False  # True: the paper's order (§3.5); False: the lecture's (POOL, NORM)
    two_towers: bool = True  # grouped CONV2/4/5 (paper's two GPUs); False: dense, as on one GPU
    init: str = "krizhevsky2012"  # see AlexNet._init_weights
    norm: str = "lrn"  # NORM rows: "lrn" (Krizhevsky et al. 2012 §3.3) or "lcn" (local contrast normalisation)
    pooling: str = "max"  # POOL rows: "max" (§3.4), "avg" or "sum"

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not self.width > 0:
            raise ConfigError(f"width must be a number > 0, got {self.width!r}")
        if self.fc_width is not None and (
            isinstance(self.fc_width, bool) or not isinstance(self.fc_width, int) or self.fc_width < 1
        ):
            raise ConfigError(f"fc_width must be a positive integer or None, got {self.fc_width!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.pool_size is not None and (
            isinstance(self.pool_size, bool) or not isinstance(self.pool_size, int) or self.pool_size < 1
        ):
            raise ConfigError(f"pool_size must be a positive integer or None, got {self.pool_size!r}")
        for field in ("norm_before_pool", "two_towers"):
            if not isinstance(getattr(self, field), bool):
                raise ConfigError(f"{field} must be True or False, got {getattr(self, field)!r}")
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        check_pool("AlexNetConfig.pooling", self.pooling)


def _out_side(table: tuple[Layer, ...], side: int) -> int:
    """Side of the last feature map for a square input of ``side`` pixels (PyTorch's rounding)."""
    for row in table:
        if isinstance(row, Conv):
            side = (side + 2 * row.padding - row.kernel) // row.stride + 1
        elif isinstance(row, Pool):
            rounding = math.ceil if row.ceil_mode else math.floor
            side = rounding((side - row.kernel) / row.stride) + 1
    return side


def _paper_order(table: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """Swap every (POOL, NORM) pair to (NORM, POOL): §3.5, "Max-pooling layers [...] follow both
    response-normalization layers"."""
    rows = list(table)
    for i in range(len(rows) - 1):
        if isinstance(rows[i], Pool) and isinstance(rows[i + 1], Norm):
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
    return tuple(rows)


class AlexNet(Classifier):
    """The AlexNet family: a table of conv/pool/norm rows, then FC6-FC7-FC8.

    ``torchvision_layout=True`` numbers the layers as torchvision does (``features.0``,
    ``classifier.1``, ...) and puts dropout before FC6 and FC7; otherwise layers carry the
    lecture's labels and dropout follows FC6 and FC7 as in the paper (§4.2: "setting to zero the
    output of each hidden neuron with probability 0.5", applied "in the first two fully-connected
    layers"; Caffe's reference AlexNet does the same).
    """

    def __init__(
        self,
        table: tuple[Layer, ...],
        cfg: AlexNetConfig,
        *,
        num_classes: int,
        in_chans: int,
        image_size: int,
        torchvision_layout: bool = False,
    ) -> None:
        super().__init__()
        has_norm = any(isinstance(row, Norm) for row in table)
        if cfg.norm_before_pool and not has_norm:
            raise ConfigError("norm_before_pool: this network has no NORM layers")
        if cfg.norm != "lrn" and not has_norm:
            raise ConfigError(f"norm={cfg.norm!r}: this network has no NORM layers")
        if cfg.norm_before_pool:
            table = _paper_order(table)
        grouped = cfg.two_towers and any(isinstance(row, Conv) and row.groups > 1 for row in table)
        divisor = 2 if grouped else 1  # every tower keeps the same number of maps

        # (label, module) in forward order; labels drive names, init and feature_info.
        features: list[tuple[str, nn.Module]] = []
        feature_info: list[dict] = []
        channels, reduction = in_chans, 1
        for i, row in enumerate(table):
            if isinstance(row, Conv):
                out = scale_channels(row.out_channels, cfg.width, divisor=divisor)
                groups = row.groups if cfg.two_towers else 1
                conv = nn.Conv2d(channels, out, row.kernel, stride=row.stride, padding=row.padding, groups=groups)
                # Not in-place: a forward hook on a conv must see the conv's output, not its ReLU.
                features += [(row.name, conv), ("relu" + row.name[4:], nn.ReLU())]
                channels, reduction = out, reduction * row.stride
            elif isinstance(row, Pool):
                features.append((row.name, make_pool(cfg.pooling, row.kernel, row.stride, ceil_mode=row.ceil_mode)))
                reduction *= row.stride
                feature_info.append(dict(module=row.name, num_chs=channels, reduction=reduction))
            else:
                # §3.3: applied after the ReLU. The lecture's order puts it after the pool, which
                # makes it the stage's last layer there.
                norm = local_response_norm() if cfg.norm == "lrn" else LocalContrastNorm(7)
                features.append((row.name, norm))
                if i > 0 and isinstance(table[i - 1], Pool):
                    feature_info[-1]["module"] = row.name

        fc_width = cfg.fc_width or scale_channels(FC_WIDTH, cfg.width)
        side = cfg.pool_size or _out_side(table, image_size)
        # Departure (torchvision, and the paper nets when pool_size is given): an adaptive average
        # pool in front of FC6 so any input size works; the papers' nets have none.
        avgpool = nn.AdaptiveAvgPool2d(cfg.pool_size) if cfg.pool_size else nn.Identity()
        fc6 = nn.Linear(channels * side * side, fc_width)
        fc7 = nn.Linear(fc_width, fc_width)
        fc8 = nn.Linear(fc_width, num_classes)
        if torchvision_layout:
            classifier = [
                ("drop6", nn.Dropout(cfg.dropout)), ("fc6", fc6), ("relu6", nn.ReLU()),
                ("drop7", nn.Dropout(cfg.dropout)), ("fc7", fc7), ("relu7", nn.ReLU()),
                ("fc8", fc8),
            ]  # fmt: skip
        else:
            classifier = [
                ("fc6", fc6), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(cfg.dropout)),
                ("fc7", fc7), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(cfg.dropout)),
                ("fc8", fc8),
            ]  # fmt: skip

        labelled = features + classifier
        if torchvision_layout:
            index = {label: str(i) for i, (label, _) in enumerate(features)}
            for info in feature_info:
                info["module"] = index[info["module"]]
            self.features = nn.Sequential(*(m for _, m in features))
            self.avgpool = avgpool
            self.classifier = nn.Sequential(*(m for _, m in classifier))
        else:
            self.features = nn.Sequential(OrderedDict(features))
            self.avgpool = avgpool
            self.classifier = nn.Sequential(OrderedDict(classifier))
        self.feature_info = [dict(info, module="features." + info["module"]) for info in feature_info]
        self._init_weights(labelled, cfg.init)

    @torch.no_grad()
    def _init_weights(self, labelled: list[tuple[str, nn.Module]], scheme: str) -> None:
        if scheme == "pytorch":
            # torchvision's AlexNet has no init of its own: PyTorch's default (Kaiming uniform,
            # a = sqrt(5)) set by the layers' constructors.
            return
        # Krizhevsky et al. 2012 §5: "We initialized the weights in each layer from a zero-mean
        # Gaussian distribution with standard deviation 0.01. We initialized the neuron biases in
        # the second, fourth, and fifth convolutional layers, as well as in the fully-connected
        # hidden layers, with the constant 1 [...] the remaining layers with the constant 0."
        # Zeiler & Fergus 2014 §3: "All weights are initialized to 10^-2 and biases are set to 0."
        ones = {"conv2", "conv4", "conv5", "fc6", "fc7"} if scheme == "krizhevsky2012" else set()
        for label, m in labelled:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.constant_(m.bias, 1.0 if label in ones else 0.0)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x 256 x 6 x 6 (alexnet_2012 at 227, alexnet at 224); zfnet N x 512 x 6 x 6

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 9216 (alexnet_2012, alexnet), N x 18432 (zfnet)
        return self.classifier(x)  # N x num_classes


_KRIZHEVSKY = "Krizhevsky et al., 2012"


@register_model(
    family="alexnet", paper="Krizhevsky, 2014", input_size=(3, 224, 224), num_classes=1000,
    recipe="alexnet", torchvision="alexnet",
    departures="torchvision's AlexNet: the one-tower 'one weird trick' net (64-192-384-256-256, no LRN), "
    "adaptive 6x6 average pool before FC6, dropout before FC6/FC7, PyTorch default init",
)  # fmt: skip
def alexnet(*, num_classes: int = 1000, in_chans: int = 3, **config) -> AlexNet:
    """torchvision-compatible AlexNet (61.1M params): same state_dict keys, same logits."""
    cfg = build_config(AlexNetConfig, "alexnet", config, pool_size=6, init="pytorch")
    return AlexNet(
        ONE_WEIRD_TRICK_2014, cfg, num_classes=num_classes, in_chans=in_chans, image_size=224,
        torchvision_layout=True,
    )  # fmt: skip


@register_model(
    family="alexnet", paper=_KRIZHEVSKY, input_size=(3, 227, 227), num_classes=1000, recipe="alexnet",
    departures="NORM after POOL as in the lecture's table and CaffeNet (the paper normalises before "
    "pooling: norm_before_pool=True); 227x227 input (the paper says 224, which does not give 55x55); "
    "the two GPU towers are grouped convolutions",
)  # fmt: skip
def alexnet_2012(*, num_classes: int = 1000, in_chans: int = 3, **config) -> AlexNet:
    """The paper's two-tower AlexNet with LRN, laid out and named as the lecture's table (61.0M params)."""
    cfg = build_config(AlexNetConfig, "alexnet_2012", config)
    return AlexNet(KRIZHEVSKY_2012, cfg, num_classes=num_classes, in_chans=in_chans, image_size=227)


@register_model(
    family="alexnet", paper="Zeiler & Fergus, 2014", input_size=(3, 224, 224), num_classes=1000,
    recipe="alexnet",
    departures="CONV3,4,5 of 512, 1024, 512 filters as in the lecture (the paper's Table 2 variant; "
    "its Fig. 3 net has 384, 384, 256); AlexNet's LRN stands for the paper's contrast normalisation; "
    "no renormalisation of filters whose RMS exceeds 0.1 (a training step)",
)  # fmt: skip
def zfnet(*, num_classes: int = 1000, in_chans: int = 3, **config) -> AlexNet:
    """ZFNet: AlexNet with CONV1 7x7/2, CONV2 stride 2, CONV3-5 512-1024-512, one tower (107.6M params)."""
    cfg = build_config(AlexNetConfig, "zfnet", config, init="zeiler_fergus2014")
    return AlexNet(ZEILER_FERGUS_2014, cfg, num_classes=num_classes, in_chans=in_chans, image_size=224)
