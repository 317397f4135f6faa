"""Pictures of segmentations: images with their true and predicted masks side by side, coloured with
VOC's palette (the colour map of the devkit's ``labelcolormap``; void pixels white).

Everything is drawn from arrays (or the lists a results.json holds); nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cnnlab import atomic

__all__ = ["voc_palette", "colour_mask", "draw_overlays"]


def voc_palette(n: int = 256) -> np.ndarray:
    """VOC's colour map (``labelcolormap`` of the devkit): ``(n, 3)`` uint8; entry 255 set to white."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    if n > 255:
        out[255] = (255, 255, 255)
    return out


def colour_mask(mask: Any) -> np.ndarray:
    """A class-index mask ``(H, W)`` as an RGB picture ``(H, W, 3)``."""
    m = np.asarray(mask, dtype=np.int64)
    return voc_palette()[np.clip(m, 0, 255)]


def _grey(image: Any) -> np.ndarray:
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3:  # (C, H, W)
        x = x.mean(0) if x.shape[0] != 3 else x.transpose(1, 2, 0)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def draw_overlays(path: Path, images: Sequence[Any], truth: Sequence[Any], preds: Mapping[str, Sequence[Any]],
                  *, class_names: Sequence[str] = (), title: str = "") -> Path:
    """One row per example: the image, the true mask, then each prediction (``preds``: label -> masks);
    predictions are drawn over a faint copy of the image. Writes the PNG at ``path``."""
    rows, cols = len(images), 2 + len(preds)
    fig = Figure(figsize=(2.0 * cols, 2.0 * rows + (0.5 if title else 0.2)))
    for r in range(rows):
        img = _grey(images[r])
        panels = [("image", np.stack([img] * 3, -1) if img.ndim == 2 else img), ("truth", colour_mask(truth[r]))]
        for label, masks in preds.items():
            faint = (np.stack([img] * 3, -1) if img.ndim == 2 else img) * 255
            panels.append((label, (0.75 * colour_mask(masks[r]) + 0.25 * faint).astype(np.uint8)))
        for c, (label, picture) in enumerate(panels):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=9)
    if class_names:
        present = sorted({int(v) for m in truth for v in np.unique(np.asarray(m)) if int(v) < len(class_names)})
        palette = voc_palette()
        x = 0.02
        for i in present:  # a colour key of the classes shown, along the bottom
            fig.text(x, 0.005, f"\u25a0 {class_names[i]}", color=palette[i] / 255, fontsize=8, va="bottom")
            x += 0.03 + 0.012 * len(str(class_names[i]))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.03 if class_names else 0, 1, 1))
    return atomic.save_figure(fig, path, dpi=110)
