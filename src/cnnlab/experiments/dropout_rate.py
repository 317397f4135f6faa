"""How much dropout? Srivastava et al., JMLR 2014, §7.3 and Fig. 9 (lecture 002: "how much dropout?
p = 0.5"; lecture 000: "around p = 0.5").

The same network with wide fully connected layers (:class:`~cnnlab.experiments.nets.WideFCNet`,
dropout on FC6's and FC7's outputs) trained with a sweep of dropout rates p (the probability of
dropping a unit; Srivastava et al. plot the retention probability 1 - p) from the same seeds. The
rate is chosen on the validation split; the claim is that a middle rate beats both no dropout (the
net over-fits) and a very high rate (the net under-fits: Fig. 9a's error rises again at p = 0.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cnnlab.errors import ConfigError
from cnnlab.experiments.arms import arm_row, train_arm
from cnnlab.experiments.context import ExperimentContext, seed_list
from cnnlab.experiments.nets import WideFCConfig, WideFCNet
from cnnlab.experiments.outcome import Outcome, Table
from cnnlab.experiments.overrides import NO_OTHER_REGULARISER
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.selection import best_on_val
from cnnlab.experiments.statistics import compare_seeds, mean_std, require_per_class, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["DropoutRateConfig", "SCALES", "run", "plot_dropout_rate"]

CLAIM = (
    "How much dropout? A dropout rate around p = 0.5 on the wide hidden layers works best: no dropout "
    "over-fits, and dropping most units (p = 0.8) under-fits; the test error is flat over a middle range "
    "of rates."
)


@dataclass(frozen=True)
class DropoutRateConfig:
    data: str
    train: TrainSpec
    rates: tuple[float, ...] = (0.0, 0.2, 0.5, 0.8)  # the sweep: first 0, last the highest, middle ones between
    channels: tuple[int, ...] = (16,)  # WideFCNet's conv5 stages
    fc_width: int = 1024  # FC6 and FC7
    seeds: int = 3
    train_per_class: int | None = None  # a fixed subset of the training split (None: all of it)
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("dropout-rate", self.seeds)
        require_per_class("dropout-rate", self.train_per_class)
        r = self.rates
        if len(r) < 3 or r[0] != 0 or list(r) != sorted(set(r)) or not all(0 <= p < 1 for p in r):
            raise ConfigError(f"dropout-rate: rates must be increasing in [0, 1), start at 0 and have a middle "
                              f"rate, got {self.rates!r}")


SCALES = {
    "tiny": DropoutRateConfig(
        data="synthetic", data_options=(("shape", (1, 16, 16)), ("n", 64)), channels=(4,), fc_width=32,
        rates=(0.0, 0.5, 0.8), seeds=2,
        train=TrainSpec(recipe="alexnet", epochs=1, batch_size=32, lr=0.05, overrides=NO_OTHER_REGULARISER),
    ),
    # 100 digits per class (1,000 of mnist-5k's training digits): with 3.4M weights in FC6/FC7 the net
    # without dropout fits them in a few epochs, so a regulariser has something to do; 20 epochs at
    # batch 64 (320 updates). Krizhevsky's optimiser without the other regularisers (the `dropout`
    # experiment's recipe), the rate the only difference between the arms.
    "quick": DropoutRateConfig(
        data="mnist-5k", train_per_class=100, seeds=3,
        train=TrainSpec(recipe="alexnet", epochs=20, batch_size=64, lr=0.05, overrides=NO_OTHER_REGULARISER),
    ),
    # Set before any standard run. Fashion-MNIST, 1,000 images per class (10,000 of 54,000), 20
    # epochs at batch 128 (1,580 updates). Cost: 12 networks x 20 epochs x (10,000 + 16,000 / 3)
    # = 3.7M image passes at about 0.3 ms on one thread: about 18 minutes.
    "standard": DropoutRateConfig(
        data="fashion-mnist", train_per_class=1000, seeds=3,
        train=TrainSpec(recipe="alexnet", epochs=20, batch_size=128, lr=0.05, overrides=NO_OTHER_REGULARISER),
    ),
    # MNIST with Srivastava et al.'s fully connected sizes is their Fig. 9; CIFAR-10 with wider
    # layers, as the `dropout` experiment's full scale.
    "full": DropoutRateConfig(
        data="cifar10", channels=(64, 128), fc_width=2048, rates=(0.0, 0.2, 0.4, 0.5, 0.6, 0.8), seeds=3,
        train=TrainSpec(recipe="alexnet", epochs=100, batch_size=128, lr=0.01, overrides=NO_OTHER_REGULARISER),
    ),
}  # fmt: skip


def _label(p: float) -> str:
    return f"p = {p:g}"


def plot_dropout_rate(results: dict, out_dir: Path) -> list[Plot]:
    """Validation and test accuracy against the dropout rate: one thin line per seed, the mean bold."""
    rates = results["rates"]
    arms = [results["arms"][_label(p)] for p in rates]
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for key, colour, name in (("val_acc", "C0", "validation"), ("test_acc", "C1", "test")):
        for s in range(len(arms[0][key])):
            ax.plot(rates, [100 * a[key][s] for a in arms], "-", color=colour, alpha=0.3, lw=1)
        ax.plot(rates, [100 * mean_std(a[key])[0] for a in arms], "o-", color=colour, lw=2.2, label=f"{name} (mean)")
    chosen = results["chosen"]
    ax.axvline(chosen, color="k", ls=":", lw=1.2, label=f"chosen on validation: p = {chosen:g}")
    ax.set(xlabel="dropout rate p (probability of dropping a unit)", ylabel="accuracy (%)",
           title="How much dropout?", xticks=rates)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [Plot(save_figure(fig, out_dir, "dropout_rate.png"),
                 "Validation and test accuracy of the wide-FC network against its dropout rate (thin: one seed; "
                 "bold: the mean); the dotted line is the rate chosen on validation accuracy.")]


@register_experiment(
    name="dropout-rate",
    title="How much dropout? A sweep of the dropout rate",
    claim=CLAIM,
    lectures=("002_a740cb8c04a80802.txt", "000_fb7e7ade2ae256e5.txt"),
    paper="Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, JMLR 2014 (§7.3, Fig. 9)",
    scales=SCALES,
    plot=plot_dropout_rate,
)
def run(ctx: ExperimentContext, cfg: DropoutRateConfig) -> Outcome:
    data, _ = ctx.open_config(cfg)
    c, h, w = data.input_size
    arms: dict[str, dict[str, Any]] = {}
    for p in cfg.rates:
        net_cfg = WideFCConfig(in_chans=c, num_classes=data.num_classes, image_size=(h, w), channels=cfg.channels,
                               fc_width=cfg.fc_width, dropout=p)  # fmt: skip
        fits = train_arm(ctx, _label(p), lambda net_cfg=net_cfg: WideFCNet(net_cfg), data, cfg.train,
                         seeds=cfg.seeds, key={"net": "wide_fc", "cfg": net_cfg})  # fmt: skip
        # Clean training accuracy: the selected weights in evaluation mode (no dropout noise).
        train_acc = [float(ctx.evaluate(f.model, data.train)["acc"]) for f in fits]
        arms[_label(p)] = arm_row([f.test_acc for f in fits], p=p, val_acc=[float(f.val_acc) for f in fits],
                                  train_acc=train_acc, best_epoch=[int(f.best_epoch) for f in fits])  # fmt: skip
    chosen = arms[best_on_val({k: a["val_acc"] for k, a in arms.items()})]["p"]
    middle = best_on_val({_label(p): arms[_label(p)]["val_acc"] for p in cfg.rates[1:-1]})
    results = {"arms": arms, "rates": list(cfg.rates), "chosen": chosen, "middle_chosen": arms[middle]["p"],
               "seeds": seed_list(ctx, cfg.seeds)}  # fmt: skip
    return Outcome(results=results, criteria=_criteria(cfg, arms, middle), tables=[_table(cfg, arms, chosen)],
                   setup=_setup(ctx, cfg, data), notes=_notes())


def _criteria(cfg: DropoutRateConfig, arms: dict[str, dict[str, Any]], middle: str) -> list:
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    mid = arms[middle]
    out = []
    for p, why in ((cfg.rates[0], "no dropout"), (cfg.rates[-1], "the highest rate")):
        other = arms[_label(p)]
        out.append(seed_criterion(
            f"the middle rate chosen on validation ({middle}, of {', '.join(_label(r) for r in cfg.rates[1:-1])}) "
            f"is more accurate on test than {why} ({_label(p)})",
            f"{middle} {pct(mid['mean_acc'])} against {_label(p)} {pct(other['mean_acc'])}",
            compare_seeds(mid["test_acc"], other["test_acc"])))  # fmt: skip
    return out


def _table(cfg: DropoutRateConfig, arms: dict[str, dict[str, Any]], chosen: float) -> Table:
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return Table(
        title=f"Accuracy (%) against the dropout rate, mean of {cfg.seeds} seeds (chosen on validation: p = {chosen:g})",
        columns=("dropout rate", "val acc", "test acc", "test std", "clean train acc", "train - test",
                 "selected epoch (mean)"),
        rows=tuple((k, round(100 * mean(a["val_acc"]), 2), round(100 * a["mean_acc"], 2), round(100 * a["std_acc"], 2),
                    round(100 * mean(a["train_acc"]), 2), round(100 * (mean(a["train_acc"]) - a["mean_acc"]), 2),
                    round(mean(a["best_epoch"]), 1)) for k, a in arms.items()),
    )  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: DropoutRateConfig, data: Any) -> list[str]:
    return [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))}, {len(data.train.y):,} training"
        + (f" ({cfg.train_per_class:,} per class, a fixed subset)" if cfg.train_per_class else "")
        + f", {len(data.val.y):,} validation and {len(data.test.y):,} test images, no augmentation.",
        "Network (`cnnlab.experiments.nets.WideFCNet`): " + "".join(f"conv5-{c}, max pool, " for c in cfg.channels)
        + f"FC6-{cfg.fc_width}, FC7-{cfg.fc_width}, FC8; dropout with rate p on FC6's and FC7's outputs; "
        f"p in {', '.join(f'{p:g}' for p in cfg.rates)}.",
        f"Training: {cfg.train.describe()}; seeds {', '.join(map(str, seed_list(ctx, cfg.seeds)))}, the same for every "
        "rate (the same initial weights and batch order), so the comparisons are paired per seed. Each run keeps "
        "the epoch with the best validation accuracy.",
        "Choice: the rate with the highest mean validation accuracy (the plot's dotted line); for the criteria, "
        "the middle rate with the highest mean validation accuracy, whose test accuracy is compared with p = 0's "
        "and the highest rate's (mean paired difference against 2 standard errors).",
    ]


def _notes() -> list[str]:
    return [
        "PyTorch's dropout is inverted (kept units are scaled by 1 / (1 - p) while training), so every rate is "
        "tested with all units and the weights as trained.",
        "Srivastava et al. sweep the retention probability of fully connected nets on MNIST with and without "
        "keeping p n fixed (Fig. 9); here the network has a small convolutional trunk and the training budget "
        "is the same for every rate, which favours low rates (a high rate needs more updates to converge).",
    ]
