"""Lesion study: Veit, Wilber & Belongie, "Residual networks behave like ensembles of relatively
shallow networks", NIPS 2016, Figs. 3, 5a and 6 (lecture 004).

A residual net and a plain net (the same blocks without shortcuts) are trained once; then, at test
time only: each block is deleted in turn, k random residual blocks are deleted for k = 1..n, and
the gradient reaching the first block through paths of each length is measured.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.errors import ConfigError
from cnnlab.experiments.framework import DIGITS_OVERRIDES, Criterion, ExperimentContext, Outcome
from cnnlab.experiments.framework import Table, TrainSpec, register_experiment
from cnnlab.experiments.surgery import delete_blocks, gradient_by_path_length, path_length_distribution
from cnnlab.experiments.surgery import plain_blocks, residual_blocks
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
    delete_k_draws: int = 10  # random sets of k blocks deleted, per k
    grad_draws: int = 5  # sampled paths per path length for the gradient measurement
    grad_batch: int = 64  # test images in the batch whose loss is back-propagated
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()
    # Thresholds of the criteria (stated in the report before the numbers).
    max_mean_drop_one: float = 0.05  # "barely hurts": mean accuracy drop over non-downsampling blocks
    near_chance_margin: float = 0.10  # "drops to chance": within this of chance accuracy
    max_step_fraction: float = 0.5  # "smooth": no single extra deletion makes half the total decline
    # issue 20: Veit et al. Fig. 5b (re-ordering) and the size of the residual branches
    reorder_swaps: int = 4  # re-orderings by 1..reorder_swaps random swaps of compatible blocks
    reorder_draws: int = 5  # random re-orderings per number of swaps
    max_residual_ratio: float = 1.0  # "small corrections": median ||F(x)|| / ||shortcut(x)|| below this

    def __post_init__(self) -> None:
        for field in ("delete_k_draws", "grad_draws", "grad_batch"):
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
        delete_k_draws=1,
        grad_draws=1,
        grad_batch=8,
        reorder_swaps=2,
        reorder_draws=1,
    ),
    # ResNet-20 and plain-20: 9 blocks each (3 stages of 3), two of them downsampling.
    "quick": LesionConfig(
        data="mnist-5k",
        residual="resnet20",
        plain="plain20",
        train=TrainSpec(recipe="resnet_cifar", epochs=8, batch_size=128, overrides=DIGITS_OVERRIDES),
        delete_k_draws=10,
        grad_draws=5,
    ),
    # Veit et al. lesion a ResNet-110 (54 blocks) on CIFAR-10; ResNet-56 (27 blocks) as in the issue.
    "full": LesionConfig(
        data="cifar10",
        residual="resnet56",
        plain="plain20",
        train=TrainSpec(recipe="resnet_cifar"),  # He et al. §4.2 as it is
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
    paper="Veit, Wilber & Belongie, NIPS 2016 (Figs. 3, 5a, 6)",
    scales=SCALES,
    plot=plot_lesion,
)
def run(ctx: ExperimentContext, cfg: LesionConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    chance = 1.0 / data.num_classes
    test = data.test

    # --- train both networks once; every lesion below works on copies ------------------------
    fits = {}
    for role, name in (("residual", cfg.residual), ("plain", cfg.plain)):
        fits[role] = ctx.train(
            name, lambda name=name: ctx.create_model(name, data, **options), data, cfg.train,
            key={"model": name, **options},
        )  # fmt: skip
    res_model, plain_model = ctx.to_device(fits["residual"].model), ctx.to_device(fits["plain"].model)
    res_blocks = residual_blocks(res_model)
    if not res_blocks:
        raise ConfigError(f"lesion: {cfg.residual} has no residual blocks")
    if residual_blocks(plain_model) or not plain_blocks(plain_model):
        raise ConfigError(f"lesion: {cfg.plain} is not a plain net built from blocks without shortcuts")
    n = len(res_blocks)

    # --- Fig. 3: delete one block at a time ------------------------------------------------------
    res_base = _acc(ctx, res_model, test)
    ctx.log(f"{cfg.residual}: baseline acc {res_base:.4f}; deleting each of its {n} blocks")
    delete_one = [
        dict(block=name, acc=_acc(ctx, delete_blocks(res_model, [name]), test), downsampling=bool(b.downsampling))
        for name, b in res_blocks
    ]
    plain_base = _acc(ctx, plain_model, test)
    plain_delete, plain_skipped = [], []
    for position, (name, b) in enumerate(plain_blocks(plain_model), start=1):
        if b.downsampling:
            plain_skipped.append(dict(layer=name, position=position, reason="changes the shape (stride 2, more channels)"))
            continue
        plain_delete.append(dict(layer=name, position=position, acc=_acc(ctx, delete_blocks(plain_model, [name]), test)))

    # --- Fig. 5a: delete k random blocks ------------------------------------------------------------
    gen = ctx.generator(1)
    names = [name for name, _ in res_blocks]
    delete_k = []
    for k in range(1, n + 1):
        draws = 1 if k == n else min(cfg.delete_k_draws, math.comb(n, k))
        accs = []
        for _ in range(draws):
            chosen = [names[i] for i in sorted(torch.randperm(n, generator=gen)[:k].tolist())]
            accs.append(_acc(ctx, delete_blocks(res_model, chosen), test))
        delete_k.append(dict(k=k, mean_acc=statistics.fmean(accs),
                             std_acc=statistics.pstdev(accs) if len(accs) > 1 else 0.0, draws=len(accs)))  # fmt: skip
        ctx.log(f"deleted {k} random blocks: mean acc {delete_k[-1]['mean_acc']:.4f} over {len(accs)} draws")

    # --- Fig. 6: path lengths and the gradient they carry -------------------------------------
    counts = path_length_distribution(n)
    gb = min(cfg.grad_batch, len(test.y))
    grads = gradient_by_path_length(res_model, test.x[:gb], test.y[:gb], draws=cfg.grad_draws, generator=ctx.generator(2))
    path_lengths = [dict(k=k, paths=counts[k], **{key: g[key] for key in ("mean_grad_norm", "std_grad_norm", "draws")})
                    for k, g in zip(range(n + 1), grads)]  # fmt: skip

    # --- Fig. 5b: re-ordering; the size of the residual branches (issue 20) --------------------------
    extra = _reorder_and_norms(ctx, cfg, res_model, test, res_base, chance)

    # --- criteria -------------------------------------------------------------------------------
    same_shape = [r for r in delete_one if not r["downsampling"]]
    down = [r for r in delete_one if r["downsampling"]]
    mean_drop = statistics.fmean(res_base - r["acc"] for r in same_shape) if same_shape else float("nan")
    mean_drop_down = statistics.fmean(res_base - r["acc"] for r in down) if down else float("nan")
    plain_mean = statistics.fmean(r["acc"] for r in plain_delete) if plain_delete else float("nan")
    curve = [res_base] + [r["mean_acc"] for r in delete_k]
    steps = [a - b for a, b in zip(curve, curve[1:])]  # positive = accuracy lost by one more deletion
    total = curve[0] - curve[-1]
    largest = max(steps)
    # Veit et al. Fig. 6c: paths of length k carry C(n, k) x g(k) of the gradient in all; the claim
    # is that this mass sits at lengths shorter than those of the typical path (n / 2).
    mass = [r["paths"] * r["mean_grad_norm"] for r in path_lengths]
    grad_mean_length = sum(r["k"] * w for r, w in zip(path_lengths, mass)) / sum(mass)
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    pp = lambda v: f"{100 * v:.1f} points"  # noqa: E731
    criteria = [
        Criterion(
            description=f"deleting one non-downsampling residual block costs on average at most "
            f"{pp(cfg.max_mean_drop_one)} of test accuracy",
            finding=f"deleting one of the {len(same_shape)} non-downsampling blocks of {cfg.residual} cost "
            f"{pp(mean_drop)} on average (from {pct(res_base)})",
            passed=bool(same_shape) and mean_drop <= cfg.max_mean_drop_one,
        ),
        Criterion(
            description="deleting a downsampling residual block costs more than deleting another block",
            finding=f"downsampling blocks cost {pp(mean_drop_down)} on average against {pp(mean_drop)}",
            passed=bool(down) and bool(same_shape) and mean_drop_down > mean_drop,
        ),
        Criterion(
            description=f"deleting one block of the plain net brings it within {pp(cfg.near_chance_margin)} "
            f"of chance ({pct(chance)}) on average",
            finding=f"the plain net fell from {pct(plain_base)} to {pct(plain_mean)} on average over its "
            f"{len(plain_delete)} deletable blocks",
            passed=bool(plain_delete) and plain_mean <= chance + cfg.near_chance_margin,
        ),
        Criterion(
            description=f"accuracy declines smoothly with the number k of deleted blocks: no single extra "
            f"deletion causes more than {cfg.max_step_fraction:.0%} of the total decline from k=0 to k={n}",
            finding=f"the largest single step lost {pp(largest)} of a total decline of {pp(total)}",
            passed=total > 0 and largest <= cfg.max_step_fraction * total,
        ),
        Criterion(
            description=f"the gradient comes mostly from short paths: weighting each path length k by the "
            f"gradient all its paths carry (C(n,k) x mean gradient norm), the mean length is below the "
            f"mean path length n/2 = {n / 2:g}",
            finding=f"the gradient-weighted mean path length is {grad_mean_length:.2f} blocks "
            f"(the gradient per path went from {path_lengths[0]['mean_grad_norm']:.3g} at k=0 to "
            f"{path_lengths[-1]['mean_grad_norm']:.3g} at k={n})",
            passed=grad_mean_length < n / 2,
        ),
        *extra["criteria"],
    ]

    tables = [
        Table(
            title=f"Deleting one block of {cfg.residual} (baseline {100 * res_base:.2f}%)",
            columns=("block", "downsampling", "test acc (%)", "drop (points)"),
            rows=tuple((r["block"], r["downsampling"], round(100 * r["acc"], 2), round(100 * (res_base - r["acc"]), 2))
                       for r in delete_one),
        ),
        Table(
            title=f"Deleting one block of {cfg.plain} (baseline {100 * plain_base:.2f}%)",
            columns=("block", "test acc (%)", "drop (points)"),
            rows=tuple(
                (r["layer"], round(100 * r["acc"], 2), round(100 * (plain_base - r["acc"]), 2)) if "acc" in r
                else (r["layer"], None, f"not deleted: {r['reason']}")
                for r in sorted(plain_delete + plain_skipped, key=lambda r: r["position"])
            ),
        ),
        Table(
            title=f"Deleting k random blocks of {cfg.residual}",
            columns=("k", "mean test acc (%)", "std (points)", "draws"),
            rows=tuple((r["k"], round(100 * r["mean_acc"], 2), round(100 * r["std_acc"], 2), r["draws"]) for r in delete_k),
        ),
        Table(
            title="Paths of each length and the gradient they carry to the first block",
            columns=("path length k", "paths C(n,k)", "mean gradient norm", "std", "paths x gradient"),
            rows=tuple((r["k"], r["paths"], r["mean_grad_norm"], r["std_grad_norm"], r["paths"] * r["mean_grad_norm"])
                       for r in path_lengths),
        ),
        *extra["tables"],
    ]  # fmt: skip
    setup = [
        f"Data: `{data.name}`, {len(data.train.y):,} training and {len(test.y):,} test images of "
        f"{'x'.join(map(str, data.input_size))}; every accuracy is on the whole test split.",
        f"Networks: `{cfg.residual}` ({n} residual blocks) and `{cfg.plain}` (the same blocks without "
        f"shortcuts), both trained once with {cfg.train.describe()}, seed {ctx.seed}"
        + (f", options {options}" if options else "") + ". Nothing is retrained after a deletion.",
        "Deleting a residual block replaces it by `relu(shortcut(x))`: what the block computes when its "
        "residual branch F(x) outputs zero (identity, or option A's subsample-and-zero-pad shortcut at "
        "downsampling blocks).",
        "Deleting a plain block replaces it by the identity; blocks that change the shape (the first block "
        "of stages 2 and 3: stride 2 and twice the channels) have no identity to fall back on and are not "
        "deleted.",
        f"k random blocks: {cfg.delete_k_draws} random sets of k blocks per k (fewer where fewer exist), "
        "downsampling blocks included.",
        f"Gradient per path length (Veit et al. §5): for each k, {cfg.grad_draws} random choices of k blocks "
        "that back-propagate only through their residual branch while the others back-propagate only "
        "through their shortcut (the forward pass is unchanged); the L2 norm of the gradient of the mean "
        f"cross-entropy of {gb} test images at the input of the first block is recorded (fp32, eval mode).",
    ]
    notes = [
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
    results = {
        "chance_acc": chance,
        "residual": dict(
            model=cfg.residual, label=cfg.residual, baseline_acc=res_base, num_blocks=n, delete_one=delete_one,
            delete_k=delete_k, path_lengths=path_lengths, gradient_weighted_mean_length=grad_mean_length,
            mean_drop_non_downsampling=mean_drop, mean_drop_downsampling=mean_drop_down,
        ),
        "plain": dict(
            model=cfg.plain, label=cfg.plain, baseline_acc=plain_base, delete_one=plain_delete,
            skipped=plain_skipped, mean_acc_after_delete=plain_mean,
        ),
        "reorder": extra["reorder"],
        "residual_norms": extra["norms"],
    }  # fmt: skip
    setup += extra["setup"]
    return Outcome(results=results, criteria=criteria, tables=tables, setup=setup, notes=notes)


def _reorder_and_norms(ctx: ExperimentContext, cfg: LesionConfig, model: torch.nn.Module, test: Any,
                       base: float, chance: float) -> dict[str, Any]:
    """Veit et al. Fig. 5b and the residual-branch norms (cnnlab.experiments.lesion_extra)."""
    from cnnlab.experiments.lesion_extra import correlation, reorder_study, residual_norms

    reorder = reorder_study(model, lambda m: _acc(ctx, m, test), max_swaps=cfg.reorder_swaps,
                            draws=cfg.reorder_draws, generator=ctx.generator(3))  # fmt: skip
    norms = residual_norms(model, test.x[: min(cfg.grad_batch, len(test.y))].to(ctx.compute_device))
    same = sorted(r["residual_over_shortcut"] for r in norms if not r["downsampling"])
    median = same[len(same) // 2] if same else float("nan")
    r_tau = correlation([r["tau"] for r in reorder], [r["acc"] for r in reorder]) if len(reorder) > 1 else 0.0
    one_swap = [r["acc"] for r in reorder if r["swaps"] == 1]
    one = statistics.fmean(one_swap) if one_swap else float("nan")
    criteria = [
        Criterion(
            description="re-ordering blocks (swapping compatible pairs) degrades accuracy smoothly: accuracy "
            "correlates positively with Kendall's tau to the original order, and one swap loses less than half "
            "of the way to chance",
            finding=f"over {len(reorder)} re-orderings (tau {min((r['tau'] for r in reorder), default=1):.2f}-"
            f"{max((r['tau'] for r in reorder), default=1):.2f}) Pearson r(tau, accuracy) = {r_tau:.2f}; one swap "
            f"{100 * one:.1f}% against {100 * base:.1f}% intact",
            passed=bool(reorder) and r_tau > 0 and base - one < (base - chance) / 2,
        ),
        Criterion(
            description=f"residual branches learn small corrections: the median over non-downsampling blocks of "
            f"||F(x)|| / ||shortcut(x)|| is below {cfg.max_residual_ratio:g}",
            finding=f"median {median:.2f} (per block " + ", ".join(f"{r['residual_over_shortcut']:.2f}"
                                                              for r in norms) + ")",
            passed=bool(same) and median < cfg.max_residual_ratio,
        ),
    ]
    tables = [
        Table(title="Re-ordering blocks (Veit et al. Fig. 5b)", columns=("swaps", "Kendall's tau", "test acc (%)"),
              rows=tuple((r["swaps"], round(r["tau"], 3), round(100 * r["acc"], 2)) for r in reorder)),
        Table(title="Size of each residual branch on test images",
              columns=("block", "downsampling", "||F(x)|| / ||shortcut(x)||", "||F(x)|| / ||x||"),
              rows=tuple((r["block"], r["downsampling"], round(r["residual_over_shortcut"], 3),
                          round(r["residual_over_input"], 3)) for r in norms)),
    ]  # fmt: skip
    setup = [
        f"Re-ordering (Veit et al. Fig. 5b): 1..{cfg.reorder_swaps} swaps of random pairs of non-downsampling "
        f"blocks of the same stage, {cfg.reorder_draws} draws each; Kendall's tau between the new order and the "
        "original one. Norms: mean over test images of the L2 norms of the residual branch's and the shortcut's "
        "outputs, on the input each block receives.",
    ]
    return dict(criteria=criteria, tables=tables, setup=setup, reorder=reorder, norms=norms)
