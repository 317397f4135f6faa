"""What a model expects of an image: size, channels, mean/std and class names, from its run folder.

A run's ``config.json`` records how its data was prepared (``data.input_size``, ``data.mean``,
``data.std``, ``data.notes`` and, where the run saved them, ``data.class_names``). An image file
given to ``predict`` goes through the same steps as the run's data did in
:mod:`cnnlab.data.adapt` / :mod:`cnnlab.data.imagefolder`: decoded by PIL to grey or RGB (PIL's
``"L"`` is the same ITU-R 601 luma the data sets use), resized bilinearly, zero-padded where the
run's digits were (28x28 -> 32x32 for LeNet-5), then normalised per channel.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cnnlab.errors import ConfigError
from cnnlab.limits import MAX_CLASSES

__all__ = ["Preprocessing", "IMAGENET_MEAN", "IMAGENET_STD"]

# torchvision's ImageNet statistics: what its published weights (and ours, state-dict compatible) expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PAD_NOTE = "28x28 zero-padded to 32x32"  # cnnlab.data.adapt's note for LeCun's padding of MNIST digits
MAX_CHANNELS = 64  # the zoo's inputs have 1 or 3; more is a damaged config, not an image
COLOUR_LEVEL = 8.0  # mean distance (0-255) of the channels from their average above which an image is colour
FAR_INTENSITY = 0.5  # an image's mean this many training stds from the training mean is "far" (MNIST: 0.15)


def _image_items(images: Any) -> list[tuple[str, Any]]:
    """(label, one image) for each image of ``images`` (see ``Preprocessing.prepare``)."""
    from PIL import Image

    if isinstance(images, (str, os.PathLike)):
        return [(str(images), images)]
    if isinstance(images, Image.Image):
        return [("<PIL image>", images)]
    if isinstance(images, Tensor):
        t = images.detach().cpu()
        if t.ndim == 3 or t.ndim == 2:
            return [("<tensor>", _tensor_to_array(t))]
        if t.ndim == 4:
            _check_count(len(t))
            return [(f"<tensor {i}>", _tensor_to_array(t[i])) for i in range(len(t))]
        raise ConfigError(f"a tensor image must be (C, H, W) or (N, C, H, W), got shape {tuple(t.shape)}")
    if isinstance(images, np.ndarray):
        a = images
        if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 3, 4)):
            return [("<array>", _array_to_uint8(a))]
        if a.ndim in (3, 4):
            _check_count(len(a))
            return [(f"<array {i}>", _array_to_uint8(a[i])) for i in range(len(a))]
        raise ConfigError(f"an array image must be (H, W), (H, W, C) or a batch of them, got shape {a.shape}")
    if isinstance(images, (list, tuple)):
        _check_count(len(images))
        out = []
        for i, image in enumerate(images):
            if isinstance(image, (list, tuple)):
                raise ConfigError(f"image {i}: a nested list; give files, PIL images, arrays or tensors")
            out += _image_items(image)
        return out
    raise ConfigError(f"cannot read an image from a {type(images).__name__}: give a file path, a PIL image, "
                      "a NumPy array or a tensor")


def _check_count(n: int) -> None:
    from cnnlab.limits import MAX_PREDICT_IMAGES

    if n > MAX_PREDICT_IMAGES:
        raise ConfigError(f"{n:,} images in one call; give at most {MAX_PREDICT_IMAGES:,} (predict them in parts)")


def _array_to_uint8(a: np.ndarray) -> np.ndarray:
    """An (H, W) or (H, W, C) array as uint8 pixels: uint8 as it is, floats in [0, 1] scaled by 255."""
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise ConfigError(f"an image array must be uint8 or floats in [0, 1], got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0:
        raise ConfigError("an image array of floats must hold values in [0, 1] (or give uint8 pixels 0-255)")
    return np.ascontiguousarray(np.round(a * 255.0).astype(np.uint8))


def _tensor_to_array(t: Tensor) -> np.ndarray:
    """A (C, H, W) or (H, W) tensor as an (H, W[, C]) uint8 array."""
    if t.ndim == 3:
        if t.shape[0] not in (1, 3, 4):
            raise ConfigError(f"a tensor image must have 1, 3 or 4 channels first (C, H, W), got shape {tuple(t.shape)}")
        t = t.permute(1, 2, 0)
    return _array_to_uint8(t.numpy() if t.dtype == torch.uint8 else t.double().numpy())


@dataclass(frozen=True)
class Preprocessing:
    """How to turn an image file into the model's input, and what its outputs mean."""

    model: str
    input_size: tuple[int, int, int]  # (C, H, W) the model sees
    mean: tuple[float, ...]  # per channel, pixels in [0, 1]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    resize_to: tuple[int, int] | None = None  # (H, W) before padding; None: input_size's
    pad: int = 0  # zeros added on each side after resizing (28x28 digits in LeNet-5's 32x32 field)
    model_config: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where these values come from (a run's config.json, or defaults)
    crop_fraction: float | None = None  # a centre crop of this fraction of the shorter side, then the resize
    interpolation: str = "bilinear"  # the resize's filter ("bilinear" or "bicubic")
    weights_name: str | None = None  # published weights the model was loaded with ("imagenet"), if any

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ConfigError(f"preprocessing: {problem}")

    def _problem(self) -> str | None:
        """What makes these values unusable (a crafted or damaged config.json), or None."""
        from cnnlab.data.adapt import MAX_SIDE

        c, h, w = self.input_size
        if not (1 <= c <= MAX_CHANNELS and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            return (f"input_size {c}x{h}x{w}: channels must be in 1..{MAX_CHANNELS}, height and width in "
                    f"1..{MAX_SIDE}")
        if len(self.mean) != c or len(self.std) != c:
            return f"{len(self.mean)} means and {len(self.std)} stds for {c} channels"
        if not all(math.isfinite(m) for m in self.mean):
            return f"mean must be finite numbers, got {list(self.mean)}"
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            return f"std must be positive finite numbers, got {list(self.std)}"
        if not 1 <= len(self.class_names) <= MAX_CLASSES:
            return f"{len(self.class_names)} classes (1..{MAX_CLASSES})"
        if not (0 <= self.pad and 2 * self.pad < min(h, w)):
            return f"pad {self.pad} for a {h}x{w} input"
        if self.crop_fraction is not None and not (math.isfinite(self.crop_fraction) and 0.1 <= self.crop_fraction <= 1):
            return f"crop_fraction must be in [0.1, 1], got {self.crop_fraction!r}"
        if self.interpolation not in ("bilinear", "bicubic"):
            return f"interpolation must be 'bilinear' or 'bicubic', got {self.interpolation!r}"
        if self.resize_to is not None and tuple(self.resize_to) != (h - 2 * self.pad, w - 2 * self.pad):
            return f"resize_to {list(self.resize_to)} plus pad {self.pad} on each side is not the input's {h}x{w}"
        return None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"], d["mean"], d["std"] = list(self.input_size), list(self.mean), list(self.std)
        d["class_names"] = list(self.class_names)
        d["resize_to"] = list(self.resize_to) if self.resize_to else None
        d["model_config"] = json.loads(json.dumps(self.model_config))  # tuples as lists, as when read back
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "preprocessing") -> Preprocessing:
        try:
            return cls(model=str(d["model"]), input_size=tuple(int(v) for v in d["input_size"]),
                       mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]),
                       class_names=tuple(str(v) for v in d["class_names"]),
                       resize_to=tuple(int(v) for v in d["resize_to"]) if d.get("resize_to") else None,
                       pad=int(d.get("pad") or 0), model_config=dict(d.get("model_config") or {}),
                       source=str(d.get("source") or ""),
                       crop_fraction=float(d["crop_fraction"]) if d.get("crop_fraction") is not None else None,
                       interpolation=str(d.get("interpolation") or "bilinear"),
                       weights_name=str(d["weights_name"]) if d.get("weights_name") else None)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        except (KeyError, TypeError, ValueError, OverflowError) as err:
            raise ConfigError(f"{where}: not cnnlab preprocessing metadata ({type(err).__name__}: {err})") from None

    @classmethod
    def from_run_config(cls, doc: dict[str, Any], *, where: str = "config.json") -> Preprocessing:
        """The preprocessing of the run whose ``config.json`` is ``doc``."""
        spec, data = doc.get("spec") or {}, doc.get("data") or {}
        if not isinstance(spec, dict) or not isinstance(data, dict):
            raise ConfigError(f"{where}: \"spec\" and \"data\" must be mappings")
        try:
            input_size = tuple(int(v) for v in data["input_size"])
            num_classes = int(data["num_classes"])
            mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
            if len(input_size) != 3:
                raise ValueError("input_size is not (C, H, W)")
        except (KeyError, TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: no data.input_size/num_classes/mean/std; not a finished cnnlab run?") from None
        if not 1 <= num_classes <= MAX_CLASSES:
            raise ConfigError(f"{where}: data.num_classes {num_classes} is not in 1..{MAX_CLASSES}")
        names = data.get("class_names")
        # Runs from before class names were saved: the class index is all there is.
        class_names = tuple(str(v) for v in names) if isinstance(names, list) and len(names) == num_classes \
            else tuple(str(i) for i in range(num_classes))
        notes = data.get("notes") if isinstance(data.get("notes"), list) else ()
        padded = any(_PAD_NOTE in str(n) for n in notes) and input_size[1:] == (32, 32)
        model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
        model_config = spec.get("model_config") or {}
        if not isinstance(model_config, dict):
            raise ConfigError(f"{where}: spec.model_config must be a mapping")
        try:
            return cls(model=str(spec.get("model") or model.get("name")), input_size=input_size,
                       mean=mean, std=std, class_names=class_names, resize_to=(28, 28) if padded else None,
                       pad=2 if padded else 0, model_config=dict(model_config),
                       source=f"{where} (data {data.get('name', '?')})")
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    @classmethod
    def default_for(cls, model: str, input_size: Sequence[int], num_classes: int, *,
                    model_config: dict[str, Any] | None = None) -> Preprocessing:
        """For a model without a run: ImageNet's statistics for colour inputs (what torchvision's weights
        expect), mean 0.5 / std 0.5 for grey ones; classes are indices."""
        c = int(input_size[0])
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if c == 3 else ((0.5,) * c, (0.5,) * c)
        return cls(model=model, input_size=tuple(int(v) for v in input_size), mean=mean, std=std,
                   class_names=tuple(str(i) for i in range(num_classes)), model_config=dict(model_config or {}),
                   source="defaults (no run config): ImageNet mean/std for RGB, 0.5/0.5 for grey")

    @classmethod
    def for_published(cls, entry: Any, *, model_config: dict[str, Any] | None = None) -> Preprocessing:
        """What published weights (:class:`cnnlab.models.pretrained.PublishedWeights`) expect, with their class names."""
        return cls(model=entry.model, input_size=entry.input_size, mean=entry.mean, std=entry.std,
                   class_names=entry.classes, model_config=dict(model_config or {}),
                   crop_fraction=entry.crop_fraction, interpolation=entry.interpolation,
                   weights_name=entry.name, source=f"the published weights {entry.model} {entry.name!r}")

    def with_input_size(self, input_size: Sequence[int]) -> Preprocessing:
        size = tuple(int(v) for v in input_size)
        if size[0] != self.input_size[0]:
            raise ConfigError(f"--input {'x'.join(map(str, size))}: the model takes {self.input_size[0]} channels")
        if size == self.input_size:
            return self
        return Preprocessing(**{**self.__dict__, "input_size": size, "resize_to": None, "pad": 0})

    # ------------------------------------------------------------------------------------ images

    def load_image(self, path: str | Path) -> Tensor:
        """One image file as the model's normalised (C, H, W) float32 input; DatasetError naming a bad file."""
        from cnnlab.data.readers import decode_image

        c = self.input_size[0]
        return self._normalise(decode_image(Path(path), mode="L" if c == 1 else "RGB", size=self._size(),
                                            **self._fit()))

    def _fit(self) -> dict[str, Any]:
        return dict(crop_fraction=self.crop_fraction, interpolation=self.interpolation)

    def load_images(self, paths: Sequence[str | Path]) -> Tensor:
        return torch.stack([self.load_image(p) for p in paths]) if paths else torch.empty(0, *self.input_size)

    def _size(self) -> tuple[int, int]:
        _, h, w = self.input_size
        return self.resize_to or (h - 2 * self.pad, w - 2 * self.pad)

    def _normalise(self, pixels: np.ndarray) -> Tensor:
        """uint8 (C, H, W) pixels at the resize size -> the padded, normalised float32 input."""
        x = torch.tensor(pixels).float().div_(255.0)
        if self.pad:
            x = torch.nn.functional.pad(x, (self.pad,) * 4)  # zeros: black, the digits' background
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (x - mean) / std

    def prepare(self, images: Any, *, invert: bool | None = None) -> tuple[Tensor, list[tuple[str, tuple[str, ...]]]]:
        """Any image input as the model's normalised (N, C, H, W) batch, with a (label, notes) per image.

        ``images``: a file path, a PIL image, a NumPy array ((H, W), (H, W, C), or a batch (N, H, W) /
        (N, H, W, C); uint8, or floats in [0, 1]), a tensor ((C, H, W) or (N, C, H, W), uint8 or [0, 1]),
        or a list of these. For a grey model trained on dark backgrounds (digits: white on black), an
        image drawn dark on light is inverted (``invert=None``: when its border is light; True/False:
        always/never) with a note; a colour image given to a grey model, or one whose mean intensity
        is far from the training data's, is predicted but noted.
        """
        items = _image_items(images)
        if not items:
            return torch.empty(0, *self.input_size), []
        xs, labels = [], []
        for label, image in items:
            pixels, notes = self._pixels(image, invert=invert)
            xs.append(self._normalise(pixels))
            labels.append((label, tuple(notes)))
        return torch.stack(xs), labels

    def _pixels(self, image: Any, *, invert: bool | None) -> tuple[np.ndarray, list[str]]:
        """uint8 (C, H, W) pixels at the resize size, and the notes about them."""
        from PIL import Image

        from cnnlab.data.readers import decode_image, fit_image, flatten_alpha

        c = self.input_size[0]
        if isinstance(image, (str, os.PathLike)):
            rgb = decode_image(Path(image), mode="RGB", size=self._size(), **self._fit())
            pixels = rgb if c == 3 else decode_image(Path(image), mode="L", size=self._size(), **self._fit())
        else:
            size = self._size()
            try:
                img = flatten_alpha(image if isinstance(image, Image.Image) else Image.fromarray(image)).convert("RGB")
                img = fit_image(img, size, **self._fit())
            except (ValueError, TypeError, OSError) as err:
                raise ConfigError(f"cannot read this image ({type(err).__name__}: {err})") from None
            rgb = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
            pixels = rgb if c == 3 else np.asarray(img.convert("L"), dtype=np.uint8)[None]
        notes: list[str] = []
        if c != 1 or self.source.startswith("defaults"):
            return pixels, notes  # colour models, or no training data to compare with
        if np.abs(rgb.astype(np.int16) - rgb.mean(axis=0, keepdims=True)).mean() > COLOUR_LEVEL:
            notes.append("a colour image, given to a model trained on grey images: read the prediction with care")
        dark_background = self.mean[0] < 0.5
        border = np.concatenate([pixels[0, 0], pixels[0, -1], pixels[0, :, 0], pixels[0, :, -1]])
        light_border = float(np.median(border)) > 127.5
        if invert is None:
            invert = dark_background and light_border
        if invert:
            pixels = 255 - pixels
            notes.append("drawn dark on light: inverted to light on dark, as the training images are")
        _, h, w = self.input_size
        mean = float(pixels.mean()) / 255.0 * pixels.shape[1] * pixels.shape[2] / (h * w)  # the padded input's
        if abs(mean - self.mean[0]) > FAR_INTENSITY * self.std[0]:
            notes.append(f"far from the training images: mean intensity {mean:.2f} against their "
                         f"{self.mean[0]:.2f}; read the prediction with care")
        return pixels, notes

