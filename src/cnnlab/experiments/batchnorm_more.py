"""The lecture's other batch-norm claims (lecture 000, "Batch normalization": "Reduces the strong
dependence on initialization", "Reduces need for dropout", and "Where to do BatchNorm?"), beside
`batchnorm`'s learning-rate claim (Ioffe & Szegedy, ICML 2015).

1. Initialisation: the same VGG-like stack with and without BN, its weights initialised at 0.25x,
   1x and 3x PyTorch's default scale; BN should make the final accuracy depend less on the scale.
2. Dropout: the FC-headed net of `dropout-conv`, with and without BN, each with and without dropout
   (p = 0.5); with BN, dropout should add less.
3. Placement: conv-BN-ReLU (Ioffe & Szegedy §3.2, "we add the BN transform immediately before the
   nonlinearity") against conv-ReLU-BN. The lecture asks the question; the verdict reports which
   is better and whether the difference is outside the seed noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.experiments.arms import arm_row, plot_arms, train_arm
from cnnlab.experiments.context import ExperimentContext
from cnnlab.experiments.nets import DropoutHeadConfig, DropoutHeadNet, VGGStackConfig, VGGStackNet
from cnnlab.experiments.outcome import Outcome, Table
from cnnlab.experiments.overrides import ADAM
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import compare_seeds, require_per_class, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.report import Plot

__all__ = ["BatchNormMoreConfig", "SCALES", "run"]

CLAIM = (
    "Batch normalisation reduces the strong dependence on initialisation and reduces the need for "
    "dropout; it is placed before the non-linearity (Ioffe & Szegedy), which the lecture asks about "
    "(\"Where to do BatchNorm?\")."
)


@dataclass(frozen=True)
class BatchNormMoreConfig:
    data: str
    train: TrainSpec
    widths: tuple[int, ...] = (16, 32, 64)
    init_gains: tuple[float, ...] = (0.25, 1.0, 3.0)
    dropout_widths: tuple[int, ...] = (32, 64)
    p: float = 0.5
    input_size: tuple[int, int, int] | None = None
    seeds: int = 3
    data_options: tuple[tuple[str, Any], ...] = ()
    train_per_class: int | None = None  # a fixed subset of the training split (None: all of it)

    def __post_init__(self) -> None:
        require_seeds("batchnorm-more", self.seeds)
        require_per_class("batchnorm-more", self.train_per_class)
        if len(self.init_gains) < 2 or any(g <= 0 for g in self.init_gains):
            raise ConfigError(f"batchnorm-more: init_gains must be two or more positive scales, got {self.init_gains!r}")


SCALES = {
    "tiny": BatchNormMoreConfig(
        data="synthetic", data_options=(("shape", (1, 16, 16)), ("n", 64)), seeds=2, widths=(4, 8),
        dropout_widths=(4, 8), train=TrainSpec(recipe="lenet", epochs=1, batch_size=32, overrides=ADAM),
    ),
    # Digits at 16x16, Adam as small-filters, 4 epochs (the claims are about optimisation and
    # regularisation, which show early), no augmentation.
    "quick": BatchNormMoreConfig(
        data="mnist-5k", input_size=(1, 16, 16), seeds=3,
        train=TrainSpec(recipe="lenet", epochs=4, batch_size=64, overrides=(*ADAM, ("translate", 0))),
    ),
    # Set before any standard run. Fashion-MNIST at 16x16 as at quick, a fixed 1,000 images per class
    # (10,000 of the 54,000; validation and test whole), which keeps this 33-network experiment
    # cheap; quick's recipe for 6 epochs: 942 updates per net (quick: 228).
    # Cost: 33 networks (11 arms x 3 seeds) x 6 epochs x (10,000 + 16,000 / 3 for the validation and
    # test passes) = 3.0M image passes at 0.22-0.24 ms (one thread; quick: 120 s wall for 0.54M) =
    # 11-12 minutes at one thread.
    "standard": BatchNormMoreConfig(
        data="fashion-mnist", input_size=(1, 16, 16), train_per_class=1000, seeds=3,
        train=TrainSpec(recipe="lenet", epochs=6, batch_size=64, overrides=(*ADAM, ("translate", 0))),
    ),
    "full": BatchNormMoreConfig(
        data="cifar10", widths=(64, 128, 256), dropout_widths=(64, 128, 256), seeds=3,
        train=TrainSpec(recipe="lenet", epochs=30, batch_size=128, overrides=(*ADAM, ("translate", 0))),
    ),
}  # fmt: skip


def plot_batchnorm_more(results: dict, out_dir: Path) -> list[Plot]:
    init = results["init"]
    groups = {
        "initialisation scale": {f"{'BN' if bn == 'bn' else 'no BN'} x{g}": init[bn][g]["test_acc"]
                                 for bn in ("no_bn", "bn") for g in init[bn]},
        "dropout (FC head)": {a: r["test_acc"] for a, r in results["dropout"].items()},
        "BN placement": {a: r["test_acc"] for a, r in results["placement"].items()},
    }
    return [plot_arms(groups, out_dir, "batchnorm_more.png",
                      caption="Test accuracy over seeds: nets with and without BN at three initialisation scales; "
                      "dropout's effect with and without BN; BN before or after the ReLU.")]


@register_experiment(
    name="batchnorm-more",
    title="Batch norm: initialisation, dropout, placement",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt",),
    paper="Ioffe & Szegedy, ICML 2015 (§3.2, §4.2.1)",
    scales=SCALES,
    plot=plot_batchnorm_more,
)
def run(ctx: ExperimentContext, cfg: BatchNormMoreConfig) -> Outcome:
    data, _ = ctx.open_config(cfg)
    common = dict(in_chans=data.input_size[0], num_classes=data.num_classes)

    def vgg_arm(label: str, **net: Any) -> dict[str, Any]:
        net_cfg = VGGStackConfig(widths=cfg.widths, **common, **net)
        fits = train_arm(ctx, label, lambda: VGGStackNet(net_cfg), data, cfg.train, seeds=cfg.seeds,
                         key={"net": "vgg_stack", "cfg": net_cfg})  # fmt: skip
        return arm_row([f.test_acc for f in fits])

    init = {bn: {f"{g:g}": vgg_arm(f"{'BN' if bn == 'bn' else 'no BN'}, init x{g:g}", batch_norm=bn == "bn",
                                   init_gain=g) for g in cfg.init_gains} for bn in ("no_bn", "bn")}  # fmt: skip
    spread = {bn: [max(r["test_acc"][i] for r in init[bn].values()) - min(r["test_acc"][i] for r in init[bn].values())
                   for i in range(cfg.seeds)] for bn in init}  # fmt: skip

    dropout: dict[str, dict[str, Any]] = {}
    for bn in (False, True):
        for p in (0.0, cfg.p):
            net_cfg = DropoutHeadConfig(head="fc", dropout=p, batch_norm=bn, widths=cfg.dropout_widths,
                                        input_hw=data.input_size[-1], **common)  # fmt: skip
            label = f"{'BN' if bn else 'no BN'}{', dropout' if p else ''}"
            fits = train_arm(ctx, label, lambda net_cfg=net_cfg: DropoutHeadNet(net_cfg), data, cfg.train,
                             seeds=cfg.seeds, key={"net": "dropout_head", "cfg": net_cfg})  # fmt: skip
            dropout[label] = arm_row([f.test_acc for f in fits])
    gain = {bn: [d - n for d, n in zip(dropout[f"{bn}, dropout"]["test_acc"], dropout[bn]["test_acc"])]
            for bn in ("no BN", "BN")}  # fmt: skip

    placement = {"conv-BN-ReLU": init["bn"]["1"] if "1" in init["bn"] else vgg_arm("conv-BN-ReLU", batch_norm=True),
                 "conv-ReLU-BN": vgg_arm("conv-ReLU-BN", batch_norm=True, bn_after_relu=True)}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    criteria = [
        seed_criterion("with BN the final accuracy depends less on the initialisation scale (range of accuracy "
                       f"over scales x{', x'.join(init['bn'])}, per seed)",
                       f"range {100 * mean(spread['bn']):.2f} points with BN vs {100 * mean(spread['no_bn']):.2f} without",
                       compare_seeds(spread["bn"], spread["no_bn"], expect="less")),
        seed_criterion("with BN, dropout adds less accuracy than without BN",
                       f"dropout's gain {100 * mean(gain['BN']):+.2f} points with BN vs {100 * mean(gain['no BN']):+.2f} "
                       "without", compare_seeds(gain["BN"], gain["no BN"], expect="less")),
        seed_criterion("BN before the ReLU (Ioffe & Szegedy) is more accurate than after it",
                       f"conv-BN-ReLU {pct(placement['conv-BN-ReLU']['mean_acc'])} vs conv-ReLU-BN "
                       f"{pct(placement['conv-ReLU-BN']['mean_acc'])}",
                       compare_seeds(placement["conv-BN-ReLU"]["test_acc"], placement["conv-ReLU-BN"]["test_acc"])),
    ]
    rows = [(f"{'BN' if bn == 'bn' else 'no BN'}, init x{g}", round(100 * r["mean_acc"], 2), round(100 * r["std_acc"], 2))
            for bn in init for g, r in init[bn].items()]
    rows += [(f"FC head, {a}", round(100 * r["mean_acc"], 2), round(100 * r["std_acc"], 2)) for a, r in dropout.items()]
    rows += [(a, round(100 * r["mean_acc"], 2), round(100 * r["std_acc"], 2)) for a, r in placement.items()]
    table = Table(title=f"Test accuracy over {cfg.seeds} seeds (%)", columns=("network", "mean", "std"), rows=tuple(rows))
    setup = [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))}, {len(data.train.y):,} training"
        + (f" ({cfg.train_per_class:,} per class, a fixed subset)" if cfg.train_per_class else "")
        + f" and {len(data.test.y):,} test images, no augmentation.",
        f"Initialisation and placement: `VGGStackNet` (stages of two 3x3 convolutions, {list(cfg.widths)} channels, "
        f"global average pool, FC), every weight scaled by {', '.join(f'x{g:g}' for g in cfg.init_gains)} after "
        "PyTorch's default (Kaiming-uniform) initialisation.",
        f"Dropout: `dropout-conv`'s FC-headed net ({list(cfg.dropout_widths)} channels, FC-512, FC-512), p = {cfg.p} "
        "before each hidden FC layer; BN after every convolution and hidden FC layer.",
        f"Training: {cfg.train.describe()}; {cfg.seeds} seeds, the same for every arm; each run's "
        "the weights of the epoch selected on validation accuracy are evaluated once on the test split.",
    ]
    notes = ["Adam adapts per-parameter step sizes, which already removes part of the dependence on the "
             "initialisation scale that plain SGD would show; the comparison is between nets trained alike."]
    if ctx.scale == "tiny":
        notes.append("tiny scale: random images and tiny nets; the numbers only test the plumbing.")
    results = {"init": init, "init_spread": spread, "dropout": dropout, "dropout_gain": gain, "placement": placement}
    return Outcome(results=results, criteria=criteria, tables=[table], setup=setup, notes=notes)
