"""The degradation problem: He, Zhang, Ren & Sun, "Deep residual learning for image recognition",
CVPR 2016, Fig. 1 and Fig. 6 (lectures 000, 002, 004).

Plain-20 and plain-56 (the ResNets' layers without shortcuts) against ResNet-20 and ResNet-56, all
four trained with the same recipe and budget; training and test error recorded every epoch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.experiments.framework import DIGITS_OVERRIDES, Criterion, ExperimentContext, Outcome
from cnnlab.experiments.framework import Table, TrainSpec, register_experiment
from cnnlab.viz.experiment_plots import plot_degradation

__all__ = ["DegradationConfig", "SCALES", "run"]

CLAIM = (
    "Stacking more layers on a plain network makes it worse: the 56-layer plain net has a higher "
    "training error (and thus test error) than the 20-layer one, which is not overfitting but an "
    "optimisation difficulty. With residual connections the deeper net does not have a higher "
    "training error."
)


@dataclass(frozen=True)
class DegradationConfig:
    data: str
    plain: tuple[str, str]  # (shallow, deep) plain nets
    residual: tuple[str, str]  # (shallow, deep) residual nets of the same depths
    train: TrainSpec
    input_size: tuple[int, int, int] | None = None  # the data resized to this (C, H, W); None: as it is
    model_options: tuple[tuple[str, Any], ...] = ()  # zoo config applied to all four (tiny: widths)
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for field in ("plain", "residual"):
            pair = getattr(self, field)
            if len(pair) != 2 or _depth(pair[0]) >= _depth(pair[1]):
                raise ConfigError(f"degradation: {field} must be (shallower, deeper) model names, got {pair!r}")
        if [_depth(m) for m in self.plain] != [_depth(m) for m in self.residual]:
            raise ConfigError("degradation: the plain and residual nets must have the same depths")


def _depth(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    if not match:
        raise ConfigError(f"degradation: cannot read the depth from the model name {name!r}")
    return int(match.group(1))


def _label(name: str) -> str:
    family = "plain" if name.startswith("plain") else "ResNet"
    return f"{family}-{_depth(name)}"


# He et al. §4.2 train CIFAR-10 for 64k iterations at batch 128 (lr 0.1, /10 at 32k and 48k,
# weight decay 1e-4, momentum 0.9, 4-pixel padding + crop + flip): the `resnet_cifar` recipe.
SCALES = {
    # Plumbing only: random 16x16 images, 4-channel-wide nets, two epochs.
    "tiny": DegradationConfig(
        data="synthetic",
        data_options=(("shape", (1, 16, 16)), ("n", 64)),
        plain=("plain20", "plain56"),
        residual=("resnet20", "resnet56"),
        train=TrainSpec(recipe="resnet_cifar", epochs=2, batch_size=32),
        model_options=(("widths", (4, 8, 16)),),
    ),
    # The paper's nets at full width on mnist-5k (4,000 training digits) resized to 16x16, the
    # resolution of the USPS digits: a third of the cost of 28x28, which is what lets four nets
    # (two of 56 layers) get 750 updates each in about 6 minutes on 2 cores. He et al.'s lr 0.1 at
    # batch 128 becomes 0.05 at batch 64 (the same rate per sample, Goyal et al. 2017), decayed
    # with a cosine over the short run; pad-and-crop shifts of 2 px (the paper's 4 of 32), no flips.
    # Measured at 28x28, batch 128, 8 epochs (256 updates): ResNet-56 was still at 20% training
    # error (ResNet-20: 1.2%) and the four nets took about 12 minutes.
    "quick": DegradationConfig(
        data="mnist-5k",
        input_size=(1, 16, 16),
        plain=("plain20", "plain56"),
        residual=("resnet20", "resnet56"),
        train=TrainSpec(recipe="resnet_cifar", epochs=12, batch_size=64, lr=0.05,
                        overrides=(*DIGITS_OVERRIDES, ("crop_padding", 2))),
    ),
    # The paper's setting: CIFAR-10 and He et al.'s recipe as it is (64k iterations at batch 128).
    "full": DegradationConfig(
        data="cifar10",
        plain=("plain20", "plain56"),
        residual=("resnet20", "resnet56"),
        train=TrainSpec(recipe="resnet_cifar"),
    ),
}


@register_experiment(
    name="degradation",
    title="Degradation: deeper plain nets train worse, deeper ResNets do not",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt", "002_a740cb8c04a80802.txt", "004_727cdc94a52d7899.txt"),
    paper="He, Zhang, Ren & Sun, CVPR 2016 (Fig. 1, Fig. 6)",
    scales=SCALES,
    plot=plot_degradation,
)
def run(ctx: ExperimentContext, cfg: DegradationConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    models: dict[str, dict[str, Any]] = {}
    for name in (*cfg.plain, *cfg.residual):
        fit = ctx.train(
            _label(name), lambda name=name: ctx.create_model(name, data, **options), data, cfg.train,
            key={"model": name, **options},
        )  # fmt: skip
        size = ctx.analyze(fit.model, data.input_size)  # params, MACs, weight layers (the analyzer's)
        hist = fit.history
        models[name] = dict(
            label=_label(name),
            model=name,
            depth=size["depth"],
            residual=not name.startswith("plain"),
            params=size["params"],
            macs=size["macs"],
            train_error=[1.0 - h["train_acc"] for h in hist],
            test_error=[1.0 - h["test_acc"] for h in hist],  # per-epoch curve: plotted, never selected on
            val_error=[1.0 - h["val_acc"] for h in hist],
            best_epoch=int(fit.best_epoch),  # chosen on val by the engine
            selected_test_error=1.0 - float(fit.test_acc),
            seconds=float(fit.seconds),
            epochs=len(hist),
        )

    def final(name: str, key: str) -> float:
        return models[name][key][-1]

    (ps, pd), (rs, rd) = cfg.plain, cfg.residual
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    criteria = [
        Criterion(
            description=f"{_label(pd)} ends with a higher training error than {_label(ps)} (last epoch)",
            finding=f"{_label(pd)} ended at {pct(final(pd, 'train_error'))} training error and "
            f"{_label(ps)} at {pct(final(ps, 'train_error'))}",
            passed=final(pd, "train_error") > final(ps, "train_error"),
        ),
        Criterion(
            description=f"{_label(rd)} ends with a training error no higher than {_label(rs)} (last epoch)",
            finding=f"{_label(rd)} ended at {pct(final(rd, 'train_error'))} and {_label(rs)} at "
            f"{pct(final(rs, 'train_error'))}",
            passed=final(rd, "train_error") <= final(rs, "train_error"),
        ),
    ]
    table = Table(
        title="Error after the last epoch (training error is the running error over the last epoch, "
        "as in He et al.'s curves)",
        columns=("network", "weight layers", "params", "MACs / image", "train error (%)", "test error (%)",
                 "val-selected epoch", "its test error (%)", "train time (s)"),
        rows=tuple(
            (m["label"], m["depth"], m["params"], m["macs"], round(100 * m["train_error"][-1], 2),
             round(100 * m["test_error"][-1], 2), m["best_epoch"], round(100 * m["selected_test_error"], 2),
             round(m["seconds"], 1))
            for m in models.values()
        ),
    )  # fmt: skip
    setup = [
        f"Data: `{data.name}`, {len(data.train.y):,} training and {len(data.test.y):,} test images of "
        f"{'x'.join(map(str, data.input_size))}" + (" (resized)" if cfg.input_size else "") + ".",
        f"Networks: {', '.join(_label(n) for n in (*cfg.plain, *cfg.residual))} from the zoo "
        f"(`{'`, `'.join((*cfg.plain, *cfg.residual))}`), in_chans={data.input_size[0]}"
        + (f", options {options}" if options else "") + ".",
        f"Training: the same for all four networks: {cfg.train.describe()}; seed {ctx.seed}.",
        "Training error per epoch is the error on the training batches during that epoch (augmented, "
        "BN in training mode), as plotted by He et al.; test error is measured after each epoch for the curves only. The "
        "selected epoch is the one with the lowest validation error; its test error is reported once.",
    ]
    updates = math.ceil(len(data.train.y) / (cfg.train.batch_size or 128)) * models[cfg.plain[0]]["epochs"]
    gap = lambda deep, shallow: 100 * (final(deep, "train_error") - final(shallow, "train_error"))  # noqa: E731
    notes = [
        f"Going from {_label(ps)} to {_label(pd)} changed the final training error by "
        f"{gap(pd, ps):+.2f} points; going from {_label(rs)} to {_label(rd)} by {gap(rd, rs):+.2f} points.",
        f"The criteria compare the last epoch only, after about {updates:,} updates per network; He et al. "
        "train for 64,000. Deep nets start slowly, so within a short budget the comparison is about how far "
        "each net gets with the same budget, not about converged error.",
    ]
    if data.name.startswith("mnist") or data.name == "digits":
        notes.append(
            "MNIST digits are much easier than CIFAR-10: every network may reach a low error, which "
            "can hide the degradation that He et al. measured on CIFAR-10 (run `--scale full` on a GPU)."
        )
    return Outcome(
        results={"models": models, "epochs": len(next(iter(models.values()))["train_error"])},
        criteria=criteria,
        tables=[table],
        setup=setup,
        notes=notes,
    )
