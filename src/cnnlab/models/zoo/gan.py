"""Deep convolutional GANs: Radford, Metz & Chintala, "Unsupervised representation learning with deep
convolutional generative adversarial networks", ICLR 2016 (DCGAN), at the size of grey digits.

The paper's "architecture guidelines for stable Deep Convolutional GANs" (§3), and where each is:

    1. no pooling: strided convolutions (discriminator) and fractional-strided
       convolutions (generator)                              -> ``Discriminator.conv*``, ``Generator.up*``
    2. batch norm in both networks, except the generator's output layer and
       the discriminator's input layer                        -> ``bn*`` (none after ``up`` last, ``conv1``)
    3. no fully connected hidden layers: the generator's first layer "could be called fully
       connected" (a matrix multiply, reshaped to a 4-d tensor); the discriminator's last
       convolution is flattened into a single sigmoid output -> ``Generator.project``, ``Discriminator.out``
    4. ReLU in the generator except its output, which is tanh -> ``relu*``, ``tanh``
    5. LeakyReLU (slope 0.2) in every discriminator layer    -> ``lrelu*``

The networks, as tables (the paper's LSUN generator, Fig. 1: project 100 -> 4x4x1024, then
fractional-strided convolutions to 8x8x512, 16x16x256, 32x32x128, 64x64x3; here two up-stages for
28x28 digits, 7 -> 14 -> 28, or 32x32 with ``image_size=32``, 8 -> 16 -> 32):

    generator      z (latent_dim) -> project: 7x7x(2w) -> up1: 14x14xw -> up2: 28x28xC, tanh
    discriminator  x 28x28xC -> conv1: 14x14xw -> conv2: 7x7x(2w) -> flatten -> 1 logit

``w`` is ``width`` (64 by default; the paper's widths grow by 2 per stage as here, from 128).

``cdcgan`` conditions both networks on the class (Mirza & Osindero 2014, "Conditional generative
adversarial nets"): the generator reads [z, one-hot(y)], the discriminator the image with K one-hot
label maps stacked as extra channels.

Conventions (the "gan" task relies on them): images are in [-1, 1] (the generator's tanh range;
the task maps the data set's normalised images there); ``forward(x)`` is the discriminator's logit
of each image being real, (N, 1), and for ``cdcgan`` (N, K), the logit under each class label, so
that ``cnnlab summary``, ``torch.fx`` and the ONNX export see one image-in, tensor-out network
(the generator's parameters are listed beside it). ``generate(z, y)`` draws images.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.registry import build_config, register_model

__all__ = ["DCGANConfig", "Generator", "Discriminator", "DCGAN", "dcgan", "cdcgan", "init_dcgan_weights"]

LEAKY_SLOPE = 0.2  # §3: "the slope of the leak was set to 0.2 in all models"
# §4: "All weights were initialized from a zero-centered Normal distribution with standard deviation 0.02"
INIT_STD = 0.02


@dataclass(frozen=True)
class DCGANConfig:
    latent_dim: int = 100  # §4 and Fig. 1: "100 dimensional uniform distribution Z" (normal here, see below)
    width: int = 64  # w: maps of the generator's last hidden stage and the discriminator's first
    image_size: int = 28  # 28 (MNIST; 7 -> 14 -> 28) or 32 (8 -> 16 -> 32)
    conditional: bool = False  # cdcgan: condition both networks on the class

    def __post_init__(self) -> None:
        for name in ("latent_dim", "width"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 4096:
                raise ConfigError(f"DCGANConfig.{name} must be an integer in 1..4096, got {v!r}")
        if self.image_size not in (28, 32):
            raise ConfigError(f"DCGANConfig.image_size must be 28 or 32, got {self.image_size!r}")
        if not isinstance(self.conditional, bool):
            raise ConfigError(f"DCGANConfig.conditional must be true or false, got {self.conditional!r}")

    @property
    def base(self) -> int:
        """The side of the smallest maps: the image side / 4 (two stride-2 stages)."""
        return self.image_size // 4


def _one_hot(y: Tensor, k: int, like: Tensor) -> Tensor:
    return F.one_hot(y.long(), k).to(like.dtype)


class Generator(nn.Module):
    """z (N, latent_dim) [and y] -> image (N, C, H, W) in [-1, 1]."""

    def __init__(self, cfg: DCGANConfig, *, out_chans: int, num_classes: int) -> None:
        super().__init__()
        self.latent_dim, self.num_classes, self.conditional = cfg.latent_dim, num_classes, cfg.conditional
        w, s = cfg.width, cfg.base
        z_in = cfg.latent_dim + (num_classes if cfg.conditional else 0)
        # Guideline 3: the projection is a matrix multiply reshaped to 2w x s x s; written as an s x s
        # transposed convolution of the 1x1 "image" z, which is that matrix multiply.
        self.project = nn.Sequential(OrderedDict([
            ("convt", nn.ConvTranspose2d(z_in, 2 * w, s, bias=False)), ("bn", nn.BatchNorm2d(2 * w)),
            ("relu", nn.ReLU())]))  # fmt: skip
        # Departure: 4x4 kernels with stride 2 and padding 1 double the side exactly; the paper's code
        # used 5x5 kernels.
        self.up1 = nn.Sequential(OrderedDict([
            ("convt", nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False)), ("bn", nn.BatchNorm2d(w)),
            ("relu", nn.ReLU())]))  # fmt: skip
        self.up2 = nn.ConvTranspose2d(w, out_chans, 4, stride=2, padding=1)  # guideline 2: no BN at the output
        self.tanh = nn.Tanh()  # guideline 4

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        z = z.flatten(1)  # N x latent_dim ((N, latent_dim, 1, 1) is accepted too)
        if self.conditional:
            if y is None:
                raise ConfigError("cdcgan's generator needs the class labels y")
            z = torch.cat([z, _one_hot(y, self.num_classes, z)], 1)
        x = self.project(z[:, :, None, None])  # N x 2w x s x s
        x = self.up1(x)  # N x w x 2s x 2s
        return self.tanh(self.up2(x))  # N x C x 4s x 4s


class Discriminator(nn.Module):
    """image (N, C, H, W) in [-1, 1] [and y] -> the logit of "real", (N,)."""

    def __init__(self, cfg: DCGANConfig, *, in_chans: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes, self.conditional = num_classes, cfg.conditional
        w, s = cfg.width, cfg.base
        c_in = in_chans + (num_classes if cfg.conditional else 0)
        # guideline 2: no batch norm on the input layer
        self.conv1 = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(c_in, w, 4, stride=2, padding=1)), ("lrelu", nn.LeakyReLU(LEAKY_SLOPE))]))  # fmt: skip
        self.conv2 = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(w, 2 * w, 4, stride=2, padding=1, bias=False)), ("bn", nn.BatchNorm2d(2 * w)),
            ("lrelu", nn.LeakyReLU(LEAKY_SLOPE))]))  # fmt: skip
        self.flatten = nn.Flatten(1)
        self.out = nn.Linear(2 * w * s * s, 1)  # guideline 3: flattened into one output (its sigmoid is in the loss)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.conditional:
            if y is None:
                raise ConfigError("cdcgan's discriminator needs the class labels y")
            maps = _one_hot(y, self.num_classes, x)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, maps], 1)  # N x (C + K) x H x W
        x = self.conv1(x)  # N x w x H/2 x W/2
        x = self.conv2(x)  # N x 2w x H/4 x W/4
        return self.out(self.flatten(x)).squeeze(1)  # N


def init_dcgan_weights(model: nn.Module) -> None:
    """§4: weights ~ N(0, 0.02); batch-norm scales ~ N(1, 0.02) and shifts 0 (the authors' code)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, INIT_STD)
            nn.init.zeros_(m.bias)


class DCGAN(nn.Module):
    """A generator and a discriminator (see the module docstring); ``forward(x)`` is the discriminator."""

    def __init__(self, cfg: DCGANConfig, *, in_chans: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_dim, self.num_classes, self.conditional = cfg.latent_dim, num_classes, cfg.conditional
        self.image_shape = (in_chans, cfg.image_size, cfg.image_size)
        self.generator = Generator(cfg, out_chans=in_chans, num_classes=num_classes)
        self.discriminator = Discriminator(cfg, in_chans=in_chans, num_classes=num_classes)
        self.feature_info = [dict(module="discriminator.conv1", num_chs=cfg.width, reduction=2),
                             dict(module="discriminator.conv2", num_chs=2 * cfg.width, reduction=4)]  # fmt: skip
        init_dcgan_weights(self)

    def sample_latent(self, n: int, *, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> Tensor:
        """``n`` draws z ~ N(0, I) (departure: the paper draws z uniformly in [-1, 1]^100; the normal
        prior is what the authors' later code and most re-implementations use)."""
        return torch.randn((n, self.latent_dim), generator=generator).to(device)

    def generate(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Images in [-1, 1] from latents ``z`` (and class labels ``y`` for cdcgan)."""
        return self.generator(z, y if self.conditional else None)

    def score(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The discriminator's logit that each image is real, (N,)."""
        return self.discriminator(x, y if self.conditional else None)

    def forward(self, x: Tensor) -> Tensor:
        if not self.conditional:
            return self.discriminator(x)[:, None]  # N x 1
        n, k = x.shape[0], self.num_classes
        labels = torch.arange(k, device=x.device).repeat(n)  # every image under every label
        return self.discriminator(x.repeat_interleave(k, 0), labels).view(n, k)  # N x K


# ---------------------------------------------------------------------------------------------
# The registered builders
# ---------------------------------------------------------------------------------------------

_DEPARTURES = ("two up-sampling stages for 28x28 digits (the paper: four, to 64x64), widths 128/64; 4x4 kernels "
               "(the paper's code: 5x5); z ~ N(0, I) instead of uniform; the discriminator's output is a "
               "linear layer on the flattened maps (the paper's 'single sigmoid output', sigmoid in the loss)")


def _check_input(name: str, in_chans: int, num_classes: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"{name}: num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ConfigError(f"{name}: in_chans must be a positive integer, got {in_chans!r}")


@register_model(family="gan", paper="Radford et al., 2016", input_size=(1, 28, 28), num_classes=10, recipe="dcgan",
                task="gan", departures=_DEPARTURES + "; num_classes is unused (no labels)")
def dcgan(*, num_classes: int = 10, in_chans: int = 1, **config) -> DCGAN:
    """DCGAN for grey digits: a fractional-strided generator and a strided discriminator (about 0.9M params)."""
    _check_input("dcgan", in_chans, num_classes)
    cfg = build_config(DCGANConfig, "dcgan", config)
    if cfg.conditional:
        raise ConfigError("dcgan: conditional=True is cdcgan")
    return DCGAN(cfg, in_chans=in_chans, num_classes=num_classes)


@register_model(family="gan", paper="Mirza & Osindero, 2014; Radford et al., 2016", input_size=(1, 28, 28),
                num_classes=10, recipe="dcgan", task="gan",
                departures=_DEPARTURES + "; the class conditions the generator as a one-hot vector beside z and the "
                                         "discriminator as one-hot maps beside the image")
def cdcgan(*, num_classes: int = 10, in_chans: int = 1, **config) -> DCGAN:
    """Class-conditional DCGAN: G(z, y) and D(x, y)."""
    _check_input("cdcgan", in_chans, num_classes)
    return DCGAN(build_config(DCGANConfig, "cdcgan", config, conditional=True), in_chans=in_chans,
                 num_classes=num_classes)

