"""Pictures of a classifier's errors: the confusion matrix and a grid of its most confident mistakes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_confusion", "plot_mistakes"]


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
    path = Path(path)
    fig.savefig(path, dpi=100, format="png")
    return path


def plot_mistakes(images: np.ndarray, true: Sequence[int], predicted: Sequence[int], confidence: Sequence[float],
                  class_names: Sequence[str], path: str | os.PathLike, *, title: str = "") -> Path:
    """A grid of images (N, C, H, W in [0, 1]) labelled "true -> predicted (confidence)"."""
    from matplotlib.figure import Figure

    n = len(images)
    cols = min(8, max(n, 1))
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(1.6 * cols, 1.9 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img, t, p, c in zip(axes, images, true, predicted, confidence):
        img = np.clip(np.asarray(img, dtype=float), 0.0, 1.0)
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0.0, vmax=1.0)
        else:
            ax.imshow(np.transpose(img[:3], (1, 2, 0)))
        ax.set_title(f"{class_names[t]} -> {class_names[p]}\n{100 * c:.0f}%", fontsize=8, color="firebrick")
    if n == 0:
        axes[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(title or "most confident mistakes (true -> predicted, confidence)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100, format="png")
    return path
