"""Fine-tuning from ImageNet (lecture 002's transfer slides: "you do not need a lot of data if you
transfer"; Donahue et al., ICML 2014; Razavian et al., CVPR Workshops 2014; Yosinski et al., NIPS 2014).

EfficientNet-Lite0 with its published ImageNet-1k weights (``create_model("efficientnet_lite0",
weights="imagenet")``) on a small real set, Fashion-MNIST with a few labelled images per class:

* frozen ImageNet features: a linear classifier on the pooled output of the net's last stage
  (multinomial logistic regression, its L2 strength chosen on the validation split);
* fine-tuned: the ImageNet weights with a new classifier, every layer trained, the pretrained ones
  at a tenth of the new classifier's rate (the recipe's ``lr_mult``);
* from scratch: the same network from a random initialisation, trained like the fine-tuned one.

Every seed draws its own labelled images (and initialises the new classifier and orders the
batches); the claim is decided on the test split over the draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from cnnlab.errors import ConfigError
from cnnlab.experiments.context import SUBSET_SEED, ExperimentContext, seed_list, seeded
from cnnlab.experiments.features import extract_features, fit_linear_probe, probe_accuracy
from cnnlab.experiments.outcome import Outcome, Table
from cnnlab.experiments.overrides import ADAM, with_overrides
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["ImagenetTransferConfig", "SCALES", "METHODS", "run", "plot_imagenet_transfer", "to_weights_normalisation"]

CLAIM = (
    "You do not need a lot of data to use CNNs: with very little labelled data, the features of a "
    "network trained on ImageNet (a linear classifier on top, or the whole network fine-tuned with a "
    "small learning rate) beat the same network trained from scratch."
)

METHODS: dict[str, str] = {
    "linear": "linear classifier on frozen ImageNet features",
    "finetune": "fine-tuned from ImageNet",
    "scratch": "trained from scratch",
}


@dataclass(frozen=True)
class ImagenetTransferConfig:
    data: str
    input_size: tuple[int, int, int]  # grey images replicated to 3 channels, resized
    train: TrainSpec  # fine-tuning and scratch alike (scratch without lr_mult)
    per_class: tuple[int, ...]  # labelled training images per class, one row of the table each
    val_per_class: int | None  # fixed subsets of the validation and test splits (None: whole)
    test_per_class: int | None
    model: str = "efficientnet_lite0"
    weights: str = "imagenet"
    feature_module: str = "head"  # the last stage (1x1 conv to 1,280 channels), average-pooled
    trunk_lr_mult: float = 0.1  # the pretrained layers' rate relative to the new classifier's
    head: str = "fc"  # the classifier replaced for the target's classes
    l2_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1)  # the linear classifier's L2, chosen on val
    seeds: int = 3
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("imagenet-transfer", self.seeds)
        if not self.per_class or not all(isinstance(n, int) and n >= 1 for n in self.per_class):
            raise ConfigError(f"imagenet-transfer: per_class must be positive integers, got {self.per_class!r}")
        for name in ("val_per_class", "test_per_class"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"imagenet-transfer: {name} must be a positive integer or None, got {v!r}")
        if self.input_size[0] != 3:
            raise ConfigError(f"imagenet-transfer: the ImageNet net takes 3 channels, got input_size {self.input_size!r}")
        if not 0 < self.trunk_lr_mult <= 1:
            raise ConfigError(f"imagenet-transfer: trunk_lr_mult must be in (0, 1], got {self.trunk_lr_mult!r}")


def _spec(base: TrainSpec, lr_mult: tuple[tuple[str, float], ...]) -> TrainSpec:
    return dataclasses.replace(base, overrides=with_overrides(tuple(base.overrides.items()), lr_mult=lr_mult))


# Adam at 2e-3 (the small nets' optimiser) for the new classifier and for scratch, no augmentation
# (the linear classifier fits fixed features of the same images).
_ADAM_PLAIN = (*ADAM, ("translate", 0))

SCALES = {
    # The plumbing on random images at 32x32 (the real weights still load: the run needs the extra).
    "tiny": ImagenetTransferConfig(
        data="synthetic", data_options=(("shape", (1, 32, 32)), ("n", 120), ("n_test", 20)), input_size=(3, 32, 32),
        per_class=(2,), val_per_class=None, test_per_class=None, seeds=2, l2_grid=(1e-2,),
        train=TrainSpec(recipe="lenet", epochs=1, batch_size=10, overrides=_ADAM_PLAIN),
    ),
    # Fashion-MNIST at 64x64 (the net's last stage is then 2x2; at 32x32 the ImageNet features were
    # far weaker: 62% against 75% validation accuracy of the linear classifier on one draw of 20 a class),
    # 20 labelled images per class, 6 epochs at batch 16 (78 updates). Fixed subsets of 20 validation
    # and 50 test images per class keep the per-epoch evaluations affordable on a CPU.
    "quick": ImagenetTransferConfig(
        data="fashion-mnist", input_size=(3, 64, 64), per_class=(20,), val_per_class=20, test_per_class=50,
        seeds=3, train=TrainSpec(recipe="lenet", epochs=6, batch_size=16, overrides=_ADAM_PLAIN),
    ),
    # No standard scale: quick already trains on real data, and a few hundred images per class with
    # the whole test split (about 15 ms per training image and 4 ms per evaluated image at 64x64 on one
    # thread, every epoch evaluating 16,000 images) would take over an hour of the CPU.
    # The weights' own resolution (224x224), on a GPU.
    "full": ImagenetTransferConfig(
        data="fashion-mnist", input_size=(3, 224, 224), per_class=(10, 100, 1000), val_per_class=None,
        test_per_class=None, seeds=5, train=TrainSpec(recipe="lenet", epochs=15, batch_size=64, overrides=_ADAM_PLAIN),
    ),
}  # fmt: skip


def to_weights_normalisation(data: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """``data`` (normalised with its own train statistics) re-normalised as the weights expect:
    pixels in [0, 1] recovered with the bundle's mean and std, then ``(pixel - mean) / std``."""
    def renorm(pair: Any) -> Any:
        m0, s0 = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (data.mean, data.std))
        m1, s1 = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (mean, std))
        return dataclasses.replace(pair, x=((pair.x * s0 + m0) - m1) / s1)

    note = f"re-normalised as the weights expect: (pixel - {mean[0]:.4f}) / {std[0]:.4f}"
    return dataclasses.replace(data, train=renorm(data.train), val=renorm(data.val), test=renorm(data.test),
                               mean=tuple(mean), std=tuple(std), notes=(*data.notes, note))  # fmt: skip


def _target(cfg: ImagenetTransferConfig, data: Any) -> Any:
    """The fixed validation and test subsets (drawn with ``SUBSET_SEED``)."""
    from cnnlab.data import subset

    cut = lambda pair, n: pair if n is None else subset(pair, per_class=n, seed=SUBSET_SEED, relabel=False)  # noqa: E731
    return dataclasses.replace(data, val=cut(data.val, cfg.val_per_class), test=cut(data.test, cfg.test_per_class))


def _draw(data: Any, per_class: int, seed: int) -> Any:
    from cnnlab.data import subset

    train = subset(data.train, per_class=per_class, seed=seed, relabel=False)
    return dataclasses.replace(data, name=f"{data.name} {per_class}/class draw {seed}", train=train)


def _linear(ctx: ExperimentContext, cfg: ImagenetTransferConfig, net: Any, data: Any,
            fixed: dict[str, torch.Tensor]) -> dict[str, float]:
    """The linear classifier on the frozen net's pooled features; its L2 chosen on val."""
    train = extract_features(net, data.train.x, [cfg.feature_module], pool="avg")[cfg.feature_module]
    best = None
    for l2 in cfg.l2_grid:
        probe = fit_linear_probe(train, data.train.y, num_classes=data.num_classes, l2=l2)
        val = probe_accuracy(probe, fixed["val"], data.val.y)
        if best is None or val > best[0]:
            best = (val, l2, probe)
    val, l2, probe = best
    test = probe_accuracy(probe, fixed["test"], data.test.y)
    ctx.log(f"linear classifier on frozen features, {data.name}: val acc {val:.4f} (L2 {l2:g}, chosen on val), "
            f"test acc {test:.4f}")
    return {"val": val, "test": test, "l2": l2}


def _one_draw(ctx: ExperimentContext, cfg: ImagenetTransferConfig, data: Any, pretrained: Any,
              fixed: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """The three methods on one draw (``ctx.seed``'s): method -> val and test accuracy."""
    out = {"linear": _linear(ctx, cfg, pretrained, data, fixed)}
    finetune = _spec(cfg.train, (("*", cfg.trunk_lr_mult), (cfg.head, 1.0)))  # later pairs win: the head at 1
    for method, weights, spec in (("finetune", cfg.weights, finetune), ("scratch", None, cfg.train)):
        fit = ctx.train(f"{cfg.model} {METHODS[method]} on {data.name}",
                        lambda weights=weights: ctx.create_model(cfg.model, data, weights=weights), data, spec,
                        key={"model": cfg.model, "weights": weights, "method": method})  # fmt: skip
        out[method] = {"val": float(fit.val_acc), "test": float(fit.test_acc), "train": float(fit.train_acc)}
    return out


def _check_weights(cfg: ImagenetTransferConfig) -> None:
    """A one-line error, before any work, when the weights' package is not installed."""
    from cnnlab.models.pretrained import get_published, locate

    locate(get_published(cfg.model, cfg.weights))


def plot_imagenet_transfer(results: dict, out_dir: Path) -> list[Plot]:
    """Test accuracy of each method against the labelled images per class (mean +- std over draws)."""
    rows = results["table"]
    amounts = [r["per_class"] for r in rows.values()]
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for j, m in enumerate(METHODS):
        accs = [100 * r["methods"][m]["acc"] for r in rows.values()]
        stds = [100 * r["methods"][m]["std"] for r in rows.values()]
        ax.errorbar(amounts, accs, yerr=stds, fmt="o-", capsize=4, color=f"C{j}", label=METHODS[m])
        for r in rows.values():
            ax.plot([r["per_class"]] * len(r["methods"][m]["per_seed"]), [100 * a for a in r["methods"][m]["per_seed"]],
                    ".", color=f"C{j}", alpha=0.4)
    ax.set(xlabel="labelled training images per class", ylabel="test accuracy (%)",
           title=f"{results['model']} from ImageNet against from scratch", xticks=amounts)
    if len(amounts) > 1:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [Plot(save_figure(fig, out_dir, "imagenet_transfer.png"),
                 "Test accuracy of a linear classifier on the frozen ImageNet features, of the fine-tuned ImageNet "
                 "network and of the same network trained from scratch (dots: draws; bars: mean +- std).")]


@register_experiment(
    name="imagenet-transfer",
    title="Fine-tuning from ImageNet: EfficientNet-Lite0's features against training from scratch",
    claim=CLAIM,
    lectures=("002_a740cb8c04a80802.txt",),
    paper="Donahue et al., ICML 2014; Razavian et al., CVPR-W 2014; Yosinski et al., NIPS 2014; Tan & Le, ICML 2019",
    scales=SCALES,
    plot=plot_imagenet_transfer,
)
def run(ctx: ExperimentContext, cfg: ImagenetTransferConfig) -> Outcome:
    from cnnlab.models.pretrained import get_published

    _check_weights(cfg)
    entry = get_published(cfg.model, cfg.weights)
    loaded, _ = ctx.open_config(cfg)
    data = _target(cfg, to_weights_normalisation(loaded, entry.mean, entry.std))
    pretrained = ctx.to_device(ctx.create_model(cfg.model, data, weights=cfg.weights))
    fixed = {s: extract_features(pretrained, getattr(data, s).x, [cfg.feature_module], pool="avg")[cfg.feature_module]
             for s in ("val", "test")}  # the same frozen features for every draw  # fmt: skip
    table: dict[str, dict[str, Any]] = {}
    for n in cfg.per_class:
        runs = {m: [] for m in METHODS}
        for seed in seed_list(ctx, cfg.seeds):
            for m, r in _one_draw(seeded(ctx, seed), cfg, _draw(data, n, seed), pretrained, fixed).items():
                runs[m].append(r)
        methods = {m: dict(zip(("acc", "std"), mean_std([r["test"] for r in rs])), per_seed=[r["test"] for r in rs],
                           val=mean_std([r["val"] for r in rs])[0], val_per_seed=[r["val"] for r in rs],
                           **({"l2": [r["l2"] for r in rs]} if m == "linear" else
                              {"running_train_acc": [r["train"] for r in rs]}))
                   for m, rs in runs.items()}  # fmt: skip
        table[f"{n}/class"] = {"per_class": n, "train_size": n * data.num_classes, "methods": methods}
    results = {"table": table, "model": cfg.model, "weights": cfg.weights, "methods": METHODS,
               "seeds": seed_list(ctx, cfg.seeds), "val_size": len(data.val.y), "test_size": len(data.test.y)}
    return Outcome(results=results, criteria=_criteria(table), tables=_tables(table, cfg.seeds),
                   setup=_setup(ctx, cfg, data, entry), notes=_notes(cfg) + _scratch_note(table, data.num_classes))


def _criteria(table: dict[str, dict[str, Any]]) -> list:
    """On the fewest labelled images: each ImageNet method against scratch, paired by draw."""
    row = min(table.values(), key=lambda r: r["per_class"])
    m = row["methods"]
    pct = lambda k: f"{100 * m[k]['acc']:.2f}%"  # noqa: E731
    name = {"linear": "a linear classifier on the frozen ImageNet features", "finetune": "the network fine-tuned from ImageNet"}
    return [seed_criterion(f"with {row['per_class']} labelled images per class, {name[k]} beats the same "
                           "network trained from scratch on the test split",
                           f"{METHODS[k]} {pct(k)} against scratch {pct('scratch')}",
                           compare_seeds(m[k]["per_seed"], m["scratch"]["per_seed"]))
            for k in ("linear", "finetune")]  # fmt: skip


def _tables(table: dict[str, dict[str, Any]], seeds: int) -> list[Table]:
    note = f" (mean of {seeds} draws)"
    return [
        Table(title="Validation accuracy (%) of each method" + note,
              columns=("labelled / class", *METHODS.values()),
              rows=tuple((r["per_class"], *(round(100 * r["methods"][m]["val"], 2) for m in METHODS))
                         for r in table.values())),
        Table(title="Test accuracy (%) of each method, +- std over draws" + note,
              columns=("labelled / class", *METHODS.values()),
              rows=tuple((r["per_class"], *(f"{100 * r['methods'][m]['acc']:.2f} +- {100 * r['methods'][m]['std']:.2f}"
                                            for m in METHODS)) for r in table.values())),
    ]  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: ImagenetTransferConfig, data: Any, entry: Any) -> list[str]:
    seeds = ", ".join(map(str, seed_list(ctx, cfg.seeds)))
    return [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))} (grey replicated to 3 channels, resized "
        f"bilinearly), re-normalised as the weights expect (pixels in [0, 1], (x - {entry.mean[0]:.4f}) / "
        f"{entry.std[0]:.4f}); {', '.join(map(str, cfg.per_class))} labelled training images per class, drawn "
        f"afresh by each seed ({seeds}); fixed subsets of {len(data.val.y):,} validation and {len(data.test.y):,} "
        "test images (the same for every draw and method).",
        f"Network: `{cfg.model}` with weights `{cfg.weights}` ({entry.origin}); its ImageNet classifier replaced by "
        f"a new `{cfg.head}` for the {data.num_classes} classes.",
        f"Frozen features: the `{cfg.feature_module}` output, average-pooled (1,280 numbers an image); a multinomial "
        f"logistic regression on them (L-BFGS, standardised features), its L2 chosen on validation accuracy from "
        f"{', '.join(f'{v:g}' for v in cfg.l2_grid)}.",
        f"Fine-tuned and scratch: {cfg.train.describe()}; fine-tuning trains every layer, the pretrained ones at "
        f"{cfg.trunk_lr_mult:g} x the rate (recipe lr_mult `*`={cfg.trunk_lr_mult:g}, `{cfg.head}`=1); scratch is "
        "the same network from PyTorch's initialisation with one rate for all. Each run keeps the epoch with the "
        "best validation accuracy.",
        "Verdicts: test accuracies paired by draw (the mean difference against 2 standard errors).",
    ]


def _notes(cfg: ImagenetTransferConfig) -> list[str]:
    size = cfg.input_size[-1]
    return [
        f"The weights were trained at {224}x{224} on colour photographs; at {size}x{size} the net's last stage is "
        f"{max(1, size // 32)}x{max(1, size // 32)} and grey garments are far from ImageNet's images, so the "
        "features are used well outside their training conditions (the lecture's 'very different data set').",
        "Training from scratch a 4M-parameter network on a few hundred images for a short budget is the lecture's "
        "point: it is the baseline that transfer is claimed to beat, not a tuned small-data model.",
    ]


def _scratch_note(table: dict[str, dict[str, Any]], num_classes: int) -> list[str]:
    """A caveat when the network trained from scratch is still near chance in evaluation mode."""
    notes = []
    for r in table.values():
        m = r["methods"]["scratch"]
        running = sum(m["running_train_acc"]) / len(m["running_train_acc"])
        if m["acc"] < 2 / num_classes <= running:
            notes.append(
                f"With {r['per_class']} images per class the network trained from scratch is near chance in evaluation "
                f"mode (test {100 * m['acc']:.1f}%; chance {100 / num_classes:.0f}%) although its running training "
                f"accuracy reached {100 * running:.0f}%: a few dozen updates do not train a 4M-parameter network, and "
                "its batch-norm statistics lag its weights. The comparison with scratch is then decided by a wide "
                "margin; the informative one is between the two ImageNet methods.")
    return notes
