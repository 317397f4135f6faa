"""Ensembles: Krizhevsky et al. 2012 §6 as lecture 002 summarises it ("7 CNN ensemble: 18.2% ->
15.4%"), and VGG's "use ensembles for best results".

K networks of the same architecture, trained with the same recipe from independent seeds
(initialisation, data order, augmentation); the prediction of an ensemble of K is the average of
their softmax probabilities. Accuracy against K, for the first K members and averaged over random
K-subsets of the members.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from cnnlab.errors import ConfigError
from cnnlab.experiments.framework import Criterion, ExperimentContext, Outcome, Plot
from cnnlab.experiments.framework import Table, TrainSpec, register_experiment
from cnnlab.experiments.tools import ADAM, accuracy, mean_std, predict_proba, seed_list, seeded
from cnnlab.viz.experiment_plots import save_figure

__all__ = ["EnsembleConfig", "SCALES", "run", "plot_ensemble", "ensemble_curve", "LECTURE_ERRORS"]

CLAIM = (
    "Averaging the predictions of several independently trained CNNs lowers the error: Krizhevsky et "
    "al.'s ensemble of 7 CNNs brought the ImageNet top-5 error from 18.2% (one CNN) to 15.4%."
)

LECTURE_ERRORS = (18.2, 15.4)  # lecture 002: top-5 error of one CNN and of the 7-CNN ensemble (%)


@dataclass(frozen=True)
class EnsembleConfig:
    data: str
    model: str
    train: TrainSpec
    members: int = 7  # the lecture's seven CNNs
    subsets: int = 50  # random K-subsets averaged per K (all of them when fewer exist)
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.members, int) or self.members < 2:
            raise ConfigError(f"ensemble: members must be an integer >= 2, got {self.members!r}")
        if not isinstance(self.subsets, int) or self.subsets < 1:
            raise ConfigError(f"ensemble: subsets must be a positive integer, got {self.subsets!r}")


SCALES = {
    "tiny": EnsembleConfig(
        data="synthetic",
        data_options=(("shape", (1, 28, 28)), ("n", 64)),
        model="lenet5_relu",
        members=3,
        train=TrainSpec(recipe="lenet", epochs=1, batch_size=32, overrides=ADAM),
    ),
    # Seven LeNet-5s (ReLU) on the 4,000 digits, the lenet recipe (with its 2-px shifts) cut to 8 epochs.
    "quick": EnsembleConfig(data="mnist-5k", model="lenet5_relu",
                            train=TrainSpec(recipe="lenet", epochs=8, batch_size=64, overrides=ADAM)),
    # Seven ResNet-20s on CIFAR-10 with He et al.'s recipe and length (64k iterations).
    "full": EnsembleConfig(data="cifar10", model="resnet20", train=TrainSpec(recipe="resnet_cifar")),
}


def ensemble_curve(probs: list[torch.Tensor], y: torch.Tensor, *, subsets: int, seed: int = 0) -> list[dict[str, float]]:
    """For K = 1..len(probs): accuracy of the average of the first K members' probabilities
    (``first_k_acc``) and the mean and std of the accuracy over up to ``subsets`` random K-subsets
    (all of them when there are fewer)."""
    n = len(probs)
    rng = random.Random(seed)
    rows = []
    for k in range(1, n + 1):
        combos = list(itertools.combinations(range(n), k))
        if len(combos) > subsets:
            combos = rng.sample(combos, subsets)
        accs = [accuracy(torch.stack([probs[i] for i in c]).mean(0), y) for c in combos]
        mean, std = mean_std(accs)
        rows.append({"k": k, "first_k_acc": accuracy(torch.stack(probs[:k]).mean(0), y), "mean_acc": mean,
                     "std_acc": std, "subsets": len(combos)})  # fmt: skip
    return rows


def plot_ensemble(results: dict, out_dir: Path) -> list[Plot]:
    curve = results["curve"]
    ks = [r["k"] for r in curve]
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    ax.errorbar(ks, [100 * (1 - r["mean_acc"]) for r in curve], yerr=[100 * r["std_acc"] for r in curve], fmt="o-",
                capsize=3, color="C0", label="mean over random K-subsets")
    ax.plot(ks, [100 * (1 - r["first_k_acc"]) for r in curve], "s--", color="C1", ms=4, label="first K members")
    singles = [100 * (1 - a) for a in results["member_acc"]]
    ax.plot([1] * len(singles), singles, "k.", alpha=0.5, label="single members")
    ax.set(xlabel="K (networks averaged)", ylabel="test error (%)", title=f"Ensembles of {results['model']}")
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [Plot(save_figure(fig, out_dir, "ensemble.png"),
                 "Test error of the average of K networks' softmax probabilities against K: mean and standard "
                 "deviation over random K-subsets of the members, and the first K members in seed order.")]


@register_experiment(
    name="ensemble",
    title="Ensembles of independently trained CNNs",
    claim=CLAIM,
    lectures=("002_a740cb8c04a80802.txt",),
    paper="Krizhevsky, Sutskever & Hinton, NIPS 2012 (§6)",
    scales=SCALES,
    plot=plot_ensemble,
)
def run(ctx: ExperimentContext, cfg: EnsembleConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    probs, member_acc, member_val = [], [], []
    for seed in seed_list(ctx, cfg.members):
        sctx = seeded(ctx, seed)
        fit = sctx.train(f"{cfg.model} (seed {seed})", lambda sctx=sctx: sctx.create_model(cfg.model, data, **options),
                         data, cfg.train, key={"model": cfg.model, **options})  # fmt: skip
        p = predict_proba(fit.model, data.test.x, precision=ctx.precision, device=ctx.compute_device)
        probs.append(p)
        member_acc.append(accuracy(p, data.test.y))
        member_val.append(fit.val_acc)
    curve = ensemble_curve(probs, data.test.y, subsets=cfg.subsets, seed=ctx.seed)

    single_mean, single_std = mean_std(member_acc)
    full = curve[-1]
    err_single, err_full = 1.0 - single_mean, 1.0 - full["mean_acc"]
    rel = (err_single - err_full) / err_single if err_single > 0 else 0.0
    lecture_rel = (LECTURE_ERRORS[0] - LECTURE_ERRORS[1]) / LECTURE_ERRORS[0]
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    best = max(range(cfg.members), key=lambda i: (member_val[i], -i))  # the best member is chosen on val
    criteria = [
        Criterion(
            description=f"the ensemble of all {cfg.members} networks has a lower test error than the mean single network",
            finding=f"{pct(err_full)} for the ensemble of {cfg.members} against {pct(err_single)} for one network "
            f"(relative reduction {100 * rel:.0f}%; the lecture's: {100 * lecture_rel:.0f}%)",
            passed=err_full < err_single,
        ),
        Criterion(
            description=f"the ensemble of all {cfg.members} is better on test than even its best member (the one "
            "with the highest validation accuracy)",
            finding=f"{pct(full['mean_acc'])} test accuracy against {pct(member_acc[best])} for the best member "
            f"(seed {seed_list(ctx, cfg.members)[best]}, validation accuracy {pct(member_val[best])})",
            passed=full["mean_acc"] > member_acc[best],
        ),
    ]
    tables = [
        Table(
            title="Test error of an ensemble of K networks (softmax probabilities averaged)",
            columns=("K", "error, mean over K-subsets (%)", "std", "subsets", "error, first K members (%)"),
            rows=tuple((r["k"], round(100 * (1 - r["mean_acc"]), 2), round(100 * r["std_acc"], 2), r["subsets"],
                        round(100 * (1 - r["first_k_acc"]), 2)) for r in curve),
        ),
        Table(
            title="Against the lecture",
            columns=("", "one network: error (%)", f"ensemble of {cfg.members}: error (%)", "relative reduction"),
            rows=(("lecture 002 (ImageNet top-5, 7 CNNs)", LECTURE_ERRORS[0], LECTURE_ERRORS[1], f"{100 * lecture_rel:.0f}%"),
                  (f"this run ({data.name} top-1)", round(100 * err_single, 2), round(100 * err_full, 2),
                   f"{100 * rel:.0f}%")),
        ),
    ]  # fmt: skip
    setup = [
        f"Data: `{data.name}`, {len(data.train.y):,} training and {len(data.test.y):,} test images of "
        f"{'x'.join(map(str, data.input_size))}.",
        f"Members: {cfg.members} `{cfg.model}` from the zoo" + (f" with {options}" if options else "")
        + f", each trained with {cfg.train.describe()} from its own seed "
        f"({', '.join(map(str, seed_list(ctx, cfg.members)))}: initial weights, batch order, augmentation).",
        f"Single-network test accuracy: {pct(single_mean)} +- {100 * single_std:.2f} (mean +- std over members).",
        f"An ensemble averages its members' softmax probabilities; for each K, up to {cfg.subsets} random "
        "K-subsets of the members are averaged (all of them when there are fewer), and the first K members "
        "in seed order are shown too.",
    ]
    notes = [
        "The lecture's figures are ImageNet top-5 errors of AlexNet-sized networks; this run measures top-1 "
        f"error on {data.name}, so the relative reduction is the comparable quantity.",
    ]
    return Outcome(
        results={"curve": curve, "member_acc": member_acc, "member_val_acc": member_val, "best_member": best,
                 "members": cfg.members, "model": cfg.model,
                 "single_error": err_single, "ensemble_error": err_full, "relative_reduction": rel},
        criteria=criteria, tables=tables, setup=setup, notes=notes,
    )  # fmt: skip
