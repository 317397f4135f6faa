"""Data augmentation: Krizhevsky et al. 2012 §4.1 as lecture 000 presents it ("lots of jittering,
mirroring, and color perturbation of the original images generated on the fly ... Crop, flip, ...
in train AND in test").

The same network trained without augmentation and with random crops (pad-and-crop translations;
horizontal flips and colour noise only where they make sense), then evaluated with test-time
augmentation on top: the prediction averaged over crops of the test image (and their mirrors).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from cnnlab.data.augment import tta_views
from cnnlab.errors import ConfigError
from cnnlab.experiments.context import ExperimentContext, seed_list, seeded
from cnnlab.experiments.nets import WideFCConfig, WideFCNet
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import ADAM, NO_OTHER_REGULARISER, with_overrides
from cnnlab.experiments.predictions import accuracy, predict_proba
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import SeedComparison, compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["AugmentationConfig", "SCALES", "run", "plot_augmentation", "tta_accuracy", "augmentation_words"]

CLAIM = (
    "Data augmentation (random crops/translations, mirroring and colour perturbation generated on "
    "the fly) enlarges the training set and reduces over-fitting: it narrows the gap between training "
    "and test accuracy and raises test accuracy; augmenting at test time too (crops, flips) helps "
    "further."
)


@dataclass(frozen=True)
class AugmentationConfig:
    data: str
    model: str  # zoo name, or "WideFCNet" (cnnlab.experiments.nets, model_options = its config fields)
    plain: TrainSpec  # no augmentation
    augmented: TrainSpec  # the same recipe with the augmentation on
    crop_padding: int  # the crops of the augmented run; test-time crops are taken from the same padding
    tta_flip: bool  # test-time views include mirrors (not for digits)
    seeds: int = 3  # paired: both trainings of a seed start from the same weights and batch order
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.plain.recipe != self.augmented.recipe or self.plain.epochs != self.augmented.epochs:
            raise ConfigError("augmentation: plain and augmented must share the recipe and the epochs")
        if not isinstance(self.crop_padding, int) or self.crop_padding < 1:
            raise ConfigError(f"augmentation: crop_padding must be a positive integer, got {self.crop_padding!r}")
        require_seeds("augmentation", self.seeds)


# The lenet recipe (Adam, cosine) with its 2-px shifts replaced: none at all, or random 2-px crops.
_NONE = (*ADAM, ("translate", 0), ("crop_padding", 0), ("flip", False))
_CROPS = (*ADAM, ("translate", 0), ("crop_padding", 2), ("flip", False))

SCALES = {
    "tiny": AugmentationConfig(
        data="synthetic",
        data_options=(("shape", (1, 16, 16)), ("n", 64)),
        model="WideFCNet",
        model_options=(("channels", (4,)), ("fc_width", 32), ("dropout", 0.0)),
        plain=TrainSpec(recipe="lenet", epochs=1, batch_size=32, overrides=_NONE),
        augmented=TrainSpec(recipe="lenet", epochs=1, batch_size=32, overrides=_CROPS),
        crop_padding=2,
        tta_flip=False,
        seeds=2,
    ),
    # The network of `dropout` without its dropout (conv5-16, FC 512, FC 512: 1.4M weights), which
    # memorises the 4,000 digits: augmentation is then its only regulariser. Krizhevsky's SGD without
    # weight decay, as in `dropout`. Digits get crops (shifts of up to 2 px) but no mirrors (a mirrored
    # 2, 3, 4, 5, 7 or 9 is not a digit) and no colour noise (one grey channel). LeNet-5 was tried
    # first: after 8 epochs it had not fitted its own training set (97% clean training accuracy),
    # so there was no over-fitting for augmentation to reduce. Five seeds: with two, the
    # crops-vs-none verdict flipped between machines; a pair of runs costs ~15 s on an idle machine.
    "quick": AugmentationConfig(
        data="mnist-5k",
        model="WideFCNet",
        model_options=(("channels", (16,)), ("fc_width", 512), ("dropout", 0.0)),
        plain=TrainSpec(recipe="alexnet", epochs=8, batch_size=128, lr=0.05,
                        overrides=(*NO_OTHER_REGULARISER, ("crop_padding", 0))),
        augmented=TrainSpec(recipe="alexnet", epochs=8, batch_size=128, lr=0.05,
                            overrides=(*NO_OTHER_REGULARISER, ("crop_padding", 2))),
        crop_padding=2,
        tta_flip=False,
        seeds=5,
    ),
    # Set before any standard run. Fashion-MNIST, all 54,000 training images at 28x28, quick's net
    # (1.4M weights, which nothing else regularises) and recipe for 10 epochs: 4,220 updates (quick:
    # 232). Clothes get what digits could not: horizontal mirrors with the 2-px crops in training,
    # and the five test-time crops with their mirrors (ten views). Five seeds, as at quick.
    # Cost: 10 networks (2 x 5 seeds) x 10 epochs x (54,000 + 16,000 / 3 for the validation and test
    # passes) = 5.9M image passes at 0.15-0.18 ms (one thread; quick: 109 s wall for 0.35M at load
    # 3.5), plus the clean training set and ten test views per net (0.5M passes): 16-19 minutes.
    "standard": AugmentationConfig(
        data="fashion-mnist",
        model="WideFCNet",
        model_options=(("channels", (16,)), ("fc_width", 512), ("dropout", 0.0)),
        plain=TrainSpec(recipe="alexnet", epochs=10, batch_size=128, lr=0.05, overrides=NO_OTHER_REGULARISER),
        augmented=TrainSpec(recipe="alexnet", epochs=10, batch_size=128, lr=0.05,
                            overrides=with_overrides(NO_OTHER_REGULARISER, crop_padding=2, flip=True)),
        crop_padding=2,
        tta_flip=True,
        seeds=5,
    ),
    # CIFAR-10 with ResNet-20 and He et al.'s recipe and length: their 4-px crops and flips, plus
    # Krizhevsky's PCA colour noise; ten-crop testing (corners, centre and their mirrors).
    "full": AugmentationConfig(
        data="cifar10",
        model="resnet20",
        plain=TrainSpec(recipe="resnet_cifar", overrides=(("crop_padding", 0), ("flip", False))),
        augmented=TrainSpec(recipe="resnet_cifar", overrides=(("pca_lighting", 0.1),)),
        crop_padding=4,
        tta_flip=True,
        seeds=3,
    ),
}


def tta_accuracy(model: Any, pair: Any, *, pad: int, flip: bool, fill: Any, precision: str = "auto",
                 device: Any = None) -> float:
    """Accuracy of softmax probabilities averaged over the five crops (centre, four corners) of the
    test image padded by ``pad`` pixels of ``fill``, and their mirrors when ``flip``
    (``cnnlab.data.augment.tta_views(x, "10crop", pad=pad)``)."""

    def views(x: Any) -> list[Any]:
        all_views = tta_views(x, "10crop", pad=pad, fill=fill)
        return all_views if flip else all_views[:5]  # the first five are unmirrored

    probs = predict_proba(model, pair.x, views=views, precision=precision, device=device)
    return accuracy(probs, pair.y)


def augmentation_words(spec: TrainSpec) -> str:
    """What the augmented run does to its images, in words: "random crops", "random crops and
    mirrors", ... (from the recipe the spec resolves to, overrides applied)."""
    recipe = spec.resolve()
    kinds = ["random crops" if recipe.crop_padding else "random shifts" if recipe.translate else "no crops"]
    kinds += (["mirrors"] if recipe.flip else []) + (["colour noise"] if recipe.pca_lighting else [])
    return kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]


def plot_augmentation(results: dict, out_dir: Path) -> list[Plot]:
    variants = results["variants"]
    fig = Figure(figsize=(11.0, 4.0))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    augmented = variants["crops"]["label"]
    bars = [("no augmentation", "none", "test_acc"), ("no augmentation + TTA", "none", "tta_acc"),
            (augmented, "crops", "test_acc"), (f"{augmented} + TTA", "crops", "tta_acc")]  # fmt: skip
    per_seed = [[100 * variants[key][field][s] for _, key, field in bars] for s in range(len(variants["none"]["test_acc"]))]
    for vals in per_seed:  # one grey line per seed: the comparisons are paired
        a1.plot(range(len(bars)), vals, "-", color="0.6", lw=0.8, zorder=1)
    for i in range(len(bars)):
        vals = [v[i] for v in per_seed]
        a1.plot([i] * len(vals), vals, "o", color=f"C{i}", ms=5, zorder=2)
        a1.plot([i], [sum(vals) / len(vals)], "_", color="k", ms=24, mew=2.5, zorder=3)
    a1.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=12, fontsize=8)
    a1.set(ylabel="test accuracy (%)", title="Test accuracy (dots: seeds, joined per seed; bars: means)")
    for i, (key, v) in enumerate(variants.items()):
        for r, hist in enumerate(v["test_error_curves"]):
            a2.plot(range(1, len(hist) + 1), [100 * e for e in hist], "-", color=f"C{2 * i}", lw=1.5,
                    label=v["label"] if r == 0 else None)
    a2.set(xlabel="epoch", ylabel="test error (%)", yscale="log", title="Test error per epoch")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    a2.legend(fontsize=8)
    return [Plot(save_figure(fig, out_dir, "augmentation.png"),
                 "Test accuracy without and with training augmentation, each also with test-time augmentation "
                 "(TTA), a grey line joining each seed's four values, and the test error per epoch (one line per "
                 "seed).")]


@register_experiment(
    name="augmentation",
    title="Data augmentation in training and at test time",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt",),
    paper="Krizhevsky, Sutskever & Hinton, NIPS 2012 (§4.1)",
    scales=SCALES,
    plot=plot_augmentation,
)
def run(ctx: ExperimentContext, cfg: AugmentationConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    arms = (("none", "no augmentation", cfg.plain), ("crops", augmentation_words(cfg.augmented), cfg.augmented))
    variants = {key: train_variant(ctx, cfg, data, options, label=label, spec=spec) for key, label, spec in arms}
    n_views = 10 if cfg.tta_flip else 5
    comparisons = augmentation_comparisons(variants)
    table = Table(
        title=f"Training without and with augmentation, tested on one view and with test-time augmentation "
        f"(mean of {cfg.seeds} seeds)",
        columns=("training", "clean train acc (%)", "test acc (%)", "std", "gap (points)", f"test acc, {n_views}-view TTA (%)",
                 "test acc per seed (%)"),
        rows=tuple((v["label"], round(100 * v["mean_train_acc"], 2), round(100 * v["mean_test_acc"], 2),
                    round(100 * v["std_test_acc"], 2), round(100 * v["mean_gap"], 2), round(100 * v["mean_tta_acc"], 2),
                    ", ".join(f"{100 * a:.2f}" for a in v["test_acc"])) for v in variants.values()),
    )  # fmt: skip
    notes = []
    if data.input_size[0] == 1:
        notes.append("No colour perturbation: the images have one grey channel (Krizhevsky's PCA colour noise "
                     "needs RGB).")  # fmt: skip
    if not cfg.tta_flip:
        notes.append("No mirroring, in training or at test time: digits are not mirror-symmetric (a mirrored 2, "
                     "3, 4, 5, 7 or 9 is not a digit of its class), so flips would add wrong examples.")
    else:
        notes.append(f"Mirrors at test time (and in training where the recipe flips): an image of {data.name} "
                     "mirrored keeps its class, unlike a digit.")
    results = {"variants": variants, "model": cfg.model, "tta_views": n_views, "seeds": cfg.seeds,
               "comparisons": {k: dataclasses.asdict(c) for k, c in comparisons.items()}}
    return Outcome(results=results, criteria=augmentation_criteria(variants, comparisons, n_views=n_views),
                   tables=[table], setup=_setup(ctx, cfg, data, options, n_views=n_views), notes=notes)  # fmt: skip


def train_variant(ctx: ExperimentContext, cfg: AugmentationConfig, data: Any, options: dict[str, Any], *,
                  label: str, spec: TrainSpec) -> dict[str, Any]:
    """One training recipe over the config's seeds: per seed the test accuracy of the final model (one
    centred view), its clean training accuracy, their gap, the test-time-augmented accuracy and the
    test error per epoch; plus their means and standard deviations."""
    fill = tuple(-m / s for m, s in zip(data.mean, data.std))  # raw black, as the training crops pad
    per_seed: dict[str, list[float]] = {"test_acc": [], "train_acc": [], "gap": [], "tta_acc": []}
    curves = []
    for seed in seed_list(ctx, cfg.seeds):
        sctx = seeded(ctx, seed)

        def build(sctx: ExperimentContext = sctx) -> Any:
            if cfg.model != "WideFCNet":
                return sctx.create_model(cfg.model, data, **options)
            torch.manual_seed(sctx.seed)
            c, h, w = data.input_size
            return WideFCNet(WideFCConfig(in_chans=c, num_classes=data.num_classes, image_size=(h, w), **options))

        fit = sctx.train(f"{cfg.model}, {label} (seed {seed})", build, data, spec,
                         key={"model": cfg.model, **options})  # fmt: skip
        train_acc = ctx.evaluate(fit.model, data.train)["acc"]  # clean training set, eval mode
        test_acc = float(fit.test_acc)
        per_seed["test_acc"].append(test_acc)
        per_seed["train_acc"].append(train_acc)
        per_seed["gap"].append(train_acc - test_acc)
        per_seed["tta_acc"].append(tta_accuracy(fit.model, data.test, pad=cfg.crop_padding, flip=cfg.tta_flip,
                                                fill=fill, precision=ctx.precision, device=ctx.compute_device))
        curves.append([1.0 - h["test_acc"] for h in fit.history])
    return dict(label=label, spec=spec.describe(), seeds=seed_list(ctx, cfg.seeds), test_error_curves=curves,
                **per_seed, **{f"mean_{k}": mean_std(v)[0] for k, v in per_seed.items()},
                **{f"std_{k}": mean_std(v)[1] for k, v in per_seed.items()})  # fmt: skip


def augmentation_comparisons(variants: dict[str, dict[str, Any]]) -> dict[str, SeedComparison]:
    """The three paired comparisons the verdict is decided on (same seeds in both trainings)."""
    none, crops = variants["none"], variants["crops"]
    return {
        "test_acc": compare_seeds(crops["test_acc"], none["test_acc"]),
        "gap": compare_seeds(crops["gap"], none["gap"], expect="less"),
        "tta": compare_seeds(crops["tta_acc"], crops["test_acc"]),
    }


def augmentation_criteria(variants: dict[str, dict[str, Any]], comparisons: dict[str, SeedComparison], *,
                          n_views: int) -> list[Criterion]:
    none, crops = variants["none"], variants["crops"]
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    return [
        seed_criterion(f"training with {crops['label']} gives a higher test accuracy than without augmentation",
                       f"test accuracy {pct(crops['mean_test_acc'])} with {crops['label']} against "
                       f"{pct(none['mean_test_acc'])} without", comparisons["test_acc"]),
        seed_criterion("the gap between clean training accuracy and test accuracy is smaller with augmentation",
                       f"gap {100 * crops['mean_gap']:.2f} points with {crops['label']} against "
                       f"{100 * none['mean_gap']:.2f} without", comparisons["gap"]),
        seed_criterion(f"test-time augmentation ({n_views} views) on top of training augmentation is more accurate "
                       "than the single centred view",
                       f"{pct(crops['mean_tta_acc'])} with the test-time views against {pct(crops['mean_test_acc'])}",
                       comparisons["tta"]),
    ]


def _setup(ctx: ExperimentContext, cfg: AugmentationConfig, data: Any, options: dict[str, Any], *,
           n_views: int) -> list[str]:
    return [
        f"Data: `{data.name}`, {len(data.train.y):,} training and {len(data.test.y):,} test images of "
        f"{'x'.join(map(str, data.input_size))}.",
        (f"Network: `cnnlab.experiments.nets.WideFCNet` with {options}" if cfg.model == "WideFCNet" else
         f"Network: `{cfg.model}` from the zoo" + (f" with {options}" if options else "")) + "; seeds "
        f"{', '.join(map(str, seed_list(ctx, cfg.seeds)))} (the same initial weights for both trainings of a seed).",
        f"Without augmentation: {cfg.plain.describe()}.",
        f"With augmentation: {cfg.augmented.describe()} ({augmentation_words(cfg.augmented)}; the crops are "
        f"of the image padded by {cfg.crop_padding} px of black, i.e. shifts of up to {cfg.crop_padding} px, drawn "
        "per image on whole batches).",
        f"Test-time augmentation: softmax averaged over {n_views} views, the centre and four corner crops of the "
        f"test image padded by {cfg.crop_padding} px" + (" and their mirrors" if cfg.tta_flip else "")
        + " (`cnnlab.data.augment.tta_views`).",
        "Gap: accuracy on the clean training set (eval mode, no augmentation) minus test accuracy.",
        f"Every comparison is paired over the {cfg.seeds} seeds (per-seed differences, their mean and standard "
        "error); each run keeps the weights of its epoch with the best validation accuracy, evaluated once on the "
        "test split.",
    ]
