"""``imagefolder:PATH``: your own images, one folder per class.

Three layouts are recognised:

    PATH/train/, PATH/val/ and PATH/test/   (each <class>/<image>): train, validation and test splits
    PATH/train/ and PATH/val/ (or PATH/test/): train and test (``load_dataset`` carves val out of train)
    PATH/<class>/<image>        split stratified 80/20 with the fixed seed IMAGEFOLDER_SPLIT_SEED

Class names are the sorted folder names of the train split; a validation class unknown to the train
split is an error. Every regular file in a class folder is taken as an image, except hidden files
(``.DS_Store``, ``._foo.jpg``); files directly in PATH are ignored. Images are decoded with PIL,
converted to RGB (or grey when the model has one channel) and resized to the model's input size
(PIL bilinear, antialiased when shrinking); with no model size, to the most common image size.

An empty, truncated or non-image file raises a DatasetError naming it (``bad_files="strict"``), or
is skipped and counted in the notes (``bad_files="skip"``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.bundle import stratified_split
from cnnlab.data.embedded import RawData
from cnnlab.data.readers import decode_image, open_image
from cnnlab.errors import ConfigError, DatasetError

__all__ = ["load_imagefolder", "IMAGEFOLDER_SPLIT_SEED"]

IMAGEFOLDER_SPLIT_SEED = 1998  # fixed: the held-out images never depend on --seed
_VAL_NAMES = ("val", "test")
_MAX_LISTED = 10  # bad files named in the notes


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(folder: Path) -> list[tuple[Path, str]]:
    """(file, class name) for every candidate image under ``folder/<class>/`` (recursively)."""
    items = []
    for class_dir in _class_dirs(folder):
        for path in sorted(class_dir.rglob("*")):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(class_dir).parts):
                items.append((path, class_dir.name))
    return items


class _BadFiles:
    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.found: list[str] = []

    def handle(self, err: DatasetError, path: Path) -> None:
        if self.policy == "strict":
            raise DatasetError(f"{err} (use --bad-files skip / bad_files='skip' to skip bad files)") from None
        self.found.append(f"{path} ({str(err).removeprefix(f'{path}: ')})")


@dataclass
class _Layout:
    """What a folder holds: its items per split, a description, and where the held-out images are."""

    train: list[tuple[Path, str]]
    test: list[tuple[Path, str]]  # empty: split off the training images
    val: list[tuple[Path, str]]  # the official val/ of a train/ val/ test/ layout, else empty
    description: str
    test_dir: Path | None
    class_root: Path  # the folder whose sub-folders are the classes
    val_dir: Path | None = None


def _find_layout(folder: Path, name: str) -> _Layout:
    """Which of the module docstring's three layouts ``folder`` has; a DatasetError when half of one."""
    subdirs = {p.name: p for p in _class_dirs(folder)}
    train_dir = subdirs.get("train")
    val_dir = next((subdirs[v] for v in _VAL_NAMES if v in subdirs), None)
    split_dirs = [subdirs[n] for n in ("train", *_VAL_NAMES) if n in subdirs]
    if (train_dir is None or val_dir is None) and any(_class_dirs(d) for d in split_dirs):
        # train/<class>/... alone (or val/<class>/... alone) is half of the split layout, not a class
        # named "train": reading it as one class would train to a meaningless 100%.
        have = ", ".join(f"{d.name}/" for d in split_dirs)
        need = "val/ (or test/)" if train_dir is not None else "train/"
        raise DatasetError(
            f"{name}: {folder} has {have} with class folders but no {need} folder; add {folder}/{need.split()[0]}"
            f"<class>/<image> ..., or give imagefolder:{split_dirs[0]} to split it 80/20"
        )
    if train_dir is not None and "val" in subdirs and "test" in subdirs:
        layout = _Layout(_scan(train_dir), _scan(subdirs["test"]), _scan(subdirs["val"]),
                         "train/, val/ and test/ folders", subdirs["test"], train_dir, subdirs["val"])  # fmt: skip
        if not layout.val:
            raise DatasetError(f"{name}: no images found in {subdirs['val']}")
    elif train_dir is not None and val_dir is not None:
        layout = _Layout(_scan(train_dir), _scan(val_dir), [], f"{train_dir.name}/ and {val_dir.name}/ folders",
                         val_dir, train_dir)  # fmt: skip
    else:
        layout = _Layout(_scan(folder), [], [], "one folder of classes", None, folder)
    if not layout.train:
        raise DatasetError(
            f"{name}: no images found in {folder} (expected {folder}/<class>/<image> or "
            f"{folder}/train/<class>/<image> with {folder}/val/<class>/<image>)"
        )
    if layout.test_dir is not None and not layout.test:
        raise DatasetError(f"{name}: no images found in {layout.test_dir}")
    return layout


def _class_names(layout: _Layout, name: str) -> tuple[str, ...]:
    """The sorted class folders of the training split; a DatasetError for an empty class folder or a
    held-out class with no training folder."""
    class_names = tuple(sorted({c for _, c in layout.train}))
    empty = [d for d in _class_dirs(layout.class_root) if d.name not in class_names]
    if empty:
        raise DatasetError(
            f"{name}: class folder(s) with no images: {', '.join(str(d) for d in empty[:_MAX_LISTED])}; "
            "add images or remove the folder"
        )
    unknown = sorted({c for _, c in layout.test + layout.val} - set(class_names))
    if unknown:
        raise DatasetError(f"{name}: {layout.test_dir.parent} has val/test classes with no training folder: "
                           f"{', '.join(unknown)}")
    return class_names


def _target_size(
    sizes: dict[Path, tuple[int, int]], input_size: tuple[int, int, int] | None, *, name: str, folder: Path,
    max_gib: float,
) -> tuple[int, tuple[int, int], str]:
    """(channels, (height, width), a note): the model's input size, or the most common image size;
    a DatasetError when the decoded images would not fit in ``max_gib``."""
    if input_size is not None:
        channels, size = input_size[0], (input_size[1], input_size[2])
        size_note = f"resized to the model's {size[0]}x{size[1]}"
    else:
        if not sizes:
            raise DatasetError(f"{name}: no readable images in {folder}")
        channels, size = 3, Counter(sizes.values()).most_common(1)[0][0]
        size_note = f"resized to the most common size {size[0]}x{size[1]}"
    gib = len(sizes) * channels * size[0] * size[1] * 4 / 2**30  # as float32, after adaptation
    if gib > max_gib:
        raise DatasetError(
            f"{name}: {len(sizes):,} images at {channels}x{size[0]}x{size[1]} need {gib:.1f} GiB in memory, "
            f"more than max_gib={max_gib:g}; use a smaller input size or raise max_gib"
        )
    return channels, size, size_note


def _decode(
    items: list[tuple[Path, str]], sizes: dict[Path, tuple[int, int]], bad: _BadFiles, *,
    channels: int, size: tuple[int, int], class_names: tuple[str, ...],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full decode of the readable ``items`` (finds truncated files), straight to ``size``."""
    x = np.empty((len(items), channels, *size), dtype=np.uint8)
    y = np.empty(len(items), dtype=np.int64)
    n = 0
    for path_i, cls in items:
        if path_i not in sizes:
            continue  # already counted as bad
        try:
            x[n] = decode_image(path_i, mode="L" if channels == 1 else "RGB", size=size)
        except DatasetError as err:
            bad.handle(err, path_i)
            continue
        y[n] = class_names.index(cls)
        n += 1
    return torch.from_numpy(x[:n]), torch.from_numpy(y[:n])


def _check_readable(ty: torch.Tensor, class_names: tuple[str, ...], bad: _BadFiles, *, name: str,
                    folder: Path) -> None:
    """Readable training images, at least two class folders, and at least two classes with a readable image."""
    if len(ty) == 0:
        raise DatasetError(f"{name}: no readable images in {folder} ({len(bad.found)} bad files skipped)")
    if len(class_names) < 2:
        raise DatasetError(
            f"{name}: only one class ({class_names[0]!r}) in {folder}; a classifier needs at least two "
            f"class folders ({folder}/<class>/<image>)"
        )
    unreadable = [c for i, c in enumerate(class_names) if not bool((ty == i).any())]
    if len(unreadable) > len(class_names) - 2:
        raise DatasetError(
            f"{name}: fewer than two classes with a readable image (every image of {', '.join(unreadable)} was "
            f"bad and skipped: {len(bad.found)} bad files)"
        )


def load_imagefolder(
    path: str | Path,
    *,
    input_size: tuple[int, int, int] | None,
    bad_files: str,
    test_fraction: float = 0.2,
    max_gib: float = 16.0,
) -> RawData:
    """Read ``path`` (see the module docstring) into uint8 tensors at the model's input size."""
    folder = Path(path).expanduser()
    name = f"imagefolder:{path}"
    if not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"{name}: test_fraction must be in (0, 1), got {test_fraction!r}")
    if not folder.is_dir():
        raise DatasetError(f"{name}: {folder} is not a folder")
    layout = _find_layout(folder, name)
    class_names = _class_names(layout, name)

    bad = _BadFiles(bad_files)
    # First pass: headers only (cheap), to find empty and non-image files and the common size.
    sizes: dict[Path, tuple[int, int]] = {}
    for path_i, _ in layout.train + layout.val + layout.test:
        try:
            w, h = open_image(path_i)
            sizes[path_i] = (h, w)
        except DatasetError as err:
            bad.handle(err, path_i)
    channels, size, size_note = _target_size(sizes, input_size, name=name, folder=folder, max_gib=max_gib)
    decode = lambda items: _decode(items, sizes, bad, channels=channels, size=size, class_names=class_names)  # noqa: E731
    tx, ty = decode(layout.train)
    vx, vy = decode(layout.test)
    ox, oy = decode(layout.val) if layout.val else (None, None)
    if oy is not None and len(oy) == 0:
        raise DatasetError(f"{name}: no readable images in {layout.val_dir} ({len(bad.found)} bad files skipped)")
    _check_readable(ty, class_names, bad, name=name, folder=folder)
    described = layout.description
    if not layout.test:
        train_idx, test_idx = stratified_split(ty.numpy(), test_fraction=test_fraction, seed=IMAGEFOLDER_SPLIT_SEED)
        tx, ty, vx, vy = tx[train_idx], ty[train_idx], tx[test_idx], ty[test_idx]
        described += (
            f", split stratified {1 - test_fraction:.0%}/{test_fraction:.0%} with the fixed seed "
            f"{IMAGEFOLDER_SPLIT_SEED}"
        )
    elif len(vy) == 0:
        raise DatasetError(f"{name}: no readable images in {layout.test_dir} ({len(bad.found)} bad files skipped)")
    n_val = f" / {len(oy):,} val" if oy is not None else ""
    notes = [
        f"{name}: {len(ty):,} train{n_val} / {len(vy):,} test images in {len(class_names)} classes from "
        f"{described}; {'grey' if channels == 1 else 'RGB'}, {size_note} (PIL bilinear)"
    ]
    if bad.found:
        listed = "; ".join(bad.found[:_MAX_LISTED])
        more = f"; and {len(bad.found) - _MAX_LISTED} more" if len(bad.found) > _MAX_LISTED else ""
        notes.append(f"{name}: skipped {len(bad.found)} bad files: {listed}{more}")
    return RawData(tx, ty, vx, vy, class_names, tuple(notes), val_x=ox, val_y=oy)
