"""Bring raw images to the model's input size and normalise them with the train split's statistics.

Every change is recorded as a note (it goes into the run's ``config.json``):

* channels: 1 -> 3 repeats the grey channel (stored as a stride-0 view of the one channel, so it
  costs no memory; indexing a batch makes it a plain tensor); 3 -> 1 takes the ITU-R 601 luma
  ``0.299 R + 0.587 G + 0.114 B``, the weighted average PIL's "L" mode and torchvision use. Any other
  pair (2 channels, 4, ...) is an error.
* size: 28x28 -> 32x32 is zero-padded by 2 pixels on each side, as LeCun et al. (1998) centred
  MNIST's 28x28 digits in LeNet-5's 32x32 input field; every other change of size is a bilinear
  resize, antialiased when shrinking.
* normalisation: per channel, ``(x - mean) / std`` with the mean and std of the adapted train split
  (pixels in [0, 1], padding included), applied to every split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.errors import ConfigError, DatasetError
from cnnlab.limits import MAX_SIDE  # noqa: F401 (re-exported: the largest input side)

__all__ = ["check_input_size", "adapt_splits", "adapt_all", "MAX_SIDE", "DEFAULT_MAX_GIB"]

DEFAULT_MAX_GIB = 16.0  # refuse to build in-memory splits larger than this (option max_gib)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


def check_input_size(input_size: Sequence[int] | None) -> tuple[int, int, int] | None:
    """Validate a model's (C, H, W); ConfigError naming ``input_size`` when it cannot be a model input."""
    if input_size is None:
        return None
    try:
        c, h, w = (int(v) for v in input_size)
        ok = all(int(v) == v for v in input_size)
    except (TypeError, ValueError):
        raise ConfigError(f"input_size must be (C, H, W), got {input_size!r}") from None
    if not ok:
        raise ConfigError(f"input_size must be whole numbers (C, H, W), got {tuple(input_size)}")
    if c not in (1, 3):
        raise ConfigError(f"input_size: the data can have 1 or 3 channels, not {c} (input_size={c, h, w})")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise ConfigError(f"input_size: height and width must be in 1..{MAX_SIDE}, got {h}x{w}")
    return c, h, w


def _spatial(x: Tensor, size: tuple[int, int]) -> Tensor:
    h, w = x.shape[-2:]
    if (h, w) == size:
        return x
    if (h, w) == (28, 28) and size == (32, 32):
        return F.pad(x, (2, 2, 2, 2))  # zeros: black, the digits' background
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _to_unit_float(x: Tensor) -> Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def adapt_splits(
    name: str,
    train_x: Tensor,
    test_x: Tensor,
    *,
    input_size: tuple[int, int, int] | None,
    max_gib: float = DEFAULT_MAX_GIB,
) -> tuple[Tensor, Tensor, tuple[float, ...], tuple[float, ...], list[str]]:
    """Adapt both splits (uint8 0..255 or float in [0, 1], N x C x H x W) to ``input_size`` and normalise.

    Returns the normalised float32 splits, the per-channel mean and std, and the notes.
    """
    (train, test), mean, std, notes = adapt_all(name, (train_x, test_x), input_size=input_size, max_gib=max_gib)
    return train, test, mean, std, notes


def adapt_all(
    name: str,
    splits: Sequence[Tensor],
    *,
    input_size: tuple[int, int, int] | None,
    max_gib: float = DEFAULT_MAX_GIB,
) -> tuple[list[Tensor], tuple[float, ...], tuple[float, ...], list[str]]:
    """:func:`adapt_splits` for any number of splits; ``splits[0]`` is the train split, the only one
    the normalisation statistics come from."""
    train_x = splits[0]
    src_c, src_h, src_w = train_x.shape[1:]
    tgt_c, tgt_h, tgt_w = input_size if input_size is not None else (src_c, src_h, src_w)
    notes: list[str] = []
    if (src_c, tgt_c) not in ((1, 1), (3, 3), (1, 3), (3, 1)):
        raise DatasetError(f"{name}: cannot turn {src_c}-channel images into the model's {tgt_c} channels")
    stored_c = 1 if tgt_c == 1 or src_c == 1 else 3  # 1 -> 3 is repeated at the end, as a view
    n_total = sum(x.shape[0] for x in splits)
    gib = n_total * stored_c * tgt_h * tgt_w * 4 / 2**30
    if gib > max_gib:
        raise DatasetError(
            f"{name}: {n_total:,} images at {stored_c}x{tgt_h}x{tgt_w} need {gib:.1f} GiB in memory, "
            f"more than max_gib={max_gib:g}; use a model with a smaller input size or raise max_gib"
        )
    if src_c == 3 and tgt_c == 1:
        notes.append(f"{name}: RGB converted to 1 channel (ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B)")
    if (src_h, src_w) != (tgt_h, tgt_w):
        if (src_h, src_w) == (28, 28) and (tgt_h, tgt_w) == (32, 32):
            notes.append(f"{name}: 28x28 zero-padded to 32x32 (LeCun et al. 1998 centred 28x28 digits in 32x32)")
        else:
            notes.append(f"{name}: {src_h}x{src_w} resized to {tgt_h}x{tgt_w} (bilinear, antialiased)")

    luma = torch.tensor(_LUMA).view(1, 3, 1, 1)
    chunk = max(1, (64 << 20) // (4 * 3 * max(src_h * src_w, tgt_h * tgt_w)))  # ~64 MB a chunk
    outs: list[Tensor] = []
    sums = torch.zeros(stored_c, dtype=torch.float64)
    sqsums = torch.zeros(stored_c, dtype=torch.float64)
    count = 0
    for split_i, src in enumerate(splits):
        out = torch.empty(src.shape[0], stored_c, tgt_h, tgt_w, dtype=torch.float32)
        for start in range(0, src.shape[0], chunk):
            x = _to_unit_float(src[start : start + chunk])
            if src_c == 3 and tgt_c == 1:
                x = (x * luma).sum(1, keepdim=True)
            x = _spatial(x, (tgt_h, tgt_w))
            out[start : start + chunk] = x
            if split_i == 0:  # float32 within a chunk (torch sums pairwise), float64 across chunks
                sums += x.sum((0, 2, 3)).double()
                sqsums += (x * x).sum((0, 2, 3)).double()
        if split_i == 0:
            count = out.shape[0] * tgt_h * tgt_w
        outs.append(out)
    mean = sums / max(count, 1)
    var = (sqsums / max(count, 1) - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant channel is left unscaled
    for out in outs:
        out.sub_(mean.float().view(1, -1, 1, 1)).div_(std.float().view(1, -1, 1, 1))
    mean_t = tuple(float(v) for v in mean)
    std_t = tuple(float(v) for v in std)
    if src_c == 1 and tgt_c == 3:
        outs = [o.expand(-1, 3, -1, -1) for o in outs]
        mean_t, std_t = mean_t * 3, std_t * 3
        notes.append(f"{name}: 1 channel repeated to 3 (grey images for an RGB model)")
    notes.append(
        f"{name}: normalised per channel with the train split's mean "
        f"{[round(v, 4) for v in mean_t]} and std {[round(v, 4) for v in std_t]}"
    )
    if not all(math.isfinite(v) for v in mean_t + std_t):
        raise DatasetError(f"{name}: the train split has non-finite pixel values")
    return outs, mean_t, std_t, notes
