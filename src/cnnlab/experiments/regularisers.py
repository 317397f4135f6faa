"""Dropout against L2 and L1 (lecture 000: "dropout better than L2 and L1"; Srivastava et al., JMLR
2014, Table 9: on MNIST, dropout's error below L2's, L1's and max-norm's).

The same network with wide fully connected layers (:class:`~cnnlab.experiments.nets.WideFCNet`)
trained with no regulariser, with weight decay (L2), with an L1 penalty on the weights (the recipe's
``l1``) and with dropout. Each regulariser's strength is chosen on the validation split from a small
grid (the search of ``cnnlab sweep``), then the chosen setting is trained over seeds and compared on
the test split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.experiments.arms import arm_row, plot_arms, train_arm
from cnnlab.experiments.context import ExperimentContext, seed_list
from cnnlab.experiments.nets import WideFCConfig, WideFCNet
from cnnlab.experiments.outcome import Outcome, Table
from cnnlab.experiments.overrides import NO_OTHER_REGULARISER, with_overrides
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.selection import best_on_val
from cnnlab.experiments.statistics import compare_seeds, mean_std, require_per_class, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.report import Plot

__all__ = ["RegularisersConfig", "SCALES", "REGULARISERS", "run", "plot_regularisers"]

CLAIM = (
    "Dropout regularises a network with large fully connected layers better than an L2 (weight decay) "
    "or an L1 penalty on its weights, each at its best strength."
)

# Regulariser -> what its strength sets: the recipe field, or the network's dropout rate.
REGULARISERS: dict[str, str] = {"L2": "weight_decay", "L1": "l1", "dropout": "p"}


@dataclass(frozen=True)
class RegularisersConfig:
    data: str
    train: TrainSpec  # its recipe with no regulariser (the arms add theirs)
    l2: tuple[float, ...] = (5e-4, 5e-3, 5e-2)  # weight decay grid (AlexNet's 5e-4, x10, x100)
    l1: tuple[float, ...] = (1e-5, 1e-4, 1e-3)  # L1 penalty grid
    dropout: tuple[float, ...] = (0.2, 0.5, 0.8)  # dropout-rate grid
    channels: tuple[int, ...] = (16,)  # WideFCNet's conv5 stages
    fc_width: int = 1024
    seeds: int = 3  # the chosen settings (and no regulariser) are compared over these
    grid_seeds: int = 1  # the first seeds, on whose mean validation accuracy each strength is chosen
    train_per_class: int | None = None
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("regularisers", self.seeds)
        require_per_class("regularisers", self.train_per_class)
        if not isinstance(self.grid_seeds, int) or not 1 <= self.grid_seeds <= self.seeds:
            raise ConfigError(f"regularisers: grid_seeds must be in 1..seeds, got {self.grid_seeds!r}")
        for name in ("l2", "l1", "dropout"):
            grid = getattr(self, name)
            top = 1.0 if name == "dropout" else float("inf")
            if not grid or not all(0 < g < top for g in grid) or list(grid) != sorted(set(grid)):
                raise ConfigError(f"regularisers: {name} must be an increasing grid of positive strengths, got {grid!r}")


SCALES = {
    "tiny": RegularisersConfig(
        data="synthetic", data_options=(("shape", (1, 16, 16)), ("n", 64)), channels=(4,), fc_width=32,
        l2=(5e-4, 5e-2), l1=(1e-4,), dropout=(0.5,), seeds=2,
        train=TrainSpec(recipe="alexnet", epochs=1, batch_size=32, lr=0.05, overrides=NO_OTHER_REGULARISER),
    ),
    # The `dropout-rate` experiment's setting: 100 digits per class (1,000 of mnist-5k's), 20 epochs
    # at batch 64 (320 updates), Krizhevsky's optimiser with no regulariser of its own. Each grid
    # point is trained on the first seed, the chosen strength on all three.
    "quick": RegularisersConfig(
        data="mnist-5k", train_per_class=100, seeds=3,
        train=TrainSpec(recipe="alexnet", epochs=20, batch_size=64, lr=0.05, overrides=NO_OTHER_REGULARISER),
    ),
    # Set before any standard run. Fashion-MNIST, 1,000 images per class, 20 epochs at batch 128;
    # grid on two seeds. Cost: 1 + 9 x 2 + 3 x 1 = 22 networks x 20 epochs x (10,000 + 16,000 / 3)
    # = 6.8M image passes at about 0.3 ms on one thread: about 34 minutes.
    "standard": RegularisersConfig(
        data="fashion-mnist", train_per_class=1000, seeds=3, grid_seeds=2,
        train=TrainSpec(recipe="alexnet", epochs=20, batch_size=128, lr=0.05, overrides=NO_OTHER_REGULARISER),
    ),
    "full": RegularisersConfig(
        data="cifar10", channels=(64, 128), fc_width=2048, seeds=3, grid_seeds=3,
        train=TrainSpec(recipe="alexnet", epochs=100, batch_size=128, lr=0.01, overrides=NO_OTHER_REGULARISER),
    ),
}  # fmt: skip


def plot_regularisers(results: dict, out_dir: Path) -> list[Plot]:
    arms = results["arms"]
    grid = {f"{r} {g['strength']:g}": g["val_acc"] for r, gs in results["grid"].items() for g in gs}
    return [plot_arms({"test accuracy, chosen settings": {a: v["test_acc"] for a, v in arms.items()},
                       "validation accuracy over each grid": grid}, out_dir, "regularisers.png",
                      caption="Left: test accuracy of the network with no regulariser and with each regulariser "
                      "at the strength chosen on validation, over seeds. Right: the validation accuracy of every "
                      "grid point (the choice is made on these).")]  # fmt: skip


def _arm(cfg: RegularisersConfig, data: Any, kind: str | None, strength: float) -> tuple[WideFCConfig, TrainSpec]:
    """The network and the spec of one arm: ``kind`` None is the unregularised net."""
    c, h, w = data.input_size
    net = WideFCConfig(in_chans=c, num_classes=data.num_classes, image_size=(h, w), channels=cfg.channels,
                       fc_width=cfg.fc_width, dropout=strength if kind == "dropout" else 0.0)  # fmt: skip
    spec = cfg.train
    if kind in ("L2", "L1"):
        # Both penalties on the same parameters: the weights, not the biases (as the recipe's l1).
        spec = dataclasses.replace(spec, overrides=with_overrides(
            tuple(spec.overrides.items()), **{REGULARISERS[kind]: strength, "no_decay_bias_norm": True}))
    return net, spec


def _train(ctx: ExperimentContext, cfg: RegularisersConfig, data: Any, kind: str | None, strength: float,
           seeds: int) -> list[Any]:
    net, spec = _arm(cfg, data, kind, strength)
    label = "no regulariser" if kind is None else f"{kind} {strength:g}"
    return train_arm(ctx, label, lambda: WideFCNet(net), data, spec, seeds=seeds, key={"net": "wide_fc", "cfg": net})


@register_experiment(
    name="regularisers",
    title="Dropout against L2 and L1, each at its strength chosen on validation",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt",),
    paper="Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, JMLR 2014 (§6.1.1, Table 9)",
    scales=SCALES,
    plot=plot_regularisers,
)
def run(ctx: ExperimentContext, cfg: RegularisersConfig) -> Outcome:
    data, _ = ctx.open_config(cfg)
    grid: dict[str, list[dict[str, Any]]] = {}
    chosen: dict[str, float] = {}
    for kind in REGULARISERS:
        runs = {s: _train(ctx, cfg, data, kind, s, cfg.grid_seeds) for s in getattr(cfg, kind.lower())}
        grid[kind] = [{"strength": s, "val_acc": [float(f.val_acc) for f in fits]} for s, fits in runs.items()]
        chosen[kind] = best_on_val({s: [float(f.val_acc) for f in fits] for s, fits in runs.items()})
    arms: dict[str, dict[str, Any]] = {}
    for kind, strength in (("none", 0.0), *chosen.items()):
        fits = _train(ctx, cfg, data, None if kind == "none" else kind, strength, cfg.seeds)  # grid seeds: cached
        arms[kind] = arm_row([f.test_acc for f in fits], strength=strength, val_acc=[float(f.val_acc) for f in fits],
                             train_acc=[float(ctx.evaluate(f.model, data.train)["acc"]) for f in fits])  # fmt: skip
    results = {"arms": arms, "grid": grid, "chosen": chosen, "seeds": seed_list(ctx, cfg.seeds)}
    return Outcome(results=results, criteria=_criteria(arms), tables=_tables(cfg, arms, grid),
                   setup=_setup(ctx, cfg, data), notes=_notes())


def _criteria(arms: dict[str, dict[str, Any]]) -> list:
    pct = lambda a: f"{100 * a['mean_acc']:.2f}%"  # noqa: E731
    d = arms["dropout"]
    out = [seed_criterion(f"dropout (p = {d['strength']:g}, chosen on validation) is more accurate on test than "
                          f"{k} ({REGULARISERS[k]} = {arms[k]['strength']:g}, chosen on validation)",
                          f"dropout {pct(d)} against {k} {pct(arms[k])}", compare_seeds(d["test_acc"], arms[k]["test_acc"]))
           for k in ("L2", "L1")]  # fmt: skip
    out.append(seed_criterion("dropout is more accurate on test than no regulariser",
                              f"dropout {pct(d)} against none {pct(arms['none'])}",
                              compare_seeds(d["test_acc"], arms["none"]["test_acc"])))  # fmt: skip
    return out


def _tables(cfg: RegularisersConfig, arms: dict[str, dict[str, Any]], grid: dict[str, list[dict]]) -> list[Table]:
    mean = lambda xs: mean_std(xs)[0]  # noqa: E731
    return [
        Table(
            title=f"Validation accuracy (%) of each grid point (mean of the first {cfg.grid_seeds} seed(s)); the "
            "highest is chosen",
            columns=("regulariser", "strength", "val acc"),
            rows=tuple((f"{k} ({REGULARISERS[k]})", g["strength"], round(100 * mean(g["val_acc"]), 2))
                       for k, gs in grid.items() for g in gs),
        ),
        Table(
            title=f"The chosen settings over {cfg.seeds} seeds (%)",
            columns=("regulariser", "strength", "val acc", "test acc", "test std", "clean train acc", "train - test"),
            rows=tuple((k, a["strength"], round(100 * mean(a["val_acc"]), 2), round(100 * a["mean_acc"], 2),
                        round(100 * a["std_acc"], 2), round(100 * mean(a["train_acc"]), 2),
                        round(100 * (mean(a["train_acc"]) - a["mean_acc"]), 2)) for k, a in arms.items()),
        ),
    ]  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: RegularisersConfig, data: Any) -> list[str]:
    seeds = seed_list(ctx, cfg.seeds)
    return [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))}, {len(data.train.y):,} training"
        + (f" ({cfg.train_per_class:,} per class, a fixed subset)" if cfg.train_per_class else "")
        + f", {len(data.val.y):,} validation and {len(data.test.y):,} test images, no augmentation.",
        "Network (`cnnlab.experiments.nets.WideFCNet`): " + "".join(f"conv5-{c}, max pool, " for c in cfg.channels)
        + f"FC6-{cfg.fc_width}, FC7-{cfg.fc_width}, FC8; dropout (on FC6's and FC7's outputs) only in the dropout arm.",
        f"Training: {cfg.train.describe()}. L2: the recipe's weight_decay; L1: the recipe's l1 (l1 x sum |w| added to "
        "the loss); both on the weights of every convolution and FC layer, not the biases (no_decay_bias_norm).",
        f"Grids: weight decay {', '.join(f'{v:g}' for v in cfg.l2)}; L1 {', '.join(f'{v:g}' for v in cfg.l1)}; "
        f"dropout rate {', '.join(f'{v:g}' for v in cfg.dropout)}. Each point trained on seed(s) "
        f"{', '.join(map(str, seeds[:cfg.grid_seeds]))}; the strength with the highest mean validation accuracy is "
        f"chosen, then trained on seeds {', '.join(map(str, seeds))} (the same seeds for every arm: paired).",
        "Each run keeps the epoch with the best validation accuracy; the test split decides the verdicts only.",
    ]


def _notes() -> list[str]:
    return [
        "Srivastava et al. compare the regularisers on full MNIST with fully connected nets and max-norm; here a "
        "small subset, a short budget and a small grid per regulariser, so a regulariser whose best strength lies "
        "outside its grid is handicapped (the grid table shows whether the choice sits at an end).",
        "Selecting the epoch on validation is itself a regulariser (early stopping) that every arm, the "
        "unregularised one included, gets.",
    ]
