"""The heat map of a sweep, drawn from its ``sweep.json`` alone (see :mod:`cnnlab.training.sweep`).

A grid of one or two fields becomes a table of coloured cells: the rows are the first field's values,
the columns the second's (one row for a one-field grid), each cell the point's validation metric (the
mean over folds with cross-validation), its value written in it; a point that diverged is grey and says
so, the chosen point is outlined. The figure is built with ``matplotlib.figure.Figure`` (no pyplot).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from cnnlab import atomic
from cnnlab.errors import ConfigError

__all__ = ["read_sweep", "plot_sweep_heatmap"]


def read_sweep(folder: str | os.PathLike) -> dict:
    """The sweep record ``folder/sweep.json`` (a ConfigError naming it when it is not one)."""
    from cnnlab.safeio import read_json

    path = Path(folder) / "sweep.json"
    doc = read_json(path, what="sweep record", error=ConfigError)
    if not isinstance(doc, dict) or doc.get("cnnlab_sweep") != 1 or not isinstance(doc.get("grid"), dict) \
            or not isinstance(doc.get("points"), list):
        raise ConfigError(f"{path}: not a sweep record written by cnnlab")
    return doc


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plot_sweep_heatmap(folder: str | os.PathLike, path: str | os.PathLike | None = None) -> Path | None:
    """Draw ``folder``'s sweep as a heat map into ``path`` (default ``folder/heatmap.png``); None when the
    grid has more than two fields (the table then says it all)."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    doc = read_sweep(folder)
    fields = list(doc["grid"])
    if len(fields) > 2 or not doc.get("selection"):
        return None
    rows_f, cols_f = (fields[0], fields[1]) if len(fields) == 2 else (None, fields[0])
    row_vals = doc["grid"][rows_f] if rows_f else [None]
    col_vals = doc["grid"][cols_f]
    key = doc["selection"]["key"]
    grid = np.full((len(row_vals), len(col_vals)), np.nan)
    status: dict[tuple[int, int], str] = {}
    best = (doc.get("best") or {}).get("folder")
    best_cell = None
    for point in doc["points"]:
        i = row_vals.index(point.get(rows_f)) if rows_f else 0
        j = col_vals.index(point.get(cols_f))
        value = point.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            grid[i, j] = value
        status[(i, j)] = point.get("status", "")
        if point.get("folder") == best:
            best_cell = (i, j)
    fig = Figure(figsize=(1.6 + 1.3 * len(col_vals), 1.4 + 0.8 * len(row_vals)))
    ax = fig.subplots()
    cmap = "viridis" if doc["selection"].get("mode") == "max" else "viridis_r"
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    ax.set_facecolor("0.85")  # cells without a number: diverged or not run
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), state in status.items():
        v = grid[i, j]
        text = f"{v:.4g}" if math.isfinite(v) else state or "-"
        dark = math.isfinite(v) and (v < middle) == (doc["selection"].get("mode") == "max")
        ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    if best_cell is not None:
        ax.add_patch(Rectangle((best_cell[1] - 0.5, best_cell[0] - 0.5), 1, 1, fill=False, lw=3, ec="tab:red"))
    ax.set_xticks(range(len(col_vals)), [_label(v) for v in col_vals])
    ax.set_xlabel(cols_f)
    ax.set_yticks(range(len(row_vals)), [_label(v) for v in row_vals] if rows_f else [""])
    if rows_f:
        ax.set_ylabel(rows_f)
    over = doc["selection"].get("over", "")
    if finite.size:
        fig.colorbar(image, ax=ax, label=f"{key} ({over})")
    ax.set_title(f"{doc.get('model')} on {doc.get('data')}: {key}, chosen point outlined", fontsize=10)
    fig.tight_layout()
    return atomic.save_figure(fig, Path(path) if path is not None else Path(folder) / "heatmap.png", dpi=100)
