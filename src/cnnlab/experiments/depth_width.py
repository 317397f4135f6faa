"""Depth against width at an equal number of parameters (lecture 002: "efforts to investigate
necessity of depth vs. width"; Zagoruyko & Komodakis, BMVC 2016, compare deep-thin and shallow-wide
ResNets of similar size; Eigen et al. 2014 and Simonyan & Zisserman 2015 favour depth).

Two CIFAR ResNets from the zoo (``resnet20`` with its ``layers`` and ``widths`` set): a deep one
(3 blocks per stage, 20 weight layers, 16/32/64 channels) and a shallow one (1 block per stage, 8
weight layers) whose widths are chosen so that both have the same parameter count within 5%
(counted by :func:`cnnlab.analysis.analyze`); each plain (``shortcut="none"``) and residual (option A,
no parameters), trained with the same recipe over the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.experiments.arms import arm_row, plot_arms, train_zoo_arm
from cnnlab.experiments.context import ExperimentContext, seed_list
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import DIGITS_OVERRIDES
from cnnlab.experiments.registry import TINY_NOTE, register_experiment
from cnnlab.experiments.statistics import compare_seeds, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.report import Plot

__all__ = ["DepthWidthConfig", "SCALES", "run", "match_width"]

CLAIM = (
    "At an equal number of parameters, a deeper, thinner network is more accurate than a shallower, "
    "wider one: depth buys more than width (lecture 002's question of depth against width)."
)
MODEL = "resnet20"  # the zoo's CIFAR ResNet family; its `layers` and `widths` set each net
TOLERANCE = 0.05  # the two nets' parameter counts must agree within this fraction


@dataclass(frozen=True)
class DepthWidthConfig:
    data: str
    train: TrainSpec
    deep_blocks: int = 3  # basic blocks per stage of the deep net (6n + 2 weight layers)
    shallow_blocks: int = 1
    deep_widths: tuple[int, int, int] = (16, 32, 64)
    seeds: int = 3
    input_size: tuple[int, int, int] | None = None
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("depth-width", self.seeds)
        if not 1 <= self.shallow_blocks < self.deep_blocks:
            raise ConfigError(f"depth-width: need 1 <= shallow_blocks < deep_blocks, got {self.shallow_blocks} and "
                              f"{self.deep_blocks}")


SCALES = {
    "tiny": DepthWidthConfig(data="synthetic", data_options=(("shape", (1, 16, 16)), ("n", 64)), seeds=2,
                             deep_blocks=2, deep_widths=(4, 8, 16),
                             train=TrainSpec(recipe="resnet_cifar", epochs=1, batch_size=32)),
    # mnist-5k at 16x16 as `degradation` and `shortcuts` (a third of the cost of 28x28); He et al.'s
    # lr 0.1 at batch 128 as 0.05 at batch 64, cosine decay, 2-px pad-and-crop, no flips; 6 epochs.
    "quick": DepthWidthConfig(data="mnist-5k", input_size=(1, 16, 16), seeds=3,
                              train=TrainSpec(recipe="resnet_cifar", epochs=6, batch_size=64, lr=0.05,
                                              overrides=(*DIGITS_OVERRIDES, ("crop_padding", 2)))),
    # CIFAR-10 with the paper's recipe: ResNet-56 against a 2-block-per-stage net of its size.
    "full": DepthWidthConfig(data="cifar10", seeds=3, deep_blocks=9, shallow_blocks=2,
                             train=TrainSpec(recipe="resnet_cifar")),
}  # fmt: skip


def match_width(ctx: ExperimentContext, data: Any, *, blocks: int, params: int, shortcut: str) -> tuple[int, int, int]:
    """Widths ``(b, 2b, 4b)`` of the ``blocks``-per-stage net whose parameter count (analyzer) is the
    closest to ``params``; a ConfigError if even that one is more than 5% off."""
    def count(b: int) -> int:
        model = ctx.create_model(MODEL, data, layers=(blocks,) * 3, widths=(b, 2 * b, 4 * b), shortcut=shortcut)
        return ctx.analyze(model, data.input_size)["params"]

    lo, hi = 1, 2
    while count(hi) < params:  # the count grows with b: bracket, then bisect
        lo, hi = hi, hi * 2
        if hi > 4096:
            raise ConfigError(f"depth-width: no width up to 4096 gives {params:,} parameters")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < params else (lo, mid)
    best = min((lo, hi), key=lambda b: abs(count(b) - params))
    if abs(count(best) - params) > TOLERANCE * params:
        raise ConfigError(f"depth-width: the closest width ({best}) gives {count(best):,} parameters, more than "
                          f"{TOLERANCE:.0%} from {params:,}")
    return best, 2 * best, 4 * best


def plot_depth_width(results: dict, out_dir: Path) -> list[Plot]:
    groups = {family: {f"{r['label']} ({r['params']:,} p.)": r["test_acc"] for r in results["nets"].values()
                       if r["family"] == family} for family in ("plain", "residual")}  # fmt: skip
    return [plot_arms(groups, out_dir, "depth_width.png",
                      caption="Test accuracy of the deep-thin and shallow-wide nets of equal size, one dot per seed.")]


@register_experiment(
    name="depth-width",
    title="Depth against width at equal parameters",
    claim=CLAIM,
    lectures=("002_a740cb8c04a80802.txt",),
    paper="Zagoruyko & Komodakis, BMVC 2016; Simonyan & Zisserman, ICLR 2015",
    scales=SCALES,
    plot=plot_depth_width,
)
def run(ctx: ExperimentContext, cfg: DepthWidthConfig) -> Outcome:
    data, _ = ctx.open_config(cfg)
    nets: dict[str, dict[str, Any]] = {}
    for family, shortcut in (("plain", "none"), ("residual", "A")):
        deep = dict(layers=(cfg.deep_blocks,) * 3, widths=tuple(cfg.deep_widths), shortcut=shortcut)
        target = ctx.analyze(ctx.create_model(MODEL, data, **deep), data.input_size)["params"]
        wide = dict(layers=(cfg.shallow_blocks,) * 3, shortcut=shortcut,
                    widths=match_width(ctx, data, blocks=cfg.shallow_blocks, params=target, shortcut=shortcut))
        for shape, options in (("deep", deep), ("wide", wide)):
            size = ctx.analyze(ctx.create_model(MODEL, data, **options), data.input_size)
            label = f"{family} {size['depth']} layers, widths {'/'.join(map(str, options['widths']))}"
            fits = train_zoo_arm(ctx, label, MODEL, data, cfg.train, seeds=cfg.seeds, options=options)
            nets[f"{family}-{shape}"] = arm_row([f.test_acc for f in fits], train_acc=[float(f.train_acc) for f in fits],
                                                family=family, shape=shape, label=f"{size['depth']} layers",
                                                widths=list(options["widths"]), **size)  # fmt: skip
    comps = {f: compare_seeds(nets[f"{f}-deep"]["test_acc"], nets[f"{f}-wide"]["test_acc"]) for f in ("plain", "residual")}
    results = {"model": MODEL, "seeds": seed_list(ctx, cfg.seeds), "nets": nets,
               **{f"{f}_deep_vs_wide": vars(c) for f, c in comps.items()}}
    return Outcome(results=results, criteria=_criteria(nets, comps), tables=[_table(nets)],
                   setup=_setup(ctx, cfg, data), notes=_notes(ctx, nets))


def _criteria(nets: dict, comps: dict) -> list[Criterion]:
    pct = lambda k: f"{100 * nets[k]['mean_acc']:.2f}%"  # noqa: E731
    off = max(abs(nets[f"{f}-wide"]["params"] / nets[f"{f}-deep"]["params"] - 1) for f in ("plain", "residual"))
    return [
        Criterion(description=f"the deep and the wide net have the same parameter count within {TOLERANCE:.0%} "
                  "(analyzer)", finding=", ".join(f"{k} {v['params']:,}" for k, v in nets.items())
                  + f" (at most {100 * off:.1f}% apart)", passed=off <= TOLERANCE),
        *(seed_criterion(f"{f}: the deeper, thinner net is more accurate than the shallower, wider one",
                         f"{nets[f'{f}-deep']['label']} {pct(f'{f}-deep')} against {nets[f'{f}-wide']['label']} "
                         f"{pct(f'{f}-wide')}", comps[f]) for f in ("plain", "residual")),
    ]  # fmt: skip


def _table(nets: dict) -> Table:
    return Table(
        title="Deep-thin against shallow-wide at equal parameters: test accuracy over seeds",
        columns=("net", "weight layers", "widths", "params", "MACs / image", "test acc mean (%)", "std",
                 "per seed (%)", "last-epoch train acc (%)"),
        rows=tuple((k, v["depth"], "/".join(map(str, v["widths"])), v["params"], v["macs"], round(100 * v["mean_acc"], 2),
                    round(100 * v["std_acc"], 2), ", ".join(f"{100 * a:.2f}" for a in v["test_acc"]),
                    round(100 * sum(v["train_acc"]) / len(v["train_acc"]), 2)) for k, v in nets.items()),
    )  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: DepthWidthConfig, data: Any) -> list[str]:
    return [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))}, {len(data.train.y):,} training and "
        f"{len(data.test.y):,} test images.",
        f"Networks: the zoo's `{MODEL}` family with `layers=({cfg.deep_blocks},)*3`, widths "
        f"{'/'.join(map(str, cfg.deep_widths))} (deep) and `layers=({cfg.shallow_blocks},)*3` with the widths (b, 2b, "
        f"4b) whose parameter count is closest to the deep net's (wide); `shortcut='none'` (plain) or 'A' "
        "(residual, parameter-free).",
        f"Training: {cfg.train.describe()}, the same for all four; seeds {seed_list(ctx, cfg.seeds)}, paired; the "
        "val-selected epoch's weights evaluated once on the test split.",
        "Verdicts: mean paired difference over seeds beyond 2 standard errors (`compare_seeds`).",
    ]


def _notes(ctx: ExperimentContext, nets: dict) -> list[str]:
    notes = [f"Equal parameters are not equal computation: the wide net costs {nets['residual-wide']['macs']:,} MACs "
             f"per image against the deep net's {nets['residual-deep']['macs']:,}.",
             "Zagoruyko & Komodakis found wide, shallower ResNets as accurate as thin, deep ones of similar size "
             "(and faster); the lecture leaves the question open, so either outcome is informative."]
    if ctx.scale == "tiny":
        notes.append(TINY_NOTE)
    return notes
