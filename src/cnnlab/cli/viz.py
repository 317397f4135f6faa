"""``cnnlab viz``: pictures of what a network holds, computed by :mod:`cnnlab.inspect` and drawn by
:mod:`cnnlab.viz.inspect_plots`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from cnnlab.atomic import write_csv
from cnnlab.errors import ConfigError, did_you_mean

WHATS = ("filters", "stats", "feature-maps", "contrast-norm", "top-patches", "attributions", "cam", "embedding")

EPILOG = """\
examples:
  cnnlab viz filters --run runs/2026-01-01-lenet5-mnist-5k
  cnnlab viz attributions --run DIR --image digit.png --method saliency --method gradcam
  cnnlab viz top-patches --run DIR --layer layer2 --units 0,1,2,3
  cnnlab viz feature-maps --weights resnet18.pth --model resnet18 --size 96
  cnnlab viz contrast-norm --model zfnet --model-set norm=lcn --image photo.png
  cnnlab viz embedding --run DIR --images 1000
"""


def register(sub: argparse._SubParsersAction) -> None:
    from cnnlab.cli.options import capped_int, guard_outputs, threads_option, seed_int

    p = sub.add_parser(
        "viz", help="look inside a network: filters, stats, feature maps, top patches, attributions, CAM",
        description="Draw what a trained (or untrained) network holds, as PNGs in --out.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("what", choices=WHATS, metavar="WHAT", help=" | ".join(WHATS))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", help="a run folder of `cnnlab train` (config.json + model.safetensors)")
    src.add_argument("--weights", help="a weights file (.safetensors or .pth); --model names its architecture")
    p.add_argument("--model", help="model name (with --weights; alone: the untrained model, seeded by --seed)")
    p.add_argument("--model-set", action="append", metavar="FIELD=VALUE", help="a model config option")
    p.add_argument("--num-classes", type=capped_int("MAX_CLASSES"), help="classes of the weights (default: the run's, else "
                   "the zoo model's own, e.g. 1000 for ImageNet weights)")
    p.add_argument("--data", help="images from this data set (default: the run's, else mnist-5k)")
    p.add_argument("--data-set", action="append", metavar="FIELD=VALUE", help="a data set option")
    p.add_argument("--data-root", help="where downloadable data sets live (default ./data)")
    p.add_argument("--size", type=capped_int("MAX_SIDE"), help="image side fed to the model (default: the run's/model's)")
    p.add_argument("--image", nargs="+", help="image files to show, or skimage:NAME for one of scikit-image's "
                   "photographs (default: the data set's first test images)")
    p.add_argument("--layer", help="a stage (feature_info) or module name; default depends on WHAT")
    p.add_argument("--method", action="append", help="attribution method (repeatable; default all): "
                   "saliency, smoothgrad, integrated_gradients, guided_backprop, deconvolution, occlusion, gradcam, cam; "
                   "with the [cam] extra also gradcam_plusplus, scorecam, layercam")
    p.add_argument("--target", metavar="CLASS", help="attributions, cam: explain this class (an index or a name) "
                   "for every image (default: each image's predicted class)")
    p.add_argument("--units", help="top-patches: comma-separated unit (channel) indices (default 0-7)")
    p.add_argument("--k", type=capped_int("MAX_SAMPLES"), default=8, help="top-patches per unit (default 8)")
    p.add_argument("--count", type=capped_int("MAX_SAMPLES"), default=4, help="images shown (default 4)")
    p.add_argument("--images", type=capped_int("MAX_PREDICT_IMAGES"), default=1000, help="images searched/embedded (default 1000)")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seed of an untrained model's weights and of t-SNE (default 0)")
    p.add_argument("--sha256", help="expected sha256 of --weights")
    p.add_argument("--out", help="folder for the PNGs (default: RUN/viz with --run, so `cnnlab report` shows "
                                 "them; else ./viz)")
    guard_outputs(p)
    threads_option(p)
    p.set_defaults(func=run)


@dataclasses.dataclass
class Subject:
    model: Any
    label: str  # "lenet5 (run DIR)"
    data: Any  # DataBundle the images come from
    images: Any  # N x C x H x W, normalised like the data
    labels: Any  # N true labels, or None for --image files
    names: list[str]  # a caption per image


def _load(args: argparse.Namespace) -> Subject:
    import torch

    from cnnlab.cli.options import pairs
    from cnnlab.data import load_dataset
    from cnnlab.models.pretrained import is_weights_name
    from cnnlab.models.registry import model_info
    from cnnlab.training.rundir import CONFIG, MODEL, config_for_weights, load_run_model

    if args.weights and is_weights_name(args.weights):
        return _load_published(args)
    doc, weights = None, None
    if args.run:
        run = Path(args.run)
        weights = run / MODEL
        if not (run / CONFIG).is_file() or not weights.is_file():
            raise ConfigError(f"--run {run}: not a finished run folder (needs config.json and model.safetensors)")
        doc = config_for_weights(weights)
        if doc is None:
            raise ConfigError(f"--run {run}: config.json has no run spec")
    elif args.weights:
        weights = Path(args.weights)
        if not weights.is_file():
            raise ConfigError(f"--weights {weights}: no such file")
        doc = config_for_weights(weights)
    spec = doc["spec"] if doc else {}
    name = args.model or spec.get("model")
    if not name:
        raise ConfigError("name the architecture with --model (no run config.json beside the weights)")
    info = model_info(name)
    same_model = name == spec.get("model")
    model_config = pairs(args.model_set, "--model-set")  # on top of the run's, for the run's model
    data_name = args.data or spec.get("data") or "mnist-5k"
    same_data = data_name == spec.get("data")
    options = {**((spec.get("data_options") or {}) if same_data else {}), **pairs(args.data_set, "--data-set")}
    c, h, w = info.input_size
    size = (c, args.size, args.size) if args.size else (c, h, w)
    data = load_dataset(data_name, root=args.data_root or spec.get("data_root") or "data", input_size=size,
                        seed=int(spec.get("seed") or 0) if same_data else 0, **options)
    run_classes = (doc or {}).get("data", {}).get("num_classes") if same_model else None
    num_classes = args.num_classes or run_classes or (info.num_classes if weights is not None else data.num_classes)
    torch.manual_seed(args.seed)
    model = load_run_model(weights=weights, config=doc, model=name, model_config=model_config,
                           num_classes=num_classes, in_chans=data.input_size[0], sha256=args.sha256).model
    label = f"{name} ({'run ' + str(args.run) if args.run else weights.name if weights else 'untrained'})"
    if args.image:
        images = _read_images(args.image, data)
        return Subject(model, label, data, images, None, [Path(p).name for p in args.image])
    n = min(args.count, len(data.test))
    pick = torch.linspace(0, len(data.test) - 1, n).round().long()  # spread over the split (sorted by class)
    return Subject(model, label, data, data.test.x[pick], data.test.y[pick],
                   [f"test #{i} ({data.class_names[int(data.test.y[i])]})" for i in pick.tolist()])


def _photo_sources(args: argparse.Namespace) -> list[str]:
    """The photographs a network with published weights looks at: ``--image`` (files or skimage:NAME),
    else ``--data DIR`` (the image files in a folder), else scikit-image's photographs."""
    from cnnlab.foundations.images import PHOTOS, SKIMAGE_PREFIX

    if args.image:
        return list(args.image)
    if args.data and args.data != "skimage":
        folder = Path(args.data)
        if not folder.is_dir():
            raise ConfigError(f"--data {args.data}: with --weights {args.weights}, give a folder of photographs "
                              "(or 'skimage' for scikit-image's)")
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ConfigError(f"--data {folder}: no image files in this folder")
        return [str(p) for p in files[: args.images]]
    return [SKIMAGE_PREFIX + name for name in PHOTOS][: args.images]


def _load_published(args: argparse.Namespace) -> Subject:
    """A zoo model with published weights (``--weights imagenet``), looking at photographs prepared as
    the weights expect; the "data" is those photographs, labelled with the model's own top-1 class."""
    import torch

    from cnnlab.cli.options import pairs
    from cnnlab.data.bundle import DataBundle, TensorPair
    from cnnlab.export.source import load_model
    from cnnlab.foundations.images import SKIMAGE_PREFIX, open_photo

    if not args.model:
        raise ConfigError(f"--weights {args.weights}: name the model with --model (e.g. --model efficientnet_lite0)")
    src = load_model(model=args.model, weights=args.weights, sha256=args.sha256,
                     model_config=pairs(args.model_set, "--model-set"))
    prep = src.preprocessing if not args.size else src.preprocessing.with_input_size((3, args.size, args.size))
    sources = _photo_sources(args)
    for s in sources:
        if not s.startswith(SKIMAGE_PREFIX) and not Path(s).is_file():
            raise ConfigError(f"--image {s}: no such file")
    x, _ = prep.prepare([open_photo(s) if s.startswith(SKIMAGE_PREFIX) else s for s in sources])
    with torch.no_grad():
        y = src.model(x).argmax(1)
    pair = TensorPair(x, y)
    data = DataBundle(name="photographs", train=pair, test=pair, num_classes=prep.num_classes,
                      input_size=prep.input_size, mean=prep.mean, std=prep.std, class_names=prep.class_names,
                      notes=(f"labels: the model's own top-1 class ({prep.source})",))
    names = [Path(s.removeprefix(SKIMAGE_PREFIX)).stem for s in sources]
    n = min(args.count, len(x)) if not args.image else len(x)
    return Subject(src.model, f"{args.model} ({args.weights})", data, x[:n], None, names[:n])


def _read_images(paths: list[str], data: Any) -> Any:
    """Image files decoded with PIL, resized to the data's size and normalised with its mean/std."""
    import torch

    from cnnlab.data.readers import decode_image

    from cnnlab.foundations.images import SKIMAGE_PREFIX, load_image

    c, h, w = data.input_size
    out = []
    for p in paths:
        if p.startswith(SKIMAGE_PREFIX):  # one of scikit-image's photographs, as `cnnlab filters` reads them
            pixels = torch.from_numpy(load_image(p, grey=c == 1)).float()
            pixels = pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)
            out.append(torch.nn.functional.interpolate(pixels[None], size=(h, w), mode="bilinear",
                                                       antialias=True, align_corners=False)[0].clamp(0, 1))
            continue
        path = Path(p)
        if not path.is_file():  # "is a directory", "is a FIFO (named pipe)", "does not exist"
            from cnnlab.safeio import describe_path

            raise ConfigError(f"--image {p} {describe_path(path)}; give an image file")
        arr = decode_image(path, mode="L" if c == 1 else "RGB", size=(h, w))
        out.append(torch.from_numpy(arr.copy()).float() / 255.0)
    x = torch.stack(out)
    mean = torch.tensor(data.mean[:c]).view(1, -1, 1, 1)
    std = torch.tensor(data.std[:c]).view(1, -1, 1, 1)
    return (x - mean) / std


def run(args: argparse.Namespace) -> int:
    if not (args.run or args.weights or args.model):
        raise ConfigError("say which network: --run DIR, --weights FILE [--model NAME], or --model NAME (untrained)")
    subject = _load(args)
    out = Path(args.out) if args.out else (Path(args.run) / "viz" if args.run else Path("viz"))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if args.what in _CLASS_VIEWS:
        from cnnlab.models.base import Classifier

        if not isinstance(subject.model, Classifier):
            raise ConfigError(f"viz {args.what} explains class scores and {subject.label} is not a classifier "
                              f"({type(subject.model).__name__}); viz stats, and the layer views with --layer NAME, "
                              "work on any model")
    written = _DRAW[args.what](subject, args, out)
    for path in written:
        print(path)
    return 0


def _display(subject: Subject, x: Any) -> Any:
    from cnnlab.viz.inspect_plots import to_display

    return to_display(x.numpy(), subject.data.mean, subject.data.std)


def _filters(subject: Subject, args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.inspect import filters
    from cnnlab.inspect.layers import first_conv
    from cnnlab.viz.inspect_plots import plot_filters

    layer = args.layer or first_conv(subject.model)
    w = filters(subject.model, layer=layer)
    title = f"{subject.label}: {layer} filters {w.shape[0]}x{w.shape[1]}x{w.shape[2]}x{w.shape[3]}"
    return [plot_filters(w, out / f"filters-{layer}.png", title=title)]


def _stats(subject: Subject, args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.inspect import activation_stats
    from cnnlab.viz.inspect_plots import plot_stats

    n = min(args.images, 256, len(subject.data.test))
    x = subject.images if args.image else subject.data.test.x[:n]
    y = None if args.image else subject.data.test.y[:n]
    if y is not None and int(y.max()) >= _num_classes(subject.model, x):
        y = None  # the data's labels are not the weights' classes: use the model's own predictions
    rows = [dataclasses.asdict(r) for r in activation_stats(subject.model, x, y)]
    out.mkdir(parents=True, exist_ok=True)
    table = out / "stats.csv"
    write_csv(table, list(rows[0]), rows)
    tw = max(4, *(len(r["type"]) for r in rows))  # the whole type name ("PartialConnection")
    print(f"{'layer':<28} {'type':<{tw}} {'units':>5} {'mean':>9} {'std':>9} {'zeros':>6} {'dead':>5} {'sat':>5} "
          f"{'|W|':>9} {'|dW|':>9} {'unit |r|':>8} {'filt |r|':>8}")  # fmt: skip

    def number(v: float | None, spec: str) -> str:
        return "" if v is None else format(v, spec)

    for r in rows:
        print(f"{r['name'][:28]:<28} {r['type']:<{tw}} {r['units']:>5} {r['mean']:>9.3g} {r['std']:>9.3g} "
              f"{r['frac_zero']:>6.2f} {r['dead']:>5} {number(r['saturated'], '.2f'):>5} "
              f"{number(r['weight_norm'], '.3g'):>9} "
              f"{number(r['grad_norm'], '.3g'):>9} {number(r['unit_corr'], '.3f'):>8} "
              f"{number(r['filter_corr'], '.3f'):>8}")  # fmt: skip
    print("sat: fraction of a bounded activation's outputs within 2% of its range from a bound (tanh, sigmoid, "
          "ReLU6: gradient near zero there); unit |r|, filt |r|: mean absolute correlation between the layer's "
          "units over the images (and positions), and between its filters' weights (0: uncorrelated, 1: copies)")
    worst = max((r for r in rows if r["saturated"] is not None), key=lambda r: r["saturated"], default=None)
    if worst is not None and worst["saturated"] > 0.5:
        print(f"cnnlab viz: warning: {worst['saturated']:.0%} of {worst['name']}'s outputs are saturated: its units "
              "pass almost no gradient, and their top patches tie at the bound", file=sys.stderr)
    title = f"{subject.label}: activations on {len(x)} images, gradients of their cross-entropy"
    return [plot_stats(rows, out / "stats.png", title=title), table]


def _num_classes(model: Any, x: Any) -> int:
    import torch

    with torch.no_grad():
        return int(model(x[:1]).shape[1])


def _feature_maps(subject: Subject, args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.inspect import feature_maps
    from cnnlab.viz.inspect_plots import plot_feature_maps

    layers = [args.layer] if args.layer else None
    maps = feature_maps(subject.model, subject.images[0], layers=layers)
    title = f"{subject.label}: feature maps of {subject.names[0]} (first 16 per stage)"
    return [plot_feature_maps(maps, _display(subject, subject.images[0]), out / "feature-maps.png", title=title)]


def _contrast_norm(subject: Subject, args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.inspect import contrast_norm_maps
    from cnnlab.viz.inspect_plots import plot_contrast_norm

    layer, before, after = contrast_norm_maps(subject.model, subject.images[0], layer=args.layer)
    print(f"{'maps of ' + layer:<32} {'mean':>8} {'std':>8} {'per-map std, min..max':>24}")
    for what, m in (("before", before), ("after contrast normalisation", after)):
        per_map = m.reshape(m.shape[0], -1).std(1)
        print(f"{what:<32} {m.mean():8.3g} {m.std():8.3g} {per_map.min():11.3g}..{per_map.max():<11.3g}")
    title = (f"{subject.label}: {layer} maps of {subject.names[0]}, before and after local contrast "
             "normalisation (7x7 Gaussian)")
    return [plot_contrast_norm(_display(subject, subject.images[0]), before, after,
                               out / f"contrast-norm-{layer}.png", title=title)]


def _top_patches(subject: Subject, args: argparse.Namespace, out: Path) -> list[Path]:
    from cnnlab.inspect import stage_names, top_patches
    from cnnlab.viz.inspect_plots import plot_top_patches

    layer = args.layer or stage_names(subject.model)[0]
    units = None
    if args.units:
        try:
            units = [int(u) for u in args.units.split(",")]
        except ValueError:
            raise ConfigError(f"--units expects comma-separated integers, got {args.units!r}") from None
    images = subject.data.test.x[: args.images]
    tp = top_patches(subject.model, images, layer=layer, units=units, k=min(args.k, len(images)))
    title = (f"{subject.label}: top-{tp.crops.shape[1]} test patches of {layer} units "
             f"(receptive field {tp.rf[0]:g}x{tp.rf[1]:g} px, from the analyzer; value = max activation)")
    return [plot_top_patches(tp.crops, out / f"top-patches-{layer}.png", units=tp.units, values=tp.value,
                             mean=subject.data.mean, std=subject.data.std, title=title)]  # fmt: skip


def _targets(subject: Subject, target: str | None = None) -> tuple[Any, Any]:
    """(the class each map explains, the predicted classes): ``--target`` (an index or a class name)
    for every image, else each image's predicted class."""
    import torch

    with torch.no_grad():
        predicted = subject.model(subject.images).argmax(1)
    if target is None:
        return predicted, predicted
    names = list(subject.data.class_names)
    n = _num_classes(subject.model, subject.images)
    if target in names and names.index(target) < n:
        index = names.index(target)
    elif target.lstrip("-").isdigit() and 0 <= int(target) < n:
        index = int(target)
    else:
        raise ConfigError(f"--target {target!r}: give a class index in 0..{n - 1} or a class name"
                          f"{did_you_mean(target, names[:n], n=3)}")
    return torch.full_like(predicted, index), predicted


def _attributions(subject: Subject, args: argparse.Namespace, out: Path, *, methods=None) -> list[Path]:  # noqa: ANN001
    from cnnlab.inspect import METHODS, attribute, cam_head
    from cnnlab.viz.inspect_plots import METHOD_TITLES, plot_attribution, plot_attribution_panel

    methods = methods or args.method or [m for m in METHODS if m != "cam" or _has_cam(subject, cam_head)]
    target, predicted = _targets(subject, args.target)
    heats = {m: attribute(subject.model, subject.images, target, method=m, layer=args.layer) for m in methods}
    shown = [_display(subject, x) for x in subject.images]
    rows = [f"{n}\npred {int(p)}" for n, p in zip(subject.names, predicted)]
    which = "the predicted class" if args.target is None else f"class {int(target[0])} (--target)"
    written = []
    for m in methods:
        written.append(plot_attribution(shown[0], heats[m][0], out / f"{m}.png",
                                        title=f"{METHOD_TITLES[m]}: {subject.names[0]}, class {int(target[0])}"))
    written.append(plot_attribution_panel(shown, heats, out / f"{'cam' if methods == ['cam'] else 'attributions'}"
                                          "-panel.png", title=f"{subject.label}: maps for {which}",
                                          row_labels=rows))  # fmt: skip
    return written


def _has_cam(subject: Subject, cam_head) -> bool:  # noqa: ANN001
    try:
        cam_head(subject.model, tuple(subject.images.shape[1:]))
        return True
    except ConfigError:
        return False


def _cam(subject: Subject, args: argparse.Namespace, out: Path) -> list[Path]:
    return _attributions(subject, args, out, methods=["cam"])


def _embedding(subject: Subject, args: argparse.Namespace, out: Path) -> list[Path]:
    import numpy as np

    from cnnlab.inspect import embed_2d, penultimate_features
    from cnnlab.viz.inspect_plots import plot_embedding

    n = min(args.images, len(subject.data.test))
    feats = penultimate_features(subject.model, subject.data.test.x[:n])
    print(f"embedding {n} test images ({feats.shape[1]} features) by PCA and t-SNE", file=sys.stderr)
    points = {m: embed_2d(feats, method=m, seed=args.seed) for m in ("pca", "tsne")}
    title = f"{subject.label}: penultimate features of {n} test images of {subject.data.name}"
    labels, names = subject.data.test.y[:n].numpy(), list(subject.data.class_names)
    if len(names) > 20:  # ImageNet's 1,000 classes: colour by the classes present only, so the legend is readable
        present = sorted(set(labels.tolist()))
        labels, names = np.array([present.index(v) for v in labels.tolist()]), [names[v] for v in present]
    return [plot_embedding(points, labels, out / "embedding.png", class_names=names, title=title)]


# Views that read the model's class scores (or the features before them): classifiers only.
_CLASS_VIEWS = ("attributions", "cam", "embedding")
_DRAW = {"filters": _filters, "stats": _stats, "feature-maps": _feature_maps, "contrast-norm": _contrast_norm,
         "top-patches": _top_patches,
         "attributions": _attributions, "cam": _cam, "embedding": _embedding}  # fmt: skip
