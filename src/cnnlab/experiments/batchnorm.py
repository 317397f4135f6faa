"""Batch normalisation: Ioffe & Szegedy, ICML 2015 (lecture 000, "Complements").

The same VGG-style network (a zoo VGG column at reduced width) with and without batch normalisation
after every convolution, trained with the same recipe at each learning rate of a logarithmic grid:
the validation error per learning rate and the training curves. Every choice (which rates train,
each network's best rate, each run's best epoch) reads the validation split; the test error of each
network at its val-selected rate is reported once.

The whole grid is trained for several seeds (the same seeds for both networks, so each
seed's comparison is paired); each seed selects each network's best rate on its own validation
errors, and the two claims are decided over the per-seed differences (``compare_seeds``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnlab.errors import ConfigError, TrainingError
from cnnlab.experiments.context import ExperimentContext, seed_list, seeded
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import VGG_DIGITS_OVERRIDES, VGG_FASHION_OVERRIDES
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import SeedComparison, compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["BatchNormConfig", "SCALES", "LOG_GRID", "run", "plot_batchnorm", "lr_summary", "grid_step"]

CLAIM = (
    "Batch normalisation improves the gradient flow through the network: it allows higher learning "
    "rates and reduces the dependence on initialisation, so a network with BN trains at learning "
    "rates where the same network without BN fails, and trains faster."
)


@dataclass(frozen=True)
class BatchNormConfig:
    data: str
    model: str  # a zoo VGG column; batch_norm=True/False is added
    input_size: tuple[int, int, int]
    lrs: tuple[float, ...]  # the learning-rate grid (peak rate of the schedule)
    train: TrainSpec  # lr is taken from the grid
    good_error: float  # a run "trains" at a learning rate when its (val-selected) validation error is at most this
    seeds: int = 3  # the whole grid per seed, the same seeds for both networks (paired)
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("batchnorm", self.seeds)
        if len(self.lrs) < 2 or any(not lr > 0 for lr in self.lrs) or list(self.lrs) != sorted(set(self.lrs)):
            raise ConfigError(f"batchnorm: lrs must be at least two increasing positive rates, got {self.lrs!r}")
        if self.train.lr is not None:
            raise ConfigError("batchnorm: train.lr must be None (the rates come from lrs)")
        if not 0 < self.good_error < 1:
            raise ConfigError(f"batchnorm: good_error must be in (0, 1), got {self.good_error!r}")


LOG_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # half-decade steps, as in learning-rate sweeps

SCALES = {
    "tiny": BatchNormConfig(
        data="synthetic",
        data_options=(("shape", (1, 32, 32)), ("n", 64)),
        model="vgg_a",
        input_size=(1, 32, 32),
        lrs=(0.01, 1.0),
        train=TrainSpec(recipe="vgg", epochs=2, batch_size=32, overrides=VGG_DIGITS_OVERRIDES),
        good_error=0.5,
        seeds=2,
        model_options=(("width", 0.0625), ("fc_width", 16), ("pool_size", 1)),
    ),
    # Column A (8 convs + 3 FC) at 1/8 width (8-16-32-64-64 maps, FC 128) on digits padded to 32x32
    # (five 2x2 pools: 32 -> 1). Three seeds of the 12-run grid.
    "quick": BatchNormConfig(
        data="mnist-5k",
        model="vgg_a",
        input_size=(1, 32, 32),
        lrs=LOG_GRID,
        train=TrainSpec(recipe="vgg", epochs=3, batch_size=128, overrides=VGG_DIGITS_OVERRIDES),
        good_error=0.05,
        seeds=3,
        model_options=(("width", 0.125), ("fc_width", 128), ("pool_size", 1)),
    ),
    # Set before any standard run. Fashion-MNIST, all 54,000 training images padded to 32x32, quick's
    # net and grid, 3 epochs at batch 128: 1,266 updates per run (quick: 87), so epoch 1, which the
    # second criterion compares, is 422 updates. The "trains" threshold is 15% validation error:
    # quick's 5% was about twice the best digit error; on Fashion-MNIST small CNNs typically reach
    # 90-92% and a linear classifier about 84% (the data set's benchmark, logistic regression), so a
    # rate "trains" the net when it learns more than a linear model does.
    # Cost: 36 runs (2 nets x 6 rates x 3 seeds) x 3 epochs x (54,000 + 16,000 / 3 for the
    # validation and test passes) = 6.4M image passes at 0.24 ms (VGG-A/8 at batch 128 on one
    # thread; quick: 93 s wall for 0.44M) = 26 minutes at one thread, less where a run diverges.
    "standard": BatchNormConfig(
        data="fashion-mnist",
        model="vgg_a",
        input_size=(1, 32, 32),
        lrs=LOG_GRID,
        train=TrainSpec(recipe="vgg", epochs=3, batch_size=128, overrides=VGG_FASHION_OVERRIDES),
        good_error=0.15,
        seeds=3,
        model_options=(("width", 0.125), ("fc_width", 128), ("pool_size", 1)),
    ),
    # CIFAR-10, VGG-16 (column D) at full width with FC-512, 30 epochs per run.
    "full": BatchNormConfig(
        data="cifar10",
        model="vgg_d",
        input_size=(3, 32, 32),
        lrs=LOG_GRID,
        train=TrainSpec(recipe="vgg", epochs=30, batch_size=128,
                        overrides=(("scale_jitter", False), ("pca_lighting", 0.0), ("schedule", "cosine"),
                                   ("crop_padding", 4))),  # fmt: skip
        good_error=0.2,
        model_options=(("fc_width", 512), ("pool_size", 1)),
    ),
}


def plot_batchnorm(results: dict, out_dir: Path) -> list[Plot]:
    """(1) validation error against the learning rate (mean over seeds, a dot per seed), and the test
    error at each seed's val-selected rate; (2) training loss per epoch at each rate (the run's seed)."""
    runs = results["runs"]
    plots = []
    fig = Figure(figsize=(10.0, 4.2))
    ax = fig.add_subplot()
    for i, bn in enumerate((False, True)):
        rows = [r for r in runs if r["batch_norm"] == bn]
        label = "with BN" if bn else "without BN"
        lrs = sorted({r["lr"] for r in rows})
        mean = [100 * mean_std([r["val_error"] for r in rows if r["lr"] == lr])[0] for lr in lrs]
        ax.plot(lrs, mean, "-", color=f"C{i}", label=f"{label}: validation error (mean over seeds)")
        ax.plot([r["lr"] for r in rows], [100 * r["val_error"] for r in rows], "o", ms=4, alpha=0.5, color=f"C{i}")
        div = [r for r in rows if r["diverged"]]
        if div:
            ax.plot([r["lr"] for r in div], [100 * r["val_error"] for r in div], "x", ms=12, mew=2.5, color=f"C{i}",
                    label=f"{label}: diverged (loss not finite)")
        chosen = [s["with_bn" if bn else "without_bn"] for s in results["per_seed"]]
        ax.plot([c["best_lr"] for c in chosen], [100 * c["best_test_error"] for c in chosen], "*", ms=13,
                color=f"C{i}", mec="k", label=f"{label}: test error at each seed's val-selected rate")
    ax.axhline(100 * results["good_error"], color="gray", ls=":", lw=1, label="'trains' threshold")
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel="error (%)", ylim=(0, 100), title="Validation error per learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the axes: off the points
    plots.append(Plot(save_figure(fig, out_dir, "batchnorm_lr.png"),
                      "Validation error (of each run's val-selected epoch) at each learning rate, with and "
                      "without batch normalisation, a dot per seed and the line through their means (a diverged "
                      "run counts as chance error); the stars are the test errors at the rate each seed's "
                      "validation errors select."))
    fig = Figure(figsize=(11.0, 4.0))
    left = fig.add_subplot(1, 2, 1)
    axes = {False: left, True: fig.add_subplot(1, 2, 2, sharey=left)}  # same scale: the curves compare
    first = results["per_seed"][0]["seed"]
    for bn, ax in axes.items():
        rows = [r for r in runs if r["batch_norm"] == bn and r["seed"] == first]
        for i, r in enumerate(rows):
            if r["train_loss"]:
                ax.plot(range(1, len(r["train_loss"]) + 1), r["train_loss"], "o-", ms=3, color=f"C{i}",
                        label=f"lr {r['lr']:g}" + (" (diverged)" if r["diverged"] else ""))
        ax.set(xlabel="epoch", ylabel="training loss", yscale="log",
               title=f"{'with BN' if bn else 'without BN'} (seed {first})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # every run may have diverged before its first epoch
            ax.legend(fontsize=7)
    plots.append(Plot(save_figure(fig, out_dir, "batchnorm_curves.png"),
                      f"Training loss per epoch at each learning rate (mean over the epoch's batches), seed {first}."))
    return plots


def lr_summary(runs: list[dict[str, Any]], *, batch_norm: bool, good_error: float) -> dict[str, Any]:
    """The rates at which one network trains and its best rate, chosen on ``val_error`` alone (ties: the
    lower rate); ``best_test_error`` is the test error of that run, reported and never compared.
    ``runs`` are one seed's grid."""
    rows = [r for r in runs if r["batch_norm"] == batch_norm]
    good = [r["lr"] for r in rows if r["val_error"] <= good_error]
    best = min(rows, key=lambda r: (r["val_error"], r["lr"]))
    return dict(good_lrs=good, max_good_lr=max(good) if good else None, best_lr=best["lr"],
                best_error=best["val_error"], best_test_error=best["test_error"],
                best_first_epoch_error=best["first_epoch_error"])  # fmt: skip


def grid_step(lr: float | None, lrs: tuple[float, ...]) -> int:
    """Position of ``lr`` in the grid (0 = the lowest rate), -1 for None (no rate of the grid trains:
    counted as one step below it, the most favourable reading for that network)."""
    return -1 if lr is None else list(lrs).index(lr)


@register_experiment(
    name="batchnorm",
    title="Batch normalisation allows higher learning rates and trains faster",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt",),
    paper="Ioffe & Szegedy, ICML 2015",
    scales=SCALES,
    plot=plot_batchnorm,
)
def run(ctx: ExperimentContext, cfg: BatchNormConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    runs: list[dict[str, Any]] = []
    per_seed = []
    for seed in seed_list(ctx, cfg.seeds):
        grid = train_grid(seeded(ctx, seed), cfg, data, options)
        runs += grid
        per_seed.append({"seed": seed, **{key: lr_summary(grid, batch_norm=bn, good_error=cfg.good_error)
                                           for key, bn in (("without_bn", False), ("with_bn", True))}})
    comparisons = batchnorm_comparisons(per_seed, cfg.lrs)
    size = ctx.analyze(ctx.create_model(cfg.model, data, batch_norm=False, **options), data.input_size)
    results = {"runs": runs, "per_seed": per_seed, "good_error": cfg.good_error, "lrs": list(cfg.lrs),
               "seeds": cfg.seeds, "model": cfg.model, "params": size["params"],
               "comparisons": {k: dataclasses.asdict(c) for k, c in comparisons.items()}}
    setup = [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))}, {len(data.train.y):,} training and "
        f"{len(data.val.y):,} validation and {len(data.test.y):,} test images.",
        f"Network: `{cfg.model}` from the zoo with {options} ({size['depth']} weight layers, {size['params']:,} "
        "parameters without BN), with `batch_norm=False` and `batch_norm=True` (BN after every convolution, "
        "before its ReLU, as torchvision's vgg*_bn); the paper's Glorot initialisation in both.",
        f"Training: {cfg.train.describe()}, at each peak learning rate of {', '.join(f'{v:g}' for v in cfg.lrs)}; "
        f"seeds {', '.join(map(str, seed_list(ctx, cfg.seeds)))}, each the whole grid for both networks (the same "
        "initial weights for every rate of a seed).",
        f"A rate 'trains' the network when its validation error is at most {100 * cfg.good_error:.2f}%. A run whose "
        "loss becomes infinite or NaN is stopped by the engine and counted as diverged (chance error).",
        "Selection reads the validation split only: each run keeps its best-validation epoch, and per seed each "
        "network's best rate is the one with the lowest validation error. The test split is evaluated once per "
        "run and reported only for the selected rates (summary table, stars in the plot).",
        "Verdicts: per seed, the highest rate that trains (as a position in the grid, -1 when none does) and the "
        "epoch-1 validation error at the selected rate, BN against no BN, paired over the seeds.",
    ]
    notes = [
        f"Ioffe & Szegedy measure on ImageNet with Inception; this is a smaller VGG-style network on {data.name}. "
        "The claim tested is the qualitative one of the lecture (higher usable rates, faster training).",
        "BN is applied only after convolutions, as in torchvision's vgg*_bn. Dropout in FC6/FC7 is off at the "
        "CPU scales (see VGG_DIGITS_OVERRIDES in the source): with 128-unit FC layers and a few hundred updates "
        "it kept the network near chance on digits.",
    ]
    return Outcome(results=results, criteria=batchnorm_criteria(per_seed, comparisons, cfg=cfg),
                   tables=batchnorm_tables(runs, per_seed, cfg.lrs), setup=setup, notes=notes)


def train_grid(ctx: ExperimentContext, cfg: BatchNormConfig, data: Any, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Both networks at every rate of the grid for ``ctx.seed``: one row per run (its val-selected
    validation error, the test error of those weights, the curves; chance error when it diverged)."""
    chance_error = 1.0 - 1.0 / data.num_classes
    runs: list[dict[str, Any]] = []
    for bn in (False, True):
        for lr in cfg.lrs:
            spec = dataclasses.replace(cfg.train, lr=lr)
            label = f"{cfg.model} {'with' if bn else 'without'} BN, lr {lr:g} (seed {ctx.seed})"
            row = dict(seed=ctx.seed, batch_norm=bn, lr=lr)
            try:
                fit = ctx.train(label, lambda bn=bn: ctx.create_model(cfg.model, data, batch_norm=bn, **options),
                                data, spec, key={"model": cfg.model, "batch_norm": bn, **options})  # fmt: skip
            except TrainingError as err:  # the loss became NaN/inf: the rate is too high for this net
                ctx.log(f"{label}: diverged ({str(err).split(';')[0]})")
                runs.append(dict(row, diverged=True, val_error=chance_error, val_curve=[], test_error=chance_error,
                                 train_loss=[], first_epoch_error=chance_error))  # fmt: skip
                continue
            val_curve = [1.0 - h["val_acc"] for h in fit.history]
            # Everything that selects (which rates train, the best rate) reads the validation error of
            # the val-selected weights; the test error of those weights is reported, never compared.
            # A run whose loss stayed finite but which never left chance is not "diverged" but does not train.
            runs.append(dict(row, diverged=False, val_error=1.0 - fit.val_acc, val_curve=val_curve,
                             test_error=1.0 - fit.test_acc, best_epoch=fit.best_epoch,
                             train_loss=[v if math.isfinite(v) else None for v in (h["train_loss"] for h in fit.history)],
                             first_epoch_error=val_curve[0]))  # fmt: skip
    return runs


def batchnorm_comparisons(per_seed: list[dict[str, Any]], lrs: tuple[float, ...]) -> dict[str, SeedComparison]:
    """Paired over seeds: the grid position of the highest rate that trains, and the epoch-1
    validation error at the val-selected rate, with BN against without."""
    step = {k: [grid_step(s[k]["max_good_lr"], lrs) for s in per_seed] for k in ("with_bn", "without_bn")}
    first = {k: [s[k]["best_first_epoch_error"] for s in per_seed] for k in ("with_bn", "without_bn")}
    return {"max_good_step": compare_seeds(step["with_bn"], step["without_bn"]),
            "first_epoch_error": compare_seeds(first["with_bn"], first["without_bn"], expect="less")}


def batchnorm_criteria(per_seed: list[dict[str, Any]], comparisons: dict[str, SeedComparison], *,
                       cfg: BatchNormConfig) -> list[Criterion]:
    rate = lambda v: "none" if v is None else f"{v:g}"  # noqa: E731
    highest = {k: "/".join(rate(s[k]["max_good_lr"]) for s in per_seed) for k in ("with_bn", "without_bn")}
    first = {k: mean_std([s[k]["best_first_epoch_error"] for s in per_seed])[0] for k in ("with_bn", "without_bn")}
    best = {k: "/".join(f"{s[k]['best_lr']:g}" for s in per_seed) for k in ("with_bn", "without_bn")}
    return [
        seed_criterion(f"the highest learning rate at which the network ends at most {100 * cfg.good_error:.2f}% "
                       "validation error is higher with BN than without (grid positions, half-decade steps)",
                       f"highest such rate per seed {highest['with_bn']} with BN and {highest['without_bn']} without",
                       comparisons["max_good_step"], scale=1.0, unit=" grid steps"),
        seed_criterion("each at its best learning rate (selected on validation error per seed), the network with BN "
                       "has a lower validation error after the first epoch than the network without (trains faster)",
                       f"after epoch 1: {100 * first['with_bn']:.2f}% with BN (lr {best['with_bn']}) against "
                       f"{100 * first['without_bn']:.2f}% without (lr {best['without_bn']})",
                       comparisons["first_epoch_error"]),
    ]


def batchnorm_tables(runs: list[dict[str, Any]], per_seed: list[dict[str, Any]], lrs: tuple[float, ...]) -> list[Table]:
    def cells(bn: bool, lr: float) -> tuple[Any, Any]:
        rows = [r for r in runs if r["batch_norm"] == bn and r["lr"] == lr]
        div = sum(r["diverged"] for r in rows)
        if div == len(rows):
            return "diverged", "diverged"
        first = round(100 * mean_std([r["first_epoch_error"] for r in rows])[0], 2)
        sel = round(100 * mean_std([r["val_error"] for r in rows])[0], 2)
        return first, f"{sel:.2f}" + (f" ({div} of {len(rows)} diverged)" if div else "")

    grid = Table(
        title=f"Validation error per learning rate, mean of {len(per_seed)} seeds (after the first epoch, and of the "
        "val-selected epoch; a diverged run counts as chance)",
        columns=("learning rate", "without BN: epoch 1 (%)", "without BN: selected (%)", "with BN: epoch 1 (%)",
                 "with BN: selected (%)"),
        rows=tuple((lr, *cells(False, lr), *cells(True, lr)) for lr in lrs),
    )  # fmt: skip
    summary = Table(
        title="Summary per seed (selection on validation)",
        columns=("seed", "network", "learning rates that train", "highest", "best rate (on val)", "its val error (%)",
                 "its epoch-1 val error (%)", "its test error (%)"),
        rows=tuple((p["seed"], name, ", ".join(f"{v:g}" for v in s["good_lrs"]) or "none", s["max_good_lr"],
                    s["best_lr"], round(100 * s["best_error"], 2), round(100 * s["best_first_epoch_error"], 2),
                    round(100 * s["best_test_error"], 2))
                   for p in per_seed for name, s in (("without BN", p["without_bn"]), ("with BN", p["with_bn"]))),
    )  # fmt: skip
    return [summary, grid]
