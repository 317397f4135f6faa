"""Training curves of a run, from its per-epoch metrics (``FitResult.history`` or ``metrics.csv``).

Two panels side by side, as in He et al. 2016's Fig. 1/6: loss and error (1 - top-1 accuracy, in
%), training thin and dashed, validation bold, test (only when a run recorded it every epoch)
dotted. Few epochs show as points; epoch ticks are integers. The figure is built with ``matplotlib.figure.Figure`` (no
pyplot, no global backend), so drawing is safe in any process.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnlab import atomic

__all__ = ["read_metrics", "plot_training_curves"]

# (column prefix, line style, width, colour, legend): test only appears when recorded every epoch.
_SPLITS = (("train", "--", 1.2, "tab:blue", "train"), ("val", "-", 2.2, "tab:orange", "validation"),
           ("test", ":", 1.6, "tab:green", "test (not used for selection)"))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed (empty cells become None)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, Any] = {}
            for k, v in row.items():
                if v is None or v == "":
                    parsed[k] = None
                    continue
                try:
                    parsed[k] = int(v) if v.lstrip("-").isdigit() else float(v)
                except ValueError:
                    parsed[k] = v
            rows.append(parsed)
    return rows


def _series(history: Sequence[Mapping[str, Any]], key: str, *, error: bool = False) -> list[float]:
    out = []
    for row in history:
        v = row.get(key)
        v = float("nan") if v is None else float(v)
        out.append(100.0 * (1.0 - v) if error else v)
    return out


def _headline(history: Sequence[Mapping[str, Any]], metric: Mapping[str, str] | None) -> tuple[str, str, bool]:
    """``(key, axis label, drawn as an error)`` of the right-hand panel."""
    if metric is not None:
        if metric.get("unit") == "%":
            label = "top-1 error (%)" if metric["key"] == "acc" else f"100 - {metric['label']} (%)"
            return metric["key"], label, True
        return metric["key"], metric["label"], False
    if history and not any(k.endswith("_acc") and k[: -len("_acc")] in ("train", "val", "test") for k in history[0]):
        if any(k.endswith("_miou") for k in history[0]):
            return "miou", "100 - mean IU (%)", True
    return "acc", "top-1 error (%)", True


def plot_training_curves(
    history: Sequence[Mapping[str, Any]] | str | os.PathLike,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    metric: Mapping[str, str] | None = None,
) -> Path:
    """Draw the loss and the task's headline metric per epoch (train, val, test) into the PNG ``path``;
    return the path.

    ``history``: one mapping per epoch with ``epoch``, ``<split>_loss`` and ``<split>_<metric>``, or the
    path of a ``metrics.csv`` holding them. ``metric``: the task's headline (``{"key", "label", "unit"}``,
    :func:`cnnlab.viz.runs.task_metrics`); a "%" metric is drawn as its error, 100 - value. Default:
    top-1 accuracy, or mean IU for a history without accuracy columns.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if isinstance(history, (str, os.PathLike)):
        history = read_metrics(history)
    epochs = [float(row.get("epoch", i + 1)) for i, row in enumerate(history)]
    marker = "o" if len(epochs) <= 12 else None  # a 1-epoch run is a point, not an invisible line
    # classification plots 1 - top-1 accuracy; a segmentation run (no accuracy column) 1 - mean IU
    metric, metric_label, as_error = _headline(history, metric)
    splits = [s for s in _SPLITS if any(row.get(f"{s[0]}_{metric}") is not None or row.get(f"{s[0]}_loss") is not None
                                        for row in history)]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_err = fig.subplots(1, 2)
    for ax, key, label, error in ((ax_loss, "loss", "loss", False), (ax_err, metric, metric_label, as_error)):
        for split, style, lw, color, name in splits:
            ax.plot(epochs, _series(history, f"{split}_{key}", error=error), style, lw=lw, color=color, label=name,
                    marker=marker, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if marker and epochs:  # few epochs: one tick each, and room around a single point
            ax.set_xticks(sorted({round(e) for e in epochs}))
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    # A log axis when the values span more than a decade, so the last epochs' small differences show.
    for ax, key, error in ((ax_loss, "loss", False), (ax_err, metric, as_error)):
        values = [v for split in splits for v in _series(history, f"{split[0]}_{key}", error=error) if v == v and v > 0]
        if values and max(values) / min(values) > 10:
            ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    handles, labels = ax_loss.get_legend_handles_labels()  # one legend under both panels, off the curves
    fig.legend(handles, labels, loc="lower center", ncol=max(len(labels), 1), frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return atomic.save_figure(fig, path, dpi=100)
