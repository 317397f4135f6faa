"""Segmentation data: ``mnist-seg`` (embedded) and ``voc2012`` (Pascal VOC, torchvision's layout), and
joint augmentation of images and masks on whole batches.

Masks are int64 ``(N, H, W)`` class indices; ``IGNORE_INDEX`` (255, VOC's "void") marks pixels that
neither the loss nor the metrics count.

``mnist-seg``: 64x64 canvases, each with 2 or 3 digits of ``mnist-5k`` at random places (they may
overlap, by at most a quarter of a digit's box), labels 0 = background and 1 + d for digit d (11
classes, VOC's convention of background first). A digit's pixels at or above half intensity take its
label; its fainter anti-aliased rim is void (255), as VOC marks object boundaries; where digits
overlap the later one is on top. The canvases are drawn with fixed seeds from disjoint source
digits: train and validation canvases from a fixed stratified 80/20 split of mnist-5k's 4,000
training digits, test canvases from its 1,000 test digits.

``voc2012``: ``root/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}`` as
``torchvision.datasets.VOCSegmentation`` lays it out (``--download`` uses its downloader). The
palette PNG masks are read as indices with PIL (21 classes, 255 void). Train and validation come
from a fixed 80/20 split of the ``train`` list; the test split is VOC's ``val`` list (the test
server's labels are not public). Images and masks are resized to the model's input size (bilinear
and nearest).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.data import embedded
from cnnlab.data.bundle import stratified_split
from cnnlab.data.readers import decode_image, open_image
from cnnlab.errors import ConfigError, DatasetError
from cnnlab.safeio import open_pil_image

__all__ = ["IGNORE_INDEX", "SegData", "load_mnist_seg", "load_voc2012", "joint_augment", "VOC_CLASSES",
           "MNIST_SEG_SEEDS"]  # fmt: skip

IGNORE_INDEX = 255  # VOC's "void": not counted by the loss nor by the metrics
MNIST_SEG_SEEDS = {"split": 2015, "train": 1, "val": 2, "test": 3}  # fixed: the same canvases whatever --seed
VAL_FRACTION = 0.2
MNIST_SEG_CLASSES = ("background",) + tuple(str(d) for d in range(10))
# torchvision.datasets.VOCSegmentation / the VOC2012 devkit's class order
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")  # fmt: skip
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"


@dataclass(frozen=True)
class SegData:
    """Three splits as read: x uint8 (N, C, H, W), y int64 masks (N, H, W)."""

    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    class_names: tuple[str, ...]
    notes: tuple[str, ...]


# ------------------------------------------------------------------------------------ mnist-seg


def _place(rng: np.random.Generator, size: int, count: int, digit: int = 28) -> list[tuple[int, int]]:
    """Top-left corners of ``count`` digit boxes inside the canvas, each overlapping any earlier box by
    at most a quarter of its area (rejection sampling, deterministic given ``rng``)."""
    boxes: list[tuple[int, int]] = []
    while len(boxes) < count:
        for _ in range(100):
            r, c = (int(v) for v in rng.integers(0, size - digit + 1, size=2))
            overlaps = [max(0, digit - abs(r - r2)) * max(0, digit - abs(c - c2)) for r2, c2 in boxes]
            if all(o <= digit * digit // 4 for o in overlaps):
                break
        boxes.append((r, c))  # after 100 tries, the last draw (a heavier overlap) is kept
    return boxes


def _canvases(digits: np.ndarray, labels: np.ndarray, *, n: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, size, size), dtype=np.uint8)
    y = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        count = int(rng.integers(2, 4))  # 2 or 3 digits
        for (r, c), k in zip(_place(rng, size, count), rng.choice(len(digits), size=count, replace=False)):
            d = digits[k, 0]
            window = (slice(r, r + 28), slice(c, c + 28))
            x[i, 0][window] = np.maximum(x[i, 0][window], d)
            mask = y[i][window]
            mask[(d > 0) & (d < 128) & ((mask == 0) | (mask == IGNORE_INDEX))] = IGNORE_INDEX  # faint rim: void
            mask[d >= 128] = 1 + int(labels[k])  # the digit's body, on top of earlier digits
    return torch.from_numpy(x), torch.from_numpy(y)


@functools.lru_cache(maxsize=4)
def load_mnist_seg(*, n_train: int = 2000, n_val: int = 300, n_test: int = 500, size: int = 64) -> SegData:
    """``mnist-seg`` canvases (see the module doc); deterministic for given sizes."""
    for field, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"mnist-seg: {field} must be a positive integer, got {value!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 1024:
        raise ConfigError(f"mnist-seg: size must be an integer in 32..1024, got {size!r}")
    raw = embedded.load_mnist_5k()
    tx, ty = raw.train_x.numpy(), raw.train_y.numpy()
    train_idx, val_idx = stratified_split(ty, test_fraction=VAL_FRACTION, seed=MNIST_SEG_SEEDS["split"])
    splits = {
        "train": _canvases(tx[train_idx], ty[train_idx], n=n_train, size=size, seed=MNIST_SEG_SEEDS["train"]),
        "val": _canvases(tx[val_idx], ty[val_idx], n=n_val, size=size, seed=MNIST_SEG_SEEDS["val"]),
        "test": _canvases(raw.test_x.numpy(), raw.test_y.numpy(), n=n_test, size=size, seed=MNIST_SEG_SEEDS["test"]),
    }
    notes = (
        f"mnist-seg: {n_train:,}/{n_val:,}/{n_test:,} {size}x{size} canvases of 2-3 mnist-5k digits "
        f"(labels 0 = background, 1 + digit; the faint rim of each digit is void, {IGNORE_INDEX}); train/val "
        f"canvases from a fixed 80/20 split of mnist-5k's training digits ({len(train_idx):,}/{len(val_idx):,}), "
        f"test canvases from its {len(raw.test_y):,} test digits; fixed seeds {MNIST_SEG_SEEDS}",
    )
    return SegData(splits["train"], splits["val"], splits["test"], MNIST_SEG_CLASSES, notes)


# ------------------------------------------------------------------------------------ voc2012


def _voc_dir(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2012"


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing (the VOC2012 image list)")
    names = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not names or any("/" in n or "\\" in n or n.startswith(".") for n in names):
        raise DatasetError(f"{path}: not a list of VOC image names")
    return names


def read_voc_mask(path: Path, *, size: tuple[int, int], num_classes: int = 21) -> np.ndarray:
    """A VOC palette PNG as class indices (H, W) resized (nearest) to ``size``; 255 stays void."""
    from PIL import Image

    open_image(path)
    try:
        with open_pil_image(path, name=path, error=DatasetError) as img:
            if img.mode not in ("P", "L"):
                raise DatasetError(f"{path}: a VOC mask is a palette (P) or grey (L) PNG, found mode {img.mode}")
            img.load()
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.NEAREST)
            mask = np.asarray(img, dtype=np.uint8).astype(np.int64)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"{path}: truncated or corrupt mask ({type(err).__name__}: {err})") from None
    bad = (mask >= num_classes) & (mask != IGNORE_INDEX)
    if bad.any():
        raise DatasetError(f"{path}: mask values {sorted(set(mask[bad].tolist()))[:5]} are not classes 0..{num_classes - 1} or 255")
    return mask


def _read_voc(folder: Path, names: list[str], *, size: tuple[int, int], bad_files: str,
              skipped: list[str]) -> tuple[Tensor, Tensor]:
    xs, ys = [], []
    for name in names:
        try:
            x = decode_image(folder / "JPEGImages" / f"{name}.jpg", mode="RGB", size=size)
            y = read_voc_mask(folder / "SegmentationClass" / f"{name}.png", size=size)
        except DatasetError as err:
            if bad_files != "skip":
                raise
            skipped.append(str(err))
            continue
        xs.append(x)
        ys.append(y)
    if not xs:
        raise DatasetError(f"{folder}: no readable image of {len(names)} listed")
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def load_voc2012(*, root: Path, download: bool = False, size: tuple[int, int] = (224, 224),
                 bad_files: str = "strict") -> SegData:
    """Pascal VOC 2012 segmentation from torchvision's layout under ``root`` (see the module doc)."""
    folder = _voc_dir(root)
    if not (folder / "ImageSets" / "Segmentation").is_dir():
        if not download:
            raise DatasetError(f"voc2012: {folder}/ImageSets/Segmentation not found; put the VOC2012 devkit "
                               f"(from {VOC_URL}) under {root}/VOCdevkit/VOC2012/, or pass --download")
        try:
            from torchvision.datasets import VOCSegmentation

            VOCSegmentation(str(root), year="2012", image_set="trainval", download=True)
        except Exception as err:  # noqa: BLE001 (network and archive errors of every kind)
            raise DatasetError(f"voc2012: download of {VOC_URL} to {root} failed ({type(err).__name__}: {err})") from None
    lists = folder / "ImageSets" / "Segmentation"
    train_names = _read_list(lists / "train.txt")
    test_names = _read_list(lists / "val.txt")
    order = np.random.default_rng(MNIST_SEG_SEEDS["split"]).permutation(len(train_names))
    n_val = int(round(len(train_names) * VAL_FRACTION))
    val_names = [train_names[i] for i in sorted(order[:n_val])]
    train_names = [train_names[i] for i in sorted(order[n_val:])]
    skipped: list[str] = []
    splits = [_read_voc(folder, names, size=size, bad_files=bad_files, skipped=skipped)
              for names in (train_names, val_names, test_names)]
    notes = [f"voc2012: {folder}, train/val from a fixed 80/20 split of train.txt ({len(train_names)}/{len(val_names)}), "
             f"test = val.txt ({len(test_names)}); resized to {size[0]}x{size[1]} (image bilinear, mask nearest)"]
    notes += [f"voc2012: skipped {s}" for s in skipped]
    return SegData(splits[0], splits[1], splits[2], VOC_CLASSES, tuple(notes))


# ------------------------------------------------------------------------------ joint augmentation


def joint_augment(x: Tensor, y: Tensor, *, generator: torch.Generator, flip: bool = False, shift: int = 0,
                  scale: tuple[float, float] | None = None, fill: float = 0.0,
                  ignore_index: int = IGNORE_INDEX) -> tuple[Tensor, Tensor]:
    """The same random mirror, shift (up to ``shift`` pixels) and zoom (factor in ``scale``) applied to
    each image and its mask, for a whole batch in one ``grid_sample`` (bilinear for images, nearest
    for masks). Pixels brought in from outside are ``fill`` in the image and ``ignore_index`` in the mask.
    """
    n, _, h, w = x.shape
    cpu = dict(generator=generator, device=generator.device)
    sx = torch.ones(n, **{"device": generator.device})
    if scale is not None:
        lo, hi = scale
        sx = lo + (hi - lo) * torch.rand(n, **cpu)  # magnification
    sign = torch.where(torch.rand(n, **cpu) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=generator.device)
    tx = (torch.rand(n, **cpu) * 2 - 1) * shift * 2 / w
    ty = (torch.rand(n, **cpu) * 2 - 1) * shift * 2 / h
    theta = torch.zeros(n, 2, 3, device=generator.device)
    theta[:, 0, 0] = sign / sx
    theta[:, 1, 1] = 1 / sx
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    theta = theta.to(x.device)
    grid = F.affine_grid(theta, (n, 1, h, w), align_corners=False)
    xa = F.grid_sample(x - fill, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    # masks: sample label + 1 so that 0 marks "outside"
    ym = F.grid_sample((y + 1).unsqueeze(1).float(), grid.float(), mode="nearest", padding_mode="zeros",
                       align_corners=False).squeeze(1).long() - 1
    ym[ym < 0] = ignore_index
    return xa, ym


# ---------------------------------------------------------------------------------- the bundle

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as cnnlab.data.adapt


def _channels(x: Tensor, c: int, name: str, notes: list[str]) -> Tensor:
    if x.shape[1] == c:
        return x
    if x.shape[1] == 1:
        notes.append(f"{name}: 1 channel repeated to {c}")
        return x.repeat(1, c, 1, 1)
    if x.shape[1] == 3 and c == 1:
        notes.append(f"{name}: RGB converted to 1 channel (ITU-R 601 luma)")
        return (x * torch.tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    raise ConfigError(f"{name}: cannot adapt {x.shape[1]} channels to the model's {c}")


def to_bundle(name: str, data: SegData, *, in_chans: int | None):
    """A DataBundle of float32 images normalised with the train split's per-channel mean and std."""
    from cnnlab.data.bundle import DataBundle, TensorPair

    notes = list(data.notes)
    splits = {}
    for split in ("train", "val", "test"):
        x, y = getattr(data, split)
        x = x.float() / 255.0
        splits[split] = (_channels(x, in_chans or x.shape[1], name, notes if split == "train" else []), y)
    train_x = splits["train"][0]
    mean = train_x.mean(dim=(0, 2, 3))
    std = train_x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    pairs = {k: TensorPair((x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1), y.long().clone())
             for k, (x, y) in splits.items()}
    return DataBundle(name=name, train=pairs["train"], val=pairs["val"], test=pairs["test"],
                      num_classes=len(data.class_names), input_size=tuple(train_x.shape[1:]),
                      mean=tuple(mean.tolist()), std=tuple(std.tolist()), class_names=data.class_names,
                      notes=tuple(notes))


def load_segmentation(name: str, *, root: Path, download: bool, input_size: tuple[int, int, int] | None,
                      bad_files: str, **options):
    """``mnist-seg`` or ``voc2012`` as a DataBundle adapted to ``input_size`` (the model's (C, H, W))."""
    c = input_size[0] if input_size else None
    if name == "mnist-seg":
        if input_size is not None and "size" not in options:
            if input_size[1] != input_size[2]:
                raise ConfigError(f"mnist-seg: canvases are square; the model wants {input_size[1]}x{input_size[2]}")
            options["size"] = input_size[1]
        return to_bundle(name, load_mnist_seg(**options), in_chans=c)
    size = tuple(input_size[1:]) if input_size else (224, 224)
    return to_bundle(name, load_voc2012(root=root, download=download, size=size, bad_files=bad_files), in_chans=c)
