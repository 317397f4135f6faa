"""Pictures of hand-crafted filters: a grid of filter responses (lecture 003's table, and more), and
images written as PNGs. Drawn from arrays alone (the image, the kernels, their responses).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cnnlab.viz.analysis_plots import _save

__all__ = ["plot_filter_grid", "save_image", "display_range"]


def display_range(kernel: np.ndarray, response: np.ndarray) -> tuple[np.ndarray, str]:
    """What to show for a response: zero-sum kernels (edges, Gabor) as |response| scaled to its 99.5th
    percentile (white edges on black, as in the lecture); the others clipped to [0, 1] like an image."""
    if abs(float(np.sum(kernel))) < 1e-6:
        mag = np.abs(response)
        top = float(np.percentile(mag, 99.5)) or 1.0
        return np.clip(mag / top, 0.0, 1.0), "|response|"
    return np.clip(response, 0.0, 1.0), "response"


def _kernel_inset(ax, kernel: np.ndarray) -> None:
    inset = ax.inset_axes([0.0, 0.0, 0.28, 0.28])
    lim = float(np.abs(kernel).max()) or 1.0
    inset.imshow(kernel, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    inset.set_xticks([])
    inset.set_yticks([])
    for spine in inset.spines.values():
        spine.set_edgecolor("yellow")


def plot_filter_grid(
    image: np.ndarray, kernels: Mapping[str, np.ndarray], responses: Mapping[str, np.ndarray],
    path: str | os.PathLike, *, title: str | None = None, columns: int = 4,
) -> Path:
    """The input and each filter's response in a grid; the kernel is drawn in each cell's corner
    (red positive, blue negative)."""
    from matplotlib.figure import Figure

    names = list(kernels)
    cells = len(names) + 1
    cols = min(columns, cells)
    rows = math.ceil(cells / cols)
    h, w = image.shape[:2]
    cell_w = 3.2
    fig = Figure(figsize=(cols * cell_w, rows * cell_w * h / w + 0.5 * rows))
    ax = fig.add_subplot(rows, cols, 1)
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.set_title("input", fontsize=10)
    ax.axis("off")
    for i, name in enumerate(names, start=2):
        ax = fig.add_subplot(rows, cols, i)
        shown, what = display_range(kernels[name], responses[name])
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1)
        kh, kw = kernels[name].shape
        ax.set_title(f"{name} ({kh}x{kw}{', ' + what if what != 'response' else ''})", fontsize=9)
        ax.axis("off")
        _kernel_inset(ax, kernels[name])
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return _save(fig, path)


def save_image(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a grey (H, W) or RGB (H, W, 3) array in [0, 1] (clipped) as an 8-bit PNG, atomically."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(data).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
