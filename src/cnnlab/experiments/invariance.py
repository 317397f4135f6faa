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
from cnnlab.experiments.context import ExperimentContext, seed_list, seeded
from cnnlab.experiments.features import TRANSFORMS, background_fill, transform_batch
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import DIGITS_OVERRIDES
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.inspect.layers import capture, model_device, stage_names
from cnnlab.training.spec import TrainSpec
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
    seeds: int = 3  # networks trained (one per seed), each measured on the same images
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for kind in TRANSFORMS:
            mags = getattr(self, kind)
            if len(mags) < 2 or list(mags) != sorted(mags):
                raise ConfigError(f"invariance: {kind} must list at least two magnitudes in increasing order")
        if any(s <= 0 for s in self.scale):
            raise ConfigError(f"invariance: scale factors must be positive, got {self.scale!r}")
        require_seeds("invariance", self.seeds)
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
        seeds=2,
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


def _measure_one_seed(ctx: ExperimentContext, cfg: InvarianceConfig, data: Any, options: dict,
                      x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """One network trained with ``ctx.seed`` (the best-validation epoch kept), measured under every
    transformation: ``{"test_acc", "stages", "transforms": {kind: feature_distances(...)}}``."""
    fit = ctx.train(cfg.model, lambda: ctx.create_model(cfg.model, data, **options), data, cfg.train,
                    key={"model": cfg.model, **options})  # fmt: skip
    model = ctx.to_device(fit.model)
    stages = stage_names(model)
    fill = background_fill(data.mean, data.std)
    transforms = {}
    for kind in TRANSFORMS:
        mags = [float(m) for m in getattr(cfg, kind)]
        ctx.log(f"{kind}: {len(mags)} magnitudes x {len(y)} images")
        transforms[kind] = feature_distances(model, x, y, stages, kind, mags, fill=fill)
    return {"test_acc": float(fit.test_acc), "stages": stages, "transforms": transforms}


def _mean_curves(cfg: InvarianceConfig, per_seed: list[dict], layers: list[str]) -> dict[str, Any]:
    """Per transformation: magnitudes and the curves of :func:`feature_distances` averaged over seeds."""
    mean = lambda lists: [statistics.fmean(v) for v in zip(*lists)]  # noqa: E731
    out = {}
    for kind, (unit, identity) in TRANSFORMS.items():
        runs = [p["transforms"][kind] for p in per_seed]
        out[kind] = dict(unit=unit, identity=identity, magnitudes=[float(m) for m in getattr(cfg, kind)],
                         distance={l: mean([r["distance"][l] for r in runs]) for l in layers},
                         **{k: mean([r[k] for r in runs]) for k in ("true_prob", "prob_change", "accuracy")})
    return out


def _summaries(cfg: InvarianceConfig, per_seed: list[dict], layers: list[str]) -> dict[str, dict[str, Any]]:
    """Per transformation, the mean over the non-identity magnitudes of the first and last layers'
    distances, of the change of P(true class) and of the accuracy: per seed, and their mean."""
    keys = {"first_layer_distance": ("distance", layers[0]), "last_layer_distance": ("distance", layers[-1]),
            "mean_prob_change": ("prob_change", None), "mean_accuracy": ("accuracy", None)}
    summary: dict[str, dict[str, Any]] = {}
    for kind, (_, identity) in TRANSFORMS.items():
        mags = [float(m) for m in getattr(cfg, kind)]
        summary[kind] = {}
        for key, (field, layer) in keys.items():
            vals = []
            for p in per_seed:
                curve = p["transforms"][kind][field]
                curve = curve[layer] if layer is not None else curve
                vals.append(statistics.fmean(v for m, v in zip(mags, curve) if m != identity))
            summary[kind][key], summary[kind][f"{key}_per_seed"] = mean_std(vals)[0], vals
    return summary


def _criteria(summary: dict, first: str, last: str) -> tuple[list[Criterion], dict[str, Any]]:
    f3 = lambda v: f"{v:.3f}"  # noqa: E731
    s = summary
    comps = {f"{k}_last_vs_first": compare_seeds(s[k]["last_layer_distance_per_seed"],
                                                 s[k]["first_layer_distance_per_seed"], expect="less")
             for k in ("translation", "scale")}  # fmt: skip
    criteria = [
        seed_criterion(f"{kind}: the top features (last stage, average-pooled) change less than the first stage's "
                       "(normalised distance, mean over the non-identity magnitudes)",
                       f"{kind} moved {first} by {f3(s[kind]['first_layer_distance'])} and {last} by "
                       f"{f3(s[kind]['last_layer_distance'])}", comps[f"{kind}_last_vs_first"], scale=1.0, unit="")
        for kind in ("translation", "scale")
    ]  # fmt: skip
    for other in ("translation", "scale"):
        comp = comps[f"rotation_vs_{other}"] = compare_seeds(s["rotation"]["mean_prob_change_per_seed"],
                                                             s[other]["mean_prob_change_per_seed"])
        criteria.append(seed_criterion(
            f"the output is less stable under rotation than under {other}: the mean change of the true class's "
            "probability is larger", f"the true class's probability changed by {f3(s['rotation']['mean_prob_change'])} "
            f"under rotation and {f3(s[other]['mean_prob_change'])} under {other}", comp, unit=" points of probability"))
    return criteria, {k: vars(c) for k, c in comps.items()}


def _tables(transforms: dict, summary: dict, layers: list[str], seeds: int) -> list[Table]:
    def off_identity(t: dict, values: list[float]) -> float:
        return statistics.fmean(v for m, v in zip(t["magnitudes"], values) if m != t["identity"])

    tables = [Table(
        title=f"Mean over the non-identity magnitudes (and over {seeds} seeds)",
        columns=("transformation", "range", *(f"distance {l}" for l in layers), "|change| of P(true class)",
                 "accuracy (%)"),
        rows=tuple((kind, f"{t['magnitudes'][0]:g} to {t['magnitudes'][-1]:g} {t['unit']}",
                    *(round(off_identity(t, t["distance"][l]), 4) for l in layers),
                    round(summary[kind]["mean_prob_change"], 4), round(100 * summary[kind]["mean_accuracy"], 2))
                   for kind, t in transforms.items()),
    )]  # fmt: skip
    for kind, t in transforms.items():
        tables.append(Table(
            title=f"{kind.capitalize()} ({t['unit']}), mean over {seeds} seeds",
            columns=("magnitude", *(f"distance {l}" for l in layers), "P(true class)", "accuracy (%)"),
            rows=tuple((m, *(round(t["distance"][l][i], 4) for l in layers), round(t["true_prob"][i], 4),
                        round(100 * t["accuracy"][i], 2)) for i, m in enumerate(t["magnitudes"])),
        ))  # fmt: skip
    return tables


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
    n = min(cfg.images, len(data.test.y))
    x, y = data.test.x[:n], data.test.y[:n]
    seeds = seed_list(ctx, cfg.seeds)
    per_seed = [_measure_one_seed(seeded(ctx, s), cfg, data, options, x, y) for s in seeds]
    stages = per_seed[0]["stages"]
    layers = [*stages, pooled_name(stages)]  # every curve of the plots, shallow to deep
    transforms = _mean_curves(cfg, per_seed, layers)
    summary = _summaries(cfg, per_seed, layers)
    criteria, comparisons = _criteria(summary, layers[0], layers[-1])
    net_accs = [p["test_acc"] for p in per_seed]
    setup = [
        f"Data: the first {n} test images of `{data.name}` ({'x'.join(map(str, data.input_size))}).",
        f"Network: `{cfg.model}`" + (f" with {options}" if options else "") + f", trained with "
        f"{cfg.train.describe()} (the best-validation epoch kept), once per seed {', '.join(map(str, seeds))} "
        f"(test accuracy {', '.join(f'{100 * a:.2f}%' for a in net_accs)}).",
        "Transformations (torchvision affine on the normalised images, uncovered pixels filled with black): "
        "vertical translation by whole pixels (nearest), scaling about the centre and rotation (bilinear).",
        f"Layers: the stages of `feature_info` ({', '.join(stages)}) and the last stage averaged over space "
        "(what the classifier reads, the counterpart of Zeiler & Fergus's top layer 7); distance = "
        "||f(Tx) - f(x)|| / ||f(x)|| on the flattened feature maps, averaged over images.",
        "Output: the softmax probability of the true class, its mean absolute change against the "
        "untransformed image, and accuracy.",
        "Verdicts: every quantity is measured on each seed's network; the criteria compare the mean paired "
        "(per-seed) difference with its standard error (2 standard errors to decide); curves and tables show "
        "means over seeds.",
    ]
    notes = [
        "Zeiler & Fergus measure layers 1 and 7 of their ImageNet network on five images; here every stage "
        f"of `{cfg.model}` is measured on {n} images, for {cfg.seeds} independently trained networks.",
    ]
    if data.name.startswith("mnist"):
        notes.append("Digits are not rotation-symmetric and some rotations turn one digit into another (6 and 9), "
                     "so a drop of the output under rotation is expected rather than a failure of the network.")
    results = {"model": cfg.model, "images": n, "layers": layers, "transforms": transforms, "summary": summary,
               "network_test_acc": mean_std(net_accs)[0], "network_test_acc_per_seed": net_accs,
               "comparisons": comparisons, "seeds": cfg.seeds}  # fmt: skip
    return Outcome(results=results, criteria=criteria, tables=_tables(transforms, summary, layers, cfg.seeds),
                   setup=setup, notes=notes)  # fmt: skip
