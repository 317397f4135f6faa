"""``mnist-canvas``: a localisation set. Each mnist-5k digit is pasted once at a random position on
an empty 64x64 canvas, and its box (the tight box of its ink) is kept, so attribution maps can be
scored against where the digit really is (the pointing game).

Deterministic: the positions come from a fixed seed, never from the user's ``--seed``. The splits
come from disjoint source digits: test from mnist-5k's test digits, train and val from its train
digits (stratified, 3,500 / 500 with a fixed seed).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from cnnlab.data.bundle import stratified_split
from cnnlab.data.embedded import RawData, load_mnist_5k
from cnnlab.errors import ConfigError

__all__ = ["CANVAS_SIZE", "CANVAS_SEED", "VAL_FRACTION", "load_mnist_canvas", "canvas_boxes", "SPLITS"]

CANVAS_SIZE = 64  # side of the empty canvas; a 28x28 digit covers at most 19% of it
CANVAS_SEED = 2016  # Zhou et al. 2016 (CAM); positions and the train/val split never change
VAL_FRACTION = 0.125  # of mnist-5k's 4,000 train digits: 3,500 train / 500 val
SPLITS = ("train", "val", "test")
_DIGIT = 28


@functools.lru_cache(maxsize=1)
def _canvases() -> dict[str, tuple[Tensor, Tensor, np.ndarray]]:
    """Per split: canvases (N, 1, 64, 64) uint8, labels (N,), boxes (N, 4) int as x0, y0, x1, y1."""
    raw = load_mnist_5k()
    train_idx, val_idx = stratified_split(raw.train_y.numpy(), test_fraction=VAL_FRACTION, seed=CANVAS_SEED)
    sources = {"train": (raw.train_x[train_idx], raw.train_y[train_idx]),
               "val": (raw.train_x[val_idx], raw.train_y[val_idx]),
               "test": (raw.test_x, raw.test_y)}  # fmt: skip
    rng = np.random.default_rng(CANVAS_SEED)
    out = {}
    for split in SPLITS:  # fixed order: each split's positions are the same whatever is loaded first
        digits, labels = sources[split]
        n = digits.shape[0]
        top, left = (rng.integers(0, CANVAS_SIZE - _DIGIT + 1, size=(2, n)))
        canvas = torch.zeros(n, 1, CANVAS_SIZE, CANVAS_SIZE, dtype=torch.uint8)
        boxes = np.zeros((n, 4), dtype=np.int64)
        for i in range(n):
            t, l = int(top[i]), int(left[i])
            canvas[i, 0, t : t + _DIGIT, l : l + _DIGIT] = digits[i, 0]
            ink = digits[i, 0].numpy() > 0
            rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
            boxes[i] = (l + cols[0], t + rows[0], l + cols[-1] + 1, t + rows[-1] + 1)  # x1, y1 exclusive
        out[split] = (canvas, labels.clone(), boxes)
    return out


def load_mnist_canvas(*, split_val: bool = True) -> RawData:
    """The train and test canvases as :class:`RawData` (uint8, 1 x 64 x 64, ten digit classes).

    The val canvases are held out of the train split (``split_val``): they are for selection, and
    :func:`canvas_boxes` returns their boxes.
    """
    data = _canvases()
    notes = (
        f"mnist-canvas: each mnist-5k digit pasted once at a random position on an empty "
        f"{CANVAS_SIZE}x{CANVAS_SIZE} canvas (fixed seed {CANVAS_SEED}); train {len(data['train'][1]):,} / "
        f"val {len(data['val'][1]):,} from mnist-5k's train digits, test {len(data['test'][1]):,} from its "
        "test digits; boxes from cnnlab.data.canvas.canvas_boxes",
    )
    names = tuple(str(d) for d in range(10))
    if not split_val:
        train_x = torch.cat([data["train"][0], data["val"][0]])
        train_y = torch.cat([data["train"][1], data["val"][1]])
        return RawData(train_x, train_y, data["test"][0], data["test"][1], names, notes)
    # The val canvases are the data set's own validation split (load_dataset uses it as is).
    return RawData(data["train"][0], data["train"][1], data["test"][0], data["test"][1], names, notes,
                   val_x=data["val"][0], val_y=data["val"][1])


def load_mnist_canvas_val() -> tuple[Tensor, Tensor]:
    """The val canvases (uint8) and labels."""
    canvas, labels, _ = _canvases()["val"]
    return canvas, labels


def canvas_boxes(split: str, *, size: int = CANVAS_SIZE) -> np.ndarray:
    """The digits' boxes of ``split`` as (N, 4) float ``x0, y0, x1, y1`` in pixels of a ``size`` canvas
    (x1, y1 exclusive), in the order of the split's images."""
    if split not in SPLITS:
        raise ConfigError(f"mnist-canvas has no split {split!r} (splits: {', '.join(SPLITS)})")
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"mnist-canvas boxes: size must be a positive integer, got {size!r}")
    return _canvases()[split][2].astype(np.float64) * (size / CANVAS_SIZE)
