"""Data augmentation on whole batches: tensor operations with an explicit ``torch.Generator``.

Every function takes a batch ``x`` (N, C, H, W), already normalised, and draws its randomness from
``generator`` (on the generator's device, then moved to ``x``'s), so a run is reproducible from its
seed and a resumed run from the generator's saved state. No Python loop runs over the samples.

Padding ``fill``: the value padded pixels take *in the normalised data*. ``0.0`` is the mean colour;
the raw black of He et al.'s zero padding is ``-mean / std`` per channel, which ``Augment`` uses when
it is given the data (``Augment(recipe, data=bundle)``).

The paper recipes these implement:

* ``random_crop(x, 4)`` + ``hflip``: CIFAR, He et al. 2016 §4.2 ("4 pixels are padded on each side,
  and a 32x32 crop is randomly sampled from the padded image or its horizontal flip").
* ``random_translate``: shifts for digits, where a flip changes the class meaning.
* ``pca_lighting``: Krizhevsky et al. 2012 §4.1, colour along the principal components of the
  training set's RGB covariance, ``alpha ~ N(0, 0.1)``.
* ``scale_jitter``: Simonyan & Zisserman 2015 §3.1, training scale S in [256, 512] with a 224 crop,
  proportionally: each image is magnified by s ~ U(256/224, 512/224) and an HxW crop taken.
* ``random_resized_crop``: Szegedy et al. 2015's area/aspect crops (torchvision's RandomResizedCrop).
* ``tta_views``: test-time views, none / flip / 10crop (Krizhevsky et al. 2012 §4.1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.errors import ConfigError

__all__ = [
    "random_crop",
    "random_translate",
    "hflip",
    "pca_eigen",
    "pca_lighting",
    "scale_jitter",
    "random_resized_crop",
    "tta_views",
    "Augment",
    "VGG_SCALE_JITTER",
    "ALEXNET_PCA_STD",
    "TEN_CROP_FRACTION",
]

VGG_SCALE_JITTER = (256 / 224, 512 / 224)  # Simonyan & Zisserman 2015 §3.1: S in [256, 512], 224 crops
ALEXNET_PCA_STD = 0.1  # Krizhevsky et al. 2012 §4.1: alpha_i ~ N(0, 0.1)
TEN_CROP_FRACTION = 224 / 256  # Krizhevsky et al. 2012: 224x224 patches of 256x256 images

Fill = float | Sequence[float] | Tensor


def _rand(generator: torch.Generator, shape: tuple[int, ...], device: torch.device) -> Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randint(generator: torch.Generator, high: int, shape: tuple[int, ...], device: torch.device) -> Tensor:
    return torch.randint(high, shape, generator=generator, device=generator.device).to(device)


def _pad(x: Tensor, padding: int, fill: Fill) -> Tensor:
    if isinstance(fill, (int, float)):
        return F.pad(x, (padding,) * 4, value=float(fill))
    n, c, h, w = x.shape
    values = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    if values.shape[1] not in (1, c):
        raise ConfigError(f"fill has {values.shape[1]} values for {c} channels")
    out = values.expand(n, c, h + 2 * padding, w + 2 * padding).clone()
    out[..., padding : padding + h, padding : padding + w] = x
    return out


def _crop_at(xp: Tensor, top: Tensor, left: Tensor, size: tuple[int, int]) -> Tensor:
    """Per-sample crops of ``size`` at (top, left), by one gather on the flattened image."""
    n, c, hp, wp = xp.shape
    h, w = size
    rows = top.view(n, 1) + torch.arange(h, device=xp.device)  # N x H
    cols = left.view(n, 1) + torch.arange(w, device=xp.device)  # N x W
    flat = (rows.view(n, h, 1) * wp + cols.view(n, 1, w)).view(n, 1, h * w).expand(n, c, h * w)
    return xp.reshape(n, c, hp * wp).gather(2, flat).view(n, c, h, w)


def random_crop(
    x: Tensor, padding: int, generator: torch.Generator, *, size: tuple[int, int] | None = None, fill: Fill = 0.0
) -> Tensor:
    """Pad by ``padding`` on each side, then crop ``size`` (default: x's own) at a random place per sample."""
    n, _, h, w = x.shape
    size = size or (h, w)
    xp = _pad(x, padding, fill) if padding > 0 else x
    hp, wp = xp.shape[-2:]
    if size[0] > hp or size[1] > wp:
        raise ConfigError(f"random_crop: crop {size} is larger than the padded image {hp}x{wp}")
    top = _randint(generator, hp - size[0] + 1, (n,), x.device)
    left = _randint(generator, wp - size[1] + 1, (n,), x.device)
    return _crop_at(xp, top, left, size)


def random_translate(x: Tensor, max_shift: int, generator: torch.Generator, *, fill: Fill = 0.0) -> Tensor:
    """Shift each sample by a random whole number of pixels in [-max_shift, max_shift] on each axis,
    filling the uncovered border with ``fill`` (a pad-and-crop of the same size)."""
    return random_crop(x, max_shift, generator, fill=fill)


def hflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each sample left-right with probability ``p``."""
    flip = _rand(generator, (x.shape[0],), x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def pca_eigen(x: Tensor, *, std: Sequence[float] | None = None, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of the per-pixel colour covariance of ``x``.

    ``x`` is a normalised training split; with ``std`` (the bundle's) the covariance is that of the
    raw pixels (in [0, 1]), as Krizhevsky et al. computed it on raw RGB values.
    """
    c = x.shape[1]
    scale = torch.ones(c, dtype=torch.float64) if std is None else torch.tensor(std, dtype=torch.float64)
    total, outer, count = torch.zeros(c, dtype=torch.float64), torch.zeros(c, c, dtype=torch.float64), 0
    for start in range(0, x.shape[0], chunk):
        p = x[start : start + chunk].detach().cpu().double().transpose(0, 1).reshape(c, -1) * scale.view(c, 1)
        total += p.sum(1)
        outer += p @ p.T
        count += p.shape[1]
    mean = total / count
    cov = outer / count - torch.outer(mean, mean)
    vals, vecs = torch.linalg.eigh(cov)
    return vals.flip(0).clamp_min(0.0).float(), vecs.flip(1).float()


def pca_lighting(
    x: Tensor,
    std: float,
    generator: torch.Generator,
    *,
    eigen: tuple[Tensor, Tensor] | None = None,
    pixel_std: Sequence[float] | None = None,
) -> Tensor:
    """Krizhevsky et al. 2012 §4.1: add ``sum_i p_i * alpha_i * sigma_i`` to every pixel of a sample,
    one ``alpha ~ N(0, std)`` per component per sample.

    ``eigen``: (eigenvalues, eigenvectors) of the training set's colour covariance (``pca_eigen``);
    when None, the batch's own (an approximation). Departure: the paper multiplies by the eigenvalue
    ``lambda_i``; we use ``sigma_i = sqrt(lambda_i)``, the spread of the data along the component, so
    the shift is in pixel units and does not depend on the pixel scale (0..255 or 0..1).
    ``pixel_std``: the normalisation's per-channel std, to express the raw-pixel shift in the
    normalised units of ``x``.
    """
    n, c = x.shape[:2]
    vals, vecs = eigen if eigen is not None else pca_eigen(x, std=pixel_std)
    alpha = torch.randn((n, c), generator=generator, device=generator.device).to(x.device) * std
    sigma = vals.to(x.device).clamp_min(0.0).sqrt()
    shift = (alpha * sigma) @ vecs.to(x.device).T  # N x C, raw pixel units
    if pixel_std is not None:
        shift = shift / torch.as_tensor(pixel_std, dtype=shift.dtype, device=x.device)
    return x + shift.to(x.dtype).view(n, c, 1, 1)


def _crop_resize(x: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor,
                 size: tuple[int, int]) -> Tensor:  # fmt: skip
    """Per-sample boxes (fractions of the image: top, left, height, width) resized to ``size``,
    bilinear, by one ``affine_grid`` + ``grid_sample``.

    This samples the magnified whole image, as "rescale, then crop" does: at the box's edges the
    pixels just outside it blend in (torchvision's ``resized_crop`` crops first, then resizes).
    """
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    theta[:, 0, 0] = width  # output [-1, 1] -> the box's x range, in input coordinates [-1, 1]
    theta[:, 0, 2] = 2 * left + width - 1
    theta[:, 1, 1] = height
    theta[:, 1, 2] = 2 * top + height - 1
    grid = F.affine_grid(theta, [n, x.shape[1], *size], align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def scale_jitter(
    x: Tensor, generator: torch.Generator, *, scales: tuple[float, float] = VGG_SCALE_JITTER,
    size: tuple[int, int] | None = None,
) -> Tensor:  # fmt: skip
    """Simonyan & Zisserman's scale jittering at the model's size: magnify each sample by
    ``s ~ U(scales)`` (the paper's S / 224, default [256/224, 512/224]) and crop HxW at a random place.

    Equivalently, crop a random box of side ``1/s`` of the image and resize it to HxW (bilinear).
    """
    n, _, h, w = x.shape
    lo, hi = scales
    if not 1.0 <= lo <= hi:
        raise ConfigError(f"scale_jitter: scales must satisfy 1 <= min <= max, got {scales}")
    s = lo + (hi - lo) * _rand(generator, (n,), x.device)
    frac = 1.0 / s
    top = (1 - frac) * _rand(generator, (n,), x.device)
    left = (1 - frac) * _rand(generator, (n,), x.device)
    return _crop_resize(x, top, left, frac, frac, size or (h, w))


def random_resized_crop(
    x: Tensor, generator: torch.Generator, *, scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3), size: tuple[int, int] | None = None,
) -> Tensor:  # fmt: skip
    """A box of area fraction ``U(scale)`` and aspect ratio log-uniform in ``ratio`` per sample,
    resized to ``size`` (default x's). Departure from torchvision: a box that does not fit is clipped
    to the image instead of redrawn (no per-sample retry loop)."""
    n, _, h, w = x.shape
    area = scale[0] + (scale[1] - scale[0]) * _rand(generator, (n,), x.device)
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _rand(generator, (n,), x.device)
    aspect = torch.exp(log_r)  # width / height, in pixels
    width = (area * aspect * h / w).sqrt().clamp(max=1.0)  # fractions of W and H
    height = (area / aspect * w / h).sqrt().clamp(max=1.0)
    top = (1 - height) * _rand(generator, (n,), x.device)
    left = (1 - width) * _rand(generator, (n,), x.device)
    return _crop_resize(x, top, left, height, width, size or (h, w))


def tta_views(
    x: Tensor, mode: str = "none", crop: float = TEN_CROP_FRACTION, *, pad: int | None = None, fill: Fill = 0.0
) -> list[Tensor]:
    """Test-time views of a batch, each of x's own size, for averaging the predictions.

    ``"none"``: [x]. ``"flip"``: [x, mirrored x]. ``"10crop"`` (Krizhevsky et al. 2012): the centre and
    the four corner crops and their mirrors, in the order centre, top-left, top-right, bottom-left,
    bottom-right, then the same mirrored. So that the crops keep the model's input size HxW, they
    are taken from an enlarged image: by default x resized (bilinear) to ``round(H / crop)`` x
    ``round(W / crop)``, ``crop`` = 224/256 as in the paper (32 -> 37, 28 -> 32, 224 -> 256); with
    ``pad=p`` instead x padded by p pixels of ``fill`` (the views then match a model trained with
    ``random_crop(x, p)``).
    """
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode != "10crop":
        raise ConfigError(f"tta mode must be 'none', 'flip' or '10crop', got {mode!r}")
    n, _, h, w = x.shape
    if pad is not None:
        if pad < 0:
            raise ConfigError(f"tta_views: pad must be >= 0, got {pad}")
        big = _pad(x, pad, fill) if pad else x
    else:
        if not 0.0 < crop <= 1.0:
            raise ConfigError(f"tta_views: crop must be in (0, 1], got {crop}")
        big_size = (round(h / crop), round(w / crop))
        big = F.interpolate(x, size=big_size, mode="bilinear", align_corners=False, antialias=False)
    bh, bw = big.shape[-2:]
    # centre offset rounded like torchvision's center_crop (round half to even)
    corners = [(round((bh - h) / 2), round((bw - w) / 2)), (0, 0), (0, bw - w), (bh - h, 0), (bh - h, bw - w)]
    views = [big[..., t : t + h, l : l + w] for t, l in corners]
    return views + [v.flip(-1) for v in views]


def _field(spec: Any, name: str) -> Any:
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        return spec.get(name)
    return getattr(spec, name, None)


class Augment:
    """The training augmentation of a recipe, callable on a batch: ``Augment(recipe, data=bundle)(x, gen)``.

    ``spec`` is anything with these fields as attributes or keys (a Recipe, a dict); keyword
    arguments override it. Missing fields mean "off". The fields:

    * ``crop_padding: int`` - pad-and-crop by this many pixels (He et al. 2016: 4); 0 = off.
    * ``flip: bool`` - random horizontal mirror, p = 0.5.
    * ``translate: int`` - random shift of up to this many pixels (digits); 0 = off.
    * ``scale_jitter: bool | (min, max)`` - VGG scale jittering; True = ``VGG_SCALE_JITTER``.
    * ``random_resized_crop: bool | (min, max)`` - area-fraction crops; True = (0.08, 1.0).
    * ``pca_lighting: float`` - alpha's std (Krizhevsky et al. 2012: 0.1); 0 = off. Needs ``data``.

    ``data`` (a DataBundle) supplies the padding colour (raw black, ``-mean/std``) and, for PCA
    lighting, the eigen-decomposition of the training set's colour covariance. Without it padding is
    the mean colour (0.0). The order is: scale jitter or resized crop, pad-crop, translate, flip, lighting.
    """

    FIELDS = ("crop_padding", "flip", "translate", "scale_jitter", "random_resized_crop", "pca_lighting")

    def __init__(self, spec: Any = None, *, data: Any = None, **fields: Any) -> None:
        unknown = sorted(set(fields) - set(self.FIELDS))
        if unknown:
            raise ConfigError(f"Augment: unknown field {unknown[0]!r} (fields: {', '.join(self.FIELDS)})")
        values = {f: fields[f] if f in fields else _field(spec, f) for f in self.FIELDS}
        self.crop_padding = self._int(values["crop_padding"], "crop_padding")
        self.translate = self._int(values["translate"], "translate")
        self.flip = bool(values["flip"])
        self.scale_jitter = self._range(values["scale_jitter"], "scale_jitter", VGG_SCALE_JITTER)
        self.random_resized_crop = self._range(values["random_resized_crop"], "random_resized_crop", (0.08, 1.0))
        self.pca_lighting = float(values["pca_lighting"] or 0.0)
        if self.pca_lighting < 0:
            raise ConfigError(f"Augment: pca_lighting must be >= 0, got {self.pca_lighting}")
        if self.scale_jitter and self.random_resized_crop:
            raise ConfigError("Augment: use scale_jitter or random_resized_crop, not both")
        self.fill: Fill = 0.0
        self.eigen: tuple[Tensor, Tensor] | None = None
        self.pixel_std: tuple[float, ...] | None = None
        if data is not None:
            side = min(data.input_size[1:])
            for name in ("crop_padding", "translate"):
                # A shift past the whole image only pads with fill, and a huge one allocates (N, C, H+2p, W+2p).
                if getattr(self, name) > side:
                    size = f"{data.input_size[1]}x{data.input_size[2]}"
                    raise ConfigError(f"Augment: {name} {getattr(self, name)} is more than the input's side "
                                      f"({side} pixels of {size}); give at most {side}")
            self.fill = tuple(-m / s for m, s in zip(data.mean, data.std))
            self.pixel_std = tuple(data.std)
            if self.pca_lighting:
                self.eigen = pca_eigen(data.train.x, std=data.std)
        elif self.pca_lighting:
            raise ConfigError("Augment: pca_lighting needs data= (the training set's colour covariance)")

    @staticmethod
    def _int(value: Any, name: str) -> int:
        value = 0 if value is None or value is False else value
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"Augment: {name} must be a whole number of pixels >= 0, got {value!r}")
        return value

    @staticmethod
    def _range(value: Any, name: str, default: tuple[float, float]) -> tuple[float, float] | None:
        if value is None or value is False:
            return None
        if value is True:
            return default
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"Augment: {name} must be True or a (min, max) pair, got {value!r}") from None
        if not 0 < lo <= hi:
            raise ConfigError(f"Augment: {name} must satisfy 0 < min <= max, got {value!r}")
        if name == "scale_jitter" and not (lo >= 1.0 and hi <= 4.0):
            raise ConfigError(
                f"Augment: scale_jitter is the magnification (min, max) relative to the crop, in [1, 4] "
                f"(VGG: S in [256, 512] for 224 crops is (256/224, 512/224)), got {value!r}"
            )
        if name == "random_resized_crop" and hi > 1.0:
            raise ConfigError(f"Augment: random_resized_crop is an area fraction (min, max) <= 1, got {value!r}")
        return lo, hi

    @property
    def enabled(self) -> bool:
        return bool(self.crop_padding or self.translate or self.flip or self.scale_jitter
                    or self.random_resized_crop or self.pca_lighting)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The settings, for a run's config.json."""
        return {f: getattr(self, f) for f in self.FIELDS}

    def __repr__(self) -> str:
        on = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if v)
        return f"Augment({on})"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.scale_jitter:
            x = scale_jitter(x, generator, scales=self.scale_jitter)
        elif self.random_resized_crop:
            x = random_resized_crop(x, generator, scale=self.random_resized_crop)
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator, fill=self.fill)
        if self.translate:
            x = random_translate(x, self.translate, generator, fill=self.fill)
        if self.flip:
            x = hflip(x, generator)
        if self.pca_lighting:
            x = pca_lighting(x, self.pca_lighting, generator, eigen=self.eigen, pixel_std=self.pixel_std)
        return x
