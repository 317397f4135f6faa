"""Inception-v4: Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning", AAAI 2017 (arXiv:1602.07261), Figure 9 and Figures 3-8.

    299x299x3 -> stem (Fig. 3) -> 35x35x384 -> 4 x Inception-A (Fig. 4) -> Reduction-A (Fig. 7)
    -> 17x17x1024 -> 7 x Inception-B (Fig. 5) -> Reduction-B (Fig. 8) -> 8x8x1536
    -> 3 x Inception-C (Fig. 6) -> average pool 8x8 -> dropout (keep 0.8) -> softmax

Each figure is a table below (:data:`STEM`, :data:`INCEPTION_A`, ...); branches are listed in the
channel order of the TensorFlow reference model (tf-slim ``inception_v4.py``, which timm and
Keras-Hub port): 1x1 branch first, pooling branch last. 42,679,816 parameters for 1000 classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier
from cnnlab.models.blocks.inception_v4 import Conv, ConvBNReLU, Fork, MixedBlock, Pool, k
from cnnlab.models.registry import build_config, register_model

__all__ = ["STEM_CONVS", "STEM", "INCEPTION_A", "REDUCTION_A", "INCEPTION_B", "REDUCTION_B", "INCEPTION_C",
           "REPEATS", "REDUCTION_A_KLMN", "InceptionV4Config", "InceptionV4", "inception_v4"]

# Figure 3 (the stem), its first three convolutions: 299 -> 149 -> 147 -> 147.
STEM_CONVS: tuple[Conv, ...] = (
    Conv(32, k("3x3"), stride=2, valid=True),  # 149x149x32
    Conv(32, k("3x3"), valid=True),            # 147x147x32
    Conv(64, k("3x3")),                        # 147x147x64
)  # fmt: skip

# Figure 3, its three filter concatenations: 147 -> 73x73x160 -> 71x71x192 -> 35x35x384.
STEM: tuple[tuple, ...] = (
    ((Pool("max", stride=2, valid=True),), (Conv(96, k("3x3"), stride=2, valid=True),)),
    # the figure draws 7x1 before 1x7; the TensorFlow model has 1x7 first (same weights and MACs)
    ((Conv(64, k("1x1")), Conv(96, k("3x3"), valid=True)),
     (Conv(64, k("1x1")), Conv(64, k("1x7")), Conv(64, k("7x1")), Conv(96, k("3x3"), valid=True))),
    ((Conv(192, k("3x3"), stride=2, valid=True),), (Pool("max", stride=2, valid=True),)),
)  # fmt: skip

# Figure 4: Inception-A, 35x35x384 -> 35x35x384.
INCEPTION_A: tuple[tuple, ...] = (
    (Conv(96, k("1x1")),),
    (Conv(64, k("1x1")), Conv(96, k("3x3"))),
    (Conv(64, k("1x1")), Conv(96, k("3x3")), Conv(96, k("3x3"))),
    (Pool("avg"), Conv(96, k("1x1"))),
)  # fmt: skip

# Table 1: the filter numbers k, l, m, n of Reduction-A (Figure 7) in Inception-v4.
REDUCTION_A_KLMN = (192, 224, 256, 384)
_K, _L, _M, _N = REDUCTION_A_KLMN

# Figure 7: Reduction-A, 35x35x384 -> 17x17x1024 (n + m + 384).
REDUCTION_A: tuple[tuple, ...] = (
    (Conv(_N, k("3x3"), stride=2, valid=True),),
    (Conv(_K, k("1x1")), Conv(_L, k("3x3")), Conv(_M, k("3x3"), stride=2, valid=True)),
    (Pool("max", stride=2, valid=True),),
)  # fmt: skip

# Figure 5: Inception-B, 17x17x1024 -> 17x17x1024.
INCEPTION_B: tuple[tuple, ...] = (
    (Conv(384, k("1x1")),),
    (Conv(192, k("1x1")), Conv(224, k("1x7")), Conv(256, k("7x1"))),
    # the figure: 1x7, 7x1, 1x7, 7x1; the TensorFlow model: 7x1, 1x7, 7x1, 1x7 (same weights and MACs)
    (Conv(192, k("1x1")), Conv(192, k("1x7")), Conv(224, k("7x1")), Conv(224, k("1x7")), Conv(256, k("7x1"))),
    (Pool("avg"), Conv(128, k("1x1"))),
)  # fmt: skip

# Figure 8: Reduction-B, 17x17x1024 -> 8x8x1536.
REDUCTION_B: tuple[tuple, ...] = (
    (Conv(192, k("1x1")), Conv(192, k("3x3"), stride=2, valid=True)),
    (Conv(256, k("1x1")), Conv(256, k("1x7")), Conv(320, k("7x1")), Conv(320, k("3x3"), stride=2, valid=True)),
    (Pool("max", stride=2, valid=True),),
)  # fmt: skip

# Figure 6: Inception-C, 8x8x1536 -> 8x8x1536.
INCEPTION_C: tuple[tuple, ...] = (
    (Conv(256, k("1x1")),),
    (Conv(384, k("1x1")), Fork((Conv(256, k("1x3")), Conv(256, k("3x1"))))),
    # the figure: 1x3 448, 3x1 512; the TensorFlow model: 3x1 448, 1x3 512 (same weights and MACs)
    (Conv(384, k("1x1")), Conv(448, k("1x3")), Conv(512, k("3x1")),
     Fork((Conv(256, k("3x1")), Conv(256, k("1x3"))))),
    (Pool("avg"), Conv(256, k("1x1"))),
)  # fmt: skip

# Figure 9: how often each Inception block repeats.
REPEATS = {"A": 4, "B": 7, "C": 3}


@dataclass(frozen=True)
class InceptionV4Config:
    dropout: float = 0.2  # before the classifier: Figure 9's "Dropout (keep 0.8)"

    def __post_init__(self) -> None:
        p = self.dropout
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout must be a probability in [0, 1), got {p!r}")


class InceptionV4(Classifier):
    def __init__(self, cfg: InceptionV4Config, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        channels = in_chans
        convs = []
        for spec in STEM_CONVS:
            convs.append(ConvBNReLU(channels, spec))
            channels = spec.out
        self.stem_convs = nn.Sequential(*convs)
        self.stem = nn.Sequential()
        for i, branches in enumerate(STEM):
            block = MixedBlock(channels, branches)
            self.stem.add_module(f"mixed{i}", block)
            channels = block.out_channels

        def stage(name: str, table: tuple, repeats: int) -> nn.Sequential:
            nonlocal channels
            blocks = nn.Sequential()
            for i in range(repeats):
                block = MixedBlock(channels, table)
                blocks.add_module(f"{name}{i}", block)
                channels = block.out_channels
            return blocks

        self.inception_a = stage("a", INCEPTION_A, REPEATS["A"])
        self.reduction_a = MixedBlock(channels, REDUCTION_A)
        channels = self.reduction_a.out_channels
        self.inception_b = stage("b", INCEPTION_B, REPEATS["B"])
        self.reduction_b = MixedBlock(channels, REDUCTION_B)
        channels = self.reduction_b.out_channels
        self.inception_c = stage("c", INCEPTION_C, REPEATS["C"])
        # Figure 9's "Average Pooling" reads the 8x8 map whole: a global average (also for other sizes)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.feature_info = [
            dict(module="stem_convs", num_chs=64, reduction=2),
            dict(module="stem.mixed0", num_chs=160, reduction=4),
            dict(module="inception_a", num_chs=384, reduction=8),
            dict(module="inception_b", num_chs=1024, reduction=16),
            dict(module="inception_c", num_chs=1536, reduction=32),
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper gives no initialisation. tf-slim's inception_v4 arg scope uses its default
        # xavier (Glorot uniform) weights; BN scale 1, shift 0.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        # N x 3 x 299 x 299
        x = self.stem_convs(x)  # N x 64 x 147 x 147
        x = self.stem(x)  # N x 384 x 35 x 35
        x = self.inception_a(x)  # N x 384 x 35 x 35
        x = self.reduction_a(x)  # N x 1024 x 17 x 17
        x = self.inception_b(x)  # N x 1024 x 17 x 17
        x = self.reduction_b(x)  # N x 1536 x 8 x 8
        return self.inception_c(x)  # N x 1536 x 8 x 8

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 1536
        return self.fc(self.dropout(x))  # N x num_classes


@register_model(
    family="googlenet",  # the Inception line: GoogLeNet is Inception-v1
    paper="Szegedy et al., 2017",
    input_size=(3, 299, 299),
    num_classes=1000,
    recipe="resnet_imagenet",
    departures=(
        "global average pool in place of the fixed 8x8 pool (identical at 299x299); 1x7/7x1 order as the "
        "figures draw it (the TensorFlow model swaps some; same parameters and MACs); xavier init of "
        "tf-slim (the paper gives none); recipe resnet_imagenet, not the paper's RMSProp (decay 0.9, "
        "eps 1.0, lr 0.045 decayed 0.94 every 2 epochs)"
    ),
)
def inception_v4(*, num_classes: int = 1000, in_chans: int = 3, **config) -> InceptionV4:
    """Inception-v4 as in the paper's Figure 9 (42,679,816 parameters for 1000 classes)."""
    cfg = build_config(InceptionV4Config, "inception_v4", config)
    return InceptionV4(cfg, num_classes=num_classes, in_chans=in_chans)
