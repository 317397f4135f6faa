"""Invariance against layers: Zeiler & Fergus, "Visualizing and understanding convolutional
networks", ECCV 2014, §4.4 and Fig. 5 (lecture 000: translation, scale and rotation invariance).

Test images are translated vertically, scaled and rotated by increasing amounts; for each stage of a
trained network, the distance between the features of the original and the transformed image,
relative to the original's norm; and at the output, the probability of the true class.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.errors import ConfigError
from cnnlab.experiments.features import TRANSFORMS, background_fill, capture, model_device, stage_names, transform_batch
from cnnlab.experiments.framework import DIGITS_OVERRIDES, Criterion, ExperimentContext, Outcome
from cnnlab.experiments.framework import Table, TrainSpec, register_experiment
from cnnlab.viz.experiment_plots import plot_invariance

__all__ = ["InvarianceConfig", "SCALES", "run", "feature_distances", "pooled_name"]

CLAIM = (
    "Small transformations change the first layer's features a lot but the top layer's much less; the "
    "network's output is stable to translation and scaling, but in general not to rotation."
)


@dataclass(frozen=True)
class InvarianceConfig:
    data: str
    model: str
    train: TrainSpec
    translation: tuple[float, ...]  # vertical shifts in pixels
    scale: tuple[float, ...]  # scale factors
    rotation: tuple[float, ...]  # angles in degrees
    images: int = 500  # test images transformed
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for kind in TRANSFORMS:
            mags = getattr(self, kind)
            if len(mags) < 2 or list(mags) != sorted(mags):
                raise ConfigError(f"invariance: {kind} must list at least two magnitudes in increasing order")
        if any(s <= 0 for s in self.scale):
            raise ConfigError(f"invariance: scale factors must be positive, got {self.scale!r}")
        if not isinstance(self.images, int) or self.images < 1:
            raise ConfigError(f"invariance: images must be a positive integer, got {self.images!r}")


SCALES = {
    "tiny": InvarianceConfig(
        data="synthetic",
        data_options=(("shape", (1, 16, 16)), ("n", 64)),
        model="resnet20",
        train=TrainSpec(recipe="resnet_cifar", epochs=2, batch_size=32),  # as degradation's: shared in tests
        translation=(-2, 0, 2),
        scale=(0.8, 1.0, 1.2),
        rotation=(0, 90, 180),
        images=16,
        model_options=(("widths", (4, 8, 16)),),
    ),
    # 28x28 digits: shifts up to 8 pixels (Zeiler & Fergus: up to 60 of 224), scale 0.6-1.4 (their
    # 1-1.8 would push digits out of the frame), a full turn in 30-degree steps.
    "quick": InvarianceConfig(
        data="mnist-5k",
        model="resnet20",
        train=TrainSpec(recipe="resnet_cifar", epochs=8, batch_size=128, overrides=DIGITS_OVERRIDES),
        translation=(-8, -6, -4, -2, 0, 2, 4, 6, 8),
        scale=(0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4),
        rotation=tuple(float(a) for a in range(0, 361, 30)),
        images=500,
    ),
    "full": InvarianceConfig(
        data="cifar10",
        model="resnet56",
        train=TrainSpec(recipe="resnet_cifar"),  # He et al. §4.2 as it is
        translation=(-10, -8, -6, -4, -2, 0, 2, 4, 6, 8, 10),
        scale=(0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.6, 1.8),
        rotation=tuple(float(a) for a in range(0, 361, 15)),
        images=2000,
    ),
}


def pooled_name(layers: list[str]) -> str:
    """Name of the last stage's spatially averaged features in the results."""
    return f"{layers[-1]} (avg-pooled)"


@torch.no_grad()
def feature_distances(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, layers: list[str], kind: str, magnitudes: Any,
    *, fill: list[float], batch_size: int = 250,
) -> dict[str, Any]:
    """Per magnitude: mean over images of ``||f(Tx) - f(x)|| / ||f(x)||`` for each layer (unpooled
    feature maps, flattened), and for the last layer averaged over space (``pooled_name(layers)``:
    the vector a global-average-pooling classifier reads, the counterpart of Zeiler & Fergus's top
    feature layer); mean probability of the true class, mean |change| of that probability against
    the untransformed image, and accuracy."""
    model.eval()
    x, y = x.to(model_device(model)), y.to(model_device(model))
    names = [*layers, pooled_name(layers)]
    out: dict[str, Any] = {"distance": {l: [] for l in names}, "true_prob": [], "prob_change": [], "accuracy": []}

    def features(store: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        f = {l: store[l].float().flatten(1) for l in layers}
        last = store[layers[-1]].float()
        f[names[-1]] = last.mean(dim=(2, 3)) if last.dim() == 4 else last.flatten(1)
        return f

    with capture(model, layers) as store:
        base_feats, base_prob = [], []
        for s in range(0, len(x), batch_size):
            logits = model(x[s : s + batch_size]).float()
            base_feats.append(features(store))
            base_prob.append(logits.softmax(1).gather(1, y[s : s + batch_size, None]).squeeze(1))
        for m in magnitudes:
            dist = {l: [] for l in names}
            probs, changes, correct = [], [], 0
            for b, s in enumerate(range(0, len(x), batch_size)):
                xt = transform_batch(x[s : s + batch_size], kind, m, fill=fill)
                logits = model(xt).float()
                feats = features(store)
                for l in names:
                    f0 = base_feats[b][l]
                    dist[l].append((feats[l] - f0).norm(dim=1) / f0.norm(dim=1).clamp_min(1e-12))
                p = logits.softmax(1).gather(1, y[s : s + batch_size, None]).squeeze(1)
                probs.append(p)
                changes.append((p - base_prob[b]).abs())
                correct += int((logits.argmax(1) == y[s : s + batch_size]).sum())
            for l in names:
                out["distance"][l].append(torch.cat(dist[l]).mean().item())
            out["true_prob"].append(torch.cat(probs).mean().item())
            out["prob_change"].append(torch.cat(changes).mean().item())
            out["accuracy"].append(correct / len(x))
    return out


@register_experiment(
    name="invariance",
    title="Invariance: deeper layers change less under translation and scaling, not under rotation",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt",),
    paper="Zeiler & Fergus, ECCV 2014 (§4.4, Fig. 5)",
    scales=SCALES,
    plot=plot_invariance,
)
def run(ctx: ExperimentContext, cfg: InvarianceConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    fit = ctx.train(cfg.model, lambda: ctx.create_model(cfg.model, data, **options), data, cfg.train,
                    key={"model": cfg.model, **options})  # fmt: skip
    model = ctx.to_device(fit.model)
    stages = stage_names(model)
    layers = [*stages, pooled_name(stages)]  # every curve of the plots, shallow to deep
    n = min(cfg.images, len(data.test.y))
    x, y = data.test.x[:n], data.test.y[:n]
    fill = background_fill(data.mean, data.std)
    transforms: dict[str, Any] = {}
    for kind, (unit, identity) in TRANSFORMS.items():
        mags = [float(m) for m in getattr(cfg, kind)]
        ctx.log(f"{kind}: {len(mags)} magnitudes x {n} images")
        measured = feature_distances(model, x, y, stages, kind, mags, fill=fill)
        transforms[kind] = dict(unit=unit, identity=identity, magnitudes=mags, **measured)

    def mean_off_identity(kind: str, values: list[float]) -> float:
        t = transforms[kind]
        return statistics.fmean(v for m, v in zip(t["magnitudes"], values) if m != t["identity"])

    first, last = layers[0], layers[-1]
    summary = {
        kind: dict(
            first_layer_distance=mean_off_identity(kind, t["distance"][first]),
            last_layer_distance=mean_off_identity(kind, t["distance"][last]),
            mean_prob_change=mean_off_identity(kind, t["prob_change"]),
            mean_accuracy=mean_off_identity(kind, t["accuracy"]),
        )
        for kind, t in transforms.items()
    }
    f3 = lambda v: f"{v:.3f}"  # noqa: E731
    criteria = [
        Criterion(
            description=f"{kind}: the top features (last stage, average-pooled) change less than the first "
            "stage's (normalised distance, mean over the non-identity magnitudes)",
            finding=f"{kind} moved {first} by {f3(summary[kind]['first_layer_distance'])} and {last} by "
            f"{f3(summary[kind]['last_layer_distance'])}",
            passed=summary[kind]["last_layer_distance"] < summary[kind]["first_layer_distance"],
        )
        for kind in ("translation", "scale")
    ]
    rot, tr, sc = (summary[k]["mean_prob_change"] for k in ("rotation", "translation", "scale"))
    criteria.append(Criterion(
        description="the output is less stable under rotation than under translation and scaling: the mean "
        "change of the true class's probability is largest for rotation",
        finding=f"the true class's probability changed by {f3(rot)} under rotation, {f3(tr)} under translation "
        f"and {f3(sc)} under scaling",
        passed=rot > tr and rot > sc,
    ))  # fmt: skip
    tables = [
        Table(
            title="Mean over the non-identity magnitudes",
            columns=("transformation", "range", *(f"distance {l}" for l in layers), "|change| of P(true class)",
                     "accuracy (%)"),
            rows=tuple(
                (kind, f"{t['magnitudes'][0]:g} to {t['magnitudes'][-1]:g} {t['unit']}",
                 *(round(mean_off_identity(kind, t["distance"][l]), 4) for l in layers),
                 round(summary[kind]["mean_prob_change"], 4), round(100 * summary[kind]["mean_accuracy"], 2))
                for kind, t in transforms.items()
            ),
        ),
    ]  # fmt: skip
    for kind, t in transforms.items():
        tables.append(Table(
            title=f"{kind.capitalize()} ({t['unit']})",
            columns=("magnitude", *(f"distance {l}" for l in layers), "P(true class)", "accuracy (%)"),
            rows=tuple((m, *(round(t["distance"][l][i], 4) for l in layers), round(t["true_prob"][i], 4),
                        round(100 * t["accuracy"][i], 2)) for i, m in enumerate(t["magnitudes"])),
        ))  # fmt: skip
    setup = [
        f"Data: the first {n} test images of `{data.name}` ({'x'.join(map(str, data.input_size))}).",
        f"Network: `{cfg.model}`" + (f" with {options}" if options else "") + f", trained with "
        f"{cfg.train.describe()}, seed {ctx.seed} (test accuracy {100 * fit.test_acc:.2f}%).",
        "Transformations (torchvision affine on the normalised images, uncovered pixels filled with black): "
        "vertical translation by whole pixels (nearest), scaling about the centre and rotation (bilinear).",
        f"Layers: the stages of `feature_info` ({', '.join(stages)}) and the last stage averaged over space "
        "(what the classifier reads, the counterpart of Zeiler & Fergus's top layer 7); distance = "
        "||f(Tx) - f(x)|| / ||f(x)|| on the flattened feature maps, averaged over images.",
        "Output: the softmax probability of the true class, its mean absolute change against the "
        "untransformed image, and accuracy.",
    ]
    notes = [
        "Zeiler & Fergus measure layers 1 and 7 of their ImageNet network on five images; here every stage "
        f"of `{cfg.model}` is measured on {n} images.",
        "Digits are not rotation-symmetric and some rotations turn one digit into another (6 and 9), so a "
        "drop of the output under rotation is expected rather than a failure of the network.",
    ] if data.name.startswith("mnist") else [
        "Zeiler & Fergus measure layers 1 and 7 of their ImageNet network on five images; here every stage "
        f"of `{cfg.model}` is measured on {n} images.",
    ]
    results = {"model": cfg.model, "images": n, "layers": layers, "transforms": transforms, "summary": summary,
               "network_test_acc": float(fit.test_acc)}  # fmt: skip
    return Outcome(results=results, criteria=criteria, tables=tables, setup=setup, notes=notes)
