"""Dense prediction, re-run: FCN's skip connections (Long, Shelhamer & Darrell 2015, Table 2) and
dilated convolutions' receptive fields (Yu & Koltun 2016, lecture 001's Fig. 1).

``fcn-skips``: the same small FCN trained three times on ``mnist-seg``, fusing no pool output
(32s), pool4 (16s) or pool4 and pool3 (8s); mean IU on the test canvases, and pixel accuracy in a
band around the true class boundaries (how sharp the masks are).

``dilation``: Yu & Koltun's basic context module (dilations 1, 1, 2, 4, 8, 16, 1) against the same
module without dilation, parameter for parameter: the analyzer's receptive fields, then mean IU.
Every network is selected on the validation canvases; test is evaluated once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.experiments.framework import Criterion, ExperimentContext, Outcome, Plot, Table, TrainSpec, register_experiment

__all__ = ["SkipsConfig", "DilationConfig", "SKIPS_SCALES", "DILATION_SCALES", "boundary_accuracy"]

SKIPS_CLAIM = ("Fusing the scores of finer layers (pool4, then pool3) with the coarse upsampled scores gives "
               "sharper masks and a higher mean IU: FCN-32s 59.4, FCN-16s 62.4, FCN-8s 62.7 on PASCAL VOC 2011 val.")
DILATION_CLAIM = ("Dilated convolutions enlarge the receptive field exponentially (3, 7, 15, ...) at a constant "
                  "number of parameters and without losing resolution; a context module built from them raises "
                  "the accuracy of dense prediction over the same network without dilation.")
PLAIN = (1,) * 7
TINY_DATA = (("n_train", 8), ("n_val", 2), ("n_test", 2), ("size", 32))  # plumbing: 32x32, one update an epoch


@dataclass(frozen=True)
class SkipsConfig:
    data: str
    train: TrainSpec
    model: str = "fcn_digits"
    variants: tuple[str, ...] = ("32s", "16s", "8s")
    band: int = 2  # boundary band half-width in pixels
    examples: int = 3
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class DilationConfig:
    data: str
    train: TrainSpec
    model: str = "dilated_digits"
    examples: int = 3
    model_options: tuple[tuple[str, Any], ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()


SKIPS_SCALES = {
    "tiny": SkipsConfig(data="mnist-seg", data_options=TINY_DATA, model_options=(("width", 0.25),),
                        train=TrainSpec(recipe="fcn_digits", epochs=1, batch_size=8)),
    # 2,000 training canvases, the fcn_digits recipe (Adam, cosine) for 10 epochs per variant
    "quick": SkipsConfig(data="mnist-seg", train=TrainSpec(recipe="fcn_digits", epochs=10)),
    # the paper's nets and recipe on VOC 2012 (from scratch: cnnlab ships no ImageNet VGG-16 weights)
    "full": SkipsConfig(data="voc2012", model="fcn_vgg16", train=TrainSpec(recipe="fcn")),
}
DILATION_SCALES = {
    "tiny": DilationConfig(data="mnist-seg", data_options=TINY_DATA, model_options=(("width", 8),),
                           train=TrainSpec(recipe="fcn_digits", epochs=1, batch_size=8)),
    # 24 maps in the context module (its 8 layers at 32x32 cost 2.7x fcn_digits' MACs at 32 maps)
    "quick": DilationConfig(data="mnist-seg", train=TrainSpec(recipe="fcn_digits", epochs=8),
                            model_options=(("width", 24),)),
    "full": DilationConfig(data="mnist-seg", train=TrainSpec(recipe="fcn_digits", epochs=40),
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
    pick = ("miou", "pixel_acc", "mean_acc", "fwiou")
    return {"val": {k: float(fit.val[k]) for k in pick}, "test": {k: float(fit.test[k]) for k in pick},
            "test_iou": {k[4:]: v for k, v in fit.test.items() if k.startswith("iou_")},
            "best_epoch": fit.best_epoch, "seconds": float(fit.seconds)}


def _examples(data: Any, n: int) -> dict[str, Any]:
    return {"image": data.test.x[:n, 0].tolist(), "truth": data.test.y[:n].tolist()}


# ------------------------------------------------------------------------------------- fcn-skips


def plot_fcn_skips(results: dict, out_dir: Path) -> list[Plot]:
    from matplotlib.figure import Figure

    from cnnlab.viz.segmentation import draw_overlays

    variants = [r["variant"] for r in results["runs"]]
    fig = Figure(figsize=(6.0, 3.8))
    ax = fig.add_subplot()
    xs = range(len(variants))
    ax.bar([x - 0.2 for x in xs], [100 * r["test"]["miou"] for r in results["runs"]], 0.4, label="test mean IU")
    ax.bar([x + 0.2 for x in xs], [100 * r["boundary_acc"] for r in results["runs"]], 0.4, label="boundary pixel acc.")
    for x, paper in zip(xs, (59.4, 62.4, 62.7)):
        ax.plot([x - 0.4, x + 0.4], [paper, paper], "k:", lw=1)
    ax.set_xticks(list(xs), [f"FCN-{v}" for v in variants])
    ax.set(ylabel="%", title=f"Skips on {results['data']} (dotted: the paper's VOC mean IU)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / "fcn_skips.png", dpi=110)
    ex = results["examples"]
    draw_overlays(out_dir / "overlays.png", ex["image"], ex["truth"], {f"FCN-{v}": ex[v] for v in variants},
                  class_names=results["class_names"], title="test canvases: truth and predictions")
    return [Plot("fcn_skips.png", "Test mean IU and accuracy near the true class boundaries, per variant."),
            Plot("overlays.png", "Test canvases: the true masks and each variant's prediction (void white).")]


@register_experiment(
    name="fcn-skips", title="FCN skips: 32s vs 16s vs 8s", claim=SKIPS_CLAIM,
    lectures=("003_7e0d723498294d64.txt", "000_fb7e7ade2ae256e5.txt"),
    paper="Long, Shelhamer & Darrell, CVPR 2015 (Table 2)", scales=SKIPS_SCALES, plot=plot_fcn_skips,
)  # fmt: skip
def run_fcn_skips(ctx: ExperimentContext, cfg: SkipsConfig) -> Outcome:
    options = dict(cfg.model_options)
    if cfg.model == "fcn_vgg16":  # the full scale: the zoo's three FCN-VGG16 nets
        names = {v: f"fcn{v}_vgg16" for v in cfg.variants}
        data = ctx.load_data(cfg.data, input_size=(3, 224, 224), **dict(cfg.data_options))
    else:
        names = {v: cfg.model for v in cfg.variants}
        data = ctx.load_data(cfg.data, **dict(cfg.data_options))
    runs, examples = [], _examples(data, cfg.examples)
    for v in cfg.variants:
        extra = {} if cfg.model == "fcn_vgg16" else {"skips": v}
        fit = ctx.train(f"{names[v]} {v}", lambda: ctx.create_model(names[v], data, **options, **extra), data,
                        cfg.train, key={"model": names[v], "variant": v, **options}, task="segmentation")  # fmt: skip
        pred = _predict(fit.model, data.test.x, ctx.compute_device)
        runs.append(dict(variant=v, model=names[v], boundary_acc=boundary_accuracy(pred, data.test.y, band=cfg.band),
                         params=ctx.analyze(fit.model, data.input_size)["params"], **_metrics(fit)))
        examples[v] = pred[: cfg.examples].tolist()
    by = {r["variant"]: r for r in runs}
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    criteria = []
    if "16s" in by and "32s" in by:
        criteria.append(Criterion("FCN-16s has a higher test mean IU than FCN-32s",
                                  f"mean IU {pct(by['16s']['test']['miou'])} (16s) vs {pct(by['32s']['test']['miou'])} (32s)",
                                  by["16s"]["test"]["miou"] > by["32s"]["test"]["miou"]))
    if "8s" in by and "16s" in by:
        criteria.append(Criterion("FCN-8s's test mean IU is at least FCN-16s's (the paper: +0.3)",
                                  f"mean IU {pct(by['8s']['test']['miou'])} (8s) vs {pct(by['16s']['test']['miou'])} (16s)",
                                  by["8s"]["test"]["miou"] >= by["16s"]["test"]["miou"]))
    first, last = runs[0], runs[-1]
    criteria.append(Criterion(f"finer skips give sharper masks: {last['variant']} is more accurate than "
                              f"{first['variant']} within {cfg.band} px of the true boundaries",
                              f"boundary accuracy {pct(last['boundary_acc'])}% ({last['variant']}) vs "
                              f"{pct(first['boundary_acc'])}% ({first['variant']})",
                              last["boundary_acc"] > first["boundary_acc"]))
    table = Table("Mean IU and the other FCN metrics (%), selected on val, test once",
                  ("variant", "params", "val mean IU", "test mean IU", "test pixel acc.", "test mean acc.",
                   "test f.w. IU", f"boundary acc. ({cfg.band} px)", "best epoch"),
                  tuple((f"FCN-{r['variant']}", r["params"], round(100 * r["val"]["miou"], 1),
                         round(100 * r["test"]["miou"], 1), round(100 * r["test"]["pixel_acc"], 1),
                         round(100 * r["test"]["mean_acc"], 1), round(100 * r["test"]["fwiou"], 1),
                         round(100 * r["boundary_acc"], 1), r["best_epoch"]) for r in runs))
    setup = [f"Data: `{data.name}` ({len(data.train):,}/{len(data.val):,}/{len(data.test):,} train/val/test, "
             f"{data.num_classes} classes, void pixels ignored).",
             f"Networks: `{cfg.model}` with skips {', '.join(cfg.variants)}"
             + (f" and {options}" if options else "") + f"; each trained with {cfg.train.describe()}, seed {ctx.seed}, "
             "the epoch selected on the validation canvases' mean IU.",
             f"Sharpness: pixel accuracy within {cfg.band} px of a change of true class (void excluded)."]
    notes = ["The paper trains FCN-16s and FCN-8s from the coarser net's weights (stage-wise); here each variant "
             "is trained from scratch with the same budget.",
             "mnist-seg canvases are 64x64: FCN-32s's score map is 2x2, so its masks are very coarse and the "
             "gap to the finer variants is larger than on VOC's 500x500 images."]
    if ctx.scale == "tiny":
        notes.append("tiny scale: a few canvases and one epoch; the numbers only test the plumbing.")
    results = {"runs": runs, "examples": examples, "class_names": list(data.class_names), "paper_miou":
               {"32s": 59.4, "16s": 62.4, "8s": 62.7}}  # fmt: skip
    return Outcome(results=results, criteria=criteria, tables=[table], setup=setup, notes=notes)


# -------------------------------------------------------------------------------------- dilation


def plot_dilation(results: dict, out_dir: Path) -> list[Plot]:
    from matplotlib.figure import Figure

    from cnnlab.viz.segmentation import draw_overlays

    fig = Figure(figsize=(10.0, 3.8))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for key, style in (("dilated", "o-"), ("plain", "s--")):
        fields = results["fields"][key]
        a1.plot(range(1, len(fields) + 1), fields, style, label=f"{key} {results['dilations'][key]}")
    a1.set(xlabel="context layer", ylabel="receptive field (units of the map)", yscale="log",
           title="(a) receptive field, equal parameters")
    a1.legend(fontsize=8)
    runs = results["runs"]
    a2.bar(range(len(runs)), [100 * r["test"]["miou"] for r in runs], color=["C0", "C1"])
    a2.set_xticks(range(len(runs)), [r["label"] for r in runs])
    a2.set(ylabel="test mean IU (%)", title="(b) mean IU on the test canvases")
    fig.tight_layout()
    fig.savefig(out_dir / "dilation.png", dpi=110)
    ex = results["examples"]
    draw_overlays(out_dir / "overlays.png", ex["image"], ex["truth"], {r["label"]: ex[r["label"]] for r in runs},
                  class_names=results["class_names"], title="test canvases: truth and predictions")
    return [Plot("dilation.png", "(a) The analyzer's receptive field after each layer of the context module; "
                 "(b) test mean IU with and without dilation."),
            Plot("overlays.png", "Test canvases: the true masks and both networks' predictions.")]


def _context_fields(ctx: ExperimentContext, dilations: tuple[int, ...]) -> list[int]:
    from cnnlab.analysis import analyze
    from cnnlab.models.zoo.fcn import ContextModule

    rows = analyze(ContextModule(4, dilations), (4, 160, 160)).layers
    return [int(r.receptive_field[0]) for r in rows if r.type == "Conv2d"][: len(dilations)]


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
    fields = {"dilated": _context_fields(ctx, CONTEXT_DILATIONS), "plain": _context_fields(ctx, PLAIN)}
    runs, examples = [], _examples(data, cfg.examples)
    for label, dilations in (("dilated", CONTEXT_DILATIONS), ("plain", PLAIN)):
        fit = ctx.train(f"{cfg.model} {label}", lambda: ctx.create_model(cfg.model, data, dilations=dilations, **options),
                        data, cfg.train, key={"model": cfg.model, "dilations": dilations, **options}, task="segmentation")  # fmt: skip
        info = ctx.analyze(fit.model, data.input_size)
        rf = next(r for r in analyze(fit.model, tuple(data.input_size)).layers if r.name.endswith("ctx_fc8")).receptive_field[0]
        runs.append(dict(label=label, dilations=list(dilations), params=info["params"], macs=info["macs"],
                         receptive_field_px=float(rf), **_metrics(fit)))
        examples[label] = _predict(fit.model, data.test.x[: cfg.examples], ctx.compute_device).tolist()
    d, p = runs
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    criteria = [
        Criterion("dilations 1, 2, 4 give the lecture's fields 3, 7, 15 at equal parameters",
                  f"analyzer: {', '.join(map(str, lecture))}", lecture == [3, 7, 15]),
        Criterion("the context module's field grows exponentially at equal parameters (Yu & Koltun Table 1: "
                  "3, 5, 9, 17, 33, 65, 67)",
                  f"dilated {fields['dilated']} vs plain {fields['plain']}; {d['params']:,} vs {p['params']:,} params",
                  fields["dilated"] == [3, 5, 9, 17, 33, 65, 67] and d["params"] == p["params"]),
        Criterion("the dilated network has a higher test mean IU than the same network without dilation",
                  f"mean IU {pct(d['test']['miou'])} (dilated, field {d['receptive_field_px']:.0f} px) vs "
                  f"{pct(p['test']['miou'])} (plain, field {p['receptive_field_px']:.0f} px)",
                  d["test"]["miou"] > p["test"]["miou"]),
    ]
    table = Table("With and without dilation (selected on val, test once)",
                  ("network", "dilations", "params", "MACs", "field (px)", "val mean IU (%)", "test mean IU (%)",
                   "test pixel acc. (%)", "best epoch"),
                  tuple((r["label"], str(tuple(r["dilations"])), r["params"], r["macs"], r["receptive_field_px"],
                         round(100 * r["val"]["miou"], 1), round(100 * r["test"]["miou"], 1),
                         round(100 * r["test"]["pixel_acc"], 1), r["best_epoch"]) for r in runs))
    setup = [f"Data: `{data.name}` ({len(data.train):,}/{len(data.val):,}/{len(data.test):,} train/val/test canvases).",
             f"Networks: `{cfg.model}` (a stride-2 stem, the basic context module, 1x1 scores, x2 bilinear "
             f"upsampling) with dilations {CONTEXT_DILATIONS} and {PLAIN}" + (f", {options}" if options else "")
             + f"; each trained with {cfg.train.describe()}, seed {ctx.seed}, selected on val mean IU.",
             "Receptive fields: cnnlab's analyzer (exact for convolutions, tested against gradient support)."]
    notes = ["Yu & Koltun put the context module on the 21 class scores of a VGG front end; here it runs on "
             f"{options.get('width', 32)} feature maps after a small stem, so that a CPU trains it in minutes."]
    if ctx.scale == "tiny":
        notes.append("tiny scale: a few canvases and one epoch; the numbers only test the plumbing.")
    results = {"runs": runs, "fields": fields, "lecture_fields": lecture, "examples": examples,
               "dilations": {"dilated": list(CONTEXT_DILATIONS), "plain": list(PLAIN)},
               "class_names": list(data.class_names)}
    return Outcome(results=results, criteria=criteria, tables=[table], setup=setup, notes=notes)
