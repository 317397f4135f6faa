"""Ensembles: Krizhevsky et al. 2012 §6 as lecture 002 summarises it ("7 CNN ensemble: 18.2% ->
15.4%"), and VGG's "use ensembles for best results".

K networks of the same architecture, trained with the same recipe from independent seeds
(initialisation, data order, augmentation); the prediction of an ensemble of K is the average of
their softmax probabilities. Accuracy against K, for the first K members and averaged over random
K-subsets of the members.

An ensemble is itself an average over seeds, so what varies from one machine to the next is
the whole ensemble. The experiment trains ``seeds`` disjoint ensembles (ensemble e has the members
seeded ``seed + e * members + i``; no network is shared, so the ensembles are independent replicates)
and decides each claim over the per-ensemble values, paired within an ensemble (the ensemble against
its own members). Bootstrapping K-subsets of one set of members would not do: the subsets share
networks, so their spread understates how much another set of seeds would change the result.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from cnnlab.errors import ConfigError
from cnnlab.experiments.context import ExperimentContext, seeded
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import ADAM
from cnnlab.experiments.predictions import accuracy, predict_proba
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import SeedComparison, compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["EnsembleConfig", "SCALES", "run", "plot_ensemble", "ensemble_curve", "member_seeds", "LECTURE_ERRORS"]

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
    seeds: int = 3  # disjoint ensembles of `members` networks each (independent replicates of the claim)
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.members, int) or self.members < 2:
            raise ConfigError(f"ensemble: members must be an integer >= 2, got {self.members!r}")
        require_seeds("ensemble", self.seeds, what="seeds (disjoint ensembles)")
        if not isinstance(self.subsets, int) or self.subsets < 1:
            raise ConfigError(f"ensemble: subsets must be a positive integer, got {self.subsets!r}")


SCALES = {
    "tiny": EnsembleConfig(
        data="synthetic",
        data_options=(("shape", (1, 28, 28)), ("n", 64)),
        model="lenet5_relu",
        members=3,
        seeds=2,
        train=TrainSpec(recipe="lenet", epochs=1, batch_size=32, overrides=ADAM),
    ),
    # Three disjoint ensembles of seven LeNet-5s (ReLU) on the 4,000 digits (21 networks), the lenet
    # recipe (with its 2-px shifts) cut to 8 epochs.
    "quick": EnsembleConfig(data="mnist-5k", model="lenet5_relu", seeds=3,
                            train=TrainSpec(recipe="lenet", epochs=8, batch_size=64, overrides=ADAM)),
    # Set before any standard run. Three disjoint ensembles of seven LeNet-5s (ReLU) on Fashion-MNIST,
    # all 54,000 training images at 28x28 (padded to 32x32 by the net), quick's recipe (Adam, 2-px
    # shifts) for 5 epochs: 4,220 updates per net (quick: 456).
    # Cost: 21 networks x 5 epochs x (54,000 + 16,000 / 3 for the validation and test passes) = 6.2M
    # image passes at 0.19-0.22 ms (one thread; quick: 220 s wall for 0.69M at load 2.6-5.1) = 20-23
    # minutes at one thread.
    "standard": EnsembleConfig(data="fashion-mnist", model="lenet5_relu", seeds=3,
                               train=TrainSpec(recipe="lenet", epochs=5, batch_size=64, overrides=ADAM)),
    # Seven ResNet-20s on CIFAR-10 with He et al.'s recipe and length (64k iterations).
    "full": EnsembleConfig(data="cifar10", model="resnet20", seeds=3, train=TrainSpec(recipe="resnet_cifar")),
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
    ensembles = results["ensembles"]
    ks = [r["k"] for r in ensembles[0]["curve"]]
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    for e, ens in enumerate(ensembles):
        curve = ens["curve"]
        ax.errorbar(ks, [100 * (1 - r["mean_acc"]) for r in curve], yerr=[100 * r["std_acc"] for r in curve],
                    fmt="o-", capsize=3, color=f"C{e}", label=f"ensemble {e + 1} (seeds {ens['seeds'][0]}-"
                    f"{ens['seeds'][-1]}): mean over K-subsets")
        singles = [100 * (1 - a) for a in ens["member_acc"]]
        ax.plot([1 - 0.08 * (len(ensembles) - 1) / 2 + 0.08 * e] * len(singles), singles, ".", color=f"C{e}", alpha=0.6)
    ax.set(xlabel="K (networks averaged)", ylabel="test error (%)",
           title=f"{len(ensembles)} disjoint ensembles of {results['members']} {results['model']}")
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [Plot(save_figure(fig, out_dir, "ensemble.png"),
                 "Test error of the average of K networks' softmax probabilities against K, for each of the disjoint "
                 "ensembles: mean and standard deviation over random K-subsets of its members; the dots at K = 1 "
                 "are the single members.")]


def member_seeds(seed: int, ensemble: int, members: int) -> list[int]:
    """The seeds of ensemble ``ensemble`` (0-based): ``members`` consecutive seeds after the previous
    ensembles', so no two ensembles share a network and ensemble 0 is the single-ensemble experiment's."""
    return [seed + ensemble * members + i for i in range(members)]


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
    ensembles = [train_ensemble(ctx, cfg, data, options, seeds=member_seeds(ctx.seed, e, cfg.members))
                 for e in range(cfg.seeds)]
    comparisons = {
        "vs_mean_member": compare_seeds([e["ensemble_acc"] for e in ensembles], [e["single_acc"] for e in ensembles]),
        "vs_best_member": compare_seeds([e["ensemble_acc"] for e in ensembles], [e["best_member_acc"] for e in ensembles]),
    }
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    err_single = 1.0 - mean([e["single_acc"] for e in ensembles])
    err_full = 1.0 - mean([e["ensemble_acc"] for e in ensembles])
    rel = mean([e["relative_reduction"] for e in ensembles])
    lecture_rel = (LECTURE_ERRORS[0] - LECTURE_ERRORS[1]) / LECTURE_ERRORS[0]
    single_mean, single_std = mean_std([a for e in ensembles for a in e["member_acc"]])
    setup = [
        f"Data: `{data.name}`, {len(data.train.y):,} training and {len(data.test.y):,} test images of "
        f"{'x'.join(map(str, data.input_size))}.",
        f"Members: {cfg.seeds} disjoint ensembles of {cfg.members} `{cfg.model}` from the zoo"
        + (f" with {options}" if options else "") + f", each network trained with {cfg.train.describe()} from its "
        "own seed (initial weights, batch order, augmentation): "
        + "; ".join(f"ensemble {i + 1} seeds {e['seeds'][0]}-{e['seeds'][-1]}" for i, e in enumerate(ensembles)) + ".",
        f"Single-network test accuracy: {100 * single_mean:.2f}% +- {100 * single_std:.2f} (mean +- std over all "
        f"{cfg.seeds * cfg.members} networks). Each network keeps its best-validation epoch; the best member of an "
        "ensemble is the one with the highest validation accuracy.",
        f"An ensemble averages its members' softmax probabilities; for each K, up to {cfg.subsets} random "
        "K-subsets of an ensemble's members are averaged (all of them when there are fewer).",
        "Verdicts: per ensemble, its test accuracy against the mean of its members' and against its best member's, "
        f"paired over the {cfg.seeds} ensembles (mean difference and standard error, decided at 2 SE).",
    ]
    notes = [
        "The lecture's figures are ImageNet top-5 errors of AlexNet-sized networks; this run measures top-1 "
        f"error on {data.name}, so the relative reduction is the comparable quantity.",
        "The replicates are whole ensembles, not K-subsets of one set of networks: subsets share members, so "
        "their spread (the error bars in the plot) is not the seed-to-seed spread of the claim.",
    ]
    results = {"ensembles": ensembles, "members": cfg.members, "seeds": cfg.seeds, "model": cfg.model,
               "single_error": err_single, "ensemble_error": err_full, "relative_reduction": rel,
               "comparisons": {k: dataclasses.asdict(c) for k, c in comparisons.items()}}
    tables = ensemble_tables(ensembles, cfg=cfg, data=data, lecture_rel=lecture_rel,
                             errors=(err_single, err_full, rel))  # fmt: skip
    return Outcome(results=results, criteria=ensemble_criteria(ensembles, comparisons, lecture_rel=lecture_rel),
                   tables=tables, setup=setup, notes=notes)


def train_ensemble(ctx: ExperimentContext, cfg: EnsembleConfig, data: Any, options: dict[str, Any], *,
                   seeds: list[int]) -> dict[str, Any]:
    """One ensemble: its members trained from ``seeds``, their test probabilities averaged; the accuracy
    against K, the mean member's and the best member's (chosen on val)."""
    probs, member_acc, member_val = [], [], []
    for seed in seeds:
        sctx = seeded(ctx, seed)
        fit = sctx.train(f"{cfg.model} (seed {seed})", lambda sctx=sctx: sctx.create_model(cfg.model, data, **options),
                         data, cfg.train, key={"model": cfg.model, **options})  # fmt: skip
        p = predict_proba(fit.model, data.test.x, precision=ctx.precision, device=ctx.compute_device)
        probs.append(p)
        member_acc.append(accuracy(p, data.test.y))
        member_val.append(fit.val_acc)
    curve = ensemble_curve(probs, data.test.y, subsets=cfg.subsets, seed=seeds[0])
    best = max(range(len(seeds)), key=lambda i: (member_val[i], -i))  # the best member is chosen on val
    single = sum(member_acc) / len(member_acc)
    full = curve[-1]["mean_acc"]  # K = all members: the one subset
    err_single, err_full = 1.0 - single, 1.0 - full
    return dict(seeds=list(seeds), curve=curve, member_acc=member_acc, member_val_acc=member_val, best_member=best,
                best_member_acc=member_acc[best], single_acc=single, ensemble_acc=full,
                relative_reduction=(err_single - err_full) / err_single if err_single > 0 else 0.0)  # fmt: skip


def ensemble_criteria(ensembles: list[dict[str, Any]], comparisons: dict[str, SeedComparison], *,
                      lecture_rel: float) -> list[Criterion]:
    n, members = len(ensembles), len(ensembles[0]["seeds"])
    rel = [e["relative_reduction"] for e in ensembles]
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return [
        seed_criterion(f"an ensemble of {members} networks is more accurate on test than its mean single network",
                       f"{pct(mean([e['ensemble_acc'] for e in ensembles]))} for the ensembles of {members} against "
                       f"{pct(mean([e['single_acc'] for e in ensembles]))} for one network (mean over {n} ensembles; "
                       f"relative error reduction {100 * mean(rel):.0f}%, "
                       f"per ensemble {', '.join(f'{100 * r:.0f}%' for r in rel)}; the "
                       f"lecture's: {100 * lecture_rel:.0f}%)", comparisons["vs_mean_member"]),
        seed_criterion(f"an ensemble of {members} is more accurate on test than even its best member (the one with "
                       "the highest validation accuracy)",
                       f"{pct(mean([e['ensemble_acc'] for e in ensembles]))} against "
                       f"{pct(mean([e['best_member_acc'] for e in ensembles]))} for the best members (seeds "
                       f"{', '.join(str(e['seeds'][e['best_member']]) for e in ensembles)})",
                       comparisons["vs_best_member"]),
    ]


def ensemble_tables(ensembles: list[dict[str, Any]], *, cfg: EnsembleConfig, data: Any, lecture_rel: float,
                    errors: tuple[float, float, float]) -> list[Table]:
    err_single, err_full, rel = errors
    ks = [r["k"] for r in ensembles[0]["curve"]]
    per_k = Table(
        title="Test error of an ensemble of K networks (softmax probabilities averaged; per ensemble, the mean over "
        "its K-subsets)",
        columns=("K", *(f"ensemble {i + 1} (%)" for i in range(len(ensembles))), "mean (%)"),
        rows=tuple((k, *(round(100 * (1 - e["curve"][k - 1]["mean_acc"]), 2) for e in ensembles),
                    round(100 * (1 - sum(e["curve"][k - 1]["mean_acc"] for e in ensembles) / len(ensembles)), 2))
                   for k in ks),
    )  # fmt: skip
    lecture = Table(
        title="Against the lecture",
        columns=("", "one network: error (%)", f"ensemble of {cfg.members}: error (%)", "relative reduction"),
        rows=(("lecture 002 (ImageNet top-5, 7 CNNs)", LECTURE_ERRORS[0], LECTURE_ERRORS[1], f"{100 * lecture_rel:.0f}%"),
              (f"this run ({data.name} top-1, mean of {len(ensembles)} ensembles)", round(100 * err_single, 2),
               round(100 * err_full, 2), f"{100 * rel:.0f}%")),
    )  # fmt: skip
    return [per_k, lecture]
