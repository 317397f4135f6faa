"""Autoencoder pre-training (lecture 002, "Some background first: Autoencoders": "Encoder can be used
to initialize a supervised model ... Fine-tune encoder jointly with classifier ... Train for final
task (sometimes with small data)").

The zoo's convolutional autoencoder (``ae_conv``) is trained by the engine's reconstruction task
to reconstruct every training image, without labels. Its
encoder then initialises a classifier (encoder + linear layer) fine-tuned on a few labelled images
per class, against the same classifier trained from a random initialisation on the same images.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from cnnlab.errors import ConfigError
from cnnlab.experiments.context import ExperimentContext, restrict, seed_list, seeded
from cnnlab.experiments.features import extract_features, fit_linear_probe, probe_accuracy
from cnnlab.experiments.nets import AutoencoderConfig, EncoderClassifier
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import ADAM
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.models.registry import create_model
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["AutoencoderPretrainConfig", "SCALES", "run", "train_autoencoder", "reconstruction_error",
           "plot_autoencoder"]  # fmt: skip

AUTOENCODER = "ae_conv"  # the zoo's convolutional autoencoder (Masci et al. 2011), up-convolution decoder

CLAIM = (
    "An autoencoder learns, without labels, features that can reconstruct the data; its encoder can "
    "initialise a supervised model, which is then fine-tuned jointly with the classifier on the final "
    "task, sometimes with small data, and does better than the same model trained from scratch."
)


@dataclass(frozen=True)
class AutoencoderPretrainConfig:
    data: str
    channels: tuple[int, ...]  # encoder stages (decoder mirrors them); the last sets the code's size
    pretrain: TrainSpec  # the autoencoder's optimiser, schedule and length (recipe fields; no labels)
    finetune: TrainSpec  # the classifiers' (epochs: see `updates`)
    per_class: tuple[int, ...]  # labelled training images per class; the first is the claim's "small data"
    updates: int  # gradient updates of each classifier, whatever the number of labels
    seeds: int = 3  # seeds: the autoencoder, the draw of the labelled images and the classifiers' initialisation
    show: int = 8  # test images shown with their reconstructions
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.per_class or any(not isinstance(n, int) or n < 1 for n in self.per_class):
            raise ConfigError(f"autoencoder-pretrain: per_class must be positive integers, got {self.per_class!r}")
        require_seeds("autoencoder-pretrain", self.seeds)
        for field in ("updates", "show"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"autoencoder-pretrain: {field} must be a positive integer, got {value!r}")
        AutoencoderConfig(channels=self.channels)  # validates the channels


# The autoencoder recipe (Adam 0.002, cosine) for the autoencoder, the lenet recipe with Adam 0.002
# for the classifiers; no random shifts for the classifiers, so
# that both see exactly the same labelled images, and gradient clipping (global norm 1) for both:
# without it the classifier started from the encoder died in its first updates (every ReLU off,
# chance accuracy in 3 of 3 draws), since the autoencoder's code reaches values of ~8 where a
# random encoder's stay near 1; with it, from scratch trains as well as without.
_FINETUNE_OVERRIDES = (*ADAM, ("translate", 0), ("grad_clip", 1.0))
SCALES = {
    "tiny": AutoencoderPretrainConfig(
        data="synthetic",
        data_options=(("shape", (1, 16, 16)), ("n", 64)),
        channels=(4, 8),
        pretrain=TrainSpec(recipe="autoencoder", epochs=1, batch_size=32),
        finetune=TrainSpec(recipe="lenet", epochs=1, batch_size=8, overrides=_FINETUNE_OVERRIDES),
        per_class=(1,),
        updates=3,
        seeds=2,
        show=4,
    ),
    # All 4,000 mnist-5k training images, labels unused, for the autoencoder; then 10 and 100
    # labelled images per class for the classifiers. Encoder 16 then 8 maps: a code of 8x7x7 = 392
    # values for 784 pixels ("z usually smaller than x", lecture 002).
    "quick": AutoencoderPretrainConfig(
        data="mnist-5k",
        channels=(16, 8),
        pretrain=TrainSpec(recipe="autoencoder", epochs=8, batch_size=64),
        finetune=TrainSpec(recipe="lenet", epochs=1, batch_size=32, overrides=_FINETUNE_OVERRIDES),
        per_class=(10, 100),
        updates=200,
        seeds=5,  # cheap (3 seeds took 52 s on one thread): 5 narrow the standard errors of the gains
    ),
    # CIFAR-10: an autoencoder on all 50,000 training images (code 32x4x4 = 512 values for 3,072),
    # classifiers on 10 and 100 per class.
    "full": AutoencoderPretrainConfig(
        data="cifar10",
        channels=(64, 128, 32),
        pretrain=TrainSpec(recipe="autoencoder", epochs=50, batch_size=128),
        finetune=TrainSpec(recipe="lenet", epochs=1, batch_size=64,
                           overrides=(*_FINETUNE_OVERRIDES, ("crop_padding", 4), ("flip", True))),
        per_class=(10, 100),
        updates=2000,
        seeds=3,
    ),
}


@torch.no_grad()
def reconstruction_error(ae: torch.nn.Module, x: torch.Tensor, pixels: torch.Tensor, *, batch_size: int = 500) -> float:
    """Mean squared error per pixel of ``ae``'s reconstructions of ``x`` (normalised images) against
    ``pixels`` (the same images in [0, 1]), in eval mode."""
    ae.eval()
    device = next(ae.parameters()).device
    total = 0.0
    for start in range(0, len(x), batch_size):
        out = ae(x[start : start + batch_size].to(device)).float().cpu()
        total += float(F.mse_loss(out, pixels[start : start + batch_size], reduction="sum"))
    return total / pixels.numel()


def train_autoencoder(ae: torch.nn.Module, data: Any, spec: TrainSpec, *, seed: int, device: str | None = None,
                      precision: str = "auto", progress: bool = False) -> Any:
    """Train ``ae`` (the zoo's ``ae_conv``) to reconstruct ``data``'s training images with the engine's
    reconstruction task (MSE on [0, 1] pixels, selection on the validation MSE); returns the FitResult,
    whose history rows hold ``train_mse`` and ``val_mse`` per epoch and ``test["mse"]`` the test MSE."""
    from cnnlab.training import fit

    return fit(ae, data, spec.replace(model=AUTOENCODER, task="reconstruction", seed=seed, device=device,
                                      precision=precision), progress=progress)


def plot_autoencoder(results: dict, out_dir: Path) -> list[Plot]:
    plots = []
    shown = results["reconstructions"]
    n = len(shown["original"])
    fig = Figure(figsize=(1.3 * n, 2.9))
    for row, key in enumerate(("original", "reconstruction")):
        for i, img in enumerate(shown[key]):
            ax = fig.add_subplot(2, n, row * n + i + 1)
            pixels = np.asarray(img, dtype=np.float32)  # C x H x W in [0, 1]
            image = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
            ax.imshow(image, cmap="gray" if pixels.shape[0] == 1 else None, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(key, fontsize=9)
    fig.suptitle(f"Autoencoder on {results['data']}: test images (top) and reconstructions (bottom)", fontsize=10)
    plots.append(Plot(save_figure(fig, out_dir, "autoencoder_reconstructions.png"),
                      "Test images never seen by the autoencoder (top) and their reconstructions (bottom)."))
    fig = Figure(figsize=(11.0, 4.0))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    hist = results["autoencoder"]["history"]
    epochs = [h["epoch"] for h in hist]
    a1.plot(epochs, [h["train_mse"] for h in hist], "o-", label="training images")
    if all("val_mse" in h for h in hist):
        a1.plot(epochs, [h["val_mse"] for h in hist], "s-", label="validation images")
    a1.axhline(results["autoencoder"]["mean_image_mse"], color="gray", ls=":", label="mean image (baseline)")
    a1.set(xlabel="epoch", ylabel="reconstruction MSE (pixels in [0, 1])", yscale="log", title="Autoencoder training")
    a1.legend(fontsize=8)
    labels = results["per_class"]
    width = 0.27
    for j, (key, label) in enumerate((("scratch", "from scratch"), ("pretrained", "encoder from the autoencoder"),
                                      ("frozen_linear", "frozen encoder + linear"))):  # fmt: skip
        vals = [100 * results["classifiers"][str(n)][key]["acc"] for n in labels]
        errs = [100 * results["classifiers"][str(n)][key]["std"] for n in labels]
        a2.bar([i + (j - 1) * width for i in range(len(labels))], vals, width, yerr=errs, capsize=3, label=label)
    a2.set_xticks(range(len(labels)), [f"{n} labels / class" for n in labels])
    lo = min(100 * results["classifiers"][str(n)][k]["acc"] for n in labels for k in ("scratch", "pretrained"))
    a2.set(ylabel="test accuracy (%)", ylim=(max(0.0, lo - 10), 100), title="Classifiers (mean +- std over draws)")
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    plots.append(Plot(save_figure(fig, out_dir, "autoencoder_pretrain.png"),
                      "Left: reconstruction error per epoch (training and validation images) against predicting the mean training image. Right: test "
                      "accuracy of the classifier fine-tuned from the autoencoder's encoder, trained from scratch, "
                      "and a linear classifier on the frozen code."))
    return plots


def _autoencoder(ctx: ExperimentContext, cfg: AutoencoderPretrainConfig, data: Any) -> tuple[Any, list[dict], float]:
    """The zoo's ae_conv trained with ``ctx.seed`` on every training image, labels unused, by the
    engine's reconstruction task (selection on the validation MSE): ``(model, history, seconds)``,
    cached in the run."""
    c = data.input_size[0]
    key = (AUTOENCODER, cfg.channels, data.name, tuple(data.input_size), len(data.train.y), cfg.pretrain.describe(), ctx.seed)
    if key in ctx.cache.fits:
        ctx.log("reusing the autoencoder, already trained in this run")
        return ctx.cache.fits[key]
    torch.manual_seed(ctx.seed)
    ae = create_model(AUTOENCODER, in_chans=c, channels=cfg.channels)
    ctx.log(f"training {AUTOENCODER} ({sum(p.numel() for p in ae.parameters()):,} params, seed {ctx.seed}) on "
            f"{len(data.train.y):,} unlabelled images: {cfg.pretrain.describe()}")
    fitted = train_autoencoder(ae, data, cfg.pretrain, seed=ctx.seed, device=ctx.device, precision=ctx.precision,
                               progress=ctx.progress)
    history = [{"epoch": r["epoch"], "train_mse": r["train_mse"], "val_mse": r["val_mse"]} for r in fitted.history]
    ctx.cache.fits[key] = (fitted.model, history, float(fitted.seconds))
    ctx.log(f"autoencoder: val MSE {fitted.val['mse']:.4f} (epoch {fitted.best_epoch}) in {fitted.seconds:.1f}s")
    return ctx.cache.fits[key]


def _classifiers_one_draw(ctx: ExperimentContext, cfg: AutoencoderPretrainConfig, data: Any, ae: Any,
                          n: int) -> dict[str, float]:
    """``n`` labelled images per class drawn with ``ctx.seed``; the encoder classifier trained from
    scratch and from ``ae``'s encoder (same seed: same draw, head initialisation and data order), and
    a linear classifier on the frozen code: their test accuracies."""
    c, h, w = data.input_size
    ae_cfg = AutoencoderConfig(in_chans=c, channels=cfg.channels, num_classes=data.num_classes)
    small = restrict(data, per_class=n, seed=ctx.seed, name=f"{data.name} {n}/class draw {ctx.seed}")
    steps_per_epoch = math.ceil(len(small.train.y) / cfg.finetune.batch_size)
    spec = dataclasses.replace(cfg.finetune, epochs=max(1, math.ceil(cfg.updates / steps_per_epoch)))

    def build(pretrained: bool) -> EncoderClassifier:
        torch.manual_seed(ctx.seed)
        clf = EncoderClassifier(ae_cfg, image_size=(h, w))
        if pretrained:
            clf.encoder.load_state_dict(ae.encoder.state_dict())  # same class: strict key match
        return clf

    accs = {}
    for kind in ("scratch", "pretrained"):
        fit = ctx.train(f"classifier, {kind}, {n}/class (draw {ctx.seed})", lambda kind=kind: build(kind == "pretrained"),
                        small, spec, key={"net": "encoder_classifier", "channels": cfg.channels, "init": kind,
                                          "autoencoder_seed": ctx.seed})  # fmt: skip
        accs[kind] = float(fit.test_acc)
    # For reference: a linear classifier on the frozen code (no fine-tuning).
    frozen = ctx.to_device(build(True))
    feats = extract_features(frozen, torch.cat([small.train.x, small.test.x]), ["encoder"], pool="none")["encoder"]
    probe = fit_linear_probe(feats[: len(small.train.y)], small.train.y, num_classes=small.num_classes)
    accs["frozen_linear"] = probe_accuracy(probe, feats[len(small.train.y) :], small.test.y)
    return accs


def _reconstructions(ae: Any, data: Any, test_pixels: torch.Tensor, show: int) -> dict[str, list]:
    """The first test image of each class in turn (the test split is ordered by class), and ``ae``'s
    reconstructions of them, as [0, 1] pixel lists."""
    firsts = [int((data.test.y == c).nonzero()[0]) for c in range(data.num_classes) if (data.test.y == c).any()]
    order = (firsts + [i for i in range(len(data.test.y)) if i not in set(firsts)])[:show]
    with torch.no_grad():
        recon = ae.eval()(data.test.x[order].to(next(ae.parameters()).device)).float().cpu()  # pixels in [0, 1]
    as_list = lambda t: t.clamp(0, 1).round(decimals=3).tolist()  # noqa: E731
    return {"original": as_list(test_pixels[order]), "reconstruction": as_list(recon)}


def _criteria(cfg: AutoencoderPretrainConfig, mses: list[float], baseline: float,
              classifiers: dict[str, dict[str, Any]]) -> tuple[list[Criterion], dict[str, Any]]:
    few = classifiers[str(cfg.per_class[0])]
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    mse = compare_seeds(mses, [0.5 * baseline] * len(mses), expect="less")
    gains = {n: compare_seeds(v["pretrained"]["per_seed"], v["scratch"]["per_seed"]) for n, v in classifiers.items()}
    criteria = [
        seed_criterion(
            "the autoencoder reconstructs unseen test images: its mean squared error is below half that of "
            "predicting the mean training image",
            f"test MSE {mean_std(mses)[0]:.4f} (per seed {', '.join(f'{m:.4f}' for m in mses)}) against "
            f"{baseline:.4f} for the mean image; the difference is MSE minus half the baseline", mse,
            scale=1000.0, unit=" x 1e-3"),
        seed_criterion(
            f"with {cfg.per_class[0]} labelled images per class, the classifier initialised from the encoder and "
            "fine-tuned is more accurate than the same classifier from scratch",
            f"{pct(few['pretrained']['acc'])} from the encoder against {pct(few['scratch']['acc'])} from scratch",
            gains[str(cfg.per_class[0])]),
    ]  # fmt: skip
    return criteria, {"mse_vs_half_baseline": vars(mse), **{f"pretrained_vs_scratch_{n}": vars(g) for n, g in gains.items()}}


def _tables(cfg: AutoencoderPretrainConfig, n_images: int, history: list[dict], mses: list[float], baseline: float,
            seconds: float, classifiers: dict[str, dict[str, Any]], comparisons: dict[str, Any]) -> list[Table]:
    return [
        Table(
            title=f"Autoencoder (no labels; {cfg.seeds} seeds, the curve and train MSE of the first)",
            columns=("images", "epochs", "train MSE", "test MSE (mean)", "per seed", "mean-image MSE (baseline)",
                     "seconds"),  # [0, 1] pixels
            rows=((n_images, cfg.pretrain.epochs, round(history[-1]["train_mse"], 4), round(mean_std(mses)[0], 4),
                   ", ".join(f"{m:.4f}" for m in mses), round(baseline, 4), round(seconds, 1)),),
        ),
        Table(
            title=f"Classifier test accuracy (%) on few labels (mean of {cfg.seeds} draws; the gain paired by draw)",
            columns=("labelled / class", "from scratch", "std", "encoder from the autoencoder, fine-tuned", "std",
                     "frozen encoder + linear", "gain of pre-training (points, +- SE)", "verdict at 2 SE"),
            rows=tuple((int(n), round(100 * v["scratch"]["acc"], 2), round(100 * v["scratch"]["std"], 2),
                        round(100 * v["pretrained"]["acc"], 2), round(100 * v["pretrained"]["std"], 2),
                        round(100 * v["frozen_linear"]["acc"], 2),
                        f"{100 * comparisons[f'pretrained_vs_scratch_{n}']['difference']:+.2f} +- "
                        f"{100 * comparisons[f'pretrained_vs_scratch_{n}']['stderr']:.2f}",
                        comparisons[f"pretrained_vs_scratch_{n}"]["verdict"]) for n, v in classifiers.items()),
        ),
    ]  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: AutoencoderPretrainConfig, data: Any) -> list[str]:
    c, h, w = data.input_size
    code = (cfg.channels[-1], h // 2 ** len(cfg.channels), w // 2 ** len(cfg.channels))
    seeds = ", ".join(map(str, seed_list(ctx, cfg.seeds)))
    return [
        f"Data: `{data.name}`, {len(data.train.y):,} training images (for the autoencoder, labels unused) and "
        f"{len(data.test.y):,} test images of {'x'.join(map(str, data.input_size))}.",
        f"Autoencoder (the zoo's `{AUTOENCODER}`, `channels={cfg.channels}`): encoder "
        + ", ".join(f"conv3-{ch} + ReLU + 2x2 max pool" for ch in cfg.channels)
        + f" (code {code[0]}x{code[1]}x{code[2]} = {code[0] * code[1] * code[2]:,} values for {c * h * w:,} "
        "pixel values); decoder: 2x2 stride-2 up-convolutions with ReLUs mirroring it, a 3x3 output conv and a "
        "sigmoid; trained by the engine's reconstruction task (mean squared error against the [0, 1] pixels, the "
        f"weights of the best validation MSE kept); {cfg.pretrain.describe()}; one autoencoder per seed ({seeds}).",
        "Classifier (`EncoderClassifier`): the same encoder and a linear layer on its flattened code. "
        "'Encoder from the autoencoder': encoder weights copied from that seed's autoencoder, then everything "
        "fine-tuned (the best-validation epoch kept); 'from scratch': the same network from a random "
        "initialisation; 'frozen encoder + linear': logistic regression on the frozen code (for reference).",
        f"Labelled images: {', '.join(map(str, cfg.per_class))} per class, drawn from the training images by seed "
        f"({seeds}: the draw, the initialisation and the data order are the same for scratch and pretrained); every "
        f"classifier gets {cfg.updates} updates of {cfg.finetune.describe().replace('1 epoch, ', '')}.",
        "Verdicts: per-seed values compared paired (the mean difference must exceed 2 standard errors).",
    ]


@register_experiment(
    name="autoencoder-pretrain",
    title="Autoencoder pre-training for a classifier with few labels",
    claim=CLAIM,
    lectures=("002_a740cb8c04a80802.txt",),
    paper="Hinton & Salakhutdinov, Science 2006; Masci et al., ICANN 2011 (convolutional autoencoders)",
    scales=SCALES,
    plot=plot_autoencoder,
)
def run(ctx: ExperimentContext, cfg: AutoencoderPretrainConfig) -> Outcome:
    data, _ = ctx.open_config(cfg)
    seeds = seed_list(ctx, cfg.seeds)
    autoencoders = {s: _autoencoder(seeded(ctx, s), cfg, data) for s in seeds}
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    train_pixels = (data.train.x * std + mean).clamp(0, 1)
    test_pixels = (data.test.x * std + mean).clamp(0, 1)
    # MSE of predicting the mean training image, per pixel in [0, 1] (the autoencoder's units).
    baseline = float(((test_pixels - train_pixels.mean(0, keepdim=True)) ** 2).mean())
    # The test split, once per autoencoder, with its selected weights.
    mses = [reconstruction_error(ae, data.test.x, test_pixels) for ae, _, _ in autoencoders.values()]
    ae0, history, seconds = autoencoders[ctx.seed]

    classifiers: dict[str, dict[str, Any]] = {}
    for n in cfg.per_class:
        draws = [_classifiers_one_draw(seeded(ctx, s), cfg, data, autoencoders[s][0], n) for s in seeds]
        classifiers[str(n)] = {k: dict(zip(("acc", "std"), mean_std(v)), per_seed=v)
                               for k, v in ((k, [d[k] for d in draws]) for k in draws[0])}  # fmt: skip
        classifiers[str(n)]["updates"] = cfg.updates
    criteria, comparisons = _criteria(cfg, mses, baseline, classifiers)
    notes = [
        "The autoencoder sees the training images that the classifiers later get labels for (as in the lecture's "
        "setting: unlabelled data, then a few labels); it never sees the test images.",
    ]
    return Outcome(
        results={
            "autoencoder": {"history": history, "test_mse": mean_std(mses)[0], "test_mse_per_seed": mses,
                            "mean_image_mse": baseline, "seconds": seconds,
                            "params": sum(p.numel() for p in ae0.parameters())},
            "classifiers": classifiers,
            "per_class": list(cfg.per_class),
            "comparisons": comparisons,
            "seeds": cfg.seeds,
            "reconstructions": _reconstructions(ae0, data, test_pixels, cfg.show),
        },
        criteria=criteria, tables=_tables(cfg, len(data.train.y), history, mses, baseline, seconds, classifiers,
                                          comparisons),
        setup=_setup(ctx, cfg, data), notes=notes,
    )  # fmt: skip
