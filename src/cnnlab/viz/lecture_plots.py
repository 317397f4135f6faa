"""Plots of the lectures' training experiments (relu-tanh, vanishing-gradients), drawn from their
results alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["plot_curves", "plot_profiles"]


def plot_curves(curves: Mapping[str, Sequence[Sequence[Sequence[float]]]], out_dir: Path, file: str, *,
                caption: str, xlabel: str, ylabel: str, threshold: float | None = None,
                percent: bool = False) -> Plot:
    """One colour per arm, one line per seed; ``curves[arm][seed]`` is a list of ``(x, y)`` points."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    k = 100.0 if percent else 1.0
    for i, (arm, runs) in enumerate(curves.items()):
        for j, run in enumerate(runs):
            xs, ys = zip(*run) if run else ((), ())
            ax.plot(xs, [k * v for v in ys], color=f"C{i}", lw=1.3, alpha=0.8, label=arm if j == 0 else None)
    if threshold is not None:
        ax.axhline(k * threshold, color="k", ls="--", lw=1)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return Plot(save_figure(fig, out_dir, file), caption)


def plot_profiles(panels: Mapping[str, Mapping[str, Sequence[float]]], out_dir: Path, file: str, *,
                  caption: str, xlabel: str, ylabel: str) -> Plot:
    """One panel per key of ``panels``, in each one line per arm: a value per layer on a log axis."""
    fig = Figure(figsize=(max(4.5, 4.2 * len(panels)), 4.0))
    for p, (title, lines) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for i, (label, values) in enumerate(lines.items()):
            ax.plot(range(1, len(values) + 1), values, color=f"C{i}", lw=1.5, label=label)
        ax.set_yscale("log")
        ax.set(xlabel=xlabel, ylabel=ylabel if p == 0 else None, title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return Plot(save_figure(fig, out_dir, file), caption)
