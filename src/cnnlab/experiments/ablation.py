"""Ablation of Krizhevsky's network: Zeiler & Fergus, "Visualizing and understanding convolutional
networks", ECCV 2014, Table 3 (lecture 000, "Architecture of Krizhevsky et al.").

The AlexNet of the zoo and the same network with layers removed, each trained from scratch with the
same recipe; parameters and MACs from the analyzer, accuracy from the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.experiments.arms import arm_row, train_arm
from cnnlab.experiments.context import ExperimentContext, seed_list
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import against_margin, margin_criterion, require_seeds
from cnnlab.experiments.surgery import remove_layers
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import plot_ablation

__all__ = ["AblationConfig", "SCALES", "VARIANTS", "LAYER_MODULES", "QUICK_OVERRIDES", "he_init", "run"]

CLAIM = (
    "Depth is key: removing the fully connected layers 6 and 7 of Krizhevsky's net drops about 50 "
    "million parameters but costs little (1.1% for layer 7, 5.7% for layers 6 and 7), whereas also "
    "removing the middle convolutional layers 3 and 4 costs a lot (33.5%)."
)

# Zeiler & Fergus 2014, Table 3, as lecture 000 presents it: the layers removed and the change of
# ImageNet top-5 error the lecture reports (None where the lecture gives no figure).
VARIANTS: tuple[tuple[str, tuple[str, ...], float | None], ...] = (
    ("full network", (), None),
    ("without fc7", ("fc7",), 1.1),
    ("without fc6, fc7", ("fc6", "fc7"), 5.7),
    ("without conv3, conv4", ("conv3", "conv4"), None),
    ("without conv3, conv4, fc6, fc7", ("conv3", "conv4", "fc6", "fc7"), 33.5),
)

# A layer of the zoo's AlexNet and the modules that go with it (its ReLU, and dropout for FC6/FC7).
LAYER_MODULES: dict[str, tuple[str, ...]] = {
    "conv3": ("features.conv3", "features.relu3"),
    "conv4": ("features.conv4", "features.relu4"),
    "fc6": ("classifier.fc6", "classifier.relu6", "classifier.drop6"),
    "fc7": ("classifier.fc7", "classifier.relu7", "classifier.drop7"),
}


@dataclass(frozen=True)
class AblationConfig:
    data: str
    model: str  # zoo name of the AlexNet
    input_size: tuple[int, int, int]  # the data is resized to this (C, H, W)
    train: TrainSpec
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()
    he_init: bool = False  # re-initialise every variant with He et al. 2015 (see he_init)
    seeds: int = 3  # every variant trained with the same seeds; costs are paired per seed
    # Margins of the criteria, as fractions of accuracy; each is decided on the per-seed costs, beyond
    # 2 standard errors (statistics.against_margin).
    small_fc7: float = 0.02  # "costs little": removing fc7 costs less than this
    small_fc67: float = 0.06  # removing fc6 and fc7 (the lecture: 5.7%)
    large_extra: float = 0.02  # removing conv3, conv4 on top of fc6, fc7 must cost more than this more

    def __post_init__(self) -> None:
        if len(self.input_size) != 3:
            raise ConfigError(f"ablation: input_size must be (C, H, W), got {self.input_size!r}")
        require_seeds("ablation", self.seeds)


# What the quick scale changes in Krizhevsky's recipe (`alexnet`) so that five BN-free AlexNets train
# from scratch on 4,000 digits in a few hundred updates each. Measured on mnist-5k at 99x99, width
# 1/4: with the recipe's SGD (lr 0.01, momentum 0.9, batch 128) and PyTorch's default initialisation
# the loss stayed at ln 10 = 2.303 (chance) for 8 epochs; with the paper's N(0, 0.01) it had not
# moved after 40 updates either. After 150 updates at batch 64 with He initialisation: SGD 69% test
# accuracy, Adam (lr 1e-3) 94%.
QUICK_OVERRIDES: tuple[tuple[str, Any], ...] = (
    ("optimizer", "adam"),  # departure: the paper's SGD does not leave chance in this budget
    ("schedule", "cosine"),  # departure: the paper divides by 10 on plateaus over 90 epochs
    ("flip", False),  # digits are not mirror-symmetric
    ("crop_padding", 12),  # shifts of up to 1/8 of the side, as the paper's 32 px of 256
    ("pca_lighting", 0.0),  # PCA colour noise needs colour: the digits have one channel
)

SCALES = {
    "tiny": AblationConfig(
        data="synthetic",
        data_options=(("n", 64),),
        model="alexnet_2012",
        input_size=(1, 67, 67),
        train=TrainSpec(recipe="alexnet", epochs=1, batch_size=32, lr=1e-3, overrides=QUICK_OVERRIDES),
        model_options=(("width", 0.0625), ("pool_size", 1)),
        he_init=True,
        seeds=2,
    ),
    # The paper's AlexNet at a quarter of its width (conv 24-64-96-96-64, FC 1024) on the mnist-5k
    # digits resized to 99x99: after CONV1 11x11/4 and three 3x3/2 pools, the last map is 2x2.
    "quick": AblationConfig(
        data="mnist-5k",
        model="alexnet_2012",
        input_size=(1, 99, 99),
        train=TrainSpec(recipe="alexnet", epochs=10, batch_size=64, lr=1e-3, overrides=QUICK_OVERRIDES),
        model_options=(("width", 0.25), ("pool_size", 2)),
        he_init=True,
        seeds=3,
    ),
    # Zeiler & Fergus train on ImageNet, which this lab cannot download. The closest it can: the
    # full-width net and Krizhevsky's recipe on CIFAR-10 upsampled to 131x131 (at 227x227 the 60,000
    # images would need 37 GB in memory; at 131 they need 12 GB). The last map is then 3x3, so FC6
    # reads 256 x 3 x 3 (pool_size=3) where the paper's reads 256 x 6 x 6.
    "full": AblationConfig(
        data="cifar10",
        model="alexnet_2012",
        input_size=(3, 131, 131),
        train=TrainSpec(recipe="alexnet"),
        model_options=(("pool_size", 3),),
    ),
}


@torch.no_grad()
def he_init(model: nn.Module) -> nn.Module:
    """He, Zhang, Ren & Sun 2015 ("Delving deep into rectifiers", §2.2): every conv and linear weight
    from N(0, 2 / fan-in), biases zero, so the signal keeps its scale through the ReLU layers of a
    net without normalisation. Returns the model (initialised in place)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


@register_experiment(
    name="ablation",
    title="Ablation of AlexNet: the fully connected layers matter little, depth does",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt",),
    paper="Zeiler & Fergus, ECCV 2014 (Table 3)",
    scales=SCALES,
    plot=plot_ablation,
)
def run(ctx: ExperimentContext, cfg: AblationConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    variants = [_train_variant(ctx, cfg, data, options, label, removed, paper_drop)
                for label, removed, paper_drop in VARIANTS]  # fmt: skip
    add_costs(variants)
    criteria, comparisons = _criteria(cfg, variants)
    return Outcome(results={"model": cfg.model, "variants": variants, "comparisons": comparisons},
                   criteria=criteria, tables=[_table(cfg, variants)], setup=_setup(ctx, cfg, data, options),
                   notes=_notes(ctx, cfg, data))  # fmt: skip


def _train_variant(ctx: ExperimentContext, cfg: AblationConfig, data: Any, options: dict[str, Any], label: str,
                   removed: tuple[str, ...], paper_drop: float | None) -> dict[str, Any]:
    """One variant (the layers ``removed``) trained from scratch once per seed; its size from the analyzer."""
    from cnnlab.models import create_model

    modules = tuple(m for layer in removed for m in LAYER_MODULES[layer])

    def full() -> nn.Module:
        return create_model(cfg.model, num_classes=data.num_classes, in_chans=data.input_size[0], **options)

    def build() -> nn.Module:  # train_arm seeds the global generator first, as ctx.create_model would
        net = full()
        net = remove_layers(net, modules, input_size=data.input_size)[0] if modules else net
        return he_init(net) if cfg.he_init else net

    fits = train_arm(ctx, f"{cfg.model} {label}", build, data, cfg.train, seeds=cfg.seeds,
                     key={"model": cfg.model, "removed": removed, "he_init": cfg.he_init, **options})  # fmt: skip
    rebuilt = remove_layers(full(), modules, input_size=data.input_size)[1]
    size = ctx.analyze(fits[0].model, data.input_size)
    return dict(name=label, removed=list(removed), rebuilt=rebuilt, params=size["params"], macs=size["macs"],
                depth=size["depth"], paper_top5_drop=paper_drop,
                **arm_row([float(f.test_acc) for f in fits], train_acc=[float(f.train_acc) for f in fits]))


def add_costs(variants: list[dict[str, Any]]) -> None:
    """Each variant's cost against the full network (the first), per seed (``drops``: paired, the
    same seed's full net minus the variant) and its mean (``drop``), and the parameters removed."""
    full = variants[0]
    for v in variants:
        v["drops"] = [f - a for f, a in zip(full["test_acc"], v["test_acc"])]
        v["drop"] = sum(v["drops"]) / len(v["drops"])
        v["params_removed"] = full["params"] - v["params"]


def _criteria(cfg: AblationConfig, variants: list[dict[str, Any]]) -> tuple[list[Criterion], dict[str, Any]]:
    full = variants[0]
    by = {v["name"]: v for v in variants}
    no7, no67, _, no3467 = (by[name] for name, _, _ in VARIANTS[1:])
    extra = [a - b for a, b in zip(no3467["drops"], no67["drops"])]  # the cost of conv3, conv4 on top
    compared = {"fc7": against_margin(no7["drops"], cfg.small_fc7, expect="less"),
                "fc6_fc7": against_margin(no67["drops"], cfg.small_fc67, expect="less"),
                "conv3_conv4_extra": against_margin(extra, cfg.large_extra, expect="greater")}  # fmt: skip
    share = lambda v: f"{100 * v['params_removed'] / full['params']:.0f}% of the parameters"  # noqa: E731
    pct = lambda v: f"{100 * v['mean_acc']:.2f}%"  # noqa: E731
    criteria = [
        margin_criterion("removing fc7 costs little: its cost in test accuracy (per seed, against the full net) "
                         "is below the margin", f"without fc7 ({share(no7)}) {pct(no7)} against {pct(full)}; cost",
                         compared["fc7"]),
        Criterion(description="fc6 and fc7 hold over half of the parameters (analyzer)",
                  finding=f"removing fc6 and fc7 removes {no67['params_removed']:,} of {full['params']:,} parameters "
                  f"({share(no67)})", passed=no67["params_removed"] > 0.5 * full["params"]),
        margin_criterion("removing fc6 and fc7 costs little: its cost is below the margin",
                         f"without fc6, fc7 {pct(no67)} against {pct(full)}; cost", compared["fc6_fc7"]),
        margin_criterion("also removing conv3 and conv4 costs a lot more than removing fc6 and fc7 alone: the "
                         "extra cost (per seed) is above the margin",
                         f"without conv3, conv4, fc6, fc7 {pct(no3467)} against {pct(no67)} without fc6, fc7; "
                         "extra cost", compared["conv3_conv4_extra"]),
    ]  # fmt: skip
    return criteria, {k: vars(c) for k, c in compared.items()}


def _table(cfg: AblationConfig, variants: list[dict[str, Any]]) -> Table:
    return Table(
        title=f"Variants of {cfg.model}, each trained from scratch with the same recipe ({cfg.seeds} seeds)",
        columns=("variant", "weight layers", "params", "MACs / image", "test acc (%)", "std", "per seed (%)",
                 "drop (points)", "train acc (%)", "lecture's top-5 drop (ImageNet, %)"),
        rows=tuple((v["name"], v["depth"], v["params"], v["macs"], round(100 * v["mean_acc"], 2),
                    round(100 * v["std_acc"], 2), ", ".join(f"{100 * a:.1f}" for a in v["test_acc"]),
                    round(100 * v["drop"], 2), round(100 * sum(v["train_acc"]) / len(v["train_acc"]), 2),
                    v["paper_top5_drop"]) for v in variants),
    )  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: AblationConfig, data: Any, options: dict[str, Any]) -> list[str]:
    return [
        f"Data: `{data.name}` resized to {'x'.join(map(str, data.input_size))}, {len(data.train.y):,} "
        f"training and {len(data.test.y):,} test images.",
        f"Network: `{cfg.model}` from the zoo" + (f" with {options}" if options else "") + "; a variant "
        "replaces the removed layers (with their ReLU, and dropout for FC layers) by the identity and "
        "rebuilds the next layer to read what it now receives (conv5 after conv3/conv4 go, fc8 after "
        "fc6/fc7 go).",
        f"Training: every variant from scratch, {cfg.train.describe()}, seeds "
        f"{', '.join(map(str, seed_list(ctx, cfg.seeds)))} (the same for every variant: same initialisation "
        "stream and data order); the epoch is selected on the validation split and the test split read once.",
        "Verdicts: a variant's cost is, per seed, the full net's test accuracy minus the variant's; each "
        "criterion compares the mean cost with its margin and is met or not met only when the two differ by "
        "more than 2 standard errors of the per-seed costs, otherwise it is within noise.",
        "Parameters, MACs and weight layers come from `cnnlab.analysis.analyze`.",
    ]


def _notes(ctx: ExperimentContext, cfg: AblationConfig, data: Any) -> list[str]:
    notes = [
        "Zeiler & Fergus ablate their ImageNet re-implementation and report top-5 error; this run reports "
        f"top-1 accuracy on {data.name}, so the lecture's figures are for orientation, not comparison.",
    ]
    if ctx.scale != "full":
        notes.append(
            "The network is AlexNet at reduced width and input (see the options above) so that five "
            "trainings per seed fit the CPU budget."
        )
    if cfg.he_init:
        notes.append(
            "Every variant is initialised as He et al. (2015) recommend for ReLU nets (Gaussian, std "
            "sqrt(2 / fan-in), zero biases) and trained with Adam (lr 1e-3) instead of the paper's N(0, 0.01) "
            "and SGD: with SGD and PyTorch's default initialisation this BN-free net stayed at chance "
            "(loss ln 10) for all 8 epochs of a first quick run, and with the paper's N(0, 0.01) it had not "
            "moved after 40 updates (see QUICK_OVERRIDES in the code)."
        )
    if data.name.startswith("mnist") or data.name == "digits":
        notes.append("Digits are easy: even the shallowest variant may do well, which shrinks every difference.")
    return notes
