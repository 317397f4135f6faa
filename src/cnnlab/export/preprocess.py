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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cnnlab.errors import ConfigError

__all__ = ["Preprocessing", "IMAGENET_MEAN", "IMAGENET_STD"]

# torchvision's ImageNet statistics: what its published weights (and ours, state-dict compatible) expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PAD_NOTE = "28x28 zero-padded to 32x32"  # cnnlab.data.adapt's note for LeCun's padding of MNIST digits


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

    def __post_init__(self) -> None:
        c, h, w = self.input_size
        if len(self.mean) != c or len(self.std) != c:
            raise ConfigError(f"preprocessing: {len(self.mean)} means and {len(self.std)} stds for {c} channels")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ConfigError(f"preprocessing: std must be positive, got {list(self.std)}")

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
                       source=str(d.get("source") or ""))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{where}: not cnnlab preprocessing metadata ({type(err).__name__}: {err})") from None

    @classmethod
    def from_run_config(cls, doc: dict[str, Any], *, where: str = "config.json") -> Preprocessing:
        """The preprocessing of the run whose ``config.json`` is ``doc``."""
        spec, data = doc.get("spec") or {}, doc.get("data") or {}
        try:
            input_size = tuple(int(v) for v in data["input_size"])
            num_classes = int(data["num_classes"])
            mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{where}: no data.input_size/num_classes/mean/std; not a finished cnnlab run?") from None
        names = data.get("class_names")
        # Runs from before class names were saved: the class index is all there is.
        class_names = tuple(str(v) for v in names) if names and len(names) == num_classes \
            else tuple(str(i) for i in range(num_classes))
        padded = any(_PAD_NOTE in str(n) for n in data.get("notes") or ()) and input_size[1:] == (32, 32)
        return cls(model=str(spec.get("model") or (doc.get("model") or {}).get("name")), input_size=input_size,
                   mean=mean, std=std, class_names=class_names, resize_to=(28, 28) if padded else None,
                   pad=2 if padded else 0, model_config=dict(spec.get("model_config") or {}),
                   source=f"{where} (data {data.get('name', '?')})")

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

        c, h, w = self.input_size
        size = self.resize_to or (h - 2 * self.pad, w - 2 * self.pad)
        x = torch.tensor(decode_image(Path(path), mode="L" if c == 1 else "RGB", size=size)).float().div_(255.0)
        if self.pad:
            x = torch.nn.functional.pad(x, (self.pad,) * 4)  # zeros: black, the digits' background
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (x - mean) / std

    def load_images(self, paths: Sequence[str | Path]) -> Tensor:
        return torch.stack([self.load_image(p) for p in paths]) if paths else torch.empty(0, *self.input_size)
