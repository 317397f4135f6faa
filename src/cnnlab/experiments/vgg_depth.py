"""VGG depth: Simonyan & Zisserman, "Very deep convolutional networks for large-scale image
recognition", ICLR 2015, Table 3 (lectures 000, 003).

The six columns of the paper's Table 1 (A, A-LRN, B, C, D, E: 11 to 19 weight layers) from the zoo
at a reduced width, trained with the same recipe and budget over several seeds: error against
depth, A-LRN against A, C (1x1 convolutions) against D (3x3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from cnnlab.errors import ConfigError
from cnnlab.experiments.arms import train_arm
from cnnlab.experiments.context import ExperimentContext, seed_list
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.overrides import VGG_DIGITS_OVERRIDES, VGG_FASHION_OVERRIDES
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import (
    SeedComparison,
    against_margin,
    compare_seeds,
    margin_criterion,
    mean_std,
    require_seeds,
    seed_criterion,
)
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.experiment_plots import save_figure
from cnnlab.viz.report import Plot

__all__ = ["VGGDepthConfig", "COLUMNS", "SCALES", "run", "plot_vgg_depth"]

CLAIM = (
    "Classification error decreases with ConvNet depth (from 11 to 19 weight layers, saturating at "
    "19); local response normalisation (A-LRN) does not improve on the same network without it (A); "
    "and it is important to capture spatial context: C, whose extra layers are 1x1 convolutions, is "
    "worse than D, whose extra layers are 3x3, at the same depth."
)

# The paper's columns (Table 1) and their zoo names. Table 3 (single-scale top-1 val. error, %):
# A 29.6, A-LRN 29.7, B 28.7, C 28.1 (S=256), D 27.0, E 27.3 (S=256).
COLUMNS: dict[str, str] = {"A": "vgg_a", "A-LRN": "vgg_a_lrn", "B": "vgg_b", "C": "vgg_c", "D": "vgg_d", "E": "vgg_e"}
PAPER_TOP1: dict[str, float] = {"A": 29.6, "A-LRN": 29.7, "B": 28.7, "C": 28.1, "D": 27.0, "E": 27.3}
DEPTH_SERIES = ("A", "B", "D", "E")  # 3x3-only columns without LRN: depths 11, 13, 16, 19


@dataclass(frozen=True)
class VGGDepthConfig:
    data: str
    input_size: tuple[int, int, int]
    train: TrainSpec
    seeds: int
    model_options: tuple[tuple[str, Any], ...] = ()
    batch_norm: bool = False
    data_options: tuple[tuple[str, Any], ...] = ()
    # "LRN does not improve": met when LRN's gain (A's error minus A-LRN's, per seed) is below this
    # by more than 2 standard errors. Paper: A-LRN 29.7% against A 29.6% (Table 3), no gain at all;
    # half a point is 5 of the 1,000 test digits, about the seed spread of one column at quick scale.
    lrn_margin: float = 0.005

    def __post_init__(self) -> None:
        require_seeds("vgg-depth", self.seeds)
        if not 0 <= self.lrn_margin < 1:
            raise ConfigError(f"vgg-depth: lrn_margin must be a fraction in [0, 1), got {self.lrn_margin!r}")
        if any(k == "batch_norm" for k, _ in self.model_options):
            raise ConfigError("vgg-depth: give batch_norm as its own field, not in model_options")


SCALES = {
    "tiny": VGGDepthConfig(
        data="synthetic",
        data_options=(("shape", (1, 32, 32)), ("n", 32)),
        input_size=(1, 32, 32),
        train=TrainSpec(recipe="vgg", epochs=1, batch_size=32, lr=0.1, overrides=VGG_DIGITS_OVERRIDES),
        seeds=2,
        model_options=(("width", 0.0625), ("fc_width", 16), ("pool_size", 1)),
        batch_norm=True,
    ),
    # Every column at 1/8 width (8-16-32-64-64 maps, FC 128) on digits padded to 32x32. Departure:
    # batch normalisation after every convolution. Without it, the 19-layer column does not leave
    # chance level in a few epochs with Glorot's initialisation (the paper trained for 74 epochs and
    # started its deeper nets from A's weights), and the comparison would be about optimisation
    # speed rather than depth. `batchnorm`'s recipe at its best BN rate, 0.1, with batch 64 for more
    # updates: after 3 epochs at batch 128 (94 updates) E was still at 8% error against A's 3%.
    "quick": VGGDepthConfig(
        data="mnist-5k",
        input_size=(1, 32, 32),
        train=TrainSpec(recipe="vgg", epochs=4, batch_size=64, lr=0.1, overrides=VGG_DIGITS_OVERRIDES),
        # Five seeds: 3 took 142 s of CPU on one thread (18 nets), and E's error varies by several
        # points from seed to seed.
        seeds=5,
        model_options=(("width", 0.125), ("fc_width", 128), ("pool_size", 1)),
        batch_norm=True,
    ),
    # Set before any standard run. Fashion-MNIST, all 54,000 training images padded to 32x32, quick's
    # columns (1/8 width, BN) and rate for 3 epochs at batch 64: 2,532 updates per net (quick: 228,
    # after which E still under-fitted), with the recipe's flips (a mirrored garment is the same
    # garment). Three seeds, the scale's minimum (quick ran five because E, after 228 updates,
    # varied by several points from seed to seed; five here would cost 37-43 minutes). The LRN
    # margin stays half a point (the paper's A-LRN was no better at all): 50 of the 10,000 test images.
    # Cost: 18 networks (6 columns x 3 seeds) x 3 epochs x (54,000 + 16,000 / 3 for the validation
    # and test passes) = 3.2M image passes at 0.42-0.49 ms (A 0.30, E 0.55 ms on one thread; 3 seeds
    # of quick used 142 s of CPU for 0.29M) = 22-26 minutes at one thread.
    "standard": VGGDepthConfig(
        data="fashion-mnist",
        input_size=(1, 32, 32),
        train=TrainSpec(recipe="vgg", epochs=3, batch_size=64, lr=0.1, overrides=VGG_FASHION_OVERRIDES),
        seeds=3,
        model_options=(("width", 0.125), ("fc_width", 128), ("pool_size", 1)),
        batch_norm=True,
        lrn_margin=0.005,
    ),
    # CIFAR-10 at full width with FC-512 (the paper's columns without BN, Glorot init), 60 epochs.
    "full": VGGDepthConfig(
        data="cifar10",
        input_size=(3, 32, 32),
        train=TrainSpec(recipe="vgg", epochs=60, batch_size=128, lr=0.01,
                        overrides=(("scale_jitter", False), ("pca_lighting", 0.0), ("crop_padding", 4))),
        seeds=3,
        model_options=(("fc_width", 512), ("pool_size", 1)),
        batch_norm=False,
    ),
}


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys against xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def plot_vgg_depth(results: dict, out_dir: Path) -> list[Plot]:
    cols = results["columns"]
    paired = "comparisons" in results  # results of single-seed runs have no per-seed comparisons
    fig = Figure(figsize=(11.5 if paired else 7.0, 4.3))
    ax = fig.add_subplot(1, 2 if paired else 1, 1)
    shift = {"A-LRN": 0.3, "C": -0.3}  # columns that share a depth with another are drawn beside it
    for name, c in cols.items():
        color = "C3" if name == "A-LRN" else "C1" if name == "C" else "C0"
        x = c["depth"] + shift.get(name, 0.0)
        ax.plot([x] * len(c["test_error"]), [100 * e for e in c["test_error"]], "o", color=color, alpha=0.35)
        ax.errorbar([x], [100 * c["mean_error"]], yerr=[100 * c["std_error"]], fmt="s", ms=8, capsize=4, color=color)
        ax.annotate(name, (x, 100 * c["mean_error"]), textcoords="offset points", xytext=(7, 4), fontsize=9)
    series = [cols[n] for n in DEPTH_SERIES if n in cols]
    ax.plot([c["depth"] for c in series], [100 * c["mean_error"] for c in series], "-", color="C0", lw=1,
            label="A, B, D, E (3x3 only, no LRN)")
    ax.set_yscale("log")  # one column's bad seeds would otherwise flatten the others' differences
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set(xlabel="weight layers (A-LRN and C drawn beside A and D)", ylabel="test error (%, log scale)",
           title=f"VGG columns on {results['data']} (mean +- std over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if paired:
        _plot_verdicts(fig.add_subplot(1, 2, 2), results["comparisons"], lrn_margin=results.get("lrn_margin", 0.0))
    return [Plot(save_figure(fig, out_dir, "vgg_depth.png"),
                 "Left: test error of each VGG column against its number of weight layers (log scale): squares "
                 "are the mean over seeds with their standard deviation, dots single seeds; A-LRN in red, C (1x1) "
                 "in orange. Right: what the verdicts are decided on, per seed (dots) with the mean +- 2 standard "
                 "errors: the slope of error against depth, and the paired differences A-LRN - A and C - D.")]


def _plot_verdicts(ax: Any, comparisons: dict, *, lrn_margin: float) -> None:
    """The per-seed quantities of the three criteria, each with its mean +- 2 standard errors. The LRN
    criterion is "A-LRN - A stays above -margin" (LRN's gain below the margin): its verdict is
    ``lrn_gain``'s and the margin is drawn dashed."""
    panels = (("depth", "slope across A, B, D, E\n(points per layer)"), ("lrn_vs_a", "A-LRN - A\n(points)"),
              ("c_vs_d", "C - D\n(points)"))  # fmt: skip
    for i, (key, label) in enumerate(panels):
        cmp = comparisons[key]
        values = [100 * (x - y) for x, y in zip(cmp["a"], cmp["b"])]
        ax.plot([i] * len(values), values, "o", color=f"C{i}", alpha=0.6)
        ax.errorbar([i], [100 * cmp["difference"]], yerr=[200 * cmp["stderr"]], fmt="_", ms=26, mew=2.5, capsize=6,
                    color="k")
        verdict = comparisons["lrn_gain"]["verdict"] if key == "lrn_vs_a" else cmp["verdict"]
        ax.annotate(verdict, (i, 100 * cmp["difference"]), textcoords="offset points", xytext=(14, 0),
                    fontsize=8, va="center")
        if key == "lrn_vs_a":
            ax.hlines(-100 * lrn_margin, i - 0.3, i + 0.3, colors="C3", linestyles="--", lw=1.5)
            ax.annotate(f"margin: LRN helps by\n{100 * lrn_margin:g} points", (i - 0.3, -100 * lrn_margin),
                        textcoords="offset points", xytext=(-4, 0), ha="right", va="center", fontsize=7, color="C3")
    ax.axhline(0.0, color="0.5", lw=1)
    ax.set_xticks(range(len(panels)), [label for _, label in panels], fontsize=8)
    ax.set_xlim(-0.5, len(panels) - 0.2)
    ax.set(ylabel="per seed (error points)", title="The verdicts: per seed, mean +- 2 SE")
    ax.grid(alpha=0.3, axis="y")


@register_experiment(
    name="vgg-depth",
    title="VGG columns A-E: error against depth, LRN, 1x1 against 3x3",
    claim=CLAIM,
    lectures=("000_fb7e7ade2ae256e5.txt", "003_7e0d723498294d64.txt"),
    paper="Simonyan & Zisserman, ICLR 2015 (Tables 1-3)",
    scales=SCALES,
    plot=plot_vgg_depth,
)
def run(ctx: ExperimentContext, cfg: VGGDepthConfig) -> Outcome:
    data, options = ctx.open_config(cfg)
    columns = {col: _train_column(ctx, cfg, data, options, col) for col in COLUMNS}
    compared = compare_columns(columns, lrn_margin=cfg.lrn_margin)
    criteria = _criteria(columns, compared)
    train_slope = compared["train_error_depth_slope"]
    results = {"columns": columns, "depth_slope": compared["depth_slope"], "train_error_depth_slope": train_slope,
               "batch_norm": cfg.batch_norm, "lrn_margin": cfg.lrn_margin,
               "comparisons": {k: vars(v) for k, v in compared.items() if isinstance(v, SeedComparison)},
               **{k: compared[k] for k in ("depth_slopes", "train_error_depth_slopes")}}
    return Outcome(results=results, criteria=criteria, tables=[_table(columns, cfg.seeds)],
                   setup=_setup(ctx, cfg, data, options),
                   notes=_notes(cfg, data, options, compared["depth_slope"], train_slope))  # fmt: skip


def _train_column(ctx: ExperimentContext, cfg: VGGDepthConfig, data: Any, options: dict[str, Any],
                  col: str) -> dict[str, Any]:
    """One column trained once per seed (the same seeds for every column): its errors and size."""
    from cnnlab.models import create_model

    model = COLUMNS[col]

    def build() -> Any:  # train_arm seeds the global generator first, as ctx.create_model would
        return create_model(model, num_classes=data.num_classes, in_chans=data.input_size[0],
                            batch_norm=cfg.batch_norm, **options)  # fmt: skip

    fits = train_arm(ctx, f"VGG-{col}", build, data, cfg.train, seeds=cfg.seeds,
                     key={"model": model, "batch_norm": cfg.batch_norm, **options})  # fmt: skip
    errors = [1.0 - float(f.test_acc) for f in fits]
    size = ctx.analyze(fits[0].model, data.input_size)
    mean, std = mean_std(errors)
    return dict(model=model, depth=size["depth"], params=size["params"], macs=size["macs"], test_error=errors,
                train_error=[1.0 - float(f.train_acc) for f in fits], mean_error=mean, std_error=std,
                paper_top1_error=PAPER_TOP1[col])  # fmt: skip


def compare_columns(columns: dict[str, dict[str, Any]], *, lrn_margin: float) -> dict[str, Any]:
    """The per-seed quantities the criteria decide on (all paired: column ``i``-th value is seed ``i``):
    the slope of test error against depth across A, B, D, E per seed (against 0), LRN's gain over A
    (against ``lrn_margin``), A-LRN against A and C against D."""
    depths = [columns[n]["depth"] for n in DEPTH_SERIES]
    n_seeds = len(columns["A"]["test_error"])
    slopes = [_slope(depths, [columns[n]["test_error"][i] for n in DEPTH_SERIES]) for i in range(n_seeds)]
    train_slopes = [_slope(depths, [columns[n]["train_error"][i] for n in DEPTH_SERIES]) for i in range(n_seeds)]
    a, alrn = columns["A"]["test_error"], columns["A-LRN"]["test_error"]
    lrn_gain = [x - y for x, y in zip(a, alrn)]  # > 0: LRN lowered the error
    return {
        "depth_slopes": slopes,
        "train_error_depth_slopes": train_slopes,
        "depth_slope": mean_std(slopes)[0],
        "train_error_depth_slope": mean_std(train_slopes)[0],
        "depth": compare_seeds(slopes, [0.0] * n_seeds, expect="less"),
        "lrn_gain": against_margin(lrn_gain, lrn_margin, expect="less"),
        "lrn_vs_a": compare_seeds(alrn, a, expect="greater"),
        "c_vs_d": compare_seeds(columns["C"]["test_error"], columns["D"]["test_error"], expect="greater"),
    }


def _criteria(columns: dict[str, dict[str, Any]], compared: dict[str, Any]) -> list[Criterion]:
    pct = lambda v: f"{100 * v:.2f}%"  # noqa: E731
    a, alrn, c, d = (columns[n] for n in ("A", "A-LRN", "C", "D"))
    lrn_vs_a = compared["lrn_vs_a"]
    return [
        seed_criterion(
            "across the 3x3 columns without LRN (A, B, D, E: 11 to 19 weight layers) the test error falls with "
            "depth: the least-squares slope of error against weight layers, per seed, is below 0",
            "mean errors " + ", ".join(f"{n} ({columns[n]['depth']}) {pct(columns[n]['mean_error'])}"
                                       for n in DEPTH_SERIES) + "; slope",
            compared["depth"], unit=" points per layer"),
        margin_criterion(
            "LRN does not help: LRN's gain (A's test error minus A-LRN's, per seed) is below the margin",
            f"A-LRN {pct(alrn['mean_error'])} against A {pct(a['mean_error'])} (A-LRN - A "
            f"{lrn_vs_a.describe(verdict=False)}, {lrn_vs_a.verdict}); gain", compared["lrn_gain"]),
        seed_criterion("C (three 1x1 layers) has a higher test error than D (3x3 in their place)",
                       f"C {pct(c['mean_error'])} against D {pct(d['mean_error'])}", compared["c_vs_d"]),
    ]  # fmt: skip


def _table(columns: dict[str, dict[str, Any]], seeds: int) -> Table:
    return Table(
        title=f"Columns of Simonyan & Zisserman's Table 1 at reduced width, same recipe ({seeds} seeds)",
        columns=("column", "zoo model", "weight layers", "params", "MACs / image", "test error (%)", "std",
                 "per seed (%)", "train error (%)", "paper top-1 error, ImageNet (%)"),
        rows=tuple((n, v["model"], v["depth"], v["params"], v["macs"], round(100 * v["mean_error"], 2),
                    round(100 * v["std_error"], 2), ", ".join(f"{100 * e:.2f}" for e in v["test_error"]),
                    round(100 * mean_std(v["train_error"])[0], 2), v["paper_top1_error"]) for n, v in columns.items()),
    )  # fmt: skip


def _setup(ctx: ExperimentContext, cfg: VGGDepthConfig, data: Any, options: dict[str, Any]) -> list[str]:
    width = options.get("width", 1.0)
    return [
        f"Data: `{data.name}` at {'x'.join(map(str, data.input_size))}, {len(data.train.y):,} training and "
        f"{len(data.test.y):,} test images.",
        f"Networks: the zoo's `{'`, `'.join(COLUMNS.values())}` with {options}"
        + (", batch normalisation after every convolution" if cfg.batch_norm else "")
        + f". Width {width:g} of the paper's" + (" (reduced for the CPU)" if width < 1 else "") + "; depth, "
        "parameters and MACs from `cnnlab.analysis.analyze`.",
        f"Training: the same for every column, {cfg.train.describe()}; seeds "
        f"{', '.join(map(str, seed_list(ctx, cfg.seeds)))}, the same for every column (same initialisation "
        "stream and data order); the epoch is selected on the validation split and the test split read once.",
        "Verdicts: per-seed (paired) differences and per-seed depth slopes, their mean and standard error; a "
        "criterion is met or not met only beyond 2 standard errors, otherwise it is within noise. 'LRN does not "
        f"help' is met when LRN's gain is below {100 * cfg.lrn_margin:g} points by more than 2 standard errors.",
        "Training error is the engine's running error over the last epoch (augmentation and dropout on).",
    ]


def _notes(cfg: VGGDepthConfig, data: Any, options: dict[str, Any], slope: float, train_slope: float) -> list[str]:
    width = options.get("width", 1.0)
    notes = [
        "The paper reports ImageNet top-1 error at 224x224 after 74 epochs; the table repeats its figures "
        "(single-scale evaluation, Table 3) for orientation only.",
    ]
    if cfg.batch_norm:
        notes.append("Departure: batch normalisation after every convolution (not in the paper, which predates "
                     "it), so that all six columns train in the few epochs of this scale; the LRN comparison is "
                     "therefore LRN on top of BN.")  # fmt: skip
    if width < 1:
        notes.append(f"Departure: every layer at {width:g} of the paper's width (and FC layers of "
                     f"{options.get('fc_width', 'the scaled')} units) so that the six columns train on a CPU.")
    if data.name.startswith("mnist") or data.name == "digits":
        notes.append("Digits are easy: every column reaches a low error and the differences are of the order of "
                     "the seed noise, which the table shows per seed and the verdicts weigh.")
    if slope > 0 and train_slope > 0:
        notes.append(f"The training error rises with depth as well ({100 * train_slope:+.3f} points per layer across "
                     "A, B, D, E, mean of the per-seed slopes): within this budget the deeper columns under-fit, an "
                     "optimisation limit (the degradation of plain deep nets that ResNets address, lecture 004) "
                     "rather than over-fitting.")
    return notes
