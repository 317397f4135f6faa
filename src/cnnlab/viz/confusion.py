"""Pictures of a classifier's errors: the confusion matrix and a grid of its most confident mistakes."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnlab import atomic

__all__ = ["plot_confusion", "plot_mistakes", "draw_diagnostics"]


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, *,
                   title: str = "") -> Path:
    """Row-normalised confusion matrix (each row: where the images of one true class went), with
    counts in the cells when there are few classes."""
    from matplotlib.figure import Figure

    cm = np.asarray(confusion, dtype=np.int64)
    k = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    side = min(max(4.0, 0.45 * k + 2.0), 16.0)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if k <= 30:
        ax.set_xticks(range(k), [str(n) for n in class_names], rotation=90 if k > 10 else 0)
        ax.set_yticks(range(k), [str(n) for n in class_names])
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    return atomic.save_figure(fig, path, dpi=100)


def _montage(images: np.ndarray, cols: int, pad: int) -> np.ndarray:
    """The images (N, C, H, W) in one (rows*(H+pad), cols*(W+pad), 3) array, white between them."""
    n, c, h, w = images.shape
    rows = max(1, -(-n // cols))
    grid = np.ones((rows * (h + pad), cols * (w + pad), 3))
    for k, img in enumerate(np.clip(np.asarray(images, dtype=float), 0.0, 1.0)):
        r, q = divmod(k, cols)
        tile = np.repeat(img[:1], 3, axis=0) if c == 1 else img[:3]
        grid[r * (h + pad) + pad : r * (h + pad) + pad + h, q * (w + pad) + pad // 2 : q * (w + pad) + pad // 2 + w] = \
            np.transpose(tile, (1, 2, 0))
    return grid


def plot_mistakes(images: np.ndarray, true: Sequence[int], predicted: Sequence[int], confidence: Sequence[float],
                  class_names: Sequence[str], path: str | os.PathLike, *, title: str = "") -> Path:
    """A grid of images (N, C, H, W in [0, 1]) labelled "true -> predicted (confidence)".

    Drawn as one picture with the labels written over the gaps (one axes, not one per image: a run
    draws it at its end, and 32 matplotlib axes take seconds)."""
    from matplotlib.figure import Figure

    images = np.asarray(images, dtype=float).reshape(-1, *np.shape(images)[1:]) if len(images) else \
        np.zeros((0, 1, 8, 8))
    n = len(images)
    cols = min(8, max(n, 1))
    rows = max(1, -(-n // cols))
    h, w = images.shape[2:] if n else (8, 8)
    pad = max(h // 2, 10)  # room for two lines of label above each image
    width = max(1.6 * cols, 6.0)  # room for the title
    fig = Figure(figsize=(width, 1.6 * rows * (h + pad) / (w + pad) + 0.6))  # 1.6 inches a tile
    ax = fig.subplots()
    ax.axis("off")
    if n:
        ax.imshow(_montage(images, cols, pad), interpolation="nearest")
        for k, (t, p, c) in enumerate(zip(true, predicted, confidence)):
            r, q = divmod(k, cols)
            ax.text(q * (w + pad) + pad // 2 + w / 2, r * (h + pad) + pad - 1,
                    f"{class_names[t]} -> {class_names[p]}\n{100 * c:.0f}%", ha="center", va="bottom",
                    fontsize=8, color="firebrick")
    else:
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title or "most confident mistakes (true -> predicted, confidence)", fontsize=10)
    fig.tight_layout()
    return atomic.save_figure(fig, path, dpi=100)


def draw_diagnostics(out_dir: str | os.PathLike, *, title: str = "", mistakes: bool = True) -> list[Path]:
    """``confusion.png`` from ``out_dir``'s ``confusion.csv`` and (``mistakes``) ``mistakes.png`` from
    ``mistakes.npz`` (what :func:`cnnlab.training.diagnostics.write_diagnostics` writes); returns the
    pictures drawn. ``title`` names the model and data ("lenet5 on mnist")."""
    out_dir = Path(out_dir)
    with open(out_dir / "confusion.csv", newline="") as f:
        table = list(csv.reader(f))
    names = table[0][1:]
    confusion = np.array([[int(v) for v in row[1:]] for row in table[1:]], dtype=np.int64).reshape(len(names), -1)
    drawn = [plot_confusion(confusion, names, out_dir / "confusion.png", title=f"{title}: test confusion")]
    if mistakes:
        with np.load(out_dir / "mistakes.npz", allow_pickle=False) as m:
            images, true, predicted, confidence = m["images"], m["true"], m["predicted"], m["confidence"]
        drawn.append(plot_mistakes(images, true.tolist(), predicted.tolist(), confidence.tolist(), names,
                                   out_dir / "mistakes.png",
                                   title=f"{title}: the {len(images)} most confident test mistakes"))
    return drawn
