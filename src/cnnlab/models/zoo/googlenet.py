"""GoogLeNet: Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke & Rabinovich, "Going Deeper
with Convolutions", CVPR 2015 (arXiv:1409.4842).

    conv 7x7/2 64 -> maxpool 3x3/2 -> LRN -> conv 1x1 64 -> conv 3x3 192 -> LRN -> maxpool 3x3/2
    -> inception 3a, 3b -> maxpool 3x3/2 -> inception 4a (aux1), 4b, 4c, 4d (aux2), 4e -> maxpool 3x3/2
    -> inception 5a, 5b -> avgpool 7x7 -> dropout 40% -> linear

Two registered models share one network class and the paper's Table 1 (:data:`TABLE1`):

- ``googlenet_2014``: the paper's network: ReLU after every convolution and no batch normalisation,
  LRN after the first pool and after the second convolution, true 5x5 branches, 3x3/2 max-pools with
  Caffe's rounding up, two auxiliary classifiers (loss weight 0.3) on 4a and 4d, dropout 0.4.
- ``googlenet``: torchvision's GoogLeNet, state-dict compatible with ``torchvision.models.googlenet``
  (same keys, same logits given the same weights): batch normalisation after every convolution, no LRN,
  "5x5" branches that are 3x3 convolutions, a 2x2 last max-pool, adaptive aux pooling, dropout 0.2,
  and no auxiliary classifiers unless ``aux_logits=True``.

Unlike torchvision, ``forward(x)`` returns logits in training mode too; the auxiliary logits come
from :meth:`GoogLeNet.forward_train` (a :class:`ModelOutput` with weights (0.3, 0.3)) in training mode.
To use torchvision's pretrained ImageNet weights, build ``googlenet`` with ``transform_input=True``
(torchvision sets it for those weights) and ``aux_logits=True`` or a non-strict load (the file holds
untrained aux heads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier, ModelOutput
from cnnlab.models.blocks.inception import BasicConv2d, Inception, InceptionAux, InceptionWidths
from cnnlab.models.registry import build_config, register_model

__all__ = [
    "TABLE1",
    "TABLE1_PARAMS_K",
    "TABLE1_OPS_M",
    "GoogLeNetConfig",
    "GoogLeNet",
    "googlenet",
    "googlenet_2014",
]

# Szegedy et al. 2015, Table 1: per inception module (input channels, widths as the paper's columns
# #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
TABLE1: dict[str, tuple[int, InceptionWidths]] = {
    "3a": (192, InceptionWidths(64, 96, 128, 16, 32, 32)),      # 28x28x256
    "3b": (256, InceptionWidths(128, 128, 192, 32, 96, 64)),    # 28x28x480
    "4a": (480, InceptionWidths(192, 96, 208, 16, 48, 64)),     # 14x14x512
    "4b": (512, InceptionWidths(160, 112, 224, 24, 64, 64)),    # 14x14x512
    "4c": (512, InceptionWidths(128, 128, 256, 24, 64, 64)),    # 14x14x512
    "4d": (512, InceptionWidths(112, 144, 288, 32, 64, 64)),    # 14x14x528
    "4e": (528, InceptionWidths(256, 160, 320, 32, 128, 128)),  # 14x14x832
    "5a": (832, InceptionWidths(256, 160, 320, 32, 128, 128)),  # 7x7x832
    "5b": (832, InceptionWidths(384, 192, 384, 48, 128, 128)),  # 7x7x1024
}  # fmt: skip

# Table 1's "params" (K = 1024 weights) and "ops" (M = 10^6 multiply-adds) columns, as printed, for
# checks against the model. The table is not self-consistent; with its own widths (true 5x5 kernels):
# - conv1 "2.7K / 34M" cannot be a 7x7x3x64 convolution, which has 9,408 weights (9.2K) and 118M
#   multiply-adds at 112x112: the known erratum of the table.
# - the "convolution 3x3" row's 112K is the 1x1 reduce plus the 3x3 (4,096 + 110,592 weights = 112.0K),
#   and "linear" 1000K is 1024 x 1000 weights: both exact.
# - inception params agree within rounding for 3a (159.5K), 3b (379.0K) and 4b (438.0K); the other rows
#   are off: 4a 366.75K (table 364K), 4c 497.5K (463K), 4d 590.5K (580K), 4e 847K (840K),
#   5a 1018K (1072K), 5b 1409K (1388K). The ops column agrees (within 1M) with params x H x W for every
#   inception row but 5a (51.1M, table 54M), so the params column, not the widths, is in error.
TABLE1_PARAMS_K: dict[str, float] = {
    "conv1": 2.7, "conv2": 112,
    "3a": 159, "3b": 380, "4a": 364, "4b": 437, "4c": 463, "4d": 580, "4e": 840, "5a": 1072, "5b": 1388,
    "fc": 1000,
}  # fmt: skip
TABLE1_OPS_M: dict[str, float] = {
    "conv1": 34, "conv2": 360,
    "3a": 128, "3b": 304, "4a": 73, "4b": 88, "4c": 100, "4d": 119, "4e": 170, "5a": 54, "5b": 71,
    "fc": 1,
}  # fmt: skip


@dataclass(frozen=True)
class _Variant:
    """What distinguishes the paper's network from torchvision's (structure only, no widths)."""

    batch_norm: bool  # BN after every convolution
    lrn: bool  # LRN after maxpool1 and after conv3
    kernel_5x5: int  # kernel of the "#5x5" branches
    pool4_kernel: int  # kernel of the max-pool between 4e and 5a (stride 2)
    aux_pool: str  # see InceptionAux


VARIANTS: dict[str, _Variant] = {
    "paper": _Variant(batch_norm=False, lrn=True, kernel_5x5=5, pool4_kernel=3, aux_pool="avg5s3"),
    "torchvision": _Variant(
        batch_norm=True,
        lrn=False,
        # torchvision's known departure: its "5x5" branches are 3x3 convolutions (pytorch/vision#906),
        # kept so that its ImageNet weights load; the parameter count 6,624,904 depends on it.
        kernel_5x5=3,
        pool4_kernel=2,  # torchvision: MaxPool2d(2, stride=2, ceil_mode=True); the paper's is 3x3/2
        aux_pool="adaptive4",
    ),
}


@dataclass(frozen=True)
class GoogLeNetConfig:
    variant: str = "torchvision"  # "torchvision" (googlenet) or "paper" (googlenet_2014)
    aux_logits: bool = False  # build the two auxiliary classifiers (aux1 on 4a, aux2 on 4d)
    transform_input: bool = False  # torchvision's re-normalisation from ImageNet mean/std to [-1, 1]
    dropout: float = 0.2  # before the last linear layer: 0.4 in the paper, 0.2 in torchvision
    dropout_aux: float = 0.7  # inside the auxiliary classifiers (paper §5 and torchvision)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {sorted(VARIANTS)}, got {self.variant!r}")
        for field in ("aux_logits", "transform_input"):
            if not isinstance(getattr(self, field), bool):
                raise ConfigError(f"{field} must be True or False, got {getattr(self, field)!r}")
        for field in ("dropout", "dropout_aux"):
            p = getattr(self, field)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ConfigError(f"{field} must be a probability in [0, 1), got {p!r}")


class GoogLeNet(Classifier):
    def __init__(self, cfg: GoogLeNetConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        if cfg.transform_input and in_chans != 3:
            raise ConfigError(f"transform_input needs 3 input channels (RGB), got in_chans={in_chans}")
        v = VARIANTS[cfg.variant]
        self.cfg = cfg
        self.transform_input = cfg.transform_input
        bn = v.batch_norm

        # Caffe rounds pooling output sizes up; ceil_mode gives Table 1's 112 -> 56 -> 28 -> 14 -> 7.
        self.conv1 = BasicConv2d(in_chans, 64, 7, stride=2, padding=3, batch_norm=bn)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # LRN constants from the BVLC Caffe reproduction (the paper gives none): size 5, alpha 1e-4,
        # beta 0.75, k 1; nn.LocalResponseNorm divides alpha by size, as Caffe does.
        self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if v.lrn else nn.Identity()
        self.conv2 = BasicConv2d(64, 64, 1, batch_norm=bn)  # Table 1: "#3x3 reduce" 64 of the 3x3 row
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, batch_norm=bn)
        self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0) if v.lrn else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        def inception(row: str) -> Inception:
            in_channels, widths = TABLE1[row]
            return Inception(in_channels, widths, batch_norm=bn, kernel_5x5=v.kernel_5x5)

        self.inception3a = inception("3a")
        self.inception3b = inception("3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception("4a")
        self.inception4b = inception("4b")
        self.inception4c = inception("4c")
        self.inception4d = inception("4d")
        self.inception4e = inception("4e")
        self.maxpool4 = nn.MaxPool2d(v.pool4_kernel, stride=2, ceil_mode=True)
        self.inception5a = inception("5a")
        self.inception5b = inception("5b")

        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if cfg.aux_logits:
            aux = dict(dropout=cfg.dropout_aux, batch_norm=bn, pool=v.aux_pool)
            self.aux1 = InceptionAux(TABLE1["4a"][1].out_channels, num_classes, **aux)
            self.aux2 = InceptionAux(TABLE1["4d"][1].out_channels, num_classes, **aux)

        # The paper's "avg pool 7x7/1" is a global average at 224x224; the adaptive pool is the same
        # there and lets smaller inputs (torchvision accepts 15x15 and up) reach the classifier.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.feature_info = [
            dict(module="conv1", num_chs=64, reduction=2),
            dict(module="conv3", num_chs=192, reduction=4),
            dict(module="inception3b", num_chs=480, reduction=8),
            dict(module="inception4e", num_chs=832, reduction=16),
            dict(module="inception5b", num_chs=1024, reduction=32),
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        if self.cfg.variant == "torchvision":
            # torchvision's GoogLeNet(init_weights=True): N(0, 0.01) truncated at +-2 (i.e. 200 std, so
            # in effect untruncated) for convolutions and linear layers; BN scale 1, shift 0.
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
            return
        # The paper gives no initialisation; the BVLC Caffe reproduction (models/bvlc_googlenet,
        # train_val.prototxt) uses Caffe's "xavier" filler, uniform in +-sqrt(3 / fan_in), for every
        # layer, with biases 0.2 on the convolutions and hidden FC layers and 0 on the classifiers.
        classifiers = {self.fc} | {aux.fc2 for aux in (self.aux1, self.aux2) if aux is not None}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = math.sqrt(3.0 / m.weight[0].numel())
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.constant_(m.bias, 0.0 if m in classifiers else 0.2)

    def _transform_input(self, x: Tensor) -> Tensor:
        # torchvision's weights were ported from a network trained on inputs in [-1, 1]; this maps an
        # ImageNet mean/std-normalised input there (same arithmetic as torchvision).
        x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return torch.cat((x_ch0, x_ch1, x_ch2), 1)

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The last feature map and the outputs of 4a and 4d (the auxiliary classifiers' inputs)."""
        if self.transform_input:
            x = self._transform_input(x)
        # N x 3 x 224 x 224
        x = self.conv1(x)  # N x 64 x 112 x 112
        x = self.lrn1(self.maxpool1(x))  # N x 64 x 56 x 56
        x = self.conv2(x)  # N x 64 x 56 x 56
        x = self.maxpool2(self.lrn2(self.conv3(x)))  # N x 192 x 28 x 28
        x = self.inception3a(x)  # N x 256 x 28 x 28
        x = self.inception3b(x)  # N x 480 x 28 x 28
        x = self.maxpool3(x)  # N x 480 x 14 x 14
        x4a = x = self.inception4a(x)  # N x 512 x 14 x 14
        x = self.inception4b(x)  # N x 512 x 14 x 14
        x = self.inception4c(x)  # N x 512 x 14 x 14
        x4d = x = self.inception4d(x)  # N x 528 x 14 x 14
        x = self.inception4e(x)  # N x 832 x 14 x 14
        x = self.maxpool4(x)  # N x 832 x 7 x 7
        x = self.inception5a(x)  # N x 832 x 7 x 7
        x = self.inception5b(x)  # N x 1024 x 7 x 7
        return x, x4a, x4d

    def forward_features(self, x: Tensor) -> Tensor:
        return self._trunk(x)[0]

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 1024
        return self.fc(self.dropout(x))  # N x num_classes

    def forward_train(self, x: Tensor) -> ModelOutput:
        """Logits plus, in training mode with ``aux_logits``, (aux1, aux2) weighted 0.3 each (paper §5)."""
        feats, x4a, x4d = self._trunk(x)
        logits = self.forward_head(feats)
        if not self.training or self.aux1 is None or self.aux2 is None:
            return ModelOutput(logits)
        if VARIANTS[self.cfg.variant].aux_pool == "avg5s3" and tuple(x4a.shape[-2:]) != (14, 14):
            raise ConfigError(
                f"aux_logits=True needs 224x224 inputs (the paper's 5x5/3 aux pooling reads 14x14 maps at 4a), "
                f"got {tuple(x.shape[-2:])}; build with aux_logits=False for other sizes"
            )
        return ModelOutput(logits, (self.aux1(x4a), self.aux2(x4d)), (0.3, 0.3))


_PAPER = "Szegedy et al., 2015"


@register_model(
    family="googlenet",
    paper=_PAPER,
    input_size=(3, 224, 224),
    num_classes=1000,
    recipe="resnet_imagenet",
    torchvision="googlenet",
    departures=(
        "torchvision's GoogLeNet: batch norm (eps 0.001) after every conv, no LRN, the '5x5' branches are "
        "3x3 convs, 2x2 last max-pool, adaptive 4x4 aux pooling, dropout 0.2; no auxiliary classifiers "
        "unless aux_logits=True; recipe resnet_imagenet, not the paper's asynchronous SGD"
    ),
)
def googlenet(*, num_classes: int = 1000, in_chans: int = 3, **config) -> GoogLeNet:
    """torchvision-compatible GoogLeNet (6,624,904 parameters without the aux heads, 13,004,888 with)."""
    cfg = build_config(GoogLeNetConfig, "googlenet", config, variant="torchvision", dropout=0.2)
    return GoogLeNet(cfg, num_classes=num_classes, in_chans=in_chans)


@register_model(
    family="googlenet",
    paper=_PAPER,
    input_size=(3, 224, 224),
    num_classes=1000,
    recipe="resnet_imagenet",
    departures=(
        "global average pool in place of the fixed 7x7 pool (identical at 224x224); Caffe xavier init of "
        "the BVLC reproduction (the paper gives none); recipe resnet_imagenet, not the paper's "
        "asynchronous SGD with lr decreased 4% every 8 epochs and Polyak averaging"
    ),
)
def googlenet_2014(*, num_classes: int = 1000, in_chans: int = 3, **config) -> GoogLeNet:
    """GoogLeNet as in the paper: no BN, LRN, true 5x5 branches, two auxiliary classifiers, dropout 0.4."""
    cfg = build_config(GoogLeNetConfig, "googlenet_2014", config, variant="paper", aux_logits=True, dropout=0.4)
    return GoogLeNet(cfg, num_classes=num_classes, in_chans=in_chans)
