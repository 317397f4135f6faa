"""``mnist-canvas``: a localisation set. Each mnist-5k digit is pasted once at a random position on
an empty 64x64 canvas, and its box (the tight box of its ink) is kept, so attribution maps can be
scored against where the digit really is (the pointing game).
``mnist-boxes`` and ``mnist-captions`` (the section at the end) are scenes of several digits with
their boxes, for detection, and with a caption, for captioning.

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

__all__ = ["CANVAS_SIZE", "CANVAS_SEED", "VAL_FRACTION", "load_mnist_canvas", "canvas_boxes", "SPLITS",
           "MAX_OBJECTS", "VOCABULARY", "CAPTION_LENGTH", "PAD", "START", "END", "caption_words", "encode_caption",
           "decode_caption", "load_scenes", "load_scene_set"]

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


# ------------------------------------------------------------------ scenes: several digits, boxes, captions

# ``mnist-boxes`` (detection) and ``mnist-captions`` (captioning) are the same scenes: 1 to
# MAX_OBJECTS mnist-5k digits pasted on an empty canvas (each overlapping any earlier one by at most a
# quarter of its 28x28 patch, as mnist-seg), with every digit's tight ink box and label. Targets stay
# tensors: detection's are (N, MAX_OBJECTS, 5) rows ``label, x0, y0, x1, y1`` (pixels, x1/y1
# exclusive) padded with rows of -1; captioning's are (N, CAPTION_LENGTH) word indices.
MAX_OBJECTS = 3
SCENE_SEEDS = {"train": 11, "val": 12, "test": 13}  # fixed: the same scenes whatever --seed
PAD, START, END = 0, 1, 2  # the first three words of VOCABULARY
_NUMBERS = tuple(str(d) for d in range(10))
VOCABULARY = (("<pad>", "<start>", "<end>", "a", "two", ",", "and", "left", "right", "of", "above", "side",
               "by", "one", "the", "other", "from", "to") + _NUMBERS + tuple(f"{d}s" for d in _NUMBERS))
CAPTION_LENGTH = 16  # <start> + the longest caption (12 words) + <end>, padded


def _scene_split(digits: Tensor, labels: Tensor, *, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` canvases (uint8) and their (n, MAX_OBJECTS, 5) box rows, drawn with ``seed``."""
    from cnnlab.data.segmentation import _place  # one placement rule for the canvas sets

    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
    rows = np.full((n, MAX_OBJECTS, 5), -1, dtype=np.int64)
    source, names = digits.numpy(), labels.numpy()
    for i in range(n):
        count = int(rng.integers(1, MAX_OBJECTS + 1))
        picks = rng.choice(len(source), size=count, replace=False)
        for j, ((t, l), k) in enumerate(zip(_place(rng, CANVAS_SIZE, count, _DIGIT), picks)):
            d = source[k, 0]
            window = x[i, 0, t : t + _DIGIT, l : l + _DIGIT]
            np.maximum(window, d, out=window)
            ink = d > 0
            r, c = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
            rows[i, j] = (int(names[k]), l + c[0], t + r[0], l + c[-1] + 1, t + r[-1] + 1)
    return torch.from_numpy(x), torch.from_numpy(rows)


def caption_words(rows: np.ndarray) -> list[str]:
    """The caption of one scene from its box rows (padding rows ignored), by a fixed grammar:
    one digit "a 3"; two digits "a 3 left of a 7" or "a 3 above a 7" (the larger of the horizontal
    and vertical distances of the box centres decides; the left or upper digit is named first),
    "two 5s side by side" / "two 5s one above the other"; three "a 3 , a 7 and a 1 from left to right"."""
    objs = [(int(r[0]), (r[1] + r[3]) / 2, (r[2] + r[4]) / 2) for r in rows if r[0] >= 0]
    if len(objs) == 1:
        return ["a", str(objs[0][0])]
    if len(objs) == 2:
        (a, ax, ay), (b, bx, by) = objs
        horizontal = abs(ax - bx) >= abs(ay - by)
        first, second = sorted(objs, key=lambda o: o[1] if horizontal else o[2])
        if a == b:
            return ["two", f"{a}s"] + (["side", "by", "side"] if horizontal else ["one", "above", "the", "other"])
        return ["a", str(first[0])] + (["left", "of"] if horizontal else ["above"]) + ["a", str(second[0])]
    d = [str(o[0]) for o in sorted(objs, key=lambda o: o[1])]
    return ["a", d[0], ",", "a", d[1], "and", "a", d[2], "from", "left", "to", "right"]


def encode_caption(words: list[str]) -> list[int]:
    """``<start> words <end>`` as VOCABULARY indices, padded with <pad> to CAPTION_LENGTH."""
    index = {w: i for i, w in enumerate(VOCABULARY)}
    ids = [START] + [index[w] for w in words] + [END]
    return ids + [PAD] * (CAPTION_LENGTH - len(ids))


def decode_caption(ids, vocabulary: tuple[str, ...] = VOCABULARY) -> str:
    """The words of a sequence of word indices up to its first <end> (<start>/<pad> skipped)."""
    words = []
    for i in ids:
        i = int(i)
        if i == END:
            break
        if i not in (PAD, START) and 0 <= i < len(vocabulary):
            words.append(vocabulary[i])
    return " ".join(words)


@functools.lru_cache(maxsize=4)
def load_scenes(*, n_train: int = 2000, n_val: int = 300, n_test: int = 500) -> dict[str, tuple[Tensor, Tensor]]:
    """Per split: scene canvases (N, 1, 64, 64) uint8 and their box rows (N, MAX_OBJECTS, 5)."""
    for field, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
            raise ConfigError(f"mnist scenes: {field} must be an integer in 1..100000, got {value!r}")
    raw = load_mnist_5k()
    train_idx, val_idx = stratified_split(raw.train_y.numpy(), test_fraction=VAL_FRACTION, seed=CANVAS_SEED)
    sources = {"train": (raw.train_x[train_idx], raw.train_y[train_idx], n_train),
               "val": (raw.train_x[val_idx], raw.train_y[val_idx], n_val),
               "test": (raw.test_x, raw.test_y, n_test)}  # fmt: skip
    return {split: _scene_split(x, y, n=n, seed=SCENE_SEEDS[split]) for split, (x, y, n) in sources.items()}


def load_scene_set(name: str, *, input_size: tuple[int, int, int] | None = None, **options):
    """``mnist-boxes`` or ``mnist-captions`` as a DataBundle (images normalised with the train split's
    mean and std; targets as in the section comment above)."""
    from cnnlab.data.segmentation import SegData, to_bundle

    if input_size is not None and tuple(input_size[1:]) != (CANVAS_SIZE, CANVAS_SIZE):
        raise ConfigError(f"{name}: the canvases are {CANVAS_SIZE}x{CANVAS_SIZE}; the model wants "
                          f"{input_size[1]}x{input_size[2]}")
    scenes = load_scenes(**options)
    sizes = "/".join(f"{len(scenes[s][1]):,}" for s in SPLITS)
    notes = (f"{name}: {sizes} {CANVAS_SIZE}x{CANVAS_SIZE} canvases of 1-{MAX_OBJECTS} mnist-5k digits (overlap "
             f"at most a quarter of a 28x28 patch); train/val from mnist-canvas's split of mnist-5k's training "
             f"digits, test from its test digits; fixed seeds {SCENE_SEEDS}",)
    if name == "mnist-boxes":
        data = SegData(scenes["train"], scenes["val"], scenes["test"], _NUMBERS,
                       notes + ("targets: (N, 3, 5) rows label, x0, y0, x1, y1 (pixels), -1 rows pad",))
    else:
        splits = {s: (x, torch.tensor([encode_caption(caption_words(r)) for r in rows.numpy()]))
                  for s, (x, rows) in scenes.items()}
        data = SegData(splits["train"], splits["val"], splits["test"], VOCABULARY,
                       notes + (f"targets: (N, {CAPTION_LENGTH}) word indices of the scene's caption "
                                "(cnnlab.data.canvas.caption_words), <start> ... <end> <pad>...",))
    return to_bundle(name, data, in_chans=input_size[0] if input_size else None)
