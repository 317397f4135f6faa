"""Dropout helps nets with huge fully connected layers, less fully convolutional ones (lecture 000,
"How well does dropout work?": "For very deep nets, or at least when there are huge fully connected
layers (eg. AlexNet first FC layer, VGG next, ...). Less useful for fully convolutional nets").

One convolutional trunk with two heads: AlexNet/VGG's (two wide FC layers, dropout p before each, as
Krizhevsky et al. and Simonyan & Zisserman) and a fully convolutional one (a 3x3 convolution and a
1x1 convolution to the classes, global average pooling, dropout p on the feature maps after each
pooled stage, as Springenberg et al.'s all-convolutional nets). Each is trained with and without
dropout over the same seeds; the claim is that dropout's gain is larger for the FC net.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.experiments.arms import arm_row, plot_arms, train_arm
from cnnlab.experiments.context import ExperimentContext
from cnnlab.experiments.nets import DropoutHeadConfig, DropoutHeadNet
from cnnlab.experiments.outcome import Outcome, Table
from cnnlab.experiments.overrides import ADAM
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import compare_seeds, require_per_class, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.report import Plot

__all__ = ["DropoutConvConfig", "SCALES", "run"]

CLAIM = (
    "Dropout significantly improves generalisation of nets with huge fully connected layers (AlexNet, "
    "VGG); it is less useful for fully convolutional nets."
)


@dataclass(frozen=True)
class DropoutConvConfig:
    data: str
    train: TrainSpec
    p: float = 0.5
    widths: tuple[int, ...] = (32, 64)
    fc_width: int = 512
    input_size: tuple[int, int, int] | None = None
    seeds: int = 3
    data_options: tuple[tuple[str, Any], ...] = ()
    train_per_class: int | None = None  # a fixed subset of the training split (None: all of it)

    def __post_init__(self) -> None:
        require_seeds("dropout-conv", self.seeds)
        require_per_class("dropout-conv", self.train_per_class)
        if not 0 < self.p < 1:
            raise ConfigError(f"dropout-conv: p must be in (0, 1), got {self.p!r}")


SCALES = {
    "tiny": DropoutConvConfig(
        data="synthetic", data_options=(("shape", (1, 16, 16)), ("n", 64)), seeds=2, widths=(4, 8), fc_width=16,
        train=TrainSpec(recipe="lenet", epochs=1, batch_size=32, overrides=ADAM),
    ),
    # Digits at 16x16, no augmentation (so that the nets can over-fit the 4,000 training digits),
    # Adam (as small-filters), p = 0.5 (the lectures' "around p = 0.5").
    "quick": DropoutConvConfig(
        data="mnist-5k", input_size=(1, 16, 16), seeds=3,
        train=TrainSpec(recipe="lenet", epochs=10, batch_size=64, overrides=(*ADAM, ("translate", 0))),
    ),
    # Set before any standard run. Fashion-MNIST at 16x16 as at quick, a fixed 1,000 images per class
    # (10,000 of the 54,000; the 6,000 validation and 10,000 test images whole): a cheap run, with
    # room for the over-fitting that dropout is claimed to reduce. Quick's recipe
    # (Adam, no augmentation) for 10 epochs: 1,570 updates (quick: 570).
    # Cost: 12 networks (4 arms x 3 seeds) x 10 epochs x (10,000 + 16,000 / 3 for the validation and
    # test passes) = 1.84M image passes at 0.22-0.27 ms (FC and conv head on one thread; quick: 101 s
    # wall for 0.5M) = 7-8 minutes at one thread.
    "standard": DropoutConvConfig(
        data="fashion-mnist", input_size=(1, 16, 16), train_per_class=1000, seeds=3,
        train=TrainSpec(recipe="lenet", epochs=10, batch_size=64, overrides=(*ADAM, ("translate", 0))),
    ),
    "full": DropoutConvConfig(
        data="cifar10", widths=(64, 128, 256), fc_width=1024, seeds=3,
        train=TrainSpec(recipe="lenet", epochs=60, batch_size=128, overrides=(*ADAM, ("translate", 0))),
    ),
}  # fmt: skip

ARMS = (("FC head", "fc", False), ("FC head + dropout", "fc", True),
        ("conv head", "conv", False), ("conv head + dropout", "conv", True))  # fmt: skip


def plot_dropout_conv(results: dict, out_dir: Path) -> list[Plot]:
    arms = results["arms"]
    groups = {"test accuracy": {a: arms[a]["test_acc"] for a in arms},
              "train - test accuracy (over-fitting)": {a: arms[a]["gap"] for a in arms}}
    return [plot_arms(groups, out_dir, "dropout_conv.png", ylabel="% (see titles)",
                      caption="Test accuracy and train-test gap of the FC-headed and the fully convolutional net, "
                      "each with and without dropout, over seeds.")]


@register_experiment(
    name="dropout-conv",
    title="Dropout: useful for big FC layers, less for fully convolutional nets",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt",),
    paper="Srivastava et al., JMLR 2014; Springenberg et al., ICLR 2015 workshop (all-convolutional nets)",
    scales=SCALES,
    plot=plot_dropout_conv,
)
def run(ctx: ExperimentContext, cfg: DropoutConvConfig) -> Outcome:
    data, _ = ctx.open_config(cfg)
    arms: dict[str, dict[str, Any]] = {}
    for arm, head, drop in ARMS:
        net_cfg = DropoutHeadConfig(head=head, dropout=cfg.p if drop else 0.0, in_chans=data.input_size[0],
                                    num_classes=data.num_classes, widths=cfg.widths, fc_width=cfg.fc_width,
                                    input_hw=data.input_size[-1])  # fmt: skip
        build = lambda net_cfg=net_cfg: DropoutHeadNet(net_cfg)  # noqa: E731
        size = ctx.analyze(build(), data.input_size)
        fits = train_arm(ctx, arm, build, data, cfg.train, seeds=cfg.seeds, key={"net": "dropout_head", "cfg": net_cfg})
        # The engine's train_acc is the running accuracy of the last epoch, in training mode (dropout
        # on), which would bias the gap; the final model is evaluated on the training split instead.
        train_acc = [float(ctx.evaluate(f.model, data.train)["acc"]) for f in fits]
        arms[arm] = arm_row([f.test_acc for f in fits], train_acc=train_acc,
                            gap=[t - float(f.test_acc) for t, f in zip(train_acc, fits)], **size)
    fc, fc_d, cv, cv_d = (arms[a] for a, _, _ in ARMS)
    gain_fc = [d - n for d, n in zip(fc_d["test_acc"], fc["test_acc"])]
    gain_cv = [d - n for d, n in zip(cv_d["test_acc"], cv["test_acc"])]
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    criteria = [
        seed_criterion("dropout makes the FC-headed net more accurate",
                       f"FC head {pct(fc_d['mean_acc'])} with dropout vs {pct(fc['mean_acc'])} without",
                       compare_seeds(fc_d["test_acc"], fc["test_acc"])),
        seed_criterion("dropout helps the FC-headed net more than the fully convolutional net",
                       f"gain {100 * mean(gain_fc):+.2f} points (FC head) vs {100 * mean(gain_cv):+.2f} (conv head, "
                       f"{pct(cv_d['mean_acc'])} with vs {pct(cv['mean_acc'])} without)",
                       compare_seeds(gain_fc, gain_cv)),
        seed_criterion("dropout narrows the FC-headed net's train-test gap",
                       f"gap {100 * mean(fc_d['gap']):.2f} points with dropout vs {100 * mean(fc['gap']):.2f} without",
                       compare_seeds(fc_d["gap"], fc["gap"], expect="less")),
    ]
    table = Table(
        title=f"Over {cfg.seeds} seeds (%)",
        columns=("network", "params", "share in the head", "test acc", "std", "train acc", "train - test"),
        rows=tuple((a, r["params"], f"{100 * _head_share(cfg, data, a):.0f}%", round(100 * r["mean_acc"], 2),
                    round(100 * r["std_acc"], 2), round(100 * mean(r["train_acc"]), 2), round(100 * mean(r["gap"]), 2))
                   for a, r in arms.items()),
    )  # fmt: skip
    setup = [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))}, {len(data.train.y):,} training"
        + (f" ({cfg.train_per_class:,} per class, a fixed subset)" if cfg.train_per_class else "")
        + f" and {len(data.test.y):,} test images, no augmentation.",
        f"Trunk: per stage conv3 + ReLU + 2x2 max pool, {list(cfg.widths)} channels. FC head: FC-{cfg.fc_width}, "
        f"FC-{cfg.fc_width}, FC-classes, dropout p = {cfg.p} before the first two (AlexNet, VGG). Conv head: "
        f"conv3-128, conv1-classes, global average pool; dropout p = {cfg.p} after each pooled stage and "
        "before the 1x1 convolution (all-convolutional nets).",
        f"Training: {cfg.train.describe()}; {cfg.seeds} seeds, the same for the four arms; each run's "
        "the weights of the epoch selected on validation accuracy are evaluated once on the test split; gains are paired per seed. Train accuracy: the final model on the "
        "training split in evaluation mode (dropout off), so the gap measures over-fitting.",
    ]
    notes = [
        "Where dropout goes in a fully convolutional net is a choice (Springenberg et al. put it after each "
        "pooling layer); a spatially correlated feature map makes element-wise dropout a weaker regulariser, "
        "which is one explanation of the claim.",
    ]
    if ctx.scale == "tiny":
        notes.append("tiny scale: random images and tiny nets; the numbers only test the plumbing.")
    results = {"arms": arms, "gain_fc": gain_fc, "gain_conv": gain_cv, "p": cfg.p}
    return Outcome(results=results, criteria=criteria, tables=[table], setup=setup, notes=notes)


def _head_share(cfg: DropoutConvConfig, data: Any, arm: str) -> float:
    """Fraction of the arm's parameters in its head (the FC layers, or the conv head)."""
    head = "fc" if arm.startswith("FC") else "conv"
    net = DropoutHeadNet(DropoutHeadConfig(head=head, in_chans=data.input_size[0], num_classes=data.num_classes,
                                           widths=cfg.widths, fc_width=cfg.fc_width, input_hw=data.input_size[-1]))
    total = sum(p.numel() for p in net.parameters())
    return sum(p.numel() for p in net.head.parameters()) / total
