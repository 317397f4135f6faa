"""Dropout: Hinton et al. 2012 / Srivastava et al., JMLR 2014 (lectures 000, 002), and Krizhevsky et
al. 2012 §4.2 ("without dropout, our network exhibits substantial overfitting").

The same network with and without dropout (p = 0.5 on the outputs of its two wide FC layers), both
trained with the same recipe and budget; after every epoch the error on the clean training set
(eval mode, no augmentation) and on the test set. Then, on the dropout network, the test-time rule
(weight scaling: all units, outputs scaled by the keep probability, which PyTorch's inverted
dropout does at training time) against the average of K sampled dropout networks (K masks per
image; softmax averaged, and the geometric mean of the distributions as Hinton et al. state it).

Both networks are trained from the same seeds (paired: same initial weights and batch
order), the test-time rules are compared on every seed's dropout network, and each criterion is
decided over the per-seed values (``compare_seeds``; the closeness of weight scaling to the K-mask
average by :func:`within_tolerance`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.experiments.context import ExperimentContext, MeasureEachEpoch, seed_list, seeded
from cnnlab.experiments.nets import WideFCConfig, WideFCNet
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import NO_OTHER_REGULARISER
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import SeedComparison, compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["DropoutConfig", "SCALES", "run", "mc_dropout_accuracy", "plot_dropout", "within_tolerance"]

CLAIM = (
    "Dropout (p = 0.5 on the large fully connected layers) prevents over-fitting: it narrows the gap "
    "between training and test error. At test time, using all units with their outputs scaled "
    "(weight scaling) is a fast approximation of the geometric mean of the exponentially many "
    "thinned networks, and it is close to actually averaging many sampled networks."
)


@dataclass(frozen=True)
class DropoutConfig:
    data: str
    train: TrainSpec
    channels: tuple[int, ...] = (16,)  # conv5 stages of WideFCNet
    fc_width: int = 1024
    p: float = 0.5  # the dropout rate of the lectures ("around p = 0.5")
    mc_ks: tuple[int, ...] = (1, 4, 16, 64)  # sampled masks per test image
    seeds: int = 3  # networks per variant, the same seeds for both (paired verdicts)
    tracked_seeds: int = 1  # of which the first ones are measured after every epoch (the others at the end)
    close: float = 0.005  # weight scaling is "close" to the K-mask average within this accuracy
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.p < 1:
            raise ConfigError(f"dropout: p must be in (0, 1), got {self.p!r}")
        ks = self.mc_ks
        if not ks or any(not isinstance(k, int) or k < 1 for k in ks) or list(ks) != sorted(set(ks)):
            raise ConfigError(f"dropout: mc_ks must be increasing positive integers, got {self.mc_ks!r}")
        require_seeds("dropout", self.seeds)
        if not isinstance(self.tracked_seeds, int) or not 1 <= self.tracked_seeds <= self.seeds:
            raise ConfigError(f"dropout: tracked_seeds must be in 1..seeds, got {self.tracked_seeds!r}")
        if not self.close >= 0:
            raise ConfigError(f"dropout: close must be >= 0, got {self.close!r}")


SCALES = {
    "tiny": DropoutConfig(
        data="synthetic",
        data_options=(("shape", (1, 16, 16)), ("n", 64)),
        channels=(4,),
        fc_width=32,
        mc_ks=(1, 2, 4),
        train=TrainSpec(recipe="alexnet", epochs=2, batch_size=32, lr=0.05, overrides=NO_OTHER_REGULARISER),
        seeds=2,  # the second seed takes the untracked path
    ),
    # 4,000 digits; one conv5-16 stage, then FC6/FC7 of 1,024: 3.4M weights, all but 400 of them in
    # the FC layers (lecture 000: dropout helps most "when there are huge fully connected layers").
    # With a second conv stage (Caffe's LeNet trunk, channels=(20, 50)) digits hardly over-fit: in a
    # 10-epoch trial (seed 0) the test error was 1.8% with and 1.6% without dropout. Three seeds.
    "quick": DropoutConfig(
        data="mnist-5k",
        train=TrainSpec(recipe="alexnet", epochs=8, batch_size=128, lr=0.05, overrides=NO_OTHER_REGULARISER),
        seeds=3,
    ),
    # Set before any standard run. Fashion-MNIST, all 54,000 training images at 28x28, quick's net
    # (3.4M weights, almost all in FC6/FC7, nothing else regularising them) and recipe for 8 epochs
    # at batch 128: 3,376 updates (quick: 232), time for the net without dropout to over-fit. Weight
    # scaling must stay within half a point of the 64-mask average, as at quick: 50 of the 10,000
    # test images.
    # Cost: 6 networks (2 x 3 seeds) x 8 epochs x (54,000 + 16,000 / 3 for the validation and test
    # passes) = 2.85M image passes at 0.31 ms (one thread) = 15 minutes; the clean training error of
    # one seed per arm after every epoch, 2 x 8 x 54,000 / 3 = 0.29M passes (1.5 minutes); and 64
    # sampled masks on the 10,000 test images for each of 3 nets, 1.92M fp32 forwards at 0.24 ms
    # (7.8 minutes): about 24 minutes at one thread.
    "standard": DropoutConfig(
        data="fashion-mnist",
        train=TrainSpec(recipe="alexnet", epochs=8, batch_size=128, lr=0.05, overrides=NO_OTHER_REGULARISER),
        seeds=3,
        close=0.005,
    ),
    # CIFAR-10 (32x32 RGB) and wider layers, Krizhevsky's recipe apart from the changes above.
    "full": DropoutConfig(
        data="cifar10",
        channels=(64, 128),
        fc_width=2048,  # two conv stages: 32 -> 28 -> 14 -> 10 -> 5
        train=TrainSpec(recipe="alexnet", epochs=100, batch_size=128, lr=0.01, overrides=NO_OTHER_REGULARISER),
        seeds=3,
    ),
}


@torch.no_grad()
def mc_dropout_accuracy(
    model: nn.Module, pair: Any, *, ks: tuple[int, ...], seed: int = 0, batch_size: int = 500,
) -> list[dict[str, float]]:
    """Accuracy of the average of K sampled dropout networks, for each K in ``ks``.

    One run of ``max(ks)`` stochastic passes per batch (only the ``nn.Dropout`` modules in training
    mode); the average over the first K passes gives K's accuracy, so the K's share their masks.
    ``acc``: softmax probabilities averaged (as ``cnnlab.training.evaluate_mc_dropout``, which it
    equals at K = max(ks) with the same seed and batch size); ``geo_acc``: the normalised geometric
    mean of the K distributions. The global RNG is left as it was.
    """
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    if not dropouts:
        raise ConfigError(f"{type(model).__name__} has no nn.Dropout module to sample")
    was_training = model.training
    model.eval()
    for m in dropouts:
        m.train()
    dev = next(model.parameters()).device
    hits = {k: [0, 0] for k in ks}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for start in range(0, len(pair.y), batch_size):
                x = pair.x[start : start + batch_size].to(dev)
                y = pair.y[start : start + batch_size].to(dev)
                prob_sum = logp_sum = None
                for i in range(1, max(ks) + 1):
                    logp = model(x).float().log_softmax(dim=1)
                    prob_sum = logp.exp() if prob_sum is None else prob_sum + logp.exp()
                    logp_sum = logp if logp_sum is None else logp_sum + logp
                    if i in hits:
                        hits[i][0] += int((prob_sum.argmax(1) == y).sum())
                        hits[i][1] += int((logp_sum.argmax(1) == y).sum())  # argmax of the geometric mean
    finally:
        model.train(was_training)
    n = len(pair.y)
    return [{"k": k, "acc": hits[k][0] / n, "geo_acc": hits[k][1] / n} for k in ks]


def plot_dropout(results: dict, out_dir: Path) -> list[Plot]:
    """(1) clean training and test error per epoch, with and without dropout; (2) accuracy against K."""
    plots = []
    fig = Figure(figsize=(11.0, 4.0))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (name, v) in enumerate(results["variants"].items()):
        for r in v["runs"]:
            n = len(r["test_error"])
            epochs = list(range(1, n + 1))
            tail = epochs[n - len(r["train_error"]) :]  # every epoch when tracked, else the last
            first = r is v["runs"][0]
            a1.plot(tail, [100 * e for e in r["train_error"]], "--o", color=f"C{i}", lw=1.2, ms=3,
                    label=f"{name}: train (clean)" if first else None)
            a1.plot(epochs, [100 * e for e in r["test_error"]], "-", color=f"C{i}", lw=2.2,
                    label=f"{name}: test" if first else None)
            a2.plot(tail, [100 * g for g in r["gap"]], "o-", ms=3, color=f"C{i}", label=name if first else None)
    a1.set(xlabel="epoch", ylabel="error (%)", yscale="log", title="Training (dashed) and test (bold) error")
    a2.set(xlabel="epoch", ylabel="test error - training error (points)", title="Generalisation gap")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    plots.append(Plot(save_figure(fig, out_dir, "dropout_gap.png"),
                      "Error on the clean training set (eval mode) and on the test set per epoch, and their "
                      "difference, for the network with and without dropout (one line per seed)."))
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    for i, t in enumerate(results["test_time"]):
        mc, first = t["mc"], i == 0
        ks = [r["k"] for r in mc]
        ax.plot(ks, [100 * r["acc"] for r in mc], "o-", color="C0", alpha=0.8,
                label="average of K sampled nets (softmax mean)" if first else None)
        ax.plot(ks, [100 * r["geo_acc"] for r in mc], "s--", color="C2", alpha=0.8,
                label="geometric mean of K" if first else None)
        ax.axhline(100 * t["weight_scaling_acc"], color="C3", ls=":", label="weight scaling (all units)" if first else None)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="K (dropout masks per test image)", ylabel="test accuracy (%)", title="Test-time dropout")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    plots.append(Plot(save_figure(fig, out_dir, "dropout_mc.png"),
                      "Test accuracy of the dropout network: the average of K sampled thinned networks against "
                      "the weight-scaling rule (one line of each kind per seed)."))
    return plots


def within_tolerance(a: list[float], b: list[float], *, tolerance: float, threshold: float = 2.0) -> SeedComparison:
    """Paired per-seed values whose claim is that they are *close* (an equivalence, not a direction):
    "met" when the difference's interval ``mean +- threshold * SE`` lies inside ``+-tolerance``, "not met"
    when it lies wholly outside it, "within noise" when it straddles the tolerance (the seeds cannot tell)."""
    c = compare_seeds(a, b, threshold=threshold)
    lo, hi = c.difference - threshold * c.stderr, c.difference + threshold * c.stderr
    if -tolerance <= lo and hi <= tolerance:
        verdict = "met"
    elif lo > tolerance or hi < -tolerance:
        verdict = "not met"
    else:
        verdict = "within noise"
    return dataclasses.replace(c, verdict=verdict, expect=f"within +-{tolerance:g}")  # no direction: a band


@register_experiment(
    name="dropout",
    title="Dropout narrows the generalisation gap; weight scaling approximates the ensemble",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt", "002_a740cb8c04a80802.txt"),
    paper="Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, JMLR 2014; Krizhevsky et al., NIPS 2012 (§4.2)",
    scales=SCALES,
    plot=plot_dropout,
)
def run(ctx: ExperimentContext, cfg: DropoutConfig) -> Outcome:
    data, _ = ctx.open_config(cfg)
    variants: dict[str, dict[str, Any]] = {}
    models: list[nn.Module] = []
    for name, p in (("no dropout", 0.0), ("dropout", cfg.p)):
        variants[name], fitted = train_variant(ctx, cfg, data, p=p, name=name)
        if p:
            models = fitted
    test_time = [measure_test_time_rules(ctx, cfg, data, m, seed=s) for m, s in zip(models, seed_list(ctx, cfg.seeds))]
    comparisons = dropout_comparisons(variants, test_time, close=cfg.close)
    results = {"variants": variants, "test_time": test_time, "mc_samples": test_time[0]["mc"],
               "weight_scaling_acc": test_time[0]["weight_scaling_acc"], "epochs": cfg.train.epochs,
               "comparisons": {k: dataclasses.asdict(c) for k, c in comparisons.items()}}
    return Outcome(results=results, criteria=dropout_criteria(variants, test_time, comparisons, cfg=cfg),
                   tables=dropout_tables(variants, test_time, seeds=cfg.seeds), setup=_setup(ctx, cfg, data),
                   notes=_notes(data))  # fmt: skip


def train_variant(ctx: ExperimentContext, cfg: DropoutConfig, data: Any, *, p: float,
                  name: str) -> tuple[dict[str, Any], list[nn.Module]]:
    """The network with dropout rate ``p`` trained once per seed: per run the clean training error
    (eval mode) after every epoch for the tracked seeds (after the last one for the others), the test
    error per epoch and their gap; the last epoch's means and stds; and the trained models."""
    c, h, w = data.input_size

    def measure(model: nn.Module) -> dict[str, float]:
        clean = ctx.evaluate(model, data.train)  # eval mode: all units, no dropout noise
        return {"train_error": 1.0 - clean["acc"], "train_loss": clean["loss"]}

    runs, models = [], []
    key = {"net": "wide_fc", "channels": cfg.channels, "fc": cfg.fc_width, "p": p}
    for i, seed in enumerate(seed_list(ctx, cfg.seeds)):

        def build(seed: int = seed) -> nn.Module:
            torch.manual_seed(seed)  # the same initial weights with and without dropout
            return WideFCNet(WideFCConfig(in_chans=c, num_classes=data.num_classes, image_size=(h, w),
                                          channels=cfg.channels, fc_width=cfg.fc_width, dropout=p))  # fmt: skip

        tracker = MeasureEachEpoch(measure, every_epoch=i < cfg.tracked_seeds)
        fit = seeded(ctx, seed).train(f"{name} (seed {seed})", build, data, cfg.train, key=key, callbacks=[tracker])
        rows, test_error = tracker.rows, [1.0 - e["test_acc"] for e in fit.history]
        models.append(fit.model)
        runs.append(dict(
            seed=seed,
            tracked=i < cfg.tracked_seeds,
            train_error=[r["train_error"] for r in rows],  # per epoch when tracked, else the last only
            train_loss=[r["train_loss"] for r in rows],
            test_error=test_error,
            test_loss=[e["test_loss"] for e in fit.history],
            running_train_error=[1.0 - e["train_acc"] for e in fit.history],
            gap=[te - r["train_error"] for te, r in zip(test_error[-len(rows):], rows)],
        ))  # fmt: skip
    final = {k: mean_std([r[k][-1] for r in runs]) for k in ("train_error", "test_error", "gap", "train_loss",
                                                              "test_loss")}  # fmt: skip
    variant = dict(p=p, runs=runs, params=ctx.analyze(models[0], data.input_size)["params"],
                   **{f"final_{k}": m for k, (m, _) in final.items()},
                   **{f"final_{k}_std": s for k, (_, s) in final.items()})  # fmt: skip
    return variant, models


def measure_test_time_rules(ctx: ExperimentContext, cfg: DropoutConfig, data: Any, model: nn.Module, *,
                    seed: int) -> dict[str, Any]:
    """On one trained dropout network: weight scaling (all units) against K sampled masks."""
    model = ctx.to_device(model)
    weight_scaling = ctx.evaluate(model, data.test)["acc"]
    mc = mc_dropout_accuracy(model, data.test, ks=cfg.mc_ks, seed=seed)
    ctx.log(f"MC dropout (seed {seed}): " + ", ".join(f"K={r['k']} {r['acc']:.4f}" for r in mc))
    return {"seed": seed, "weight_scaling_acc": weight_scaling, "mc": mc}


def dropout_comparisons(variants: dict[str, dict[str, Any]], test_time: list[dict[str, Any]], *,
                        close: float) -> dict[str, SeedComparison]:
    """Paired over seeds: the last epoch's gap and test error with against without dropout; weight
    scaling against the largest K's average on each seed's dropout network."""
    last = lambda name, k: [r[k][-1] for r in variants[name]["runs"]]  # noqa: E731
    return {
        "gap": compare_seeds(last("dropout", "gap"), last("no dropout", "gap"), expect="less"),
        "test_error": compare_seeds(last("dropout", "test_error"), last("no dropout", "test_error"), expect="less"),
        "weight_scaling": within_tolerance([t["weight_scaling_acc"] for t in test_time],
                                           [t["mc"][-1]["acc"] for t in test_time], tolerance=close),
    }


def dropout_criteria(variants: dict[str, dict[str, Any]], test_time: list[dict[str, Any]],
                     comparisons: dict[str, SeedComparison], *, cfg: DropoutConfig) -> list[Criterion]:
    nd, do = variants["no dropout"], variants["dropout"]
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    ws = comparisons["weight_scaling"]
    kmax = cfg.mc_ks[-1]
    return [
        seed_criterion("the generalisation gap (test error minus clean training error, last epoch) is smaller with "
                       "dropout than without",
                       f"gap {100 * do['final_gap']:.2f} points with dropout against {100 * nd['final_gap']:.2f} without",
                       comparisons["gap"]),
        seed_criterion("the test error with dropout is lower than without (last epoch)",
                       f"test error {pct(do['final_test_error'])} with dropout against {pct(nd['final_test_error'])} "
                       "without", comparisons["test_error"]),
        Criterion(
            description=f"weight scaling is within {100 * cfg.close:.1f} points of the average of K = {kmax} sampled "
            "dropout networks (the per-seed difference's mean +- 2 standard errors inside that band)",
            finding=f"weight scaling {pct(sum(ws.a) / len(ws.a))} against {pct(sum(ws.b) / len(ws.b))} for K = {kmax} "
            f"(geometric mean {pct(sum(t['mc'][-1]['geo_acc'] for t in test_time) / len(test_time))}): difference "
            + ws.describe(verdict=False),
            passed=ws.verdict == "met",
            status="within noise" if ws.verdict == "within noise" else "",
        ),
    ]


def dropout_tables(variants: dict[str, dict[str, Any]], test_time: list[dict[str, Any]], *, seeds: int) -> list[Table]:
    return [
        Table(
            title=f"Last epoch, mean of {seeds} seeds: clean training error (eval mode) and test error",
            columns=("network", "params", "train error (%)", "test error (%)", "gap (points)", "gap std",
                     "train loss", "test loss"),
            rows=tuple((name, v["params"], round(100 * v["final_train_error"], 2), round(100 * v["final_test_error"], 2),
                        round(100 * v["final_gap"], 2), round(100 * v["final_gap_std"], 2),
                        round(v["final_train_loss"], 4), round(v["final_test_loss"], 4))
                       for name, v in variants.items()),
        ),
        Table(
            title="Test accuracy of each seed's dropout network (%): weight scaling against K sampled masks (softmax "
            "mean; geometric mean in brackets)",
            columns=("seed", "weight scaling (all units)", *(f"K = {r['k']}" for r in test_time[0]["mc"])),
            rows=tuple((t["seed"], round(100 * t["weight_scaling_acc"], 2),
                        *(f"{100 * r['acc']:.2f} ({100 * r['geo_acc']:.2f})" for r in t["mc"])) for t in test_time),
        ),
    ]  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: DropoutConfig, data: Any) -> list[str]:
    return [
        f"Data: `{data.name}`, {len(data.train.y):,} training and {len(data.test.y):,} test images of "
        f"{'x'.join(map(str, data.input_size))}.",
        "Network (`cnnlab.experiments.nets.WideFCNet`): "
        + "".join(f"conv5-{c}, max pool, " for c in cfg.channels)
        + f"FC6-{cfg.fc_width}, FC7-{cfg.fc_width}, FC8; dropout p = {cfg.p} on FC6's and FC7's outputs "
        "(Krizhevsky et al.'s placement) or none; the same initial weights for both.",
        f"Training: {cfg.train.describe()}; seeds {', '.join(map(str, seed_list(ctx, cfg.seeds)))}, the same for "
        "both networks; every comparison is paired per seed (mean difference and standard error, decided at 2 SE).",
        f"After every epoch (for the first {cfg.tracked_seeds} seed(s); for the others after the last epoch only): "
        "error of the network in eval mode on the clean training set (no dropout, no "
        "augmentation) and on the test set. The engine's running training error (measured on the dropped-out "
        "network during the epoch) is kept in results.json as `running_train_error` but not used: dropout noise "
        "would inflate it and make the gap look narrower than it is. Nothing is selected: the last epoch is compared.",
        f"Monte-Carlo average, on each seed's dropout network: {max(cfg.mc_ks)} passes per test image with only the "
        "dropout layers sampling; the first K passes give K's prediction (softmax averaged; and the normalised "
        "geometric mean).",
    ]


def _notes(data: Any) -> list[str]:
    notes = [
        "Departures from Krizhevsky's recipe: no weight decay and no augmentation, so that dropout is the only "
        "regulariser, and a cosine decay over the short run instead of dividing the rate by 10 on plateaus.",
        "PyTorch's dropout is 'inverted' (kept units are scaled by 1/(1-p) during training), so the test-time "
        "network uses the weights as they are: the same function as halving the outgoing weights of a "
        "network trained with plain dropout (lecture 000, option 2).",
    ]
    if data.name.startswith("mnist") or data.name == "digits":
        notes.append("On digits a convolutional trunk already generalises well, so the gap is small in absolute "
                     "terms; the comparison is of two small numbers and is repeated over seeds.")
    return notes
