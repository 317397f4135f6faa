"""Plots of architecture analyses: the effective receptive field and a complexity bubble chart.

Both read results only (an ERF grid, the rows of ``cnnlab compare``) and draw with
``matplotlib.figure.Figure`` (no pyplot, no global backend). Files are written next to their target
and renamed into place (:func:`cnnlab.atomic.save_figure`), so a failed draw never leaves half a PNG over an old one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import atomic

__all__ = ["plot_erf", "plot_complexity", "plot_accuracy_vs_macs"]


def _save(fig: Any, path: str | os.PathLike) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from cnnlab.errors import ConfigError
    from cnnlab.safeio import check_output_path

    path = Path(path)
    check_output_path(path, what="image file", directory=False)
    FigureCanvasAgg(fig)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic.save_figure(fig, path, dpi=120, bbox_inches="tight")
    except OSError as err:  # a full disk, a read-only folder: one line (atomic leaves no temporary behind)
        raise ConfigError(f"cannot write image file {path}: {err.strerror or err}") from None


def plot_erf(
    grid: np.ndarray,
    path: str | os.PathLike,
    *,
    theoretical: Sequence[Sequence[int]] | None = None,
    title: str | None = None,
    caption: str | None = None,
) -> Path:
    """Heat map of an effective receptive field (Luo et al. 2016) over the input image.

    ``grid``: (H, W) mean |gradient|, any scale; ``theoretical``: pixel rows ``[a, b)`` and columns
    ``[c, d)`` of the theoretical field, drawn as a dashed box (clipped to the image).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 2:
        raise ValueError(f"grid must be 2-d (H, W), got shape {grid.shape}")
    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(grid, cmap="inferno", interpolation="nearest", origin="upper")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="mean |d unit / d pixel| (max = 1)")
    if theoretical is not None:
        (a, b), (c, d) = theoretical
        h, w = grid.shape
        a, b, c, d = max(a, 0), min(b, h), max(c, 0), min(d, w)
        ax.add_patch(Rectangle((c - 0.5, a - 0.5), d - c, b - a, fill=False, ls="--", lw=1.2, ec="cyan",
                               label="theoretical field"))
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("input column")
    ax.set_ylabel("input row")
    ax.set_title(title or "effective receptive field", fontsize=10)
    if caption:
        fig.text(0.01, 0.005, caption, fontsize=7, va="bottom")
    return _save(fig, path)


def plot_complexity(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """MACs against parameters, bubble area proportional to activation memory (Canziani et al. 2017).

    ``rows``: dicts with ``model``, ``macs``, ``params`` and ``activation_bytes`` (the rows of
    :func:`cnnlab.analysis.compare`). Axes turn logarithmic when the models span more than 30x.
    """
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("plot_complexity needs at least one row")
    for r in rows:
        missing = [k for k in ("model", "macs", "params", "activation_bytes") if k not in r]
        if missing:
            raise ValueError(f"row {r.get('model', '?')!r} lacks {', '.join(missing)}")
    x = np.array([r["macs"] / 1e9 for r in rows])
    y = np.array([r["params"] / 1e6 for r in rows])
    mem = np.array([r["activation_bytes"] / 1e6 for r in rows])
    size = 2000 * mem / mem.max() if mem.max() > 0 else np.full(len(rows), 50.0)
    fig = Figure(figsize=(7.5, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i % 10}" for i in range(len(rows))]
    area = np.maximum(size, 20)
    ax.scatter(x, y, s=area, c=colors, alpha=0.45, edgecolors="k", linewidths=0.6)
    # labels beside their bubbles (offset by the radius, in points), alternately above and below
    # for models close in cost, so that neighbours (ResNet-50 / ResNeXt-50) stay readable
    for rank, i in enumerate(np.argsort(x, kind="stable")):
        radius = np.sqrt(area[i]) / 2
        dy = (1 if rank % 2 == 0 else -1) * (radius * 0.5 + 4)
        ax.annotate(f"{rows[i]['model']} ({mem[i]:.0f} MB)", (x[i], y[i]), xytext=(radius + 3, dy),
                    textcoords="offset points", fontsize=7, va="center", ha="left", color=colors[i])
    for axis, values, setter in (("x", x, ax.set_xscale), ("y", y, ax.set_yscale)):
        positive = values[values > 0]
        if len(positive) and positive.max() / positive.min() > 30:
            setter("log")
        else:
            lim = (0, values.max() * 1.25 if values.max() > 0 else 1)
            (ax.set_xlim if axis == "x" else ax.set_ylim)(*lim)
    ax.margins(0.15)
    ax.set_xlabel("multiply-accumulates per image (G-MACs)")
    ax.set_ylabel("parameters (millions)")
    ax.set_title(title or "complexity: MACs vs parameters (bubble area = forward activation memory)", fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    return _save(fig, path)


def plot_accuracy_vs_macs(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """ImageNet top-1 accuracy against MACs, bubble area proportional to parameters (Canziani,
    Paszke & Culurciello 2016, the chart of lecture 002).

    ``rows``: dicts with ``model``, ``macs``, ``params`` and ``top1_torchvision`` / ``top1_paper``
    (percent or None; see :mod:`cnnlab.results`). torchvision's figures (one 224 crop, every model
    alike) are the filled bubbles; the papers' own (their protocols: 10 crops, several scales) are
    hollow rings joined to them, so the protocol gap is visible.
    """
    from matplotlib.figure import Figure

    rows = [r for r in rows if r.get("top1_torchvision") is not None or r.get("top1_paper") is not None]
    if not rows:
        raise ValueError("plot_accuracy_vs_macs needs at least one model with a published top-1 accuracy")
    params = np.array([r["params"] / 1e6 for r in rows])
    area = 15 + 1500 * params / params.max()
    fig = Figure(figsize=(8.0, 5.6))
    ax = fig.add_subplot(1, 1, 1)
    # labels of neighbours in cost (GoogLeNet / ResNet-18) alternate above and below their bubbles
    rank = {int(i): k for k, i in enumerate(np.argsort([r["macs"] for r in rows], kind="stable"))}
    for i, r in enumerate(rows):
        color = f"C{i % 10}"
        x = r["macs"] / 1e9
        tv, paper = r.get("top1_torchvision"), r.get("top1_paper")
        if tv is not None:
            ax.scatter([x], [tv], s=area[i], color=color, alpha=0.45, edgecolors="k", linewidths=0.6)
        if paper is not None:
            ax.scatter([x], [paper], s=area[i], facecolors="none", edgecolors=color, linewidths=1.4, linestyle="--")
        if tv is not None and paper is not None:
            ax.plot([x, x], [tv, paper], color=color, lw=0.8, alpha=0.7)
        y = tv if tv is not None else paper
        ax.annotate(f"{r['model']} ({params[i]:.1f}M)", (x, y), xytext=(np.sqrt(area[i]) / 2 + 3, 5 if rank[i] % 2 else -5),
                    textcoords="offset points", fontsize=7, va="center", color=color)
    macs = np.array([r["macs"] / 1e9 for r in rows])
    if macs.min() > 0 and macs.max() / macs.min() > 30:
        ax.set_xscale("log")
    ax.margins(0.12)
    ax.set_xlabel("multiply-accumulates per image (G-MACs, cnnlab analyzer)")
    ax.set_ylabel("ImageNet top-1 accuracy (%)")
    ax.scatter([], [], s=60, color="grey", alpha=0.45, edgecolors="k", label="torchvision weights (1 crop)")
    ax.scatter([], [], s=60, facecolors="none", edgecolors="grey", linestyle="--", label="the paper (its protocol)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "accuracy vs multiply-adds (bubble area = parameters; Canziani et al. 2016)", fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    return _save(fig, path)
