"""Do attribution maps show where the object is, and do they depend on what the network learnt?

A network ending in global average pooling is trained to classify digits pasted at random places on
an empty canvas (``mnist-canvas``); it is never told where the digit is. For every attribution
method of :mod:`cnnlab.inspect` the experiment measures, on test canvases:

- the pointing game (Zhang et al. 2016): the fraction of images whose map maximum lies inside the
  digit's box (chance: the box's share of the canvas);
- a deletion curve (Petsiuk et al. 2018): accuracy as the most-attributed pixels are blacked out,
  summarised by its area (lower: the map found the evidence), against deleting pixels in random order;
- the sanity checks of Adebayo et al. (2018): the rank correlation between the trained net's maps and
  those after randomising its layers top-down (cascading), and those of the same net trained on
  shuffled labels. A method whose maps stay the same when the weights are random does not explain
  the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.experiments.context import ExperimentContext
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import DIGITS_OVERRIDES
from cnnlab.experiments.registry import register_experiment
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.localisation_plots import plot_localisation

__all__ = ["LocalisationConfig", "SCALES", "run", "pointing_game", "deletion_curve", "rank_correlation"]

CLAIM = (
    "A classification network that ends in global average pooling localises the object it was never "
    "told the place of: its class activation maps (and gradient-based maps) point at the object; and "
    "a faithful map changes when the network's weights are randomised (guided backprop's does not)."
)


@dataclass(frozen=True)
class LocalisationConfig:
    data: str
    model: str
    train: TrainSpec
    model_options: tuple[tuple[str, Any], ...] = ()
    size: int = 64  # canvas side fed to the net (the 64x64 canvases resized; boxes scaled alike)
    train_images: int | None = None  # None: the whole train split
    val_images: int | None = None  # None: the whole val split (tiny scale takes fewer, to stay fast)
    cascade_steps: int | None = None  # None: one step per top-level layer; k: the layers grouped into k steps
    eval_images: int = 200  # test canvases scored: a stratified choice with a fixed seed (see scored_indices)
    sanity_images: int = 64  # of those, the first ones (still spread over the classes) the sanity checks redo
    deletion: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)  # fractions of pixels blacked out
    smooth_samples: int = 16
    ig_steps: int = 32
    occlusion_window: int = 12
    faithful_below: float = 0.5  # a map "depends on the weights" when the rank correlation falls below this
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.cascade_steps is not None and self.cascade_steps < 1:
            raise ConfigError(f"localisation: cascade_steps must be positive or None, got {self.cascade_steps}")
        if not 1 <= self.sanity_images <= self.eval_images:
            raise ConfigError(f"localisation: sanity_images must be in 1..eval_images, got {self.sanity_images}")
        if not self.deletion or self.deletion[0] != 0.0 or list(self.deletion) != sorted(self.deletion):
            raise ConfigError(f"localisation: deletion fractions must rise from 0, got {self.deletion}")


SCORE_SEED = 2018  # which test canvases are scored; fixed, so every run and seed scores the same images
_NARROW = (("widths", (8, 16, 32)),)  # ResNet-20 at half width, on canvases halved to 32x32: minutes on a CPU

SCALES = {
    "tiny": LocalisationConfig(
        data="mnist-canvas", model="resnet20", model_options=(("widths", (4, 4, 8)),),
        train=TrainSpec(recipe="resnet_cifar", epochs=1, batch_size=64, overrides=DIGITS_OVERRIDES),
        # Plumbing only: 16x16 canvases, 2 scored images, the cascade in 2 steps (fc..layer2, then layer1..conv1).
        size=16, train_images=128, val_images=64, eval_images=2, sanity_images=2, smooth_samples=2, ig_steps=2,
        occlusion_window=8, cascade_steps=2, deletion=(0.0, 0.1, 0.3),
    ),  # fmt: skip
    "quick": LocalisationConfig(
        data="mnist-canvas", model="resnet20", model_options=_NARROW,
        # 5 epochs at batch 64 (275 updates per net, two nets): about 2 minutes of training on 2 idle
        # cores (resnet20 trains at ~700 img/s there, benchmarks/train_throughput.py); docs/inspect.md states the load it ran under.
        train=TrainSpec(recipe="resnet_cifar", epochs=5, batch_size=64, lr=0.05, overrides=DIGITS_OVERRIDES),
        size=32, eval_images=200, sanity_images=20, smooth_samples=4, ig_steps=8, occlusion_window=8,
    ),  # fmt: skip
    "full": LocalisationConfig(
        data="mnist-canvas", model="resnet20",
        train=TrainSpec(recipe="resnet_cifar", epochs=30, overrides=DIGITS_OVERRIDES),
        eval_images=1000, sanity_images=200, smooth_samples=50, ig_steps=64, occlusion_window=8,
    ),  # fmt: skip
}


# ---------------------------------------------------------------------------------------------
# Measures (definitions; the tests check them on planted maps)
# ---------------------------------------------------------------------------------------------


def scored_indices(labels: np.ndarray, n: int, *, seed: int = SCORE_SEED) -> np.ndarray:
    """``n`` indices of ``labels`` spread evenly over the classes, drawn with a fixed ``seed``.

    The test split is ordered by class, so its first ``n`` images can all be one digit. Here each
    class's images are shuffled, then the classes are taken in turn (one image of class 0, one of
    class 1, ...), so any prefix of the result is as balanced as it can be (the sanity checks use a
    prefix); a class that runs out is skipped.
    """
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    depth = max(len(p) for p in per_class)
    order = [p[i] for i in range(depth) for p in per_class if i < len(p)]
    return np.asarray(order[:n], dtype=np.int64)


def pointing_game(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per image, whether the map's maximum (first in row-major order) is inside its box.

    ``maps`` (N, H, W); ``boxes`` (N, 4) as x0, y0, x1, y1 in pixels, x1/y1 exclusive.
    """
    n, h, w = maps.shape
    flat = np.nan_to_num(maps.reshape(n, -1), nan=-np.inf).argmax(1)
    rows, cols = flat // w, flat % w
    return (cols >= boxes[:, 0]) & (cols < boxes[:, 2]) & (rows >= boxes[:, 1]) & (rows < boxes[:, 3])


def deletion_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, maps: np.ndarray, *,
                   fractions: tuple[float, ...], fill: float) -> list[float]:
    """Accuracy after setting the top ``f`` fraction of each image's most-attributed pixels to ``fill``."""
    n, h, w = maps.shape
    order = torch.from_numpy(np.argsort(-maps.reshape(n, -1), axis=1, kind="stable"))
    accs = []
    with torch.no_grad():
        for f in fractions:
            k = int(round(f * h * w))
            xd = x.clone()
            if k:
                mask = torch.zeros(n, h * w, dtype=torch.bool)
                mask.scatter_(1, order[:, :k], True)
                xd.masked_fill_(mask.view(n, 1, h, w).expand_as(xd), fill)
            accs.append(float((model(xd).argmax(1) == y).float().mean()))
    return accs


def area(fractions: tuple[float, ...], values: list[float]) -> float:
    """Trapezoid area under the curve divided by the fraction range: the curve's mean height."""
    f = np.asarray(fractions, dtype=float)
    v = np.asarray(values, dtype=float)
    return float(np.sum((v[1:] + v[:-1]) / 2 * np.diff(f)) / (f[-1] - f[0]))


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of Spearman's rank correlation between two maps (N, H, W) (ties averaged)."""
    from scipy.stats import rankdata

    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    r = np.where(den > 0, (ra * rb).sum(1) / np.where(den > 0, den, 1.0), 0.0)
    return float(r.mean())


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------


def _maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, methods: list[str], cfg: LocalisationConfig, *,
          black: float, batch: int = 50) -> dict[str, np.ndarray]:
    from cnnlab.inspect import attribute

    out: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for s in range(0, len(x), batch):
        for m in methods:
            out[m].append(attribute(model, x[s : s + batch], y[s : s + batch], method=m,
                                    smooth_samples=cfg.smooth_samples, ig_steps=cfg.ig_steps,
                                    window=cfg.occlusion_window, black=black))  # fmt: skip
    return {m: np.concatenate(v) for m, v in out.items()}


def _cascade(model: nn.Module, groups: int | None = None) -> list[tuple[str, list[nn.Module]]]:
    """Top-level children with parameters, from the output back to the input (Adebayo et al.'s order).

    With ``groups``, consecutive children are merged into that many steps (named by the lowest layer
    each reaches); the last step still reaches the input layer, so every layer ends up random.
    """
    steps = [(name, [m for m in child.modules() if hasattr(m, "reset_parameters")])
             for name, child in model.named_children() if any(True for _ in child.parameters())]  # fmt: skip
    steps = [s for s in reversed(steps) if s[1]]
    if groups is None or groups >= len(steps):
        return steps
    bounds = np.linspace(0, len(steps), groups + 1).round().astype(int)
    return [(steps[b - 1][0], [m for _, mods in steps[a:b] for m in mods]) for a, b in zip(bounds[:-1], bounds[1:])]


def _sanity(ctx: ExperimentContext, model: nn.Module, shuffled: nn.Module, x, y, reference, methods, cfg, black):  # noqa: ANN001
    import copy

    cascade: dict[str, list[dict]] = {m: [] for m in methods}
    randomised = copy.deepcopy(model).eval()
    for step, (name, modules) in enumerate(_cascade(randomised, cfg.cascade_steps)):
        torch.manual_seed(ctx.seed * 1000 + step)
        for m in modules:
            m.reset_parameters()
        ctx.log(f"sanity: maps with the layers down to {name} randomised")
        maps = _maps(randomised, x, y, methods, cfg, black=black)
        for m in methods:
            cascade[m].append(dict(randomised_to=name, rank_corr=rank_correlation(reference[m], maps[m])))
    ctx.log("sanity: maps of the net trained on shuffled labels")
    shuffled_maps = _maps(shuffled, x, y, methods, cfg, black=black)
    labels = {m: rank_correlation(reference[m], shuffled_maps[m]) for m in methods}
    return cascade, labels


def _subset(pair: Any, n: int) -> Any:
    from cnnlab.data.bundle import TensorPair

    idx = torch.from_numpy(scored_indices(pair.y.numpy(), n))
    return TensorPair(pair.x[idx], pair.y[idx])


def _shuffled_labels(data: Any, seed: int) -> Any:
    """``data`` with its train and val labels permuted: the val labels too, so the best epoch of the
    net trained on random labels is selected on random labels (true val labels would pick the epoch that
    happened to generalise best, leaking the real task into the randomised net)."""
    gen = torch.Generator().manual_seed(seed)
    shuffle = lambda pair: dataclasses.replace(pair, y=pair.y[torch.randperm(len(pair.y), generator=gen)])  # noqa: E731
    return dataclasses.replace(data, train=shuffle(data.train), val=shuffle(data.val),
                               notes=data.notes + ("train and val labels shuffled (Adebayo et al. 2018 data "
                                                   "randomisation)",))


@register_experiment(
    name="localisation",
    title="Attribution maps: do they localise, and do they depend on the weights?",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt", "002_a740cb8c04a80802.txt"),
    paper="Zhou et al., CVPR 2016 (CAM); Zeiler & Fergus 2014 (occlusion, deconvnet); Adebayo et al., NeurIPS "
          "2018 (sanity checks)",
    scales=SCALES,
    plot=plot_localisation,
)
def run(ctx: ExperimentContext, cfg: LocalisationConfig) -> Outcome:
    from cnnlab.data.canvas import canvas_boxes
    from cnnlab.inspect import METHODS, cam_head

    if cfg.data != "mnist-canvas":
        raise ConfigError(f"localisation needs the boxes of mnist-canvas; {cfg.data!r} has none")
    data = ctx.load_data(cfg.data, input_size=(1, cfg.size, cfg.size), **dict(cfg.data_options))
    # Subsets (tiny scale) are class-stratified too: every split of mnist-canvas is ordered by class.
    if cfg.train_images is not None:
        data = dataclasses.replace(data, train=_subset(data.train, cfg.train_images))
    if cfg.val_images is not None:
        data = dataclasses.replace(data, val=_subset(data.val, cfg.val_images))
    options = dict(cfg.model_options)
    fit = ctx.train(cfg.model, lambda: ctx.create_model(cfg.model, data, **options), data, cfg.train,
                    key={"model": cfg.model, "train_images": cfg.train_images, "val_images": cfg.val_images,
                         **options})  # fmt: skip
    shuffled_data = _shuffled_labels(data, ctx.seed + 1)
    shuffled_fit = ctx.train(f"{cfg.model} (shuffled labels)", lambda: ctx.create_model(cfg.model, data, **options),
                             shuffled_data, cfg.train, key={"model": cfg.model, "shuffled": True, **options})
    model, shuffled = fit.model.eval(), shuffled_fit.model.eval()  # CPU: captum and the maps run there

    # Everything the measures choose reads val: the black used for deletion, occlusion and the IG
    # baseline; the trained nets' best epochs (fit selects on val). Test is scored once, below.
    black = float(data.val.x.amin())
    n = min(cfg.eval_images, len(data.test))
    picked = scored_indices(data.test.y.numpy(), n)
    x, y = data.test.x[picked], data.test.y[picked]
    boxes = canvas_boxes("test", size=data.input_size[1])[picked]
    chance = float(np.mean((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) / data.input_size[1] ** 2)
    cam_head(model, tuple(x.shape[1:]))  # the net must end in GAP (ConfigError otherwise)
    methods = list(METHODS)
    ctx.log(f"attribution maps of {n} test canvases, {len(methods)} methods")
    maps = _maps(model, x, y, methods, cfg, black=black)
    fill = black
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).numpy()
    rows = []
    for m in methods:
        hit = pointing_game(maps[m], boxes)
        curve = deletion_curve(model, x, y, maps[m], fractions=cfg.deletion, fill=fill)
        rows.append(dict(method=m, pointing=float(hit.mean()), pointing_correct=float(hit[correct].mean())
                         if correct.any() else None, deletion=curve, deletion_auc=area(cfg.deletion, curve)))
    rand = np.random.default_rng(ctx.seed).random(maps[methods[0]].shape)
    random_curve = deletion_curve(model, x, y, rand, fractions=cfg.deletion, fill=fill)
    random_auc = area(cfg.deletion, random_curve)

    k = min(cfg.sanity_images, n)
    cascade, label_corr = _sanity(ctx, model, shuffled, x[:k], y[:k], {m: maps[m][:k] for m in methods},
                                  methods, cfg, black)  # fmt: skip
    for r in rows:
        r["cascade"] = cascade[r["method"]]
        r["rank_corr_all_random"] = cascade[r["method"]][-1]["rank_corr"]
        r["rank_corr_shuffled_labels"] = label_corr[r["method"]]
    counts = np.bincount(y.numpy(), minlength=data.num_classes).tolist()
    return _outcome(ctx, cfg, data, fit, shuffled_fit, rows, chance, random_curve, random_auc, n, k, counts)


def _outcome(ctx, cfg, data, fit, shuffled_fit, rows, chance, random_curve, random_auc, n, k, counts) -> Outcome:  # noqa: ANN001
    pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
    by = {r["method"]: r for r in rows}
    independent = [r["method"] for r in rows if r["rank_corr_all_random"] >= cfg.faithful_below]
    localise = [r["method"] for r in rows if r["pointing"] >= 2 * chance]
    criteria = [
        Criterion(
            description="CAM (Zhou et al. 2016) points inside the digit's box on at least half of the test canvases",
            finding=f"CAM's map maximum falls in the box on {pct(by['cam']['pointing'])} of {n} canvases "
            f"(chance {pct(chance)})",
            passed=by["cam"]["pointing"] >= 0.5,
        ),
        Criterion(
            description="deleting the pixels CAM ranks first hurts accuracy more than deleting pixels at random",
            finding=f"deletion area {by['cam']['deletion_auc']:.2f} for CAM vs {random_auc:.2f} in random order",
            passed=by["cam"]["deletion_auc"] < random_auc,
        ),
        Criterion(
            description="guided backprop's maps depend less on the weights than plain gradients' (Adebayo et al.): "
            "higher rank correlation with the trained net's maps once every layer is randomised",
            finding=f"rank correlation after full randomisation {by['guided_backprop']['rank_corr_all_random']:.2f} "
            f"for guided backprop vs {by['saliency']['rank_corr_all_random']:.2f} for saliency",
            passed=by["guided_backprop"]["rank_corr_all_random"] > by["saliency"]["rank_corr_all_random"],
        ),
    ]
    table = Table(
        title=f"Localisation and sanity per method ({n} test canvases; sanity on {k})",
        columns=("method", "pointing game (%)", "pointing, correct only (%)", "deletion area (acc)",
                 "rank corr., all layers random", "rank corr., shuffled labels"),
        rows=tuple((r["method"], round(100 * r["pointing"], 1),
                    None if r["pointing_correct"] is None else round(100 * r["pointing_correct"], 1),
                    round(r["deletion_auc"], 3), round(r["rank_corr_all_random"], 2),
                    round(r["rank_corr_shuffled_labels"], 2)) for r in rows)
        + (("(chance / random order)", round(100 * chance, 1), None, round(random_auc, 3), None, None),),
    )  # fmt: skip
    setup = [
        f"Data: `mnist-canvas`, {len(data.train.y):,} training canvases (64x64, one mnist-5k digit each at a random "
        f"place{'' if cfg.size == 64 else f', resized to {cfg.size}x{cfg.size}'}); the boxes are the digits' ink boxes "
        "(scaled alike) and are never shown to the network.",
        f"Network: `{cfg.model}` {dict(cfg.model_options) or ''} (ends in global average pooling and one linear "
        f"layer), trained with {cfg.train.describe()}, seed {ctx.seed}, best epoch selected on the "
        f"{len(data.val.y):,} val canvases (val accuracy {100 * fit.val_acc:.1f}%): test accuracy "
        f"{100 * fit.test_acc:.1f}%. The same net trained on shuffled train and val labels: test accuracy "
        f"{100 * shuffled_fit.test_acc:.1f}%.",
        f"Maps for the true class of {n} test canvases chosen stratified by class with a fixed seed ({SCORE_SEED}; "
        f"per class {counts}; the test split is ordered by class, so its first images would all be zeros); the "
        f"sanity checks use the first {k} of them. Every method's map is non-negative (|.| over channels for "
        "gradients; occlusion's logit drop; Grad-CAM/CAM upsampled from the last stage). The black pixel (deletion "
        "fill, occlusion square, integrated gradients' baseline) is read off the val split.",
        f"Deletion: accuracy after blacking out the top {', '.join(pct(f) for f in cfg.deletion)} of pixels; the area "
        "is the curve's mean height (lower: the map found the evidence).",
        "Sanity (Adebayo et al. 2018): Spearman rank correlation of each image's map with the trained net's, after "
        "re-initialising the layers top-down (cascading) and for the net trained on shuffled labels.",
    ]
    notes = [
        f"Methods that localise (pointing game at least twice chance, {pct(2 * chance)}): "
        + (", ".join(localise) if localise else "none") + ".",
        f"Methods whose maps do not depend on the weights (rank correlation >= {cfg.faithful_below} with the trained "
        "net's after randomising every layer): " + (", ".join(independent) if independent else "none") + ".",
    ]
    if ctx.scale == "tiny":
        notes.append(f"tiny scale: a tiny net trained for one epoch on {len(data.train.y)} canvases, {n} canvases "
                     "scored, the cascade in coarse steps; the numbers only test the plumbing.")
    results = {
        "model": cfg.model, "network_test_acc": float(fit.test_acc), "network_val_acc": float(fit.val_acc),
        "shuffled_test_acc": float(shuffled_fit.test_acc), "scored_per_class": counts, "score_seed": SCORE_SEED,
        "chance": chance, "deletion_fractions": list(cfg.deletion), "random_deletion": random_curve,
        "random_deletion_auc": random_auc, "methods": rows, "localising": localise, "weight_independent": independent,
    }  # fmt: skip
    return Outcome(results=results, criteria=criteria, tables=[table], setup=setup, notes=notes)
