"""Autoencoders and variational autoencoders, as lecture 002 walks through them ("Some background
first: Autoencoders" ... "Variational Autoencoders: Generating Data!").

    ae_linear   x -> z = W x + b -> x̂ = sigmoid(W' z + b')      "Originally: Linear + nonlinearity (sigmoid)"
    ae_mlp      fully connected + ReLU, both ways               "Later: Deep, fully-connected"
    ae_conv     conv + ReLU + pool down, 2x2 stride-2 up-convs  "Later: ReLU CNN (upconv)"
    dae_conv    ae_conv fed a corrupted input in training       Vincent et al. 2008
    vae_mlp     Gaussian encoder q(z|x), Bernoulli decoder p(x|z), one tanh hidden layer of 500 (K&W 2014 App. C)
    vae_conv    the same with a convolutional encoder and an up-convolution decoder

Conventions shared by every model here (the reconstruction and VAE tasks rely on them):
- the input ``x`` is the normalised image the data bundle holds; reconstructions are **pixels in
  [0, 1]** (a sigmoid output), compared with the un-normalised image;
- ``forward(x)`` returns the reconstruction (N, C, H, W) in training and in evaluation alike (a VAE
  decodes its posterior mean, no sampling), so ``cnnlab summary`` and ``torch.fx`` see one tensor;
- ``forward_train(x)`` returns what a loss needs: :class:`AEOutput` (pre-sigmoid logits) or
  :class:`VAEOutput` (logits at a reparameterised sample, and the posterior's mean and log-variance);
- ``num_classes`` is accepted (the zoo's builders share one signature) and unused: no labels.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.activations import ACTIVATIONS
from cnnlab.models.registry import build_config, register_model

__all__ = [
    "AEOutput", "VAEOutput", "MLPAutoencoderConfig", "ConvAutoencoderConfig", "VAEConfig",
    "Autoencoder", "MLPAutoencoder", "ConvEncoder", "ConvDecoder", "ConvAutoencoder", "VAE",
    "ae_linear", "ae_mlp", "ae_conv", "dae_conv", "vae_mlp", "vae_conv",
]  # fmt: skip

NOISES = ("none", "gaussian", "masking")
LIKELIHOODS = ("bernoulli", "gaussian")


class AEOutput(NamedTuple):
    """An autoencoder's training output: the reconstruction before its sigmoid (N, C, H, W)."""

    logits: Tensor


class VAEOutput(NamedTuple):
    """A VAE's training output: decoder logits at ``z = mu + sigma * eps`` and q(z|x)'s parameters."""

    logits: Tensor  # N x C x H x W: Bernoulli logits, or the Gaussian mean before its sigmoid
    mu: Tensor  # N x latent_dim
    logvar: Tensor  # N x latent_dim, log sigma^2
    z: Tensor  # N x latent_dim, the reparameterised sample


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_ints(owner: str, field: str, value: object, *, allow_empty: bool = True) -> None:
    if not isinstance(value, tuple) or (not value and not allow_empty) or not all(_positive_int(v) for v in value):
        raise ConfigError(f"{owner}.{field} must be a tuple of positive integers, got {value!r}")


def _check_image_size(owner: str, value: object) -> None:
    if not (isinstance(value, tuple) and len(value) == 2 and all(_positive_int(v) for v in value)):
        raise ConfigError(f"{owner}.image_size must be (height, width) of positive integers, got {value!r}")


def _mlp(sizes: Sequence[int], activation: str) -> list[tuple[str, nn.Module]]:
    """fc1, act1, fc2, act2, ... between consecutive ``sizes`` (no activation when there is one size)."""
    layers: list[tuple[str, nn.Module]] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        layers += [(f"fc{i}", nn.Linear(a, b)), (f"act{i}", ACTIVATIONS[activation]())]
    return layers


# ---------------------------------------------------------------------------------------------
# Deterministic autoencoders
# ---------------------------------------------------------------------------------------------


class Autoencoder(nn.Module):
    """``decode(encode(x))``; subclasses build ``encoder`` (x -> z) and ``decoder`` (z -> logits)."""

    encoder: nn.Module
    decoder: nn.Module
    feature_info: list[dict]
    noise: str = "none"
    noise_level: float = 0.0

    def corrupt(self, x: Tensor) -> Tensor:
        """The denoising autoencoder's corruption q_D(x̃|x), drawn from the global generator."""
        if self.noise == "gaussian":  # additive isotropic Gaussian noise (Vincent et al. 2010 §4.2)
            return x + self.noise_level * torch.randn_like(x)
        # Masking noise (Vincent et al. 2008 §2.3): a fraction of the pixels is destroyed. Departure:
        # they are set to 0 in normalised units, i.e. to the data's mean, not to black.
        keep = (torch.rand_like(x) >= self.noise_level).to(x.dtype)
        return x * keep

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def forward_train(self, x: Tensor) -> AEOutput:
        if self.training and self.noise != "none":
            x = self.corrupt(x)  # the target stays the clean image
        return AEOutput(self.decoder(self.encoder(x)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.forward_train(x).logits)  # N x C x H x W pixels in [0, 1]


@dataclass(frozen=True)
class MLPAutoencoderConfig:
    hidden: tuple[int, ...] = (512, 256)  # encoder widths (the decoder mirrors them); () = linear
    latent_dim: int = 32  # the code z: "usually smaller than x" (lecture 002)
    activation: str = "relu"  # of the hidden layers (and the code, when there are hidden layers)
    image_size: tuple[int, int] = (28, 28)

    def __post_init__(self) -> None:
        _check_ints("MLPAutoencoderConfig", "hidden", self.hidden)
        if not _positive_int(self.latent_dim):
            raise ConfigError(f"MLPAutoencoderConfig.latent_dim must be a positive integer, got {self.latent_dim!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"MLPAutoencoderConfig.activation must be one of {', '.join(ACTIVATIONS)}, "
                              f"got {self.activation!r}")
        _check_image_size("MLPAutoencoderConfig", self.image_size)


class MLPAutoencoder(Autoencoder):
    """Flatten -> fully connected layers to ``latent_dim`` -> mirrored layers -> sigmoid pixels."""

    def __init__(self, cfg: MLPAutoencoderConfig, *, in_chans: int = 1) -> None:
        super().__init__()
        pixels = in_chans * cfg.image_size[0] * cfg.image_size[1]
        sizes = (pixels, *cfg.hidden, cfg.latent_dim)
        enc = _mlp(sizes, cfg.activation)
        if not cfg.hidden:
            enc = enc[:-1]  # the linear autoencoder: z = W x + b, no nonlinearity before the output
        self.encoder = nn.Sequential(OrderedDict([("flatten", nn.Flatten(1)), *enc]))
        dec = _mlp(sizes[::-1], cfg.activation)[:-1]  # linear last layer: the sigmoid is the output's
        self.decoder = nn.Sequential(OrderedDict([*dec, ("unflatten", nn.Unflatten(1, (in_chans, *cfg.image_size)))]))
        self.feature_info = []  # no feature maps: every layer is fully connected


@dataclass(frozen=True)
class ConvAutoencoderConfig:
    channels: tuple[int, ...] = (16, 8)  # one 3x3 conv + ReLU + 2x2 max pool per stage; the last sets the code
    noise: str = "none"  # "none", "gaussian" or "masking" (denoising autoencoder, training mode only)
    noise_level: float = 0.0  # Gaussian: std in normalised units; masking: fraction of pixels destroyed

    def __post_init__(self) -> None:
        _check_ints("ConvAutoencoderConfig", "channels", self.channels, allow_empty=False)
        if self.noise not in NOISES:
            raise ConfigError(f"ConvAutoencoderConfig.noise must be one of {', '.join(NOISES)}, got {self.noise!r}")
        level = self.noise_level
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level < math.inf:
            raise ConfigError(f"ConvAutoencoderConfig.noise_level must be a number >= 0, got {level!r}")
        if self.noise == "masking" and not level < 1:
            raise ConfigError(f"ConvAutoencoderConfig.noise_level is the masked fraction: it must be < 1, got {level!r}")


class ConvEncoder(nn.Sequential):
    """x (N, C, H, W) -> z (N, channels[-1], H / 2^k, W / 2^k): the lecture's "ReLU CNN"."""

    def __init__(self, in_chans: int, channels: Sequence[int]) -> None:
        layers: list[tuple[str, nn.Module]] = []
        prev = in_chans
        for i, c in enumerate(channels, start=1):
            layers += [(f"conv{i}", nn.Conv2d(prev, c, 3, padding=1)), (f"relu{i}", nn.ReLU()),
                       (f"pool{i}", nn.MaxPool2d(2))]  # fmt: skip
            prev = c
        super().__init__(OrderedDict(layers))


class ConvDecoder(nn.Sequential):
    """z -> logits: 2x2 stride-2 up-convolutions ("upconv") mirroring the encoder, then a 3x3 conv."""

    def __init__(self, in_chans: int, channels: Sequence[int]) -> None:
        layers: list[tuple[str, nn.Module]] = []
        rev = list(channels)[::-1]
        for i, c in enumerate(rev, start=1):
            out = rev[i] if i < len(rev) else rev[-1]
            layers += [(f"up{i}", nn.ConvTranspose2d(c, out, 2, stride=2)), (f"relu{i}", nn.ReLU())]
        layers.append(("out", nn.Conv2d(rev[-1], in_chans, 3, padding=1)))  # logits; the sigmoid follows
        super().__init__(OrderedDict(layers))


class ConvAutoencoder(Autoencoder):
    """Masci et al. 2011's convolutional autoencoder with max pooling, decoded by up-convolutions."""

    def __init__(self, cfg: ConvAutoencoderConfig, *, in_chans: int = 1) -> None:
        super().__init__()
        self.encoder = ConvEncoder(in_chans, cfg.channels)
        self.decoder = ConvDecoder(in_chans, cfg.channels)
        self.noise, self.noise_level = cfg.noise, float(cfg.noise_level)
        self.feature_info = [dict(module=f"encoder.pool{i}", num_chs=c, reduction=2**i)
                             for i, c in enumerate(cfg.channels, start=1)]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Variational autoencoders (Kingma & Welling 2014)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VAEConfig:
    encoder: str = "mlp"  # "mlp" (K&W App. C) or "conv" (strided convs down, up-convolutions up)
    latent_dim: int = 20  # K&W Fig. 2 trains Nz = 2 ... 200; 2 gives pictures of the latent space
    hidden: tuple[int, ...] = (500,)  # mlp: K&W's MNIST nets have one hidden layer of 500 units
    activation: str = "tanh"  # mlp: K&W App. C.1, h = tanh(W z + b)
    channels: tuple[int, ...] = (32, 64)  # conv: 4x4 stride-2 convs (28 -> 14 -> 7), mirrored up
    likelihood: str = "bernoulli"  # p(x|z): "bernoulli" (K&W's MNIST) or "gaussian" (their Frey faces)
    output: str = "sigmoid"  # the decoder mean in (0, 1) (K&W App. C.2); "identity" for unbounded data (gaussian)
    beta: float = 1.0  # weight of the KL term in the loss (Higgins et al. 2017); 1 is the ELBO
    image_size: tuple[int, int] = (28, 28)

    def __post_init__(self) -> None:
        if self.encoder not in ("mlp", "conv"):
            raise ConfigError(f"VAEConfig.encoder must be 'mlp' or 'conv', got {self.encoder!r}")
        if not _positive_int(self.latent_dim):
            raise ConfigError(f"VAEConfig.latent_dim must be a positive integer, got {self.latent_dim!r}")
        _check_ints("VAEConfig", "hidden", self.hidden)
        _check_ints("VAEConfig", "channels", self.channels, allow_empty=False)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"VAEConfig.activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"VAEConfig.likelihood must be one of {', '.join(LIKELIHOODS)}, got {self.likelihood!r}")
        if self.output not in ("sigmoid", "identity") or (self.output == "identity" and self.likelihood != "gaussian"):
            raise ConfigError(f"VAEConfig.output must be 'sigmoid' (or 'identity' with the gaussian likelihood), "
                              f"got {self.output!r}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not 0 <= self.beta < math.inf:
            raise ConfigError(f"VAEConfig.beta must be a number >= 0, got {self.beta!r}")
        _check_image_size("VAEConfig", self.image_size)
        if self.encoder == "conv" and any(s % 2 ** len(self.channels) for s in self.image_size):
            raise ConfigError(f"VAEConfig.image_size {self.image_size} must be divisible by 2^{len(self.channels)} "
                              f"for {len(self.channels)} stride-2 stages")


class VAE(nn.Module):
    """q(z|x) = N(mu(x), diag sigma^2(x)), p(z) = N(0, I), p(x|z) Bernoulli or Gaussian (Kingma & Welling 2014).

    ``encode(x) -> (mu, logvar)``; ``decode(z)`` gives decoder logits; ``log_likelihood(target,
    logits)`` is log p(target|z) summed over pixels (N,); ``decode_mean(z)`` the mean image in [0, 1].
    """

    def __init__(self, cfg: VAEConfig, *, in_chans: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.likelihood, self.beta, self.latent_dim = cfg.likelihood, float(cfg.beta), cfg.latent_dim
        h, w = cfg.image_size
        shape = (in_chans, h, w)
        if cfg.encoder == "mlp":
            sizes = (in_chans * h * w, *cfg.hidden)
            self.encoder = nn.Sequential(OrderedDict([("flatten", nn.Flatten(1)), *_mlp(sizes, cfg.activation)]))
            features = sizes[-1]
            dec = _mlp((cfg.latent_dim, *cfg.hidden[::-1]), cfg.activation)
            dec += [("out", nn.Linear(cfg.hidden[0] if cfg.hidden else cfg.latent_dim, in_chans * h * w)),
                    ("unflatten", nn.Unflatten(1, shape))]  # fmt: skip
            self.feature_info = []
        else:
            enc, prev = [], in_chans
            for i, c in enumerate(cfg.channels, start=1):  # 4x4/2 pad 1 halves the side exactly
                enc += [(f"conv{i}", nn.Conv2d(prev, c, 4, stride=2, padding=1)), (f"relu{i}", nn.ReLU())]
                prev = c
            k = len(cfg.channels)
            small = (prev, h // 2**k, w // 2**k)  # 64 x 7 x 7 at 28x28
            features = math.prod(small)
            self.encoder = nn.Sequential(OrderedDict([*enc, ("flatten", nn.Flatten(1))]))
            rev = list(cfg.channels[::-1]) + [in_chans]
            dec = [("fc", nn.Linear(cfg.latent_dim, features)), ("relu0", nn.ReLU()), ("unflatten", nn.Unflatten(1, small))]
            for i, (a, b) in enumerate(zip(rev[:-1], rev[1:]), start=1):
                dec.append((f"up{i}", nn.ConvTranspose2d(a, b, 4, stride=2, padding=1)))
                if i < len(rev) - 1:
                    dec.append((f"relu_up{i}", nn.ReLU()))
            self.feature_info = [dict(module=f"encoder.relu{i}", num_chs=c, reduction=2**i)
                                 for i, c in enumerate(cfg.channels, start=1)]  # fmt: skip
        self.fc_mu = nn.Linear(features, cfg.latent_dim)
        self.fc_logvar = nn.Linear(features, cfg.latent_dim)
        self.decoder = nn.Sequential(OrderedDict(dec))
        if cfg.likelihood == "gaussian":
            # One learned variance per channel, shared by the pixels: K&W's decoder outputs one per
            # pixel, which on MNIST's always-black borders shrinks to 0 and the density diverges.
            self.decoder_logvar = nn.Parameter(torch.full((in_chans,), math.log(0.1**2)))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)  # N x features
        return self.fc_mu(h), self.fc_logvar(h)  # N x latent_dim each

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)  # N x C x H x W logits

    def mean_of(self, logits: Tensor) -> Tensor:
        return logits if self.cfg.output == "identity" else torch.sigmoid(logits)

    def decode_mean(self, z: Tensor) -> Tensor:
        """E[x|z]: the Bernoulli probabilities or the Gaussian mean."""
        return self.mean_of(self.decode(z))

    def log_likelihood(self, target: Tensor, logits: Tensor) -> Tensor:
        """log p(target | z) summed over pixels, per image (N,); ``logits = decode(z)``."""
        if self.likelihood == "bernoulli":
            # For [0, 1] grey levels (not binarised) this is the cross-entropy K&W and most VAEs use
            # on MNIST; it is a proper log-probability only for binary pixels.
            ll = -F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
        else:
            logvar = self.decoder_logvar.view(1, -1, 1, 1)
            mean = self.mean_of(logits.float())
            ll = -0.5 * (math.log(2 * math.pi) + logvar + (target - mean) ** 2 * torch.exp(-logvar))
        return ll.flatten(1).sum(1)

    def forward_train(self, x: Tensor) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # the reparameterisation trick (K&W §2.4)
        return VAEOutput(self.decode(z), mu, logvar, z)

    def forward(self, x: Tensor) -> Tensor:
        mu, _ = self.encode(x)
        return self.decode_mean(mu)  # N x C x H x W: the reconstruction at the posterior mean


# ---------------------------------------------------------------------------------------------
# The registered builders
# ---------------------------------------------------------------------------------------------

_UNUSED = "num_classes is unused (no labels)"


@register_model(family="autoencoder", paper="Baldi & Hornik, 1989", input_size=(1, 28, 28), num_classes=10,
                recipe="autoencoder", task="reconstruction",
                departures=f"linear encoder and decoder to a 32-value code, sigmoid output; {_UNUSED}")
def ae_linear(*, num_classes: int = 10, in_chans: int = 1, **config) -> MLPAutoencoder:
    """The original autoencoder: linear maps to and from the code, a sigmoid on the output (51K params)."""
    cfg = build_config(MLPAutoencoderConfig, "ae_linear", config, hidden=())
    return MLPAutoencoder(cfg, in_chans=in_chans)


@register_model(family="autoencoder", paper="Hinton & Salakhutdinov, 2006", input_size=(1, 28, 28), num_classes=10,
                recipe="autoencoder", task="reconstruction",
                departures=f"784-512-256-32 with ReLUs (the paper: 784-1000-500-250-30, logistic units, RBM "
                           f"pre-training); sigmoid output; {_UNUSED}")
def ae_mlp(*, num_classes: int = 10, in_chans: int = 1, **config) -> MLPAutoencoder:
    """A deep fully connected autoencoder with ReLUs."""
    return MLPAutoencoder(build_config(MLPAutoencoderConfig, "ae_mlp", config), in_chans=in_chans)


@register_model(family="autoencoder", paper="Masci et al., 2011", input_size=(1, 28, 28), num_classes=10,
                recipe="autoencoder", task="reconstruction",
                departures=f"conv3-16, conv3-8 with max pooling (code 8x7x7 = 392 values for 784 pixels); "
                           f"2x2 stride-2 up-convolutions instead of unpooling; sigmoid output; {_UNUSED}")
def ae_conv(*, num_classes: int = 10, in_chans: int = 1, **config) -> ConvAutoencoder:
    """A convolutional autoencoder with an up-convolution ("upconv") decoder."""
    return ConvAutoencoder(build_config(ConvAutoencoderConfig, "ae_conv", config), in_chans=in_chans)


@register_model(family="autoencoder", paper="Vincent et al., 2008", input_size=(1, 28, 28), num_classes=10,
                recipe="autoencoder", task="reconstruction",
                departures=f"ae_conv's network; additive Gaussian noise (std 0.5 in normalised units) on the input "
                           f"in training (noise='masking' for the paper's masking noise, masked pixels set to the "
                           f"mean); the target is the clean image; {_UNUSED}")
def dae_conv(*, num_classes: int = 10, in_chans: int = 1, **config) -> ConvAutoencoder:
    """A denoising convolutional autoencoder: reconstruct the clean image from a corrupted one."""
    cfg = build_config(ConvAutoencoderConfig, "dae_conv", config, noise="gaussian", noise_level=0.5)
    if cfg.noise == "none":
        raise ConfigError("dae_conv: noise must be 'gaussian' or 'masking' (ae_conv is the noiseless one)")
    return ConvAutoencoder(cfg, in_chans=in_chans)


@register_model(family="vae", paper="Kingma & Welling, 2014", input_size=(1, 28, 28), num_classes=10,
                recipe="vae", task="vae",
                departures=f"latent_dim 20 (the paper tries 2-200); Adam instead of Adagrad; PyTorch's default "
                           f"init (the paper: N(0, 0.01)); Bernoulli likelihood on grey levels; {_UNUSED}")
def vae_mlp(*, num_classes: int = 10, in_chans: int = 1, **config) -> VAE:
    """K&W's MNIST VAE: 784-500 tanh encoder, latent z, 500 tanh - 784 sigmoid Bernoulli decoder."""
    return VAE(build_config(VAEConfig, "vae_mlp", config, encoder="mlp"), in_chans=in_chans)


@register_model(family="vae", paper="Kingma & Welling, 2014", input_size=(1, 28, 28), num_classes=10,
                recipe="vae", task="vae",
                departures=f"convolutional encoder (4x4 stride-2 convs of 32, 64) and up-convolution decoder "
                           f"instead of the paper's MLPs; latent_dim 16; {_UNUSED}")
def vae_conv(*, num_classes: int = 10, in_chans: int = 1, **config) -> VAE:
    """A convolutional VAE: strided convs to q(z|x), up-convolutions from z to p(x|z)."""
    return VAE(build_config(VAEConfig, "vae_conv", config, encoder="conv", latent_dim=16), in_chans=in_chans)
