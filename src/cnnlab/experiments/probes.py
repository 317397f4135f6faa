"""Linear probes at every stage: Zeiler & Fergus 2014 §5.2 ("tapping off features at each layer",
lecture 000) and the transfer advice of lecture 002 ("linear classifier from different stages").

A network is trained on some classes, frozen, and a linear classifier (logistic regression fitted
to convergence) is trained on the globally average-pooled features of each stage, for the classes
the network was trained on and for classes it never saw. An untrained network of the same
architecture is probed the same way, as a control.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.experiments.context import ExperimentContext, seed_list, seeded
from cnnlab.experiments.features import extract_features, fit_linear_probe, probe_accuracy
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import DIGITS_OVERRIDES
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import SeedComparison, compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.inspect.layers import stage_names
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import plot_probes

__all__ = ["ProbesConfig", "SCALES", "run", "no_worse_than"]

CLAIM = (
    "Features tapped off deeper layers of a trained network are better: a linear classifier trained on "
    "them is more accurate than on the features of shallower layers."
)


@dataclass(frozen=True)
class ProbesConfig:
    data: str
    model: str
    train: TrainSpec
    train_classes: tuple[int, ...] | None  # classes the network is trained on; None: all
    l2: float = 1e-3  # weight decay of the logistic regression (on standardised features)
    tolerance: float = 0.01  # a stage may lose at most this much accuracy against the previous one
    seeds: int = 3  # networks trained (one per seed), each probed at every stage
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("probes", self.seeds)
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"probes: tolerance must be in [0, 1), got {self.tolerance!r}")
        if self.train_classes is not None and len(set(self.train_classes)) < 2:
            raise ConfigError(f"probes: train_classes needs at least two classes, got {self.train_classes!r}")
        if not self.l2 > 0:
            raise ConfigError(f"probes: l2 must be > 0, got {self.l2!r}")


SCALES = {
    "tiny": ProbesConfig(
        data="synthetic",
        data_options=(("shape", (1, 16, 16)), ("n", 160), ("n_test", 80)),
        model="resnet20",
        train=TrainSpec(recipe="resnet_cifar", epochs=1, batch_size=32),
        train_classes=(0, 1, 2, 3, 4),
        model_options=(("widths", (4, 8, 16)),),
        seeds=2,
    ),
    # ResNet-20 trained on the digits 0-4 of mnist-5k; probes on 0-4 and on the unseen 5-9.
    "quick": ProbesConfig(
        data="mnist-5k",
        model="resnet20",
        train=TrainSpec(recipe="resnet_cifar", epochs=8, batch_size=128, overrides=DIGITS_OVERRIDES),
        train_classes=(0, 1, 2, 3, 4),
    ),
    # CIFAR-10: ResNet-56 trained on the five vehicle-and-animal classes 0-4, probed on 0-4 and 5-9.
    "full": ProbesConfig(
        data="cifar10",
        model="resnet56",
        train=TrainSpec(recipe="resnet_cifar"),  # He et al. §4.2 as it is
        train_classes=(0, 1, 2, 3, 4),
    ),
}


def _restrict(data: Any, classes: tuple[int, ...]) -> Any:
    """The bundle with only ``classes``, relabelled 0..len-1 (so the network gets a smaller head)."""
    from cnnlab.data import subset

    names = tuple(data.class_names[c] for c in classes)
    return dataclasses.replace(
        data, train=subset(data.train, classes=classes), test=subset(data.test, classes=classes),
        val=subset(data.val, classes=classes) if data.val is not None else None,
        num_classes=len(classes), class_names=names,
        notes=data.notes + (f"restricted to classes {list(classes)} ({', '.join(names)})",),
    )  # fmt: skip


def no_worse_than(a: list[float], b: list[float], *, tolerance: float) -> SeedComparison:
    """Per-seed ``a`` against ``b`` for the claim "``a`` loses at most ``tolerance`` against ``b``":
    :func:`compare_seeds` of ``a + tolerance`` against ``b`` (paired), so "met" needs
    ``mean(a - b) + tolerance`` above 2 standard errors, and "not met" a loss beyond the tolerance
    by more than 2 standard errors."""
    return compare_seeds([x + tolerance for x in a], b)


def _probe_stages(model: Any, bundle: Any, stages: list[str], l2: float) -> dict[str, float]:
    """Test accuracy of a linear probe on each stage's pooled features (fitted on the training split)."""
    train_f = extract_features(model, bundle.train.x, stages)
    test_f = extract_features(model, bundle.test.x, stages)
    accs = {}
    for s in stages:
        probe = fit_linear_probe(train_f[s], bundle.train.y, num_classes=bundle.num_classes, l2=l2)
        accs[s] = probe_accuracy(probe, test_f[s], bundle.test.y)
    return accs


def _probe_one_seed(ctx: ExperimentContext, cfg: ProbesConfig, seen: Any, unseen: Any, options: dict) -> dict:
    """One network trained with ``ctx.seed`` (selection on val) and an untrained one built from the
    same seed, both probed at every stage; ``{"test_acc", "trained", "heldout", "random"}``."""
    classes = tuple(cfg.train_classes) if cfg.train_classes is not None else tuple(range(seen.num_classes))
    fit = ctx.train(cfg.model, lambda: ctx.create_model(cfg.model, seen, **options), seen, cfg.train,
                    key={"model": cfg.model, "classes": classes, **options})  # fmt: skip
    trained = ctx.to_device(fit.model)
    random_net = ctx.to_device(ctx.create_model(cfg.model, seen, **options))  # same architecture, never trained
    stages = stage_names(trained)
    ctx.log(f"probing {len(stages)} stages of the trained and of an untrained {cfg.model}")
    return {
        "test_acc": float(fit.test_acc),
        "trained": _probe_stages(trained, seen, stages, cfg.l2),
        "heldout": _probe_stages(trained, unseen, stages, cfg.l2) if unseen is not None else {},
        "random": _probe_stages(random_net, seen, stages, cfg.l2),
        "info": {str(i["module"]): i for i in trained.feature_info},
    }


def _stage_rows(per_seed: list[dict]) -> list[dict[str, Any]]:
    """One row per stage: channels, stride, and each probe's mean and per-seed accuracies."""
    info = per_seed[0]["info"]
    rows = []
    for i, s in enumerate(info):
        row: dict[str, Any] = dict(stage=s, depth_index=i + 1, num_chs=int(info[s]["num_chs"]),
                                   reduction=int(info[s]["reduction"]))  # fmt: skip
        for kind in ("trained", "heldout", "random"):
            vals = [p[kind][s] for p in per_seed if s in p[kind]]
            row[f"{kind}_acc"] = mean_std(vals)[0] if vals else None
            row[f"{kind}_std"] = mean_std(vals)[1] if vals else None
            row[f"{kind}_per_seed"] = vals
        rows.append(row)
    return rows


def _criteria(rows: list[dict], tolerance: float) -> tuple[list[Criterion], dict[str, Any]]:
    """First stage against last (trained and held-out classes) and each stage against the previous one."""
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    first, last = rows[0], rows[-1]
    comparisons = {"last_vs_first": compare_seeds(last["trained_per_seed"], first["trained_per_seed"])}
    criteria = [seed_criterion(
        "the deepest stage's probe is more accurate than the first stage's (trained classes)",
        f"{pct(first['trained_acc'])} at {first['stage']}, {pct(last['trained_acc'])} at {last['stage']}",
        comparisons["last_vs_first"])]  # fmt: skip
    for a, b in zip(rows, rows[1:]):
        comp = comparisons[f"{b['stage']}_vs_{a['stage']}"] = no_worse_than(
            b["trained_per_seed"], a["trained_per_seed"], tolerance=tolerance)
        criteria.append(seed_criterion(
            f"{b['stage']}'s probe loses at most {100 * tolerance:g} point(s) against {a['stage']}'s (trained classes)",
            f"{pct(b['trained_acc'])} at {b['stage']} vs {pct(a['trained_acc'])} at {a['stage']}, plus the "
            f"{100 * tolerance:g}-point allowance", comp))  # fmt: skip
    if first["heldout_per_seed"]:
        comparisons["heldout_last_vs_first"] = compare_seeds(last["heldout_per_seed"], first["heldout_per_seed"])
        criteria.append(seed_criterion(
            "on classes the network never saw, the deepest stage's probe is more accurate than the first stage's",
            f"on the held-out classes, {pct(first['heldout_acc'])} at {first['stage']} and "
            f"{pct(last['heldout_acc'])} at {last['stage']}", comparisons["heldout_last_vs_first"]))  # fmt: skip
    return criteria, {k: vars(c) for k, c in comparisons.items()}


def _table(rows: list[dict], pixels_acc: float, in_chans: int, seeds: int) -> Table:
    cell = lambda r, k: None if r[f"{k}_acc"] is None else round(100 * r[f"{k}_acc"], 2)  # noqa: E731
    return Table(
        title=f"Linear probe test accuracy per stage (%, mean over {seeds} seeds; std of the trained net's)",
        columns=("stage", "channels", "stride", "trained net, its classes", "std", "per seed",
                 "trained net, held-out classes", "untrained net"),
        rows=tuple((r["stage"], r["num_chs"], r["reduction"], cell(r, "trained"), round(100 * r["trained_std"], 2),
                    ", ".join(f"{100 * v:.1f}" for v in r["trained_per_seed"]), cell(r, "heldout"), cell(r, "random"))
                   for r in rows)
        + (("raw pixels (no network)", in_chans, 1, round(100 * pixels_acc, 2), None, None, None, None),),
    )  # fmt: skip


@register_experiment(
    name="probes",
    title="Linear probes: deeper features are more linearly separable",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt", "002_a740cb8c04a80802.txt"),
    paper="Zeiler & Fergus, ECCV 2014 (§5.2, Table 7); Donahue et al. 2014 and Razavian et al. 2014 (lecture 002)",
    scales=SCALES,
    plot=plot_probes,
)
def run(ctx: ExperimentContext, cfg: ProbesConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    classes = tuple(range(data.num_classes)) if cfg.train_classes is None else tuple(cfg.train_classes)
    bad = [c for c in classes if not 0 <= c < data.num_classes]
    if bad:
        raise ConfigError(f"probes: train_classes {bad} do not exist in {data.name} ({data.num_classes} classes)")
    held_out = tuple(c for c in range(data.num_classes) if c not in classes)
    seen = _restrict(data, classes) if held_out else data
    unseen = _restrict(data, held_out) if held_out else None

    per_seed = [_probe_one_seed(seeded(ctx, s), cfg, seen, unseen, options) for s in seed_list(ctx, cfg.seeds)]
    rows = _stage_rows(per_seed)
    pixels = fit_linear_probe(seen.train.x.flatten(1), seen.train.y, num_classes=seen.num_classes, l2=cfg.l2)
    pixels_acc = probe_accuracy(pixels, seen.test.x.flatten(1), seen.test.y)
    criteria, comparisons = _criteria(rows, cfg.tolerance)
    net_accs = [p["test_acc"] for p in per_seed]
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    first, last = rows[0], rows[-1]
    setup = [
        f"Data: `{data.name}` ({'x'.join(map(str, data.input_size))}); the network is trained on classes "
        f"{list(classes)} ({len(seen.train.y):,} training images)"
        + (f"; classes {list(held_out)} are held out for the transfer probe." if held_out else "."),
        f"Network: `{cfg.model}`" + (f" with {options}" if options else "") + f", trained with "
        f"{cfg.train.describe()} (the best-validation epoch kept), once per seed "
        f"{', '.join(map(str, seed_list(ctx, cfg.seeds)))} (test accuracy "
        f"{', '.join(f'{100 * a:.2f}%' for a in net_accs)}), then frozen.",
        "Features: the output of each stage listed in the model's `feature_info`, averaged over space "
        "(global average pooling), one vector per image.",
        f"Probe: multinomial logistic regression on standardised features, L2 weight {cfg.l2:g}, fitted to "
        "convergence with L-BFGS on the training split and scored on the test split.",
        "Control: the same probes on an untrained network of the same architecture (random weights, built "
        "from the same seed).",
        "Verdicts: each stage's probe accuracy is measured on every seed's network; stages are compared by "
        "the mean paired (per-seed) difference, which must exceed 2 standard errors.",
    ]
    notes = [
        "Zeiler & Fergus probe an ImageNet-trained network on Caltech-101/256 with the unpooled features "
        "of layers 1-7; here the features are pooled over space so that every stage gives a vector of its "
        "channel count, which is what the lecture's 'linear classifier from different stages' fits.",
        "Global average pooling discards where a feature is, which hurts shallow stages most: compare with "
        "the raw-pixel row.",
        f"Control: the untrained network's probes go from {pct(first['random_acc'])} to {pct(last['random_acc'])} "
        "over the same stages, so part of any rise with depth comes from the architecture itself (more "
        "channels and a larger receptive field deeper, even with random weights); training adds "
        f"{100 * (last['trained_acc'] - last['random_acc']):.1f} points at the last stage (means over seeds).",
    ]
    results = {
        "model": cfg.model, "train_classes": list(classes), "held_out_classes": list(held_out),
        "network_test_acc": mean_std(net_accs)[0], "network_test_acc_per_seed": net_accs, "stages": rows,
        "pixels_acc": pixels_acc, "comparisons": comparisons, "seeds": cfg.seeds,
    }  # fmt: skip
    return Outcome(results=results, criteria=criteria, tables=[_table(rows, pixels_acc, seen.input_size[0], cfg.seeds)],
                   setup=setup, notes=notes)  # fmt: skip
