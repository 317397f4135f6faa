"""Arms: network configurations trained over several seeds, their results rows and their plot.

An *arm* is one network configuration; each is trained once per seed with the same recipe and the
same seeds as the arms it is compared with (paired: same data order and initialisation stream), and
compared with :func:`cnnlab.experiments.statistics.compare_seeds`. No selection happens: every arm is
trained for the scale's fixed number of epochs and its final model is evaluated once on the test
split (the engine's per-epoch test numbers are only logged).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.experiments.context import ExperimentContext, seed_list, seeded
from cnnlab.experiments.statistics import mean_std
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["train_arm", "train_zoo_arm", "arm_row", "plot_arms"]


def train_arm(
    ctx: ExperimentContext,
    label: str,
    build: Callable[[], nn.Module],
    data: Any,
    spec: TrainSpec,
    *,
    seeds: int,
    key: Mapping[str, Any],
) -> list[Any]:
    """``build()`` trained once per seed (``ctx.seed``, ``ctx.seed + 1``, ...); the FitResults.

    ``build`` is called under ``torch.manual_seed(seed)``, so arms built from the same seed start
    from the same random stream. ``build`` must not re-seed: ``ctx.create_model`` does (from the
    run's seed, so every seed would start from the same weights); train zoo models with
    :func:`train_zoo_arm`.
    """
    fits = []
    for seed in seed_list(ctx, seeds):

        def make(seed: int = seed) -> nn.Module:
            torch.manual_seed(seed)
            return build()

        fits.append(seeded(ctx, seed).train(f"{label} (seed {seed})", make, data, spec, key=dict(key)))
    return fits


def arm_row(accs: Sequence[float], **extra: Any) -> dict[str, Any]:
    """``{"test_acc": [...], "mean_acc", "std_acc", **extra}`` for results.json."""
    mean, std = mean_std(list(accs))
    return {"test_acc": [float(a) for a in accs], "mean_acc": mean, "std_acc": std, **extra}


def plot_arms(
    groups: Mapping[str, Mapping[str, Sequence[float]]],
    out_dir: Path,
    file: str,
    *,
    caption: str,
    ylabel: str = "test accuracy (%)",
) -> Plot:
    """One panel per group; in each, one column per arm: a dot per seed and the mean with its
    standard error (what the verdicts are decided on). Values are fractions, drawn as percent."""
    fig = Figure(figsize=(max(4.2, 3.6 * len(groups)), 3.9))
    for g, (title, arms) in enumerate(groups.items()):
        ax = fig.add_subplot(1, len(groups), g + 1)
        for i, (arm, values) in enumerate(arms.items()):
            vals = [100 * v for v in values]
            mean, std = mean_std(vals)
            se = std / max(len(vals), 1) ** 0.5
            ax.plot([i] * len(vals), vals, "o", color=f"C{i}", alpha=0.55)
            ax.errorbar([i], [mean], yerr=[2 * se], fmt="_", ms=26, mew=2.5, capsize=6, color="k")
        many = len(arms) > 4 or sum(len(a) for a in arms) > 36  # slant long labels
        ax.set_xticks(range(len(arms)), list(arms), fontsize=8, rotation=35 if many else 0, ha="right" if many else "center")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
    note = ("dots: seeds; bars: mean +- 2 standard errors of each arm (the verdicts use the paired per-seed "
            "differences, whose spread is usually smaller)")
    fig.suptitle(textwrap.fill(note, width=int(16 * fig.get_figwidth())), fontsize=8)  # ~16 characters an inch
    return Plot(save_figure(fig, out_dir, file), caption)


def train_zoo_arm(
    ctx: ExperimentContext,
    label: str,
    model: str,
    data: Any,
    spec: TrainSpec,
    *,
    seeds: int,
    options: Mapping[str, Any] | None = None,
    task: str | None = None,
) -> list[Any]:
    """The zoo's ``model`` (with ``options``) trained once per seed, with ``task`` (None: the model's
    registered task); the FitResults, in seed order.

    Unlike ``train_arm(ctx, ..., lambda: ctx.create_model(...))``, whose builder re-seeds from the
    run's seed so that every seed starts from the same weights, each seed's network here is built by
    ``seeded(ctx, seed).create_model``: its own initialisation, its own data order. The cache key is
    ``{"model": model, **options}`` and the seed, so the first seed's network is the one a
    single-seed experiment asking for the same model trains (and shares through the cache).
    """
    options = dict(options or {})
    fits = []
    for seed in seed_list(ctx, seeds):
        sub = seeded(ctx, seed)
        fits.append(sub.train(f"{label} (seed {seed})", lambda sub=sub: sub.create_model(model, data, **options),
                              data, spec, key={"model": model, **options}, task=task))  # fmt: skip
    return fits
