"""Shortcut options A, B and C (He et al. 2016 §3.3 and Table 3; lecture 003's table).

A: identity shortcuts, zero-padding where the dimensions grow (no parameters); B: identity, with
1x1 projections where the dimensions grow; C: projections on every block. On ImageNet ResNet-34
scored 25.03 / 24.52 / 24.19% top-1 error: B slightly better than A, C marginally better than B,
"small differences ... projection shortcuts are not essential". Here the same three options of the
zoo's ResNet (``shortcut="A"|"B"|"C"``) on a CIFAR-sized net, over several seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.experiments.arms import arm_row, plot_arms, train_zoo_arm
from cnnlab.experiments.context import ExperimentContext
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import DIGITS_OVERRIDES, FASHION_OVERRIDES, with_overrides
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import compare_seeds, require_seeds, seed_criterion
from cnnlab.results import RESNET34_SHORTCUTS, RESNET34_SHORTCUTS_SOURCE
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.report import Plot

__all__ = ["ShortcutsConfig", "SCALES", "run"]

CLAIM = (
    "Projection shortcuts are not essential: option B (projections only where dimensions increase) is "
    "slightly better than A (zero-padding, parameter-free), and C (projections everywhere) marginally "
    "better than B (He et al. Table 3: 25.03 / 24.52 / 24.19% top-1 error for ResNet-34 A / B / C)."
)
OPTIONS = ("A", "B", "C")


@dataclass(frozen=True)
class ShortcutsConfig:
    data: str
    train: TrainSpec
    model: str = "resnet20"
    input_size: tuple[int, int, int] | None = None  # None: the data set's own
    seeds: int = 3
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("shortcuts", self.seeds)


SCALES = {
    "tiny": ShortcutsConfig(
        data="synthetic", data_options=(("shape", (1, 16, 16)), ("n", 64)), seeds=2,
        model_options=(("widths", (4, 8, 16)),),
        train=TrainSpec(recipe="resnet_cifar", epochs=1, batch_size=32),
    ),
    # ResNet-20 on mnist-5k at 16x16 (as `degradation`: a third of the cost of 28x28), He et al.'s
    # lr 0.1 at batch 128 as 0.05 at batch 64, cosine decay, 2-px pad-and-crop, no flips.
    "quick": ShortcutsConfig(
        data="mnist-5k", input_size=(1, 16, 16), seeds=3,
        train=TrainSpec(recipe="resnet_cifar", epochs=6, batch_size=64, lr=0.05,
                        overrides=(*DIGITS_OVERRIDES, ("crop_padding", 2))),
    ),
    # Set before any standard run. Fashion-MNIST, all 54,000 training images at 16x16 as at quick (at
    # 28x28 a ResNet-20 costs 2.5 times as much: 2.0 against 0.8 ms per image), 3 epochs at batch 64
    # and lr 0.05: 2,532 updates per net (quick: 342); He et al.'s flips (a mirrored garment is the
    # same garment) and 2-px crops, cosine decay. On 10,000 test images one image is 0.01 point.
    # Cost: 9 networks (3 options x 3 seeds) x 3 epochs x (54,000 + 16,000 / 3 for the validation and
    # test passes) = 1.6M image passes at 0.82-1.04 ms (A and B, C on one thread; quick: 172 s wall
    # for 0.22M) = 22-26 minutes at one thread.
    "standard": ShortcutsConfig(
        data="fashion-mnist", input_size=(1, 16, 16), seeds=3,
        train=TrainSpec(recipe="resnet_cifar", epochs=3, batch_size=64, lr=0.05,
                        overrides=with_overrides(FASHION_OVERRIDES, crop_padding=2)),
    ),
    # CIFAR-10 and the paper's CIFAR recipe; ResNet-110 has more blocks for the options to differ on.
    "full": ShortcutsConfig(data="cifar10", model="resnet110", seeds=3, train=TrainSpec(recipe="resnet_cifar")),
}  # fmt: skip


def plot_shortcuts(results: dict, out_dir: Path) -> list[Plot]:
    arms = {f"{o} ({results['options'][o]['params']:,} p.)": results["options"][o]["test_acc"] for o in OPTIONS}
    return [plot_arms({f"{results['model']} with shortcut options A / B / C": arms}, out_dir, "shortcuts.png",
                      caption="Test accuracy of each shortcut option over seeds (same seeds for the three).")]


@register_experiment(
    name="shortcuts",
    title="ResNet shortcut options A, B and C",
    claim=CLAIM,
    lectures=("003_7e0d723498294d64.txt",),
    paper="He, Zhang, Ren & Sun, CVPR 2016 (§3.3, Table 3)",
    scales=SCALES,
    plot=plot_shortcuts,
)
def run(ctx: ExperimentContext, cfg: ShortcutsConfig) -> Outcome:
    data = ctx.load_data(cfg.data, input_size=cfg.input_size, **dict(cfg.data_options))
    options = dict(cfg.model_options)
    rows: dict[str, dict[str, Any]] = {}
    for opt in OPTIONS:
        build = lambda opt=opt: ctx.create_model(cfg.model, data, shortcut=opt, **options)  # noqa: E731
        size = ctx.analyze(build(), data.input_size)
        fits = train_zoo_arm(ctx, f"{cfg.model} option {opt}", cfg.model, data, cfg.train, seeds=cfg.seeds,
                             options={"shortcut": opt, **options})  # fmt: skip
        rows[opt] = arm_row([f.test_acc for f in fits], train_acc=[float(f.train_acc) for f in fits], **size)
    plain = ctx.analyze(ctx.create_model(cfg.model, data, shortcut="none", **options), data.input_size)
    a, b, c = (rows[o] for o in OPTIONS)
    b_vs_a = compare_seeds(b["test_acc"], a["test_acc"])
    c_vs_b = compare_seeds(c["test_acc"], b["test_acc"])
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    criteria = [
        Criterion(
            description="option A adds no parameters (as many as the plain net); B adds projections where the "
            "dimensions grow; C adds them on every block: params A = plain < B < C (analyzer)",
            finding=f"params plain {plain['params']:,}, A {a['params']:,}, B {b['params']:,}, C {c['params']:,}",
            passed=plain["params"] == a["params"] < b["params"] < c["params"],
        ),
        seed_criterion("option B is more accurate than option A",
                       f"B {pct(b['mean_acc'])} vs A {pct(a['mean_acc'])}", b_vs_a),
        seed_criterion("option C is more accurate than option B",
                       f"C {pct(c['mean_acc'])} vs B {pct(b['mean_acc'])}", c_vs_b),
    ]
    table = Table(
        title="Shortcut options: measured here and published (He et al. Table 3, ResNet-34 on ImageNet)",
        columns=("option", "params", "MACs", "test acc mean (%)", "std", "per seed (%)",
                 "ResNet-34 top-1 err. (%)", "top-5 err. (%)"),
        rows=tuple((o, rows[o]["params"], rows[o]["macs"], round(100 * rows[o]["mean_acc"], 2),
                    round(100 * rows[o]["std_acc"], 2), ", ".join(f"{100 * v:.2f}" for v in rows[o]["test_acc"]),
                    *RESNET34_SHORTCUTS[o]) for o in OPTIONS),
    )  # fmt: skip
    setup = [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))}, {len(data.train.y):,} training and "
        f"{len(data.test.y):,} test images.",
        f"Network: `{cfg.model}`" + (f" with {options}" if options else "") + " with `shortcut=` A, B or C; "
        f"trained with {cfg.train.describe()}, {cfg.seeds} seeds (the same for the three options); each run's "
        "the weights of the epoch selected on validation accuracy are evaluated once on the test split.",
        f"Verdicts: the mean paired difference over seeds must exceed 2 standard errors; published figures "
        f"from {RESNET34_SHORTCUTS_SOURCE}.",
    ]
    notes = [
        "He et al.'s differences are half a point of top-1 error on ImageNet's 50,000 validation images; "
        f"here one of the {len(data.test.y):,} test images is {100 / len(data.test.y):.2g} point, and differences "
        "of half a point can sit within the seed noise.",
        "A CIFAR ResNet has only two places where the dimensions grow, so B differs from A in two blocks; C "
        "adds a projection to every block (the paper's C adds 13 projections to ResNet-34).",
    ]
    if ctx.scale == "tiny":
        notes.append("tiny scale: random images and 4-channel-wide networks; the numbers only test the plumbing.")
    results = {"model": cfg.model, "options": rows, "plain_params": plain["params"],
               "b_vs_a": vars(b_vs_a), "c_vs_b": vars(c_vs_b),
               "published": {o: dict(zip(("top1_error", "top5_error"), RESNET34_SHORTCUTS[o])) for o in OPTIONS}}
    return Outcome(results=results, criteria=criteria, tables=[table], setup=setup, notes=notes)
