"""airbench's network: Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
arXiv:2404.00498 (2024), the fastest published CIFAR-10 training recipe, and a smaller one for a CPU.

    whiten k x k (fixed filters that whiten the training patches, and their negatives) -> GELU
    ConvGroup w1: conv 3x3 -> max-pool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU
    ConvGroup w2                                                        (each group halves the size)
    ConvGroup w3
    global max-pool -> linear (no bias) -> x scale

The first layer is not learned: its filters are the eigenvectors of the covariance of the
training images' k x k patches, each divided by the square root of its eigenvalue (plus eps), and
the same filters negated, so the GELU after them keeps both signs (paper §3.2, "patch-whitening
initialization"; 2 x C x k x k channels, only their bias is trained). They are fitted once, from the
first training images, by :meth:`AirbenchNet.init_from_data`, which the training engine calls
before the first update; until then they pass the raw patch pixels (the identity basis and its
negative), so an unfitted net still works. The fitted filters are a buffer of the state dict.

``airbench94`` is the paper's CIFAR-10 network (widths 64/256/256, 2x2 whitening, 32x32 RGB).
``airbench_mini`` is the size that trains on 2 CPU cores: widths 32/64/128 for 28x28 grey images,
11.7M multiply-adds against 118.1M, the network of cnnlab's Fashion-MNIST speed run (recipe
``airbench_fashion``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier
from cnnlab.models.registry import build_config, register_model

__all__ = ["AirbenchConfig", "PatchWhitening", "ConvGroup", "AirbenchNet", "airbench94", "airbench_mini"]

# Widths of the three ConvGroups (hyp["net"]["widths"] in airbench94.py).
WIDTHS = {
    "airbench94": (64, 256, 256),  # the paper's CIFAR-10 net, 94% in 9.9 epochs on an A100
    "airbench_mini": (32, 64, 128),  # cnnlab's CPU size
}


@dataclass(frozen=True)
class AirbenchConfig:
    widths: tuple[int, int, int] = (64, 256, 256)
    whiten_kernel: int = 2  # k of the k x k whitening patches (paper: 2)
    whiten_eps: float = 5e-4  # added to the eigenvalues before 1/sqrt (paper: 5e-4)
    logit_scale: float = 1 / 9  # the output is multiplied by this (paper: 1/9, "scaling_factor")

    def __post_init__(self) -> None:
        w = self.widths
        if (not isinstance(w, (tuple, list)) or len(w) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in w)):
            raise ConfigError(f"widths must be three positive integers, got {w!r}")
        object.__setattr__(self, "widths", tuple(w))
        k = self.whiten_kernel
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 7:
            raise ConfigError(f"whiten_kernel must be an integer in [1, 7], got {k!r}")
        for field in ("whiten_eps", "logit_scale"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) < float("inf"):
                raise ConfigError(f"{field} must be a positive number, got {v!r}")


class PatchWhitening(nn.Conv2d):
    """A k x k convolution with fixed filters (a buffer, not a parameter) and a learned bias.

    :meth:`fit` sets the filters to whiten the patches of ``x``: W = V diag(1 / sqrt(lambda + eps)),
    with (lambda, V) the eigen-decomposition of the patches' covariance, stacked with -W.
    """

    def __init__(self, in_channels: int, kernel_size: int, eps: float) -> None:
        n = in_channels * kernel_size * kernel_size
        super().__init__(in_channels, 2 * n, kernel_size, bias=True)
        del self.weight  # fixed filters: a buffer, so no optimiser updates (or decays) them
        basis = torch.eye(n).view(n, in_channels, kernel_size, kernel_size)  # before fit: the raw pixels
        self.register_buffer("weight", torch.cat([basis, -basis]))
        self.register_buffer("fitted", torch.tensor(False))
        nn.init.zeros_(self.bias)
        self.eps = float(eps)

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """Whiten the k x k patches of the images ``x`` (N x C x H x W), largest eigenvalue first."""
        c, k = self.in_channels, self.kernel_size[0]
        patches = x.float().unfold(2, k, 1).unfold(3, k, 1)  # N x C x H' x W' x k x k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        # The paper's estimate: the second moment, not centred (the inputs are normalised already).
        cov = patches.T.double() @ patches.double() / len(patches)
        eigenvalues, vectors = torch.linalg.eigh(cov)
        eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)
        w = (vectors / torch.sqrt(eigenvalues.clamp_min(0) + self.eps)).T.float().reshape(-1, c, k, k)
        self.weight.copy_(torch.cat([w, -w]).to(self.weight))
        self.fitted.fill_(True)


class ConvGroup(nn.Module):
    """conv 3x3 -> max-pool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU (airbench's ConvGroup)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = nn.GELU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.pool(self.conv1(x))))
        return self.act2(self.bn2(self.conv2(x)))


class AirbenchNet(Classifier):
    classifier_name = "fc"

    def __init__(self, cfg: AirbenchConfig, *, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        w1, w2, w3 = cfg.widths
        self.whiten = PatchWhitening(in_chans, cfg.whiten_kernel, cfg.whiten_eps)
        self.act = nn.GELU()
        self.group1 = ConvGroup(self.whiten.out_channels, w1)
        self.group2 = ConvGroup(w1, w2)
        self.group3 = ConvGroup(w2, w3)
        self.global_pool = nn.AdaptiveMaxPool2d(1)  # the paper: MaxPool2d(3) on its 3x3 maps
        self.fc = nn.Linear(w3, num_classes, bias=False)
        self.feature_info = [
            dict(module="group1", num_chs=w1, reduction=2),
            dict(module="group2", num_chs=w2, reduction=4),
            dict(module="group3", num_chs=w3, reduction=8),
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        # airbench94.py's Conv.reset_parameters: PyTorch's default, then the first C_in filters of each
        # 3x3 convolution set to the identity (Dirac), so each group starts by passing its input on.
        for m in self.modules():
            if type(m) is nn.Conv2d:
                nn.init.dirac_(m.weight[: m.in_channels])

    def init_from_data(self, x: Tensor) -> None:
        """Fit the whitening filters to the training images ``x`` once (a loaded or fitted net keeps its own)."""
        if not bool(self.whiten.fitted):
            self.whiten.fit(x)

    def forward_features(self, x: Tensor) -> Tensor:
        # N x C x 32 x 32 (CIFAR) or N x 1 x 28 x 28 (Fashion-MNIST), k = 2
        x = self.act(self.whiten(x))  # N x 2Ck^2 x 31 x 31  |  27 x 27
        x = self.group1(x)  # N x w1 x 15 x 15  |  13 x 13
        x = self.group2(x)  # N x w2 x 7 x 7  |  6 x 6
        return self.group3(x)  # N x w3 x 3 x 3  |  3 x 3

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.global_pool(x), 1)) * self.cfg.logit_scale


_DEPARTURES = (
    "BN's scale is learned (the paper fixes it at 1, with momentum 0.6 and eps 1e-12); the whitening "
    "bias trains for the whole run (the paper: 3 epochs); no lookahead or EMA of the weights; trained by "
    "cnnlab's engine with its recipes, not the paper's loop"
)


@register_model(family="airbench", paper="Jordan, 2024", input_size=(3, 32, 32), num_classes=10,
                recipe="resnet_cifar", departures=_DEPARTURES)
def airbench94(*, num_classes: int = 10, in_chans: int = 3, **config) -> AirbenchNet:
    """airbench94's CIFAR-10 network: 2x2 patch whitening and three ConvGroups of 64/256/256 (about 1.97M params)."""
    cfg = build_config(AirbenchConfig, "airbench94", {"widths": WIDTHS["airbench94"], **config})
    return AirbenchNet(cfg, num_classes=num_classes, in_chans=in_chans)


@register_model(family="airbench", paper="Jordan, 2024", input_size=(1, 28, 28), num_classes=10,
                recipe="airbench_fashion",
                departures="widths 32/64/128 for 28x28 grey images on a CPU (the paper: 64/256/256); logits not "
                           "scaled by 1/9; " + _DEPARTURES)
def airbench_mini(*, num_classes: int = 10, in_chans: int = 1, **config) -> AirbenchNet:
    """airbench's network at a CPU's size: widths 32/64/128 for 28x28 grey images (cnnlab's speed run)."""
    # logit_scale 1: the recipe uses ordinary SGD rates, not the paper's (lr 11.5 on summed losses)
    cfg = build_config(AirbenchConfig, "airbench_mini", {"widths": WIDTHS["airbench_mini"], "logit_scale": 1.0,
                                                         **config})
    return AirbenchNet(cfg, num_classes=num_classes, in_chans=in_chans)
