"""Pictures of what :mod:`cnnlab.inspect` returns: filter grids, activation stats, feature maps,
top patches, attribution overlays and 2-D embeddings. Each function takes arrays and writes one PNG
(matplotlib without pyplot; written to a temporary name and renamed into place)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.viz.analysis_plots import _save

__all__ = ["to_display", "plot_filters", "plot_stats", "plot_feature_maps", "plot_contrast_norm", "plot_top_patches",
           "plot_attribution", "plot_attribution_panel", "plot_embedding", "METHOD_TITLES"]  # fmt: skip

METHOD_TITLES = {
    "saliency": "Saliency |grad|", "smoothgrad": "SmoothGrad", "integrated_gradients": "Integrated gradients",
    "guided_backprop": "Guided backprop", "deconvolution": "Deconvnet", "occlusion": "Occlusion",
    "gradcam": "Grad-CAM", "cam": "CAM", "gradcam_plusplus": "Grad-CAM++", "scorecam": "Score-CAM",
    "layercam": "Layer-CAM",
}  # fmt: skip


def to_display(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised (C, H, W) image back to pixels in [0, 1], as (H, W) grey or (H, W, 3) colour."""
    img = np.asarray(image, dtype=np.float32)
    c = img.shape[0]
    m = np.asarray(mean, dtype=np.float32)[:c].reshape(-1, 1, 1)
    s = np.asarray(std, dtype=np.float32)[:c].reshape(-1, 1, 1)
    img = img * s + m
    img = np.where(np.isnan(img), 0.5, img)
    img = np.clip(img, 0.0, 1.0)
    return img[0] if c == 1 else np.transpose(img[:3], (1, 2, 0))


def _unit(a: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1]; a map constant up to rounding (Grad-CAM from a 1x1 stage) shows as zeros."""
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if not hi - lo > 1e-6 * max(abs(hi), abs(lo), 1e-12):
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


def _grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def plot_filters(weights: np.ndarray, path: str | os.PathLike, *, title: str, max_filters: int = 64,
                 max_inputs: int = 16) -> Path:
    """Kernels (out, in, kh, kw): in colour when ``in == 3`` (each kernel scaled to [0, 1] as a whole),
    grey when ``in == 1``; deeper layers one row per output filter, one column per input channel."""
    from matplotlib.figure import Figure

    w = np.asarray(weights, dtype=np.float32)[:max_filters]
    o, i = w.shape[:2]
    if i in (1, 3):
        rows, cols = _grid_shape(o, cols=min(o, 8 if o <= 32 else 16))
        fig = Figure(figsize=(cols * 0.9, rows * 0.9 + 0.6))
        for k in range(o):
            ax = fig.add_subplot(rows, cols, k + 1)
            f = _unit(w[k])
            ax.imshow(np.transpose(f, (1, 2, 0)) if i == 3 else f[0], cmap=None if i == 3 else "gray",
                      interpolation="nearest")  # fmt: skip
            ax.set_axis_off()
    else:
        w = w[:16, :max_inputs]
        o, i = w.shape[:2]
        fig = Figure(figsize=(i * 0.6 + 0.8, o * 0.6 + 0.8))
        lim = float(np.abs(w).max()) or 1.0
        for r in range(o):
            for c in range(i):
                ax = fig.add_subplot(o, i, r * i + c + 1)
                ax.imshow(w[r, c], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(str(r), fontsize=7)
                if r == 0:
                    ax.set_title(str(c), fontsize=7)
        fig.text(0.5, 0.0, "input channel (columns) x output filter (rows); red > 0 > blue", ha="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_stats(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str) -> Path:
    """Per layer (x axis, in forward order): activation mean +- std, fraction of zeros, of dead units
    and of saturated outputs (bounded activations), weight / gradient norms (log scale), and the mean |correlation| between units and between
    filters (rows without ``unit_corr`` / ``filter_corr`` leave that panel empty)."""
    from matplotlib.figure import Figure

    x = np.arange(len(rows))
    fig = Figure(figsize=(max(7.0, 0.22 * len(rows) + 3), 11.0))
    ax1, ax2, ax3, ax4 = fig.subplots(4, 1, sharex=True)
    mean = np.array([r["mean"] for r in rows])
    std = np.array([r["std"] for r in rows])
    ax1.errorbar(x, mean, yerr=std, fmt="o", ms=3, capsize=2)
    ax1.set_ylabel("activation mean ± std")
    ax1.axhline(0, color="grey", lw=0.5)
    ax2.bar(x - 0.27, [r["frac_zero"] for r in rows], width=0.27, label="fraction of zeros")
    ax2.bar(x, [r["dead"] / max(r["units"], 1) for r in rows], width=0.27, label="fraction of dead units (never > 0)")
    ax2.bar(x + 0.27, [r.get("saturated") or 0.0 for r in rows], width=0.27,
            label="fraction saturated (tanh, sigmoid, ReLU6 outputs at a bound)")
    ax2.set_ylim(0, 1)
    ax2.legend(fontsize=8, loc="upper left")
    wn = np.array([np.nan if r["weight_norm"] is None else r["weight_norm"] for r in rows], dtype=float)
    gn = np.array([np.nan if r["grad_norm"] is None else r["grad_norm"] for r in rows], dtype=float)
    ok = ~np.isnan(wn)
    ax3.semilogy(x[ok], wn[ok], "o-", ms=3, label="weight norm")
    okg = ok & (gn > 0)
    ax3.semilogy(x[okg], gn[okg], "s-", ms=3, label="gradient norm")
    ax3.legend(fontsize=8)
    ax3.set_ylabel("L2 norm")
    for key, marker, label in (("unit_corr", "o", "between units (outputs on the images)"),
                               ("filter_corr", "s", "between filters (weights)")):
        v = np.array([np.nan if r.get(key) is None else r[key] for r in rows], dtype=float)
        ax4.plot(x[~np.isnan(v)], v[~np.isnan(v)], marker, ms=4, label=label)
    ax4.set_ylim(0, 1)
    ax4.set_ylabel("mean |correlation|")
    ax4.legend(fontsize=8, loc="upper left")
    ax4.set_xticks(x)
    ax4.set_xticklabels([f"{r['name']} ({r['type']})" for r in rows], rotation=90, fontsize=8 if len(rows) < 40 else 6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_feature_maps(maps: Mapping[str, np.ndarray], image: np.ndarray, path: str | os.PathLike, *,
                      title: str, per_stage: int = 16) -> Path:
    """The input, then per stage a row of its first ``per_stage`` maps (one colour scale per stage)."""
    from matplotlib.figure import Figure

    stages = list(maps)
    cols = per_stage
    fig = Figure(figsize=(cols * 0.75 + 1.2, (len(stages) + 1) * 0.95))
    grid = fig.add_gridspec(len(stages) + 1, cols + 1, wspace=0.05, hspace=0.3)
    ax = fig.add_subplot(grid[0, :2])
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    ax.set_title("input", fontsize=8)
    ax.set_axis_off()
    for r, name in enumerate(stages, start=1):
        m = maps[name]
        label = fig.add_subplot(grid[r, 0])
        label.set_axis_off()
        label.text(1.0, 0.5, f"{name}\n{m.shape[0]}x{m.shape[1]}x{m.shape[2]}", ha="right", va="center", fontsize=7)
        shown = m[:per_stage]
        lo, hi = float(shown.min()), float(shown.max())
        for c in range(shown.shape[0]):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.imshow(shown[c], cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
            ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_contrast_norm(image: np.ndarray, before: np.ndarray, after: np.ndarray, path: str | os.PathLike, *,
                       title: str, maps: int = 8) -> Path:
    """Lecture 000's slide: the first ``maps`` feature maps (C, H, W) of one image above the same maps
    after contrast normalisation, grey, one scale per row (so weak maps look weak before, and
    comparable after: "equalizes the features maps")."""
    from matplotlib.figure import Figure

    n = min(maps, before.shape[0])
    fig = Figure(figsize=(n * 1.1 + 1.6, 3.0))
    grid = fig.add_gridspec(2, n + 1, wspace=0.06, hspace=0.25)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    ax.set_title("input", fontsize=8)
    ax.set_axis_off()
    for r, (name, m) in enumerate((("Feature maps", before), ("After contrast normalisation", after))):
        shown = m[:n]
        lo, hi = float(shown.min()), float(shown.max())
        for c in range(n):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.imshow(shown[c], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
            ax.set_axis_off()
            if c == 0:
                ax.set_title(name, fontsize=8, loc="left")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_top_patches(crops: np.ndarray, path: str | os.PathLike, *, units: Sequence[int], values: np.ndarray,
                     mean: Sequence[float], std: Sequence[float], title: str) -> Path:
    """One row per unit: its top-k patches (receptive-field crops; grey outside the image)."""
    from matplotlib.figure import Figure

    u, k = crops.shape[:2]
    fig = Figure(figsize=(k * 0.85 + 0.8, u * 0.85 + 0.6))
    for r in range(u):
        for c in range(k):
            ax = fig.add_subplot(u, k, r * k + c + 1)
            img = to_display(crops[r, c], mean, std)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"unit {units[r]}", fontsize=7)
            ax.set_title(f"{values[r, c]:.2g}", fontsize=6, pad=1)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


HEAT_LABEL = "attribution (each map scaled to its maximum)"


def _overlay(ax: Any, image: np.ndarray, heat: np.ndarray, box: Sequence[float] | None) -> Any:
    """The heat map over the image; returns the heat map's image, for a colour bar."""
    from matplotlib.patches import Rectangle

    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    shown = ax.imshow(_unit(heat), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    if box is not None:  # x0, y0, x1, y1 (exclusive): pixel i covers [i - 0.5, i + 0.5) in imshow
        x0, y0, x1, y1 = box
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.2, ls="--"))
    yy, xx = np.unravel_index(int(np.nanargmax(heat)), heat.shape)
    ax.plot([xx], [yy], marker="+", color="white", ms=8, mew=1.5)
    ax.set_axis_off()
    return shown


def plot_attribution(image: np.ndarray, heat: np.ndarray, path: str | os.PathLike, *, title: str,
                     box: Sequence[float] | None = None) -> Path:
    """One method's map over one image: heat (jet, scaled to [0, 1]) at half opacity, its maximum as +."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.8, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    bar = fig.colorbar(_overlay(ax, image, heat, box), ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(HEAT_LABEL, fontsize=7)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_attribution_panel(images: Sequence[np.ndarray], heats: Mapping[str, Sequence[np.ndarray]],
                           path: str | os.PathLike, *, title: str, row_labels: Sequence[str],
                           boxes: Sequence[Sequence[float] | None] | None = None) -> Path:
    """Side by side: one row per image (the image, then every method's overlay)."""
    from matplotlib.figure import Figure

    methods = list(heats)
    n, cols = len(images), len(methods) + 1
    fig = Figure(figsize=(cols * 1.7, n * 1.8 + 0.5))
    for r, image in enumerate(images):
        ax = fig.add_subplot(n, cols, r * cols + 1)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(row_labels[r], fontsize=8)
        if r == 0:
            ax.set_title("image", fontsize=8)
        for c, method in enumerate(methods, start=2):
            ax = fig.add_subplot(n, cols, r * cols + c)
            shown = _overlay(ax, image, heats[method][r], boxes[r] if boxes else None)
            if r == 0:
                ax.set_title(METHOD_TITLES.get(method, method), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    bar = fig.colorbar(shown, cax=fig.add_axes((0.92, 0.2, 0.015, 0.6)))
    bar.set_label(HEAT_LABEL, fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return _save(fig, path)


def plot_embedding(points: Mapping[str, np.ndarray], labels: np.ndarray, path: str | os.PathLike, *,
                   class_names: Sequence[str], title: str) -> Path:
    """One scatter per 2-D method (PCA, t-SNE), points coloured by class."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(points) + 1.2, 5.0))
    cmap = "tab10" if len(class_names) <= 10 else "tab20"
    for i, (method, xy) in enumerate(points.items(), start=1):
        ax = fig.add_subplot(1, len(points), i)
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap=cmap, s=6, vmin=-0.5, vmax=len(class_names) - 0.5)
        ax.set_title(method.upper() if method == "pca" else "t-SNE", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    cbar = fig.colorbar(sc, ax=fig.axes, ticks=range(len(class_names)), fraction=0.03)
    cbar.ax.set_yticklabels(class_names, fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
