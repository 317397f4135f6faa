"""Charts of published results (:mod:`cnnlab.results`): the ILSVRC "revolution of depth".

Drawn from the data alone, with ``matplotlib.figure.Figure`` (no pyplot, no global backend), and
written atomically (:func:`cnnlab.atomic.save_figure`) as PNG or SVG by the file's suffix.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

from cnnlab.results import ILSVRC_RUNNERS_UP, ILSVRC_WINNERS, ILSVRCWinner

__all__ = ["FIGURE_FORMATS", "ilsvrc_figure", "plot_ilsvrc", "ilsvrc_sources"]

FIGURE_FORMATS = {".png": "png", ".svg": "svg"}

_SHALLOW = "#9e9e9e"
_DEEP = "#1f77b4"
_RUNNER_UP = "#9ecae1"


def _depth_label(entry: ILSVRCWinner) -> str:
    return "shallow" if entry.layers is None else f"{entry.layers} layers"


def ilsvrc_sources(entries: Sequence[ILSVRCWinner]) -> list[str]:
    """One line per entry: the year, the network and where its error and depth come from."""
    lines = []
    for e in entries:
        depth = f"; depth: {e.layers_source}" if e.layers_source else ""
        lines.append(f"{e.year} {e.network}: {e.top5_error:g}% ({e.source}){depth}")
    return lines


def ilsvrc_figure(winners: Sequence[ILSVRCWinner] = ILSVRC_WINNERS,
                  runners_up: Sequence[ILSVRCWinner] = ILSVRC_RUNNERS_UP):
    """The chart: one bar per entry in year order (a runner-up beside its year's winner), height the
    top-5 error, labelled with the error, the network and its depth; the sources below."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    entries = sorted([*winners, *runners_up], key=lambda e: (e.year, e in runners_up, e.top5_error))
    fig = Figure(figsize=(10.5, 6.8))
    ax = fig.add_axes((0.07, 0.36, 0.9, 0.56))
    xs = range(len(entries))
    colours = [_RUNNER_UP if e in runners_up else _SHALLOW if e.layers is None else _DEEP for e in entries]
    bars = ax.bar(xs, [e.top5_error for e in entries], color=colours, width=0.72)
    top = max(e.top5_error for e in entries)
    for bar, e in zip(bars, entries, strict=True):
        x = bar.get_x() + bar.get_width() / 2
        ax.text(x, e.top5_error + top * 0.015, f"{e.top5_error:g}", ha="center", va="bottom", fontsize=11,
                fontweight="bold")
        ax.text(x, e.top5_error + top * 0.085, _depth_label(e), ha="center", va="bottom", fontsize=10,
                color="#555555" if e.layers is None else "#08306b", fontstyle="italic")
    ax.set_xticks(list(xs))
    names = [e.network.split(",")[0].replace(" (not a CNN)", "") for e in entries]
    ax.set_xticklabels([f"ILSVRC'{e.year % 100:02d}\n{e.team}" + ("\n(2nd)" if e in runners_up else "")
                        + ("" if name == e.team else "\n" + "\n".join(textwrap.wrap(name, 16)))
                        for e, name in zip(entries, names, strict=True)],
                       fontsize=9)
    ax.set_ylabel("top-5 error (%), ILSVRC classification test set")
    ax.set_ylim(0, top * 1.2)
    ax.set_title("Revolution of depth: ILSVRC classification winners, top-5 error and layers", fontsize=12)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(handles=[Patch(color=_SHALLOW, label="shallow (not a CNN)"), Patch(color=_DEEP, label="winner, a CNN"),
                       Patch(color=_RUNNER_UP, label="runner-up")], frameon=False, fontsize=9)
    sources = "Sources. " + "  |  ".join(ilsvrc_sources(entries))
    fig.text(0.07, 0.015, "\n".join(textwrap.wrap(sources, 160)), fontsize=6.8, va="bottom", ha="left",
             color="#444444")
    return fig


def plot_ilsvrc(path: str | os.PathLike) -> Path:
    """Draw :func:`ilsvrc_figure` into ``path`` (``.png`` or ``.svg``), atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from cnnlab import atomic

    path = Path(path)
    fmt = FIGURE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: the chart is written as {' or '.join(FIGURE_FORMATS)}, by the file's suffix")
    import matplotlib

    fig = ilsvrc_figure()
    FigureCanvasAgg(fig)
    # no date stamp and fixed element ids: the same data gives the same bytes (a docs file does not churn)
    meta = {"Date": None} if fmt == "svg" else {}
    with matplotlib.rc_context({"svg.hashsalt": "cnnlab"}):
        return atomic.save_figure(fig, path, format=fmt, dpi=110, metadata=meta)
