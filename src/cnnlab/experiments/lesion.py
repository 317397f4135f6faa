"""Lesion study: Veit, Wilber & Belongie, "Residual networks behave like ensembles of relatively
shallow networks", NIPS 2016, Figs. 3, 5a and 6 (lecture 004).

A residual net and a plain net (the same blocks without shortcuts) are trained once per seed; then,
on each seed's pair and at test time only: each block is deleted in turn, k random residual blocks
are deleted for k = 1..n, the gradient reaching the first block through paths of each length is
measured, blocks are re-ordered (Fig. 5b) and the size of each residual branch is measured. Each
criterion is decided on the per-seed values (``compare_seeds``: a per-seed quantity against the
claim's bound, or two quantities of the same nets against each other).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.errors import ConfigError
from cnnlab.experiments.arms import train_zoo_arm
from cnnlab.experiments.context import ExperimentContext, seed_list, seeded
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import DIGITS_OVERRIDES
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import (
    against_margin,
    compare_seeds,
    correlation,
    mean_std,
    require_seeds,
    seed_criterion,
)
from cnnlab.experiments.surgery import (
    delete_blocks,
    gradient_by_path_length,
    path_length_distribution,
    plain_blocks,
    reorder_study,
    residual_blocks,
    residual_norms,
)
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import plot_lesion

__all__ = ["LesionConfig", "SCALES", "run"]

CLAIM = (
    "A residual network behaves like an ensemble of many relatively shallow paths: deleting one "
    "residual block at test time barely hurts (except at downsampling blocks), whereas deleting a "
    "layer of a plain network drops it to chance; accuracy declines smoothly as more blocks are "
    "deleted; and most of the gradient comes from short paths."
)


@dataclass(frozen=True)
class LesionConfig:
    data: str
    residual: str  # zoo name of the residual net
    plain: str  # zoo name of the plain net (same blocks, no shortcuts)
    train: TrainSpec
    input_size: tuple[int, int, int] | None = None  # the data resized to this (C, H, W); None: as it is
    seeds: int = 3  # both nets trained once per seed; every measurement repeated on each seed's pair
    delete_k_draws: int = 10  # random sets of k blocks deleted, per k
    grad_draws: int = 5  # sampled paths per path length for the gradient measurement
    grad_batch: int = 64  # test images in the batch whose loss is back-propagated
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()
    # Thresholds of the criteria (stated in the report before the numbers).
    max_mean_drop_one: float = 0.05  # "barely hurts": mean accuracy drop over non-downsampling blocks
    near_chance_margin: float = 0.10  # "drops to chance": within this of chance accuracy
    max_step_fraction: float = 0.5  # "smooth": no single extra deletion makes half the total decline
    # Veit et al. Fig. 5b (re-ordering) and the size of the residual branches
    reorder_swaps: int = 4  # re-orderings by 1..reorder_swaps random swaps of compatible blocks
    reorder_draws: int = 5  # random re-orderings per number of swaps
    max_residual_ratio: float = 1.0  # "small corrections": median ||F(x)|| / ||shortcut(x)|| below this

    def __post_init__(self) -> None:
        require_seeds("lesion", self.seeds)
        for field in ("delete_k_draws", "grad_draws", "grad_batch", "reorder_swaps", "reorder_draws"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"lesion: {field} must be a positive integer, got {value!r}")


SCALES = {
    "tiny": LesionConfig(
        data="synthetic",
        data_options=(("shape", (1, 16, 16)), ("n", 64)),
        residual="resnet20",
        plain="plain20",
        train=TrainSpec(recipe="resnet_cifar", epochs=2, batch_size=32),  # as degradation's: shared in tests
        model_options=(("widths", (4, 8, 16)),),
        seeds=2,
        delete_k_draws=1,
        grad_draws=1,
        grad_batch=8,
        reorder_swaps=2,
        reorder_draws=1,
    ),
    # ResNet-20 and plain-20: 9 blocks each (3 stages of 3), two of them downsampling. Trained as in
    # `degradation`'s quick scale (16x16 digits, 12 epochs at batch 64, lr 0.05, cosine, 2-px crops),
    # so that `cnnlab experiment all` trains them once for both experiments (its first 3 seeds); 5
    # seeds because the criteria compare per-seed quantities with bounds, and two nets per seed at
    # 16x16 are cheap.
    "quick": LesionConfig(
        data="mnist-5k",
        input_size=(1, 16, 16),
        residual="resnet20",
        plain="plain20",
        train=TrainSpec(recipe="resnet_cifar", epochs=12, batch_size=64, lr=0.05,
                        overrides=(*DIGITS_OVERRIDES, ("crop_padding", 2))),
        seeds=5,
        delete_k_draws=10,
        grad_draws=5,
    ),
    # Veit et al. lesion a ResNet-110 (54 blocks) on CIFAR-10; this scale lesions a ResNet-56 (27 blocks).
    "full": LesionConfig(
        data="cifar10",
        residual="resnet56",
        plain="plain20",
        train=TrainSpec(recipe="resnet_cifar"),  # He et al. §4.2 as it is
        seeds=3,
        delete_k_draws=20,
        grad_draws=20,
        grad_batch=128,
    ),
}


def _acc(ctx: ExperimentContext, model: torch.nn.Module, pair: Any) -> float:
    return float(ctx.evaluate(model, pair)["acc"])


@register_experiment(
    name="lesion",
    title="Lesion study: residual networks behave like ensembles of shallow paths",
    claim=CLAIM,
    lectures=("004_727cdc94a52d7899.txt",),
    paper="Veit, Wilber & Belongie, NIPS 2016 (Figs. 3, 5a, 5b, 6)",
    scales=SCALES,
    plot=plot_lesion,
)
def run(ctx: ExperimentContext, cfg: LesionConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    chance = 1.0 / data.num_classes
    fits = {role: train_zoo_arm(ctx, name, name, data, cfg.train, seeds=cfg.seeds, options=options)
            for role, name in (("residual", cfg.residual), ("plain", cfg.plain))}  # fmt: skip
    per_seed = []
    for i, seed in enumerate(seed_list(ctx, cfg.seeds)):
        res_model, plain_model = ctx.to_device(fits["residual"][i].model), ctx.to_device(fits["plain"][i].model)
        _check_nets(cfg, res_model, plain_model)
        ctx.log(f"seed {seed}: lesions of {cfg.residual} and {cfg.plain}")
        per_seed.append(measure_seed(seeded(ctx, seed), cfg, res_model, plain_model, data.test, chance))
    n = per_seed[0]["num_blocks"]
    results = _results(cfg, per_seed, chance, seed_list(ctx, cfg.seeds))
    criteria = lesion_criteria(cfg, [s["summary"] for s in per_seed], n=n, chance=chance)
    setup = _setup(ctx, cfg, data, options, n, min(cfg.grad_batch, len(data.test.y)))
    return Outcome(results=results, criteria=criteria, tables=_tables(cfg, results), setup=setup,
                   notes=_notes(cfg, data, n))  # fmt: skip


def _check_nets(cfg: LesionConfig, res_model: torch.nn.Module, plain_model: torch.nn.Module) -> None:
    if not residual_blocks(res_model):
        raise ConfigError(f"lesion: {cfg.residual} has no residual blocks")
    if residual_blocks(plain_model) or not plain_blocks(plain_model):
        raise ConfigError(f"lesion: {cfg.plain} is not a plain net built from blocks without shortcuts")


# ---------------------------------------------------------------------------------------------
# Measurements on one seed's trained pair (every lesion works on a copy)
# ---------------------------------------------------------------------------------------------


def measure_seed(ctx: ExperimentContext, cfg: LesionConfig, res_model: torch.nn.Module,
                 plain_model: torch.nn.Module, test: Any, chance: float) -> dict[str, Any]:
    """Figs. 3, 5a, 5b and 6 and the residual-branch norms on one seed's nets; ``ctx`` is that
    seed's context (its generators give that seed's random draws). ``summary`` holds the numbers
    the criteria compare."""
    names = [name for name, _ in residual_blocks(res_model)]
    res_base, plain_base = _acc(ctx, res_model, test), _acc(ctx, plain_model, test)
    delete_one = [dict(block=name, acc=_acc(ctx, delete_blocks(res_model, [name]), test),
                       downsampling=bool(b.downsampling)) for name, b in residual_blocks(res_model)]  # fmt: skip
    plain_delete, plain_skipped = _delete_plain(ctx, plain_model, test)
    delete_k = _delete_k(ctx, cfg, res_model, names, test)
    gb = min(cfg.grad_batch, len(test.y))
    grads = gradient_by_path_length(res_model, test.x[:gb], test.y[:gb], draws=cfg.grad_draws,
                                    generator=ctx.generator(2))  # fmt: skip
    counts = path_length_distribution(len(names))
    path_lengths = [dict(k=k, paths=counts[k], **{key: g[key] for key in ("mean_grad_norm", "std_grad_norm", "draws")})
                    for k, g in enumerate(grads)]  # fmt: skip
    reorder = reorder_study(res_model, lambda m: _acc(ctx, m, test), max_swaps=cfg.reorder_swaps,
                            draws=cfg.reorder_draws, generator=ctx.generator(3))  # fmt: skip
    norms = residual_norms(res_model, test.x[:gb].to(ctx.compute_device))
    raw = dict(seed=ctx.seed, num_blocks=len(names), baseline_acc=res_base, plain_baseline_acc=plain_base,
               delete_one=delete_one, plain_delete=plain_delete, plain_skipped=plain_skipped, delete_k=delete_k,
               path_lengths=path_lengths, reorder=reorder, norms=norms)  # fmt: skip
    return {**raw, "summary": summarise(raw, chance)}


def _delete_plain(ctx: ExperimentContext, model: torch.nn.Module, test: Any) -> tuple[list, list]:
    """Each plain block that keeps the shape replaced by the identity; the others skipped."""
    deleted, skipped = [], []
    for position, (name, b) in enumerate(plain_blocks(model), start=1):
        if b.downsampling:
            skipped.append(dict(layer=name, position=position, reason="changes the shape (stride 2, more channels)"))
        else:
            deleted.append(dict(layer=name, position=position, acc=_acc(ctx, delete_blocks(model, [name]), test)))
    return deleted, skipped


def _delete_k(ctx: ExperimentContext, cfg: LesionConfig, model: torch.nn.Module, names: list[str],
              test: Any) -> list[dict[str, Any]]:
    """Fig. 5a: for k = 1..n, ``delete_k_draws`` random sets of k blocks (fewer where fewer exist)."""
    gen, n, rows = ctx.generator(1), len(names), []
    for k in range(1, n + 1):
        draws = 1 if k == n else min(cfg.delete_k_draws, math.comb(n, k))
        chosen = [[names[i] for i in sorted(torch.randperm(n, generator=gen)[:k].tolist())] for _ in range(draws)]
        accs = [_acc(ctx, delete_blocks(model, names_k), test) for names_k in chosen]
        rows.append(dict(k=k, mean_acc=statistics.fmean(accs), std_acc=statistics.pstdev(accs), draws=len(accs)))
    return rows


def summarise(raw: dict[str, Any], chance: float) -> dict[str, float]:
    """The per-seed numbers the criteria compare, from one seed's measurements."""
    base, n = raw["baseline_acc"], raw["num_blocks"]
    nan = float("nan")
    drop = lambda rows: statistics.fmean(base - r["acc"] for r in rows) if rows else nan  # noqa: E731
    curve = [base] + [r["mean_acc"] for r in raw["delete_k"]]
    steps = [a - b for a, b in zip(curve, curve[1:])]  # positive = accuracy lost by one more deletion
    total = curve[0] - curve[-1]
    # Veit et al. Fig. 6c: paths of length k carry C(n, k) x g(k) of the gradient in all; the claim
    # is that this mass sits at lengths shorter than those of the typical path (n / 2).
    mass = [r["paths"] * r["mean_grad_norm"] for r in raw["path_lengths"]]
    reorder = raw["reorder"]
    one_swap = statistics.fmean(r["acc"] for r in reorder if r["swaps"] == 1) if reorder else nan
    plain = [r["acc"] for r in raw["plain_delete"]]
    same = sorted(r["residual_over_shortcut"] for r in raw["norms"] if not r["downsampling"])
    return dict(
        baseline_acc=base,
        mean_drop_non_downsampling=drop([r for r in raw["delete_one"] if not r["downsampling"]]),
        mean_drop_downsampling=drop([r for r in raw["delete_one"] if r["downsampling"]]),
        plain_baseline_acc=raw["plain_baseline_acc"],
        plain_mean_acc_after_delete=statistics.fmean(plain) if plain else nan,
        largest_step=max(steps), total_decline=total,
        # A decline that never happens (total <= 0) counts as the least smooth: all of it in one step.
        largest_step_fraction=max(steps) / total if total > 0 else 1.0,
        gradient_weighted_mean_length=sum(r["k"] * w for r, w in zip(raw["path_lengths"], mass)) / sum(mass),
        reorder_tau_acc_r=correlation([r["tau"] for r in reorder], [r["acc"] for r in reorder]) if reorder else 0.0,
        one_swap_acc=one_swap,
        # The share of the way to chance that one swap loses (1: all of it, or nothing to lose).
        one_swap_loss_fraction=(base - one_swap) / (base - chance) if reorder and base > chance else 1.0,
        median_residual_ratio=same[len(same) // 2] if same else nan,
        half_length=n / 2,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Criteria: each decided on the per-seed values
# ---------------------------------------------------------------------------------------------


def bound_criterion(description: str, finding: str, values: Sequence[float], bound: float, *, expect: str,
                    scale: float = 100.0, unit: str = " points") -> Criterion:
    """A per-seed quantity against the claim's ``bound``: met when the mean over seeds is beyond the
    bound in the ``expect`` direction ("less": below it) by more than 2 standard errors of the
    per-seed values, not met when it is on the other side by as much, within noise otherwise."""
    comparison = against_margin(values, bound, expect=expect)
    shown = ", ".join(f"{scale * v:.2f}" for v in values)
    return seed_criterion(description, f"{finding} (per seed {shown}); mean minus the bound", comparison,
                          scale=scale, unit=unit)


def lesion_criteria(cfg: LesionConfig, seeds: Sequence[dict[str, float]], *, n: int, chance: float) -> list[Criterion]:
    """The claim's seven parts, on the per-seed ``summarise`` values of each seed."""
    col = lambda key: [s[key] for s in seeds]  # noqa: E731
    mean = lambda key: statistics.fmean(col(key))  # noqa: E731
    pp = lambda v: f"{100 * v:.1f} points"  # noqa: E731
    return [
        bound_criterion(f"deleting one non-downsampling residual block costs on average at most "
                        f"{pp(cfg.max_mean_drop_one)} of test accuracy",
                        f"deleting one of {cfg.residual}'s non-downsampling blocks cost "
                        f"{pp(mean('mean_drop_non_downsampling'))} on average (from {100 * mean('baseline_acc'):.1f}%)",
                        col("mean_drop_non_downsampling"), cfg.max_mean_drop_one, expect="less"),
        seed_criterion("deleting a downsampling residual block costs more than deleting another block",
                       f"downsampling blocks cost {pp(mean('mean_drop_downsampling'))} on average against "
                       f"{pp(mean('mean_drop_non_downsampling'))}",
                       compare_seeds(col("mean_drop_downsampling"), col("mean_drop_non_downsampling"))),
        bound_criterion(f"deleting one block of the plain net brings it within {pp(cfg.near_chance_margin)} of chance "
                        f"({100 * chance:.1f}%) on average",
                        f"the plain net fell from {100 * mean('plain_baseline_acc'):.1f}% to "
                        f"{100 * mean('plain_mean_acc_after_delete'):.1f}% on average",
                        col("plain_mean_acc_after_delete"), chance + cfg.near_chance_margin, expect="less"),
        bound_criterion(f"accuracy declines smoothly with the number k of deleted blocks: no single extra deletion "
                        f"causes more than {cfg.max_step_fraction:.0%} of the total decline from k=0 to k={n}",
                        f"the largest single step lost {pp(mean('largest_step'))} of a total decline of "
                        f"{pp(mean('total_decline'))}, a fraction of {mean('largest_step_fraction'):.2f}",
                        col("largest_step_fraction"), cfg.max_step_fraction, expect="less", scale=1.0, unit=""),
        bound_criterion(f"the gradient comes mostly from short paths: weighting each path length k by the gradient "
                        f"all its paths carry (C(n,k) x mean gradient norm), the mean length is below n/2 = {n / 2:g}",
                        f"the gradient-weighted mean path length is {mean('gradient_weighted_mean_length'):.2f} blocks",
                        col("gradient_weighted_mean_length"), n / 2, expect="less", scale=1.0, unit=" blocks"),
        bound_criterion("re-ordering blocks degrades accuracy smoothly (Veit et al. Fig. 5b): accuracy correlates "
                        "positively with Kendall's tau to the original order (Pearson r over the re-orderings of "
                        "each seed above 0)", f"r(tau, accuracy) = {mean('reorder_tau_acc_r'):.2f} on average",
                        col("reorder_tau_acc_r"), 0.0, expect="greater", scale=1.0, unit=""),
        bound_criterion("re-ordering blocks by one swap loses less than half of the way from the intact accuracy to "
                        "chance", f"one swap {100 * mean('one_swap_acc'):.1f}% against "
                        f"{100 * mean('baseline_acc'):.1f}% intact, a fraction {mean('one_swap_loss_fraction'):.2f} "
                        "of the way to chance",
                        col("one_swap_loss_fraction"), 0.5, expect="less", scale=1.0, unit=""),
        bound_criterion(f"residual branches learn small corrections: the median over non-downsampling blocks of "
                        f"||F(x)|| / ||shortcut(x)|| is below {cfg.max_residual_ratio:g}",
                        f"median ratio {mean('median_residual_ratio'):.2f} on average", col("median_residual_ratio"),
                        cfg.max_residual_ratio, expect="less", scale=1.0, unit=""),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# results.json, tables and the report's text
# ---------------------------------------------------------------------------------------------


def _over_seeds(per_seed: list[dict[str, Any]], rows_key: str, value: str, keep: Sequence[str]) -> list[dict[str, Any]]:
    """``per_seed[*][rows_key]`` (the same rows for every seed) merged: the ``keep`` fields of the first
    seed's rows, ``value`` as the mean over seeds, its standard deviation over seeds and the values."""
    merged = []
    for i, row in enumerate(per_seed[0][rows_key]):
        values = [float(s[rows_key][i][value]) for s in per_seed]
        mean, sd = mean_std(values)
        merged.append({**{k: row[k] for k in keep}, value: mean, f"{value}_sd": sd, f"{value}_seeds": values})
    return merged


def _results(cfg: LesionConfig, per_seed: list[dict[str, Any]], chance: float, seeds: list[int]) -> dict[str, Any]:
    """Means over seeds under the keys the plots and tests read, and every seed's numbers."""
    s0 = per_seed[0]
    avg = lambda key: statistics.fmean(s["summary"][key] for s in per_seed)  # noqa: E731
    # The spread shown for k deletions and for the gradients is over seeds (of each seed's mean).
    delete_k = [{**r, "std_acc": r.pop("mean_acc_sd"), "seeds": len(per_seed)}
                for r in _over_seeds(per_seed, "delete_k", "mean_acc", ("k", "draws"))]
    path_lengths = [{**r, "std_grad_norm": r.pop("mean_grad_norm_sd")}
                    for r in _over_seeds(per_seed, "path_lengths", "mean_grad_norm", ("k", "paths", "draws"))]
    norms = _over_seeds(per_seed, "norms", "residual_over_shortcut", ("block", "downsampling"))
    for r, over_input in zip(norms, _over_seeds(per_seed, "norms", "residual_over_input", ())):
        r["residual_over_input"] = over_input["residual_over_input"]
    residual = dict(
        model=cfg.residual, label=cfg.residual, baseline_acc=avg("baseline_acc"), num_blocks=s0["num_blocks"],
        delete_one=_over_seeds(per_seed, "delete_one", "acc", ("block", "downsampling")), delete_k=delete_k,
        path_lengths=path_lengths, gradient_weighted_mean_length=avg("gradient_weighted_mean_length"),
        mean_drop_non_downsampling=avg("mean_drop_non_downsampling"),
        mean_drop_downsampling=avg("mean_drop_downsampling"),
    )  # fmt: skip
    plain = dict(model=cfg.plain, label=cfg.plain, baseline_acc=avg("plain_baseline_acc"),
                 delete_one=_over_seeds(per_seed, "plain_delete", "acc", ("layer", "position")),
                 skipped=s0["plain_skipped"], mean_acc_after_delete=avg("plain_mean_acc_after_delete"))  # fmt: skip
    return {
        "chance_acc": chance, "seeds": seeds, "residual": residual, "plain": plain,
        "reorder": [dict(seed=s["seed"], **r) for s in per_seed for r in s["reorder"]], "residual_norms": norms,
        "per_seed": [{"seed": s["seed"], **s["summary"]} for s in per_seed],
    }  # fmt: skip


def _pcts(values: Sequence[float]) -> str:
    return ", ".join(f"{100 * v:.1f}" for v in values)


def _tables(cfg: LesionConfig, results: dict[str, Any]) -> list[Table]:
    res, plain, k = results["residual"], results["plain"], len(results["seeds"])
    r2 = lambda v: round(100 * v, 2)  # noqa: E731
    plain_rows = sorted(plain["delete_one"] + plain["skipped"], key=lambda r: r["position"])
    return [
        Table(title=f"Deleting one block of {cfg.residual} (mean over {k} seeds; intact {r2(res['baseline_acc'])}%)",
              columns=("block", "downsampling", "test acc (%)", "drop (points)", "per seed (%)"),
              rows=tuple((r["block"], r["downsampling"], r2(r["acc"]), r2(res["baseline_acc"] - r["acc"]),
                          _pcts(r["acc_seeds"])) for r in res["delete_one"])),
        Table(title=f"Deleting one block of {cfg.plain} (mean over {k} seeds; intact {r2(plain['baseline_acc'])}%)",
              columns=("block", "test acc (%)", "drop (points)", "per seed (%)"),
              rows=tuple((r["layer"], r2(r["acc"]), r2(plain["baseline_acc"] - r["acc"]), _pcts(r["acc_seeds"]))
                         if "acc" in r else (r["layer"], None, f"not deleted: {r['reason']}", "") for r in plain_rows)),
        Table(title=f"Deleting k random blocks of {cfg.residual}",
              columns=("k", "mean test acc (%)", "std over seeds (points)", "draws per seed"),
              rows=tuple((r["k"], r2(r["mean_acc"]), r2(r["std_acc"]), r["draws"]) for r in res["delete_k"])),
        Table(title="Paths of each length and the gradient they carry to the first block (mean over seeds)",
              columns=("path length k", "paths C(n,k)", "mean gradient norm", "std over seeds", "paths x gradient"),
              rows=tuple((r["k"], r["paths"], r["mean_grad_norm"], r["std_grad_norm"], r["paths"] * r["mean_grad_norm"])
                         for r in res["path_lengths"])),
        Table(title="Re-ordering blocks (Veit et al. Fig. 5b), every seed",
              columns=("seed", "swaps", "Kendall's tau", "test acc (%)"),
              rows=tuple((r["seed"], r["swaps"], round(r["tau"], 3), r2(r["acc"])) for r in results["reorder"])),
        Table(title="Size of each residual branch on test images (mean over seeds)",
              columns=("block", "downsampling", "||F(x)|| / ||shortcut(x)||", "per seed", "||F(x)|| / ||x||"),
              rows=tuple((r["block"], r["downsampling"], round(r["residual_over_shortcut"], 3),
                          ", ".join(f"{v:.2f}" for v in r["residual_over_shortcut_seeds"]),
                          round(r["residual_over_input"], 3)) for r in results["residual_norms"])),
        _per_seed_table(results["per_seed"]),
    ]  # fmt: skip


def _per_seed_table(per_seed: list[dict[str, Any]]) -> Table:
    columns = {"intact (%)": "baseline_acc", "drop, one block (points)": "mean_drop_non_downsampling",
               "drop, downsampling block (points)": "mean_drop_downsampling",
               "plain net after a deletion (%)": "plain_mean_acc_after_delete",
               "largest step / decline": "largest_step_fraction",
               "gradient-weighted length": "gradient_weighted_mean_length",
               "r(tau, acc)": "reorder_tau_acc_r", "one swap: share of the way to chance": "one_swap_loss_fraction",
               "median ||F|| / ||shortcut||": "median_residual_ratio"}  # fmt: skip
    percent = {"baseline_acc", "mean_drop_non_downsampling", "mean_drop_downsampling", "plain_mean_acc_after_delete"}
    return Table(title="Per seed: the numbers the criteria compare", columns=("seed", *columns),
                 rows=tuple((s["seed"], *(round(100 * s[k], 2) if k in percent else round(s[k], 3)
                                          for k in columns.values())) for s in per_seed))  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: LesionConfig, data: Any, options: dict[str, Any], n: int, gb: int) -> list[str]:
    return [
        f"Data: `{data.name}`, {len(data.train.y):,} training and {len(data.test.y):,} test images of "
        f"{'x'.join(map(str, data.input_size))}" + (" (resized)" if cfg.input_size else "")
        + "; every accuracy is on the whole test split.",
        f"Networks: `{cfg.residual}` ({n} residual blocks) and `{cfg.plain}` (the same blocks without shortcuts), "
        f"both trained with {cfg.train.describe()}, once per seed {seed_list(ctx, cfg.seeds)} (each seed its own "
        "initialisation and data order; the engine keeps the epoch chosen on the validation split)"
        + (f", options {options}" if options else "") + ". Nothing is retrained after a deletion.",
        "Every measurement below is repeated on each seed's pair of networks, with that seed's random draws; "
        "each criterion compares the per-seed values with the claim's bound (or two per-seed values) and is met "
        "only beyond 2 standard errors over seeds (`compare_seeds`), otherwise it is within noise.",
        "Deleting a residual block replaces it by `relu(shortcut(x))`: what the block computes when its residual "
        "branch F(x) outputs zero (identity, or option A's subsample-and-zero-pad shortcut at downsampling blocks).",
        "Deleting a plain block replaces it by the identity; blocks that change the shape (the first block of "
        "stages 2 and 3: stride 2 and twice the channels) have no identity to fall back on and are not deleted.",
        f"k random blocks: {cfg.delete_k_draws} random sets of k blocks per k and seed (fewer where fewer exist), "
        "downsampling blocks included.",
        f"Gradient per path length (Veit et al. §5): for each k, {cfg.grad_draws} random choices of k blocks that "
        "back-propagate only through their residual branch while the others back-propagate only through their "
        "shortcut (the forward pass is unchanged); the L2 norm of the gradient of the mean cross-entropy of "
        f"{gb} test images at the input of the first block is recorded (fp32, eval mode).",
        f"Re-ordering (Veit et al. Fig. 5b): 1..{cfg.reorder_swaps} swaps of random pairs of non-downsampling "
        f"blocks of the same stage, {cfg.reorder_draws} draws each per seed; Kendall's tau between the new order and "
        f"the original one. Norms: mean over {gb} test images of the L2 norms of the residual branch's and the "
        "shortcut's outputs, on the input each block receives.",
    ]


def _notes(cfg: LesionConfig, data: Any, n: int) -> list[str]:
    return [
        "Veit et al. lesion a ResNet-110 (54 blocks) and VGG-15 on CIFAR-10; the quick scale uses "
        f"{cfg.residual} and {cfg.plain} on {data.name}. A plain block holds two conv layers, so the plain "
        "net's lesion removes two layers at once, the same unit as a residual block.",
        "The path-length distribution counts downsampling blocks like the others; their shortcut "
        "(subsample and zero-pad) is a path of length 0 through that block.",
        f"With {n} blocks, deleting one removes 1/{n} of the network's blocks and half of its 2^{n} = "
        f"{2 ** n:,} paths; in Veit et al.'s ResNet-110 (54 blocks) one block is 1/54 of the network, so a "
        "larger drop per deleted block is expected here.",
        "Batch-norm layers after a deleted block keep the running statistics they learnt with it: "
        "nothing is re-estimated or retrained after a lesion.",
    ]
