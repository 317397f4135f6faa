"""The degradation problem: He, Zhang, Ren & Sun, "Deep residual learning for image recognition",
CVPR 2016, Fig. 1 and Fig. 6 (lectures 000, 002, 004).

Plain-20 and plain-56 (the ResNets' layers without shortcuts) against ResNet-20 and ResNet-56, all
four trained with the same recipe and budget over the same seeds; training and test error recorded
every epoch. Each comparison is decided over seeds, paired (``compare_seeds``).
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.experiments.arms import plot_arms, train_zoo_arm
from cnnlab.experiments.context import ExperimentContext, seed_list
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import DIGITS_OVERRIDES, FASHION_OVERRIDES, with_overrides
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import (
    SeedComparison,
    compare_seeds,
    mean_std,
    require_per_class,
    require_seeds,
    seed_criterion,
)
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import plot_degradation
from cnnlab.viz.report import Plot

__all__ = ["DegradationConfig", "SCALES", "run"]

CLAIM = (
    "Stacking more layers on a plain network makes it worse: the 56-layer plain net has a higher "
    "training error (and thus test error) than the 20-layer one, which is not overfitting but an "
    "optimisation difficulty. With residual connections the deeper net does not have a higher "
    "training error."
)


@dataclass(frozen=True)
class DegradationConfig:
    data: str
    plain: tuple[str, str]  # (shallow, deep) plain nets
    residual: tuple[str, str]  # (shallow, deep) residual nets of the same depths
    train: TrainSpec
    input_size: tuple[int, int, int] | None = None  # the data resized to this (C, H, W); None: as it is
    model_options: tuple[tuple[str, Any], ...] = ()  # zoo config applied to all four (tiny: widths)
    data_options: tuple[tuple[str, Any], ...] = ()
    seeds: int = 3  # every network trained once per seed; criteria compare the seeds paired
    train_per_class: int | None = None  # a fixed subset of the training split (None: all of it)

    def __post_init__(self) -> None:
        require_seeds("degradation", self.seeds)
        require_per_class("degradation", self.train_per_class)
        for field in ("plain", "residual"):
            pair = getattr(self, field)
            if len(pair) != 2 or _depth(pair[0]) >= _depth(pair[1]):
                raise ConfigError(f"degradation: {field} must be (shallower, deeper) model names, got {pair!r}")
        if [_depth(m) for m in self.plain] != [_depth(m) for m in self.residual]:
            raise ConfigError("degradation: the plain and residual nets must have the same depths")


def _depth(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    if not match:
        raise ConfigError(f"degradation: cannot read the depth from the model name {name!r}")
    return int(match.group(1))


def _label(name: str) -> str:
    family = "plain" if name.startswith("plain") else "ResNet"
    return f"{family}-{_depth(name)}"


# He et al. §4.2 train CIFAR-10 for 64k iterations at batch 128 (lr 0.1, /10 at 32k and 48k,
# weight decay 1e-4, momentum 0.9, 4-pixel padding + crop + flip): the `resnet_cifar` recipe.
SCALES = {
    # Plumbing only: random 16x16 images, 4-channel-wide nets, two epochs.
    "tiny": DegradationConfig(
        data="synthetic",
        data_options=(("shape", (1, 16, 16)), ("n", 64)),
        plain=("plain20", "plain56"),
        residual=("resnet20", "resnet56"),
        train=TrainSpec(recipe="resnet_cifar", epochs=2, batch_size=32),
        model_options=(("widths", (4, 8, 16)),),
        seeds=2,
    ),
    # The paper's nets at full width on mnist-5k (4,000 training digits) resized to 16x16, the
    # resolution of the USPS digits: a third of the cost of 28x28, which is what lets four nets
    # (two of 56 layers) get 684 updates each over 3 seeds in 702 s of one thread's CPU time (Zen 4,
    # bf16 + channels_last; 405 s for one seed on an idle 2-core Xeon in fp32). He et al.'s lr 0.1 at
    # batch 128 becomes 0.05 at batch 64 (the same rate per sample, Goyal et al. 2017), decayed
    # with a cosine over the short run; pad-and-crop shifts of 2 px (the paper's 4 of 32), no flips.
    # Measured at 28x28, batch 128, 8 epochs (256 updates): ResNet-56 was still at 20% training
    # error (ResNet-20: 1.2%) and the four nets took about 12 minutes.
    "quick": DegradationConfig(
        data="mnist-5k",
        input_size=(1, 16, 16),
        plain=("plain20", "plain56"),
        residual=("resnet20", "resnet56"),
        train=TrainSpec(recipe="resnet_cifar", epochs=12, batch_size=64, lr=0.05,
                        overrides=(*DIGITS_OVERRIDES, ("crop_padding", 2))),
        seeds=3,
    ),
    # Set before any standard run. Fashion-MNIST at 16x16 as at quick: the claim is about
    # optimisation (training error), not about what the resolution lets a net see, and 28x28 costs
    # 2.5 times as much (ResNet-20: 2.0 against 0.8 ms per image on one thread). A fixed 1,800 images per class (18,000 of the 54,000;
    # the 6,000 validation and 10,000 test images whole) for 5 epochs: 1,410 updates at batch 64,
    # twice quick's 684, and the last epoch, whose running training error the criteria compare, is
    # the last fifth of the run (the whole 54,000 would fit only 2 epochs, the last one half the
    # run). He et al.'s recipe with its flips (a mirrored garment is the same garment), 2-px crops,
    # lr 0.05 at batch 64 with a cosine decay, as at quick.
    # Cost: 12 networks (4 x 3 seeds) x 5 epochs x (18,000 + 16,000 / 3 for the validation and test
    # passes) = 1.40M image passes at 1.2-1.4 ms (the four nets' mean: quick used 702 s of CPU for
    # 0.59M; one-thread probes 0.8 ms for plain/ResNet-20, 2.0-2.1 ms for -56) = 28-33 minutes at one
    # thread, the most of the standard configs.
    "standard": DegradationConfig(
        data="fashion-mnist",
        input_size=(1, 16, 16),
        train_per_class=1800,
        plain=("plain20", "plain56"),
        residual=("resnet20", "resnet56"),
        train=TrainSpec(recipe="resnet_cifar", epochs=5, batch_size=64, lr=0.05,
                        overrides=with_overrides(FASHION_OVERRIDES, crop_padding=2)),
        seeds=3,
    ),
    # The paper's setting: CIFAR-10 and He et al.'s recipe as it is (64k iterations at batch 128).
    "full": DegradationConfig(
        data="cifar10",
        plain=("plain20", "plain56"),
        residual=("resnet20", "resnet56"),
        train=TrainSpec(recipe="resnet_cifar"),
        seeds=3,
    ),
}


def plot_degradation_seeds(results: dict, out_dir: Path) -> list[Plot]:
    """He et al.'s curves (means over seeds) and the final training error of each network per seed."""
    models = sorted(results["models"].values(), key=lambda m: m["depth"])
    groups = {f"{family}: training error after the last epoch": {m["label"]: m["final_train_error"] for m in models
                                                                 if m["residual"] == residual}
              for family, residual in (("plain nets", False), ("ResNets", True))}  # fmt: skip
    return [*plot_degradation(results, out_dir),
            plot_arms(groups, out_dir, "degradation_final.png",
                      ylabel="training error (%)",
                      caption="Final training error of each network, one dot per seed (the same seeds for the "
                      "four); the criteria compare these values paired by seed.")]


@register_experiment(
    name="degradation",
    title="Degradation: deeper plain nets train worse, deeper ResNets do not",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt", "002_a740cb8c04a80802.txt", "004_727cdc94a52d7899.txt"),
    paper="He, Zhang, Ren & Sun, CVPR 2016 (Fig. 1, Fig. 6)",
    scales=SCALES,
    plot=plot_degradation_seeds,
)
def run(ctx: ExperimentContext, cfg: DegradationConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    models: dict[str, dict[str, Any]] = {}
    for name in (*cfg.plain, *cfg.residual):
        fits = train_zoo_arm(ctx, _label(name), name, data, cfg.train, seeds=cfg.seeds, options=options)
        size = ctx.analyze(fits[0].model, data.input_size)  # params, MACs, weight layers (the analyzer's)
        models[name] = _model_row(name, size, fits, seed_list(ctx, cfg.seeds))
    comparisons = depth_comparisons(models, cfg)
    results = {"models": models, "epochs": len(next(iter(models.values()))["train_error"]),
               "seeds": seed_list(ctx, cfg.seeds), **{k: vars(c) for k, c in comparisons.items()}}
    return Outcome(results=results, criteria=degradation_criteria(models, cfg, comparisons),
                   tables=[_table(models, cfg.seeds)], setup=_setup(ctx, cfg, data, options), notes=_notes(models, cfg, data))


def _model_row(name: str, size: dict[str, int], fits: list[Any], seeds: list[int]) -> dict[str, Any]:
    """One network over seeds: per-seed curves and final errors, and the mean curves (for the plots)."""
    per_seed = [
        dict(seed=seed, train_error=[1.0 - h["train_acc"] for h in fit.history],
             test_error=[1.0 - h["test_acc"] for h in fit.history],  # per-epoch curve: plotted, never selected on
             val_error=[1.0 - h["val_acc"] for h in fit.history],
             best_epoch=int(fit.best_epoch),  # chosen on val by the engine
             selected_test_error=1.0 - float(fit.test_acc), seconds=float(fit.seconds))
        for seed, fit in zip(seeds, fits)
    ]  # fmt: skip

    def mean_curve(key: str) -> list[float]:
        return [statistics.fmean(col) for col in zip(*(s[key] for s in per_seed))]

    final = [s["train_error"][-1] for s in per_seed]
    return dict(
        label=_label(name), model=name, depth=size["depth"], residual=not name.startswith("plain"),
        params=size["params"], macs=size["macs"], epochs=len(per_seed[0]["train_error"]),
        train_error=mean_curve("train_error"), test_error=mean_curve("test_error"), val_error=mean_curve("val_error"),
        final_train_error=final, mean_final_train_error=statistics.fmean(final),
        std_final_train_error=mean_std(final)[1],
        selected_test_error=[s["selected_test_error"] for s in per_seed], per_seed=per_seed,
    )  # fmt: skip


def depth_comparisons(models: dict[str, dict[str, Any]], cfg: DegradationConfig) -> dict[str, SeedComparison]:
    """The paired (same seeds) comparisons the verdict rests on, on the final training errors:
    deep against shallow plain net, deep against shallow ResNet, and the two depth penalties."""
    (ps, pd), (rs, rd) = cfg.plain, cfg.residual
    err = {name: m["final_train_error"] for name, m in models.items()}
    plain_gap = [d - s for d, s in zip(err[pd], err[ps])]
    res_gap = [d - s for d, s in zip(err[rd], err[rs])]
    return {
        "plain_deep_vs_shallow": compare_seeds(err[pd], err[ps], expect="greater"),
        "residual_deep_vs_shallow": compare_seeds(err[rd], err[rs], expect="less"),
        "plain_gap_vs_residual_gap": compare_seeds(plain_gap, res_gap, expect="greater"),
    }


def degradation_criteria(models: dict[str, dict[str, Any]], cfg: DegradationConfig,
                         comparisons: dict[str, SeedComparison]) -> list[Criterion]:
    """The claim's three comparisons, each decided over seeds (2 standard errors)."""
    (ps, pd), (rs, rd) = cfg.plain, cfg.residual
    pct = lambda name: f"{100 * models[name]['mean_final_train_error']:.2f}%"  # noqa: E731
    lab = _label
    gap = comparisons["plain_gap_vs_residual_gap"]
    return [
        seed_criterion(f"{lab(pd)} ends with a higher training error than {lab(ps)} (last epoch)",
                       f"{lab(pd)} ended at {pct(pd)} training error and {lab(ps)} at {pct(ps)} (means over seeds)",
                       comparisons["plain_deep_vs_shallow"]),
        seed_criterion(f"{lab(rd)} ends with a training error no higher than {lab(rs)}'s: lower, as in He et al. "
                       "Fig. 6 (last epoch)", f"{lab(rd)} ended at {pct(rd)} and {lab(rs)} at {pct(rs)}",
                       comparisons["residual_deep_vs_shallow"]),
        seed_criterion(f"shortcuts remove the depth penalty: going from {_depth(ps)} to {_depth(pd)} layers raises "
                       "the final training error more for the plain nets than for the ResNets",
                       f"depth penalty {100 * statistics.fmean(gap.a):+.2f} points (plain) against "
                       f"{100 * statistics.fmean(gap.b):+.2f} (residual)", gap),
    ]  # fmt: skip


def _table(models: dict[str, dict[str, Any]], seeds: int) -> Table:
    return Table(
        title=f"Error after the last epoch, mean over {seeds} seeds (training error is the running error over "
        "the last epoch, as in He et al.'s curves)",
        columns=("network", "weight layers", "params", "MACs / image", "train error (%)", "std", "per seed (%)",
                 "test error (%)", "val-selected epochs", "their test error (%)", "train time (s)"),
        rows=tuple(
            (m["label"], m["depth"], m["params"], m["macs"], round(100 * m["mean_final_train_error"], 2),
             round(100 * m["std_final_train_error"], 2), ", ".join(f"{100 * v:.2f}" for v in m["final_train_error"]),
             round(100 * m["test_error"][-1], 2), ", ".join(str(s["best_epoch"]) for s in m["per_seed"]),
             round(100 * statistics.fmean(m["selected_test_error"]), 2),
             round(sum(s["seconds"] for s in m["per_seed"]), 1))
            for m in models.values()
        ),
    )  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: DegradationConfig, data: Any, options: dict[str, Any]) -> list[str]:
    nets = (*cfg.plain, *cfg.residual)
    return [
        f"Data: `{data.name}`, {len(data.train.y):,} training"
        + (f" ({cfg.train_per_class:,} per class, a fixed subset)" if cfg.train_per_class else "")
        + f" and {len(data.test.y):,} test images of {'x'.join(map(str, data.input_size))}"
        + (" (resized)" if cfg.input_size else "") + ".",
        f"Networks: {', '.join(_label(n) for n in nets)} from the zoo (`{'`, `'.join(nets)}`), "
        f"in_chans={data.input_size[0]}" + (f", options {options}" if options else "") + ".",
        f"Training: the same for all four networks: {cfg.train.describe()}; seeds {seed_list(ctx, cfg.seeds)}, the "
        "same for the four (each seed its own initialisation and data order); comparisons are paired by seed.",
        "Training error per epoch is the error on the training batches during that epoch (augmented, BN in "
        "training mode), as plotted by He et al.; test error is measured after each epoch for the curves only. "
        "The selected epoch is the one with the lowest validation error; its test error is reported once.",
        "Verdicts: the mean paired difference of the final training errors over seeds must exceed 2 standard "
        "errors (`compare_seeds`); otherwise the criterion is within noise.",
    ]


def _notes(models: dict[str, dict[str, Any]], cfg: DegradationConfig, data: Any) -> list[str]:
    (ps, pd), (rs, rd) = cfg.plain, cfg.residual
    updates = math.ceil(len(data.train.y) / (cfg.train.batch_size or 128)) * models[ps]["epochs"]
    gap = lambda deep, shallow: 100 * (models[deep]["mean_final_train_error"]  # noqa: E731
                                       - models[shallow]["mean_final_train_error"])
    notes = [
        f"Going from {_label(ps)} to {_label(pd)} changed the final training error by {gap(pd, ps):+.2f} points "
        f"on average; going from {_label(rs)} to {_label(rd)} by {gap(rd, rs):+.2f} points.",
        f"The criteria compare the last epoch only, after about {updates:,} updates per network; He et al. "
        "train for 64,000. Deep nets start slowly, so within a short budget the comparison is about how far "
        "each net gets with the same budget, not about converged error.",
    ]
    if data.name.startswith("mnist") or data.name == "digits":
        notes.append("MNIST digits are much easier than CIFAR-10: every network may reach a low error, which "
                     "can hide the degradation that He et al. measured on CIFAR-10 (run `--scale full` on a GPU).")
    return notes
