"""LeNet-5: LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998.

    INPUT 32x32 -> C1 conv5 6 -> S2 subsample 2 -> C3 conv5 16 (partial connections, Table I)
    -> S4 subsample 2 -> C5 conv5 120 -> F6 full 84 -> OUTPUT 10

``lenet5`` follows the paper: scaled tanh ``1.7159 tanh(2a/3)``, trainable average-pool
subsampling (a coefficient and a bias per map), C3's partial connection table, LeCun's uniform
initialisation. ``lenet5_relu`` is the modern variant of the lectures ([CONV-POOL-CONV-POOL-FC-FC]
with ReLU and max pooling, full connections, PyTorch's default initialisation). 28x28 inputs
(MNIST) are zero-padded to 32x32, as the paper did for its 28x28 digits.

Options (:class:`LeNetConfig`): ``activation`` ("scaled_tanh", "sigmoid", "tanh", "relu"; lecture
004: "sigmoid or tanh nonlinearity"), ``pooling`` ("subsample", "max", "avg", "sum"), ``maxout``
(k pieces: every layer computes k times its maps and keeps the largest of each k, Goodfellow et al.
2013, in place of the activation) and ``c3_table``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.activations import ACTIVATIONS, check_activation
from cnnlab.models.base import Classifier
from cnnlab.models.pooling import Maxout, check_pool, make_pool
from cnnlab.models.registry import build_config, register_model

__all__ = ["LeNetConfig", "LeNet5", "lenet5", "lenet5_relu", "C3_TABLE"]

# LeCun et al. 1998, Table I: which S2 maps (0-5) each C3 map (0-15) reads. Six maps read three
# neighbouring maps, nine read four, one reads all six: 60 connections, 1,516 parameters.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip


@dataclass(frozen=True)
class LeNetConfig:
    activation: str = "scaled_tanh"  # "scaled_tanh" (paper, Appendix A), "sigmoid", "tanh" or "relu"
    pooling: str = "subsample"  # "subsample" (paper: trainable avg), "max", "avg" or "sum"
    c3_table: bool = True  # C3's partial connection table (paper) or full connections
    # k >= 2: maxout units of k pieces after C1, C3, C5, F6 instead of the activation (Goodfellow et
    # al. 2013 use a few pieces per unit; the cap of 16 keeps a typo from building a net k times too wide)
    maxout: int = 1

    def __post_init__(self) -> None:
        check_activation("LeNetConfig.activation", self.activation, extra=("scaled_tanh",))
        check_pool("LeNetConfig.pooling", self.pooling, extra=("subsample",))
        if not isinstance(self.c3_table, bool):
            raise ConfigError(f"LeNetConfig.c3_table must be True or False, got {self.c3_table!r}")
        if isinstance(self.maxout, bool) or not isinstance(self.maxout, int) or not 1 <= self.maxout <= 16:
            raise ConfigError(f"LeNetConfig.maxout must be an integer in 1..16 (pieces per unit), got {self.maxout!r}")


class ScaledTanh(nn.Module):
    """``f(a) = A tanh(S a)`` with A = 1.7159, S = 2/3 (LeCun et al. 1998, Appendix A)."""

    def forward(self, x: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Subsampling(nn.Module):
    """S2/S4: a 2x2 average times a trainable coefficient plus a trainable bias, per map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = F.avg_pool2d(x, 2)
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv2d(nn.Module):
    """A convolution where output map ``j`` reads only the input maps ``table[j]``.

    One kernel per connection is stored (``weight``: connections x k x k), so the parameter count is
    the paper's; the forward scatters them into a dense kernel and runs one convolution (MAC
    counters therefore see the dense cost, 16x6 kernels rather than 60).
    """

    def __init__(self, in_channels: int, table: tuple[tuple[int, ...], ...], kernel_size: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, len(table), kernel_size
        out_idx = [j for j, ins in enumerate(table) for _ in ins]
        in_idx = [i for ins in table for i in ins]
        self.register_buffer("out_idx", torch.tensor(out_idx), persistent=False)
        self.register_buffer("in_idx", torch.tensor(in_idx), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(in_idx), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(len(table)))

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_channels, self.in_channels, k, k)
        dense = dense.index_put((self.out_idx, self.in_idx), self.weight)
        return F.conv2d(x, dense, self.bias)


@torch.fx.wrap  # a leaf for torch.fx: its shape test is not traced
def pad_28_to_32(x: Tensor) -> Tensor:
    """Centre 28x28 digits (MNIST) in the paper's 32x32 input field; other sizes pass unchanged."""
    if x.shape[-2:] == (28, 28):
        return F.pad(x, (2, 2, 2, 2))
    return x


class LeNet5(Classifier):
    def __init__(self, cfg: LeNetConfig, *, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        act = {"scaled_tanh": ScaledTanh, **ACTIVATIONS}[cfg.activation]
        k = cfg.maxout

        def pool(channels: int) -> nn.Module:
            if cfg.pooling == "subsample":
                return Subsampling(channels)
            return make_pool(cfg.pooling, 2)

        def unit() -> nn.Module:  # what follows C1, C3, C5 and F6
            return Maxout(k) if k > 1 else act()

        # The paper's subsampling layers are followed by the squashing function; plain pooling
        # (the modern variant) is not, since the activation already came after the convolution.
        sub_act = cfg.pooling == "subsample"
        self.c1 = nn.Sequential(nn.Conv2d(in_chans, 6 * k, 5), unit())
        self.s2 = nn.Sequential(pool(6), act()) if sub_act else pool(6)
        # With maxout, each connection of the table is repeated k times: the k pieces of a unit are
        # consecutive channels that read the same S2 maps.
        table = tuple(row for row in C3_TABLE for _ in range(k))
        c3 = PartialConv2d(6, table, 5) if cfg.c3_table else nn.Conv2d(6, 16 * k, 5)
        self.c3 = nn.Sequential(c3, unit())
        self.s4 = nn.Sequential(pool(16), act()) if sub_act else pool(16)
        self.c5 = nn.Sequential(nn.Conv2d(16, 120 * k, 5), unit())
        self.f6 = nn.Sequential(nn.Flatten(1), nn.Linear(120, 84 * k), unit())
        # Departure: the paper's output layer is 10 Euclidean RBF units on F6; like every modern
        # re-implementation we use a linear layer trained with softmax cross-entropy.
        self.fc = nn.Linear(84, num_classes)
        self.feature_info = [
            dict(module="c1", num_chs=6, reduction=1),
            dict(module="c3", num_chs=16, reduction=2),
            dict(module="c5", num_chs=120, reduction=4),
        ]
        self._init_weights(cfg.activation)

    def _init_weights(self, activation: str) -> None:
        if activation == "relu":
            # The modern variant keeps PyTorch's default U(+-1/sqrt(F)), as today's re-implementations
            # do. LeCun's bound below is sized for the scaled tanh: under ReLU it shrinks the signal
            # about tenfold a layer, and lenet5_relu sat at chance for 7 of the lenet recipe's 30
            # epochs (98.7% at the end). Measured on mnist-5k with `cnnlab train lenet5_relu`: default
            # init 99.2/98.7/98.6% (seeds 0-2), learning from the first epoch; He's N(0, 2/F) 96.9%.
            return
        # LeCun et al. 1998, Appendix C: weights uniform in [-2.4/F, 2.4/F], F the fan-in.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, PartialConv2d)):
                if isinstance(m, PartialConv2d):
                    fan_in = m.weight.shape[0] // m.out_channels * m.kernel_size**2  # mean fan-in
                else:
                    fan_in = m.weight[0].numel()
                bound = 2.4 / fan_in
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.uniform_(m.bias, -bound, bound)

    def forward_features(self, x: Tensor) -> Tensor:
        x = pad_28_to_32(x)  # N x C x 32 x 32
        x = self.c1(x)  # N x 6 x 28 x 28
        x = self.s2(x)  # N x 6 x 14 x 14
        x = self.c3(x)  # N x 16 x 10 x 10
        x = self.s4(x)  # N x 16 x 5 x 5
        x = self.c5(x)  # N x 120 x 1 x 1
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(self.f6(x))  # N x num_classes


_PAPER = "LeCun et al., 1998"


@register_model(family="lenet", paper=_PAPER, input_size=(1, 32, 32), num_classes=10, recipe="lenet",
                departures="linear output layer with softmax cross-entropy instead of the paper's RBF units")
def lenet5(*, num_classes: int = 10, in_chans: int = 1, **config) -> LeNet5:
    """LeNet-5 as in the paper: scaled tanh, trainable subsampling, C3 connection table (about 60K params)."""
    return LeNet5(build_config(LeNetConfig, "lenet5", config), num_classes=num_classes, in_chans=in_chans)


@register_model(family="lenet", paper=_PAPER, input_size=(1, 32, 32), num_classes=10, recipe="lenet",
                departures="modern variant: ReLU, 2x2 max pooling, full C3 connections, linear output")
def lenet5_relu(*, num_classes: int = 10, in_chans: int = 1, **config) -> LeNet5:
    """LeNet-5 as usually re-implemented today: ReLU and max pooling, full connections."""
    cfg = build_config(LeNetConfig, "lenet5_relu", config, activation="relu", pooling="max", c3_table=False)
    return LeNet5(cfg, num_classes=num_classes, in_chans=in_chans)

