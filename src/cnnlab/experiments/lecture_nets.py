"""Small networks for the lectures' training claims (not zoo architectures).

- :class:`ActivationNet` (``relu-tanh``): two conv5 + pool stages and one hidden FC layer, the
  activation a choice, each initialised as recommended for its activation.
- :class:`DeepStackNet` (``vanishing-gradients``): a stem, ``depth - 2`` 3x3 convolutions of one width
  (optionally with an identity skip around each pair), global pooling and a linear classifier; no
  normalisation layer, so that only the initialisation and the skips set how signals scale.
- :class:`IdentityStack` (``identity-mapping``): ``k`` 3x3 convolutions from the image back to an
  image, plain ``y = F(x)`` or residual ``y = x + F(x)``.

Each initialisation is applied in one place, :func:`init_weights`, with its citation.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier

__all__ = ["ACTIVATIONS", "INITS", "init_weights", "ActivationNet", "DeepStackNet", "IdentityStack", "relative_error"]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
# "default": PyTorch's U(+-1/sqrt(fan_in)) for weights and biases, which is the "standard" init of
# Glorot & Bengio 2010 eq. 1; "glorot": their normalised init U(+-gain sqrt(6 / (fan_in + fan_out)))
# (eq. 16), gain from torch.nn.init.calculate_gain (sigmoid 1, tanh 5/3); "he": He et al. 2015's
# N(0, 2 / fan_in) for ReLU (eq. 10); both with zero biases.
INITS = ("default", "glorot", "he")


def _check(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def init_weights(net: nn.Module, init: str, *, activation: str = "relu") -> None:
    """Initialise every conv and linear layer of ``net`` with ``init`` (see :data:`INITS`)."""
    _check("init", init, INITS)
    if init == "default":
        return  # the layers' own reset_parameters
    gain = nn.init.calculate_gain(activation)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "glorot":
                nn.init.xavier_uniform_(m.weight, gain=gain)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)


class ActivationNet(Classifier):
    """conv5(16) - act - pool2 - conv5(32) - act - pool2 - FC(64) - act - FC(classes), 28x28 input
    (Krizhevsky et al. 2012 Fig. 1 compare activations on a four-layer conv net likewise)."""

    def __init__(self, *, activation: str = "relu", init: str = "default", in_chans: int = 1,
                 num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        _check("activation", activation, tuple(ACTIVATIONS))
        act = ACTIVATIONS[activation]
        side = ((image_size - 4) // 2 - 4) // 2  # 28 -> 24 -> 12 -> 8 -> 4
        if side < 1:
            raise ConfigError(f"ActivationNet needs images of at least 16x16, got {image_size}")
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_chans, 16, 5)), ("act1", act()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(16, 32, 5)), ("act2", act()), ("pool2", nn.MaxPool2d(2)),
        ]))  # fmt: skip
        self.head = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(32 * side * side, 64)), ("act3", act()), ("fc2", nn.Linear(64, num_classes)),
        ]))  # fmt: skip
        self.feature_info = [dict(module="features.pool1", num_chs=16, reduction=2),
                             dict(module="features.pool2", num_chs=32, reduction=4)]
        init_weights(self, init, activation=activation)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x 32 x 4 x 4 at 28x28

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(torch.flatten(x, 1))  # N x num_classes


class _Pair(nn.Module):
    """Two 3x3 convolutions with ReLUs: ``relu(F(x))`` plain or ``relu(x + F(x))`` with the skip."""

    def __init__(self, width: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.conv2(torch.relu(self.conv1(x)))
        return torch.relu(x + f) if self.residual else torch.relu(f)


class DeepStackNet(Classifier):
    """``depth`` weight layers: a 3x3 stem, ``(depth - 2) / 2`` pairs of 3x3 convolutions (ResNet's
    basic block without batch norm, with or without its identity skip), global average pooling and
    a linear classifier. The convolutions' output gradients are what ``vanishing-gradients`` reads."""

    def __init__(self, *, depth: int, width: int = 8, residual: bool = False, init: str = "default",
                 in_chans: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 4 or depth % 2:
            raise ConfigError(f"DeepStackNet depth must be an even integer >= 4 (stem + pairs + classifier), got {depth!r}")
        self.stem = nn.Conv2d(in_chans, width, 3, padding=1)
        self.blocks = nn.Sequential(*(_Pair(width, residual) for _ in range((depth - 2) // 2)))
        self.fc = nn.Linear(width, num_classes)
        self.feature_info = [dict(module="blocks", num_chs=width, reduction=1)]
        init_weights(self, init, activation="relu")

    def convs(self) -> list[tuple[str, nn.Conv2d]]:
        """The convolutions in depth order, with their names."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, nn.Conv2d)]

    def forward_features(self, x: Tensor) -> Tensor:
        return self.blocks(torch.relu(self.stem(x)))  # N x width x H x W

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean((2, 3)))  # N x num_classes


class IdentityStack(nn.Module):
    """``layers`` 3x3 convolutions, image -> ``width`` maps -> ... -> image, ReLU between them;
    ``y = F(x)`` (plain) or ``y = x + F(x)`` (residual, He et al. 2016 §3.1: the identity is F = 0)."""

    def __init__(self, *, layers: int, width: int = 8, residual: bool = False, in_chans: int = 1) -> None:
        super().__init__()
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 2:
            raise ConfigError(f"IdentityStack layers must be an integer >= 2, got {layers!r}")
        self.residual = residual
        chans = [in_chans, *([width] * (layers - 1)), in_chans]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans, chans[1:])):
            mods.append(nn.Conv2d(a, b, 3, padding=1))
            if i < layers - 1:
                mods.append(nn.ReLU())
        self.body = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        f = self.body(x)  # N x C x H x W, the input's shape
        return x + f if self.residual else f


def relative_error(pred: Tensor, target: Tensor) -> float:
    """``||pred - target||^2 / ||target||^2``: the share of the target's energy not reproduced."""
    pred, target = pred.detach(), target.detach()
    return float(((pred - target) ** 2).sum() / (target**2).sum().clamp_min(math.ulp(1.0)))
