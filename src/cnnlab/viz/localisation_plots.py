"""Plots of the ``localisation`` experiment, drawn from its results dict alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.inspect_plots import METHOD_TITLES
from cnnlab.viz.report import Plot

__all__ = ["plot_localisation"]


def plot_localisation(results: Mapping[str, Any], out_dir: Path) -> list[Plot]:
    rows = results["methods"]
    names = [METHOD_TITLES.get(r["method"], r["method"]) for r in rows]
    fig = Figure(figsize=(13, 4.2))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.barh(names, [100 * r["pointing"] for r in rows], color="tab:blue")
    ax1.axvline(100 * results["chance"], color="k", ls="--", label="chance (box area)")
    ax1.set(xlabel="pointing game (% of test canvases)", xlim=(0, 100), title="Map maximum inside the digit's box")
    ax1.invert_yaxis()
    ax1.legend(fontsize=8)
    f = [100 * v for v in results["deletion_fractions"]]
    for r, name in zip(rows, names):
        ax2.plot(f, [100 * a for a in r["deletion"]], "o-", ms=3, label=name)
    ax2.plot(f, [100 * a for a in results["random_deletion"]], "k--", label="random order")
    ax2.set(xlabel="pixels blacked out, most attributed first (%)", ylabel="test accuracy (%)",
            title="Deletion curves (lower: the map found the evidence)")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    for r, name in zip(rows, names):
        steps = [c["randomised_to"] for c in r["cascade"]]
        ax3.plot(range(len(steps)), [c["rank_corr"] for c in r["cascade"]], "o-", ms=3, label=name)
    ax3.set_xticks(range(len(steps)), steps, rotation=45, fontsize=7)
    ax3.set(xlabel="randomised from the output down to", ylabel="rank correlation with the trained net's maps",
            ylim=(-0.2, 1.0), title="Sanity check: cascading randomisation")
    ax3.axhline(0, color="grey", lw=0.5)
    ax3.legend(fontsize=7)
    fig.tight_layout()
    return [Plot(save_figure(fig, out_dir, "localisation.png"),
                 "Left: pointing game per method. Middle: deletion curves. Right: rank correlation of each "
                 "method's maps with the trained network's as its layers are re-initialised from the output down.")]
