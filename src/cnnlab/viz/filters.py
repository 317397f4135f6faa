"""Pictures of hand-crafted filters: a grid of filter responses (lecture 003's table, and more), the
levels of a Gaussian and a Laplacian pyramid, the correlation of pixels against their distance, and
images written as PNGs. Drawn from arrays alone (the image, the kernels, their responses, the
pyramid's levels, the measured curves).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cnnlab import atomic
from cnnlab.viz.analysis_plots import _save

__all__ = ["plot_filter_grid", "plot_pyramid", "plot_pixel_correlation", "save_image", "display_range"]


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


def _show(ax, image: np.ndarray, title: str | None = None) -> None:
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(image, 0.0, 1.0))
    if title:
        ax.set_title(title, fontsize=9)
    ax.axis("off")


def plot_pyramid(
    gaussian: Sequence[np.ndarray], laplacian: Sequence[np.ndarray], path: str | os.PathLike, *,
    title: str | None = None,
) -> Path:
    """The Gaussian levels in the top row and the Laplacian levels below, all drawn at one scale (a
    level half the size of the previous is drawn half as large).

    A band-pass level is shown as mid-grey plus the band, scaled to its 99.5th percentile of
    ``|band|`` (the gain is in its title), so that the finest detail and the coarsest are both visible.
    """
    from matplotlib.figure import Figure

    n = len(gaussian)
    if len(laplacian) != n:
        raise ValueError(f"plot_pyramid: {n} Gaussian levels but {len(laplacian)} Laplacian levels")
    h0, w0 = gaussian[0].shape[:2]
    # every column at least a sixth of the first, so that the small levels' titles fit beside each other
    columns = [max(g.shape[1], w0 / 6) for g in gaussian]
    # about one screen pixel per image pixel at the 120 dpi of the saved PNG (no blown-up pixels), within 6..11 in
    fig_w = min(max(sum(columns) / 110, 6.0), 11.0)
    inch = fig_w / sum(columns)  # inches per pixel, the same in every panel
    fig = Figure(figsize=(fig_w, 2 * (h0 * inch + 0.5) + (0.4 if title else 0.0)))
    grid = fig.add_gridspec(2, n, width_ratios=columns)
    for i, (g, band, col) in enumerate(zip(gaussian, laplacian, columns)):
        h, w = g.shape[:2]
        if i == n - 1:  # the coarsest level is kept as it is: the residual the bands are added to
            shown, label = band, f"L{i} = G{i}\n(residual)" if n < 5 else f"L{i}"
        else:
            top = float(np.percentile(np.abs(band), 99.5)) or 1.0
            shown = 0.5 + band / (2.0 * top)
            label = f"L{i} = G{i} - up(G{i + 1})\nx{0.5 / top:.0f}, grey = 0" if i == 0 or n < 5 else f"L{i}\nx{0.5 / top:.0f}"
        for row, (image, text) in enumerate(((g, f"G{i}\n{h}x{w}"), (shown, label))):
            ax = fig.add_subplot(grid[row, i])
            _show(ax, image)
            pad = (col - w) / 2
            ax.set_xlim(-0.5 - pad, w - 0.5 + pad)
            # the Gaussian levels stand on one line, the Laplacian levels hang from the next
            bottom = h - 0.5 if row == 0 else h0 - 0.5
            ax.set_ylim(bottom, bottom - h0)
            ax.text((w - 1) / 2, -0.5 - 0.02 * h0, text, ha="center", va="bottom", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_pixel_correlation(distances: np.ndarray, curves: Mapping[str, np.ndarray], fits: Sequence, path:
                           str | os.PathLike, *, title: str) -> Path:
    """Two log-log panels against the distance in pixels: the correlation of pixel pairs, and
    ``1 - correlation``; one thin line per image, their mean in black, and the power law fitted to
    the mean (``fits``: two callables with ``exponent`` and ``r2``, one per panel) dashed."""
    from matplotlib.figure import Figure

    d = np.asarray(distances, dtype=float)
    mean = np.mean(np.stack(list(curves.values())), axis=0)
    fig = Figure(figsize=(10.5, 4.2))
    axes = fig.subplots(1, 2)
    for ax, transform, label, fit in ((axes[0], lambda c: c, "correlation of pixel pairs", fits[0]),
                                      (axes[1], lambda c: 1.0 - c, "1 - correlation", fits[1])):
        for name, c in curves.items():
            y = transform(np.asarray(c))
            ok = y > 0  # a log axis shows positive values only
            ax.plot(d[ok], y[ok], "-", lw=1, alpha=0.6, label=name)
        y = transform(mean)
        ax.plot(d[y > 0], y[y > 0], "o-", color="black", lw=2, ms=4, label="mean")
        ax.plot(d, fit(d), "--", color="red", lw=1.5,
                label=f"power law d^{fit.exponent:.2f} (R² {fit.r2:.2f})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("distance between the pixels (pixels)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def save_image(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a grey (H, W) or RGB (H, W, 3) array in [0, 1] (clipped) as an 8-bit PNG, atomically."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(data).save(buf, format="PNG")
    atomic.atomic_write(path, buf.getbuffer())
    return path
