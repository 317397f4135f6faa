"""Network in Network: Lin, Chen & Yan, "Network In Network", ICLR 2014 (arXiv:1312.4400).

An mlpconv layer is a convolution followed by a small multilayer perceptron shared across positions,
i.e. 1x1 convolutions ("cascaded cross channel parametric pooling", §3.2), each with a ReLU. The
CIFAR-10 network stacks three mlpconv layers and replaces the fully connected classifier by global
average pooling over one feature map per class (§3.3):

    mlpconv 5x5-192, 1x1-160, 1x1-96   -> max-pool 3/2 -> dropout 0.5     32x32 -> 16x16
    mlpconv 5x5-192, 1x1-192, 1x1-192  -> avg-pool 3/2 -> dropout 0.5     16x16 -> 8x8
    mlpconv 3x3-192, 1x1-192, 1x1-10   -> global average pool -> softmax

The paper describes the design but not the layer sizes; those are the authors' released CIFAR-10
model (Caffe Model Zoo "NIN-CIFAR10", gist mavenlin/e56253735ef32c3c296d), which this follows layer
for layer, including the ReLU after the last 1x1 layer, the pooling arithmetic (Caffe rounds output
sizes up) and the initialisation. 966,986 parameters for 10 classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier
from cnnlab.models.registry import build_config, register_model

__all__ = ["MLPCONV_TABLE", "NiNConfig", "MLPConv", "NiN", "nin_cifar"]

# The NIN-CIFAR10 model, one row per mlpconv layer: (kernel of the spatial convolution, its padding,
# widths of the convolution and its two 1x1 layers, pooling after it). ``None`` as the last width
# stands for the number of classes: the last mlpconv emits one map per class.
MLPCONV_TABLE: tuple[tuple[int, int, tuple[int, int, int | None], str], ...] = (
    (5, 2, (192, 160, 96), "max"),     # conv1, cccp1, cccp2, pool1 (max 3/2), drop3
    (5, 2, (192, 192, 192), "avg"),    # conv2, cccp3, cccp4, pool2 (ave 3/2), drop6
    (3, 1, (192, 192, None), "global"),  # conv3, cccp5, cccp6, pool3 (ave 8x8 = global)
)  # fmt: skip


@dataclass(frozen=True)
class NiNConfig:
    dropout: float = 0.5  # after the first two mlpconv layers (§3.3 and the released model)

    def __post_init__(self) -> None:
        p = self.dropout
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout must be a probability in [0, 1), got {p!r}")


class MLPConv(nn.Module):
    """``conv`` (k x k) -> ReLU -> ``mlp1`` (1x1) -> ReLU -> ``mlp2`` (1x1) -> ReLU (paper Eq. 2)."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int], kernel_size: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, widths[0], kernel_size, padding=padding)
        self.act0 = nn.ReLU()
        self.mlp1 = nn.Conv2d(widths[0], widths[1], 1)
        self.act1 = nn.ReLU()
        self.mlp2 = nn.Conv2d(widths[1], widths[2], 1)
        self.act2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act0(self.conv(x))
        x = self.act1(self.mlp1(x))
        return self.act2(self.mlp2(x))


class NiN(Classifier):
    classifier_name = "mlpconv3.mlp2"  # no fully connected layer: the last 1x1 conv gives class maps

    def __init__(self, cfg: NiNConfig, *, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        rows = [(k, pad, tuple(num_classes if w is None else w for w in widths), pool)
                for k, pad, widths, pool in MLPCONV_TABLE]  # fmt: skip
        (k1, p1, w1, _), (k2, p2, w2, _), (k3, p3, w3, _) = rows
        self.mlpconv1 = MLPConv(in_chans, w1, k1, p1)
        # Caffe rounds pooling sizes up (32 -> 16 -> 8); floor rounding would give 15 and 7.
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.drop1 = nn.Dropout(cfg.dropout)
        self.mlpconv2 = MLPConv(w1[2], w2, k2, p2)
        self.pool2 = nn.AvgPool2d(3, stride=2, ceil_mode=True)
        self.drop2 = nn.Dropout(cfg.dropout)
        self.mlpconv3 = MLPConv(w2[2], w3, k3, p3)
        # The released model averages 8x8 maps (pool3 ave 8x8 at 32x32 input): a global average.
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.feature_info = [
            dict(module="mlpconv1", num_chs=w1[2], reduction=1),
            dict(module="mlpconv2", num_chs=w2[2], reduction=2),
            dict(module="mlpconv3", num_chs=w3[2], reduction=4),
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper gives no initialisation; the released Caffe model (NIN-CIFAR10 train_val.prototxt,
        # as transcribed by jiecaoyu/pytorch-nin-cifar10) draws every weight from N(0, 0.05^2), biases 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.05)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        # N x 3 x 32 x 32
        x = self.drop1(self.pool1(self.mlpconv1(x)))  # N x 96 x 16 x 16
        x = self.drop2(self.pool2(self.mlpconv2(x)))  # N x 192 x 8 x 8
        return self.mlpconv3(x)  # N x num_classes x 8 x 8: one confidence map per class

    def forward_head(self, x: Tensor) -> Tensor:
        return torch.flatten(self.global_pool(x), 1)  # N x num_classes, no fully connected layer


@register_model(
    family="nin",
    paper="Lin et al., 2014",
    input_size=(3, 32, 32),
    num_classes=10,
    recipe="resnet_cifar",
    departures=(
        "layer sizes and N(0, 0.05) init from the authors' released Caffe CIFAR-10 model (the paper gives "
        "neither); recipe resnet_cifar, not the released model's own SGD schedule, and no global contrast "
        "normalisation + ZCA whitening of the inputs (paper §4.2)"
    ),
)
def nin_cifar(*, num_classes: int = 10, in_chans: int = 3, **config) -> NiN:
    """Network in Network for CIFAR-10: three mlpconv layers and global average pooling (about 0.97M params)."""
    return NiN(build_config(NiNConfig, "nin_cifar", config), num_classes=num_classes, in_chans=in_chans)
