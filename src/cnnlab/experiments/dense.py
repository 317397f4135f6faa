"""Dense prediction, re-run: FCN's skip connections (Long, Shelhamer & Darrell 2015, Table 2) and
dilated convolutions' receptive fields (Yu & Koltun 2016, lecture 001's Fig. 1).

``fcn-skips``: the same small FCN trained on ``mnist-seg`` fusing no pool output (32s), pool4 (16s)
or pool4 and pool3 (8s), once per seed; mean IU on the test canvases, and pixel accuracy in a band
around the true class boundaries (how sharp the masks are).

``dilation``: Yu & Koltun's basic context module (dilations 1, 1, 2, 4, 8, 16, 1) against the same
module without dilation, parameter for parameter: the analyzer's receptive fields, then mean IU over
seeds. Every network is selected on the validation canvases (the engine's best epoch by val mean
IU); test is evaluated once, at the end. The comparisons of measured numbers are paired over seeds
(:func:`cnnlab.experiments.statistics.compare_seeds`): each seed's networks start from their own
initialisation (``seeded(ctx, seed).create_model``) and see their own data order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.experiments.arms import plot_arms, train_zoo_arm
from cnnlab.experiments.context import ExperimentContext, seed_list
from cnnlab.experiments.outcome import Criterion, Outcome, Table
from cnnlab.experiments.registry import register_experiment
from cnnlab.experiments.statistics import compare_seeds, mean_std, require_seeds, seed_criterion
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.report import Plot

__all__ = ["SkipsConfig", "DilationConfig", "SKIPS_SCALES", "DILATION_SCALES", "boundary_accuracy"]

SKIPS_CLAIM = ("Fusing the scores of finer layers (pool4, then pool3) with the coarse upsampled scores gives "
               "sharper masks and a higher mean IU: FCN-32s 59.4, FCN-16s 62.4, FCN-8s 62.7 on PASCAL VOC 2011 val.")
DILATION_CLAIM = ("Dilated convolutions enlarge the receptive field exponentially (3, 7, 15, ...) at a constant "
                  "number of parameters and without losing resolution; a context module built from them raises "
                  "the accuracy of dense prediction over the same network without dilation.")
PLAIN = (1,) * 7
TINY_DATA = (("n_train", 8), ("n_val", 2), ("n_test", 2), ("size", 32))  # plumbing: 32x32, one update an epoch
METRICS = ("miou", "pixel_acc", "mean_acc", "fwiou")


@dataclass(frozen=True)
class SkipsConfig:
    data: str
    train: TrainSpec
    model: str = "fcn_digits"
    variants: tuple[str, ...] = ("32s", "16s", "8s")
    band: int = 2  # boundary band half-width in pixels
    examples: int = 3
    seeds: int = 3
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("fcn-skips", self.seeds)


@dataclass(frozen=True)
class DilationConfig:
    data: str
    train: TrainSpec
    model: str = "dilated_digits"
    examples: int = 3
    seeds: int = 3
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        require_seeds("dilation", self.seeds)


SKIPS_SCALES = {
    "tiny": SkipsConfig(data="mnist-seg", data_options=TINY_DATA, model_options=(("width", 0.25),), seeds=2,
                        train=TrainSpec(recipe="fcn_digits", epochs=1, batch_size=8)),
    # 2,000 training canvases, the fcn_digits recipe (Adam, cosine) for 6 epochs per variant and seed: 3
    # seeds of 10 epochs cost 927 s of CPU on one thread (the gaps 20-25 points, 25-55 standard errors)
    "quick": SkipsConfig(data="mnist-seg", train=TrainSpec(recipe="fcn_digits", epochs=6), seeds=3),
    # the paper's nets and recipe on VOC 2012 (from scratch: cnnlab ships no ImageNet VGG-16 weights)
    "full": SkipsConfig(data="voc2012", model="fcn_vgg16", train=TrainSpec(recipe="fcn"), seeds=3),
}
DILATION_SCALES = {
    "tiny": DilationConfig(data="mnist-seg", data_options=TINY_DATA, model_options=(("width", 8),), seeds=2,
                           train=TrainSpec(recipe="fcn_digits", epochs=1, batch_size=8)),
    # 24 maps in the context module (its 8 layers at 32x32 cost 2.7x fcn_digits' MACs at 32 maps)
    "quick": DilationConfig(data="mnist-seg", train=TrainSpec(recipe="fcn_digits", epochs=8),
                            model_options=(("width", 24),), seeds=3),
    "full": DilationConfig(data="mnist-seg", train=TrainSpec(recipe="fcn_digits", epochs=40), seeds=3,
                           data_options=(("n_train", 8000), ("n_val", 1000), ("n_test", 2000))),
}


# ------------------------------------------------------------------------------------ measurements


def _predict(model: torch.nn.Module, x: torch.Tensor, device: torch.device, batch: int = 200) -> torch.Tensor:
    model = model.to(device).eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch].to(device)).argmax(1).cpu() for i in range(0, len(x), batch)])


def boundary_accuracy(pred: torch.Tensor, truth: torch.Tensor, *, band: int, ignore_index: int = 255) -> float:
    """Pixel accuracy within ``band`` pixels of a change of true class (void pixels left out): the
    sharpness of a mask, where coarse upsampling blurs the edges."""
    t = truth.unsqueeze(1).float()
    k = 2 * band + 1
    hi = F.max_pool2d(t.masked_fill(t == ignore_index, -1), k, 1, band)
    lo = -F.max_pool2d(-t.masked_fill(t == ignore_index, 1e9), k, 1, band)
    edge = (hi != lo).squeeze(1) & (truth != ignore_index)
    return float((pred[edge] == truth[edge]).double().mean()) if edge.any() else float("nan")


def _metrics(fit: Any) -> dict[str, Any]:
    return {"val": {k: float(fit.val[k]) for k in METRICS}, "test": {k: float(fit.test[k]) for k in METRICS},
            "test_iou": {k[4:]: v for k, v in fit.test.items() if k.startswith("iou_")},
            "best_epoch": fit.best_epoch, "seconds": float(fit.seconds)}


def _examples(data: Any, n: int) -> dict[str, Any]:
    return {"image": data.test.x[:n, 0].tolist(), "truth": data.test.y[:n].tolist()}


def _arm(ctx: ExperimentContext, seed_rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """One arm for results.json: ``extra``, the per-seed rows under ``seeds``, and the means over seeds
    of their val/test metrics (``val``, ``test``) and of any other per-seed number (``boundary_acc``)."""
    mean = lambda vals: mean_std(vals)[0]  # noqa: E731
    row = dict(extra, seeds=seed_rows, seed_values=seed_list(ctx, len(seed_rows)))
    row["val"] = {k: mean([r["val"][k] for r in seed_rows]) for k in METRICS}
    row["test"] = {k: mean([r["test"][k] for r in seed_rows]) for k in METRICS}
    row["test_miou"] = [r["test"]["miou"] for r in seed_rows]
    row["std_test_miou"] = mean_std(row["test_miou"])[1]
    if "boundary_acc" in seed_rows[0]:
        row["boundary_accs"] = [r["boundary_acc"] for r in seed_rows]
        row["boundary_acc"] = mean(row["boundary_accs"])
    return row


def _pcts(values: list[float]) -> str:
    return " / ".join(f"{100 * v:.1f}" for v in values)


# ------------------------------------------------------------------------------------- fcn-skips


def plot_fcn_skips(results: dict, out_dir: Path) -> list[Plot]:
    from cnnlab.viz.segmentation import draw_overlays

    runs = results["runs"]
    groups = {"test mean IU (the paper on VOC: 59.4 / 62.4 / 62.7)": {f"FCN-{r['variant']}": r["test_miou"] for r in runs},
              f"pixel accuracy within {results['band']} px of the true boundaries":
              {f"FCN-{r['variant']}": r["boundary_accs"] for r in runs}}  # fmt: skip
    bars = plot_arms(groups, out_dir, "fcn_skips.png", ylabel="%",
                     caption="Test mean IU and accuracy near the true class boundaries, per variant and seed.")
    ex = results["examples"]
    draw_overlays(out_dir / "overlays.png", ex["image"], ex["truth"], {f"FCN-{r['variant']}": ex[r["variant"]] for r in runs},
                  class_names=results["class_names"], title="test canvases: truth and predictions (first seed)")  # fmt: skip
    return [bars, Plot("overlays.png", "Test canvases: the true masks and each variant's prediction, first seed (void white).")]


def _skips_arms(ctx: ExperimentContext, cfg: SkipsConfig, data: Any, names: dict[str, str]) -> tuple[list, dict]:
    """Each variant trained over the seeds: its arm row, and the first seed's predictions on the example canvases."""
    options = dict(cfg.model_options)
    runs, examples = [], _examples(data, cfg.examples)
    for v in cfg.variants:
        extra = {} if cfg.model == "fcn_vgg16" else {"skips": v}
        fits = train_zoo_arm(ctx, f"{names[v]} {v}", names[v], data, cfg.train, seeds=cfg.seeds,
                             options={**options, **extra}, task="segmentation")
        seed_rows = []
        for seed, fit in zip(seed_list(ctx, cfg.seeds), fits):
            pred = _predict(fit.model, data.test.x, ctx.compute_device)
            seed_rows.append(dict(seed=seed, boundary_acc=boundary_accuracy(pred, data.test.y, band=cfg.band), **_metrics(fit)))
            if seed == ctx.seed:
                examples[v] = pred[: cfg.examples].tolist()
        runs.append(_arm(ctx, seed_rows, variant=v, model=names[v],
                         params=ctx.analyze(fits[0].model, data.input_size)["params"]))
    return runs, examples


def _skips_criteria(runs: list[dict[str, Any]], band: int) -> tuple[list[Criterion], dict[str, Any]]:
    by = {r["variant"]: r for r in runs}
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    criteria, comparisons = [], {}
    for fine, coarse, text in (("16s", "32s", "FCN-16s has a higher test mean IU than FCN-32s"),
                               ("8s", "16s", "FCN-8s has a higher test mean IU than FCN-16s (the paper: +0.3)")):
        if fine in by and coarse in by:
            f, c = by[fine], by[coarse]
            comparisons[f"{fine}_vs_{coarse}"] = cmp = compare_seeds(f["test_miou"], c["test_miou"])
            criteria.append(seed_criterion(text, f"mean IU {pct(f['test']['miou'])} ({fine}; per seed {_pcts(f['test_miou'])}) "
                                           f"vs {pct(c['test']['miou'])} ({coarse}; {_pcts(c['test_miou'])})", cmp))  # fmt: skip
    first, last = runs[0], runs[-1]
    comparisons["boundary"] = cmp = compare_seeds(last["boundary_accs"], first["boundary_accs"])
    criteria.append(seed_criterion(
        f"finer skips give sharper masks: {last['variant']} is more accurate than {first['variant']} within {band} px "
        "of the true boundaries",
        f"boundary accuracy {pct(last['boundary_acc'])} ({last['variant']}; per seed {_pcts(last['boundary_accs'])}) vs "
        f"{pct(first['boundary_acc'])} ({first['variant']}; {_pcts(first['boundary_accs'])})", cmp))
    return criteria, {k: vars(c) for k, c in comparisons.items()}


def _skips_table(runs: list[dict[str, Any]], band: int, seeds: int) -> Table:
    r1 = lambda v: round(100 * v, 1)  # noqa: E731
    return Table(f"Mean IU and the other FCN metrics (%), means over {seeds} seeds; each network selected on val, test once",
                 ("variant", "params", "val mean IU", "test mean IU", "std", "per seed", "test pixel acc.",
                  "test mean acc.", "test f.w. IU", f"boundary acc. ({band} px)", "best epochs"),
                 tuple((f"FCN-{r['variant']}", r["params"], r1(r["val"]["miou"]), r1(r["test"]["miou"]),
                        r1(r["std_test_miou"]), _pcts(r["test_miou"]), r1(r["test"]["pixel_acc"]),
                        r1(r["test"]["mean_acc"]), r1(r["test"]["fwiou"]), r1(r["boundary_acc"]),
                        ", ".join(str(s["best_epoch"]) for s in r["seeds"])) for r in runs))  # fmt: skip


@register_experiment(
    name="fcn-skips", title="FCN skips: 32s vs 16s vs 8s", claim=SKIPS_CLAIM,
    lectures=("003_7e0d723498294d64.txt", "000_fb7e7ade2ae256e5.txt"),
    paper="Long, Shelhamer & Darrell, CVPR 2015 (Table 2)", scales=SKIPS_SCALES, plot=plot_fcn_skips,
)  # fmt: skip
def run_fcn_skips(ctx: ExperimentContext, cfg: SkipsConfig) -> Outcome:
    if cfg.model == "fcn_vgg16":  # the full scale: the zoo's three FCN-VGG16 nets
        names = {v: f"fcn{v}_vgg16" for v in cfg.variants}
        data = ctx.load_data(cfg.data, input_size=(3, 224, 224), **dict(cfg.data_options))
    else:
        names = {v: cfg.model for v in cfg.variants}
        data = ctx.load_data(cfg.data, **dict(cfg.data_options))
    runs, examples = _skips_arms(ctx, cfg, data, names)
    criteria, comparisons = _skips_criteria(runs, cfg.band)
    options = dict(cfg.model_options)
    setup = [f"Data: `{data.name}` ({len(data.train):,}/{len(data.val):,}/{len(data.test):,} train/val/test, "
             f"{data.num_classes} classes, void pixels ignored).",
             f"Networks: `{cfg.model}` with skips {', '.join(cfg.variants)}"
             + (f" and {options}" if options else "") + f"; each trained with {cfg.train.describe()} for each of "
             f"{cfg.seeds} seeds ({', '.join(map(str, seed_list(ctx, cfg.seeds)))}; the same for every variant, each "
             "seed its own initialisation and data order), the epoch selected on the validation canvases' mean IU.",
             f"Sharpness: pixel accuracy within {cfg.band} px of a change of true class (void excluded).",
             "Verdicts: the mean paired difference over seeds must exceed 2 standard errors."]
    notes = ["The paper trains FCN-16s and FCN-8s from the coarser net's weights (stage-wise); here each variant "
             "is trained from scratch with the same budget.",
             "mnist-seg canvases are 64x64: FCN-32s's score map is 2x2, so its masks are very coarse and the "
             "gap to the finer variants is larger than on VOC's 500x500 images."]
    if ctx.scale == "tiny":
        notes.append("tiny scale: a few canvases and one epoch; the numbers only test the plumbing.")
    results = {"runs": runs, "examples": examples, "class_names": list(data.class_names), "band": cfg.band,
               "seeds": seed_list(ctx, cfg.seeds), "comparisons": comparisons,
               "paper_miou": {"32s": 59.4, "16s": 62.4, "8s": 62.7}}  # fmt: skip
    return Outcome(results=results, criteria=criteria, tables=[_skips_table(runs, cfg.band, cfg.seeds)],
                   setup=setup, notes=notes)


# -------------------------------------------------------------------------------------- dilation


def plot_dilation(results: dict, out_dir: Path) -> list[Plot]:
    from matplotlib.figure import Figure

    from cnnlab.viz.experiment_plots import save_figure
    from cnnlab.viz.segmentation import draw_overlays

    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.add_subplot()
    for key, style in (("dilated", "o-"), ("plain", "s--")):
        fields = results["fields"][key]
        ax.plot(range(1, len(fields) + 1), fields, style, label=f"{key} {results['dilations'][key]}")
        ax.annotate(str(fields[-1]), (len(fields), fields[-1]), xytext=(6, -3), textcoords="offset points", fontsize=8)
    ax.set(xlabel="context layer", ylabel="receptive field (units of the map)", yscale="log",
           title="receptive field, equal parameters")
    ticks = results["fields"]["dilated"][:-1]  # 3, 5, 9, ..., 65 (the last fields are written at the lines' ends)
    ax.set_yticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    fields = Plot(save_figure(fig, out_dir, "dilation_fields.png"),
                  "The analyzer's receptive field after each layer of the context module, with and without dilation.")
    runs = results["runs"]
    groups = {"test mean IU": {r["label"]: r["test_miou"] for r in runs},
              "test pixel accuracy": {r["label"]: [s["test"]["pixel_acc"] for s in r["seeds"]] for r in runs}}
    miou = plot_arms(groups, out_dir, "dilation_miou.png", ylabel="%",
                     caption="Test mean IU and pixel accuracy of the dilated and the plain network, per seed "
                     "(the same seeds for both).")
    ex = results["examples"]
    draw_overlays(out_dir / "overlays.png", ex["image"], ex["truth"], {r["label"]: ex[r["label"]] for r in runs},
                  class_names=results["class_names"], title="test canvases: truth and predictions (first seed)")
    return [fields, miou, Plot("overlays.png", "Test canvases: the true masks and both networks' predictions (first seed).")]


def _context_fields(dilations: tuple[int, ...]) -> list[int]:
    from cnnlab.analysis import analyze
    from cnnlab.models.zoo.fcn import ContextModule

    rows = analyze(ContextModule(4, dilations), (4, 160, 160)).layers
    return [int(r.receptive_field[0]) for r in rows if r.type == "Conv2d"][: len(dilations)]


def _dilation_arms(ctx: ExperimentContext, cfg: DilationConfig, data: Any) -> tuple[list, dict]:
    """The dilated and the plain network over the seeds: their arm rows, the first seed's example predictions."""
    from cnnlab.analysis import analyze
    from cnnlab.models.zoo.fcn import CONTEXT_DILATIONS

    options = dict(cfg.model_options)
    runs, examples = [], _examples(data, cfg.examples)
    for label, dilations in (("dilated", CONTEXT_DILATIONS), ("plain", PLAIN)):
        fits = train_zoo_arm(ctx, f"{cfg.model} {label}", cfg.model, data, cfg.train, seeds=cfg.seeds,
                             options={"dilations": dilations, **options}, task="segmentation")
        info = ctx.analyze(fits[0].model, data.input_size)
        rf = next(r for r in analyze(fits[0].model, tuple(data.input_size)).layers if r.name.endswith("ctx_fc8")).receptive_field[0]
        seed_rows = [dict(seed=s, **_metrics(f)) for s, f in zip(seed_list(ctx, cfg.seeds), fits)]
        runs.append(_arm(ctx, seed_rows, label=label, dilations=list(dilations), params=info["params"],
                         macs=info["macs"], receptive_field_px=float(rf)))
        examples[label] = _predict(fits[0].model, data.test.x[: cfg.examples], ctx.compute_device).tolist()
    return runs, examples


@register_experiment(
    name="dilation", title="Dilated convolutions: exponential receptive fields", claim=DILATION_CLAIM,
    lectures=("001_817da1dfb1b16ce6.txt",), paper="Yu & Koltun, ICLR 2016 (Fig. 1, Table 1)",
    scales=DILATION_SCALES, plot=plot_dilation,
)  # fmt: skip
def run_dilation(ctx: ExperimentContext, cfg: DilationConfig) -> Outcome:
    from cnnlab.analysis import analyze
    from cnnlab.models.zoo.fcn import CONTEXT_DILATIONS
    from torch import nn

    options = dict(cfg.model_options)
    data = ctx.load_data(cfg.data, **dict(cfg.data_options))
    stack = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=d, dilation=d) for d in (1, 2, 4)])
    lecture = [int(r.receptive_field[0]) for r in analyze(stack, (4, 64, 64)).layers]
    fields = {"dilated": _context_fields(CONTEXT_DILATIONS), "plain": _context_fields(PLAIN)}
    runs, examples = _dilation_arms(ctx, cfg, data)
    d, p = runs
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    cmp = compare_seeds(d["test_miou"], p["test_miou"])
    criteria = [
        Criterion("dilations 1, 2, 4 give the lecture's fields 3, 7, 15 at equal parameters",
                  f"analyzer: {', '.join(map(str, lecture))}", lecture == [3, 7, 15]),
        Criterion("the context module's field grows exponentially at equal parameters (Yu & Koltun Table 1: "
                  "3, 5, 9, 17, 33, 65, 67)",
                  f"dilated {fields['dilated']} vs plain {fields['plain']}; {d['params']:,} vs {p['params']:,} params",
                  fields["dilated"] == [3, 5, 9, 17, 33, 65, 67] and d["params"] == p["params"]),
        seed_criterion("the dilated network has a higher test mean IU than the same network without dilation",
                       f"mean IU {pct(d['test']['miou'])} (dilated, field {d['receptive_field_px']:.0f} px; per seed "
                       f"{_pcts(d['test_miou'])}) vs {pct(p['test']['miou'])} (plain, field "
                       f"{p['receptive_field_px']:.0f} px; {_pcts(p['test_miou'])})", cmp),
    ]
    r1 = lambda v: round(100 * v, 1)  # noqa: E731
    table = Table(f"With and without dilation, means over {cfg.seeds} seeds (each selected on val, test once)",
                  ("network", "dilations", "params", "MACs", "field (px)", "val mean IU (%)", "test mean IU (%)",
                   "std", "per seed", "test pixel acc. (%)", "best epochs"),
                  tuple((r["label"], str(tuple(r["dilations"])), r["params"], r["macs"], r["receptive_field_px"],
                         r1(r["val"]["miou"]), r1(r["test"]["miou"]), r1(r["std_test_miou"]), _pcts(r["test_miou"]),
                         r1(r["test"]["pixel_acc"]), ", ".join(str(s["best_epoch"]) for s in r["seeds"]))
                        for r in runs))  # fmt: skip
    setup = [f"Data: `{data.name}` ({len(data.train):,}/{len(data.val):,}/{len(data.test):,} train/val/test canvases).",
             f"Networks: `{cfg.model}` (a stride-2 stem, the basic context module, 1x1 scores, x2 bilinear "
             f"upsampling) with dilations {CONTEXT_DILATIONS} and {PLAIN}" + (f", {options}" if options else "")
             + f"; each trained with {cfg.train.describe()} for each of {cfg.seeds} seeds (the same for both, each "
             "seed its own initialisation and data order), selected on val mean IU.",
             "Receptive fields: cnnlab's analyzer (exact for convolutions, tested against gradient support).",
             "Verdicts: the fields and parameter counts exactly; mean IU by the mean paired difference over seeds, "
             "which must exceed 2 standard errors."]
    notes = ["Yu & Koltun put the context module on the 21 class scores of a VGG front end; here it runs on "
             f"{options.get('width', 32)} feature maps after a small stem, so that a CPU trains it in minutes."]
    if ctx.scale == "tiny":
        notes.append("tiny scale: a few canvases and one epoch; the numbers only test the plumbing.")
    results = {"runs": runs, "fields": fields, "lecture_fields": lecture, "examples": examples,
               "dilations": {"dilated": list(CONTEXT_DILATIONS), "plain": list(PLAIN)},
               "class_names": list(data.class_names), "seeds": seed_list(ctx, cfg.seeds),
               "dilated_vs_plain": vars(cmp)}
    return Outcome(results=results, criteria=criteria, tables=[table], setup=setup, notes=notes)
