"""``cnnlab export``, ``cnnlab bench`` and ``cnnlab predict``: parse the arguments, call ``cnnlab.export``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cnnlab.errors import ConfigError
from cnnlab.terminal import for_terminal
from cnnlab.cli.options import bounded_int, capped_int, threads_int, threads_option  # one parser of each kind for every command

EXPORT_EPILOG = """\
examples:
  cnnlab export resnet20 --format onnx                          random weights, ./resnet20.onnx
  cnnlab export --run runs/2026-01-01-lenet5-mnist-5k --format onnx --no-dynamic-batch   batch 1 only
  cnnlab export --weights resnet50.safetensors --model resnet50 --format pt2 --out r50.pt2
The file's metadata holds the preprocessing (input size, mean/std, class names): ONNX metadata_props
key "cnnlab.preprocessing"; .pt2 extra file "cnnlab_preprocessing.json".
"""


def _source_args(p: argparse.ArgumentParser, *, positional: bool) -> None:
    if positional:
        p.add_argument("model_name", nargs="?", metavar="MODEL", help="a zoo model (random weights; `cnnlab list`)")
    p.add_argument("--run", metavar="DIR", help="a run folder (config.json + model.safetensors)")
    p.add_argument("--weights", metavar="FILE|NAME", help="a weights file (.safetensors or .pth), or published "
                                                          "weights by name: imagenet (with --model efficientnet_lite0)")
    p.add_argument("--model", help="the model the weights are for (default: the config.json of their run)")
    p.add_argument("--sha256", help="expected sha256 of the weights file")
    p.add_argument("--model-set", action="append", metavar="FIELD=VALUE", help="a model config option (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    from cnnlab.export.backends import BACKENDS
    from cnnlab.export.predictor import PREDICT_BACKENDS

    e = sub.add_parser("export", help="export a model to ONNX or torch.export (.pt2)",
                       description="Export a zoo model, a run's model or weights to ONNX (torch.onnx dynamo "
                                   "exporter) or a torch.export program (.pt2), preprocessing in its metadata.",
                       epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _source_args(e, positional=True)
    e.add_argument("--format", choices=("onnx", "pt2"), default="onnx", help="file format (default onnx)")
    e.add_argument("--out", metavar="FILE", help="output file (default: MODEL.FORMAT here, or in the run folder); "
                                                 "never overwritten")
    e.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                   help="a dynamic batch dimension (default), or with --no-dynamic-batch a fixed batch of 1")
    e.add_argument("--input", metavar="CxHxW", help="input size (default: the run's or the model's)")
    threads_option(e)
    e.set_defaults(func=run_export)

    b = sub.add_parser("bench", help="inference speed of a model through several CPU backends, side by side",
                       description="Throughput (img/s at --batch-size) and latency (p50/p90 ms at batch 1) of "
                                   "each backend in interleaved rounds, ratios to eager fp32, the largest "
                                   "output difference from fp32, and the machine.")
    _source_args(b, positional=True)
    b.add_argument("--batch-size", type=capped_int("MAX_BATCH_SIZE"), default=16, help="batch for throughput (default 16)")
    b.add_argument("--input", metavar="CxHxW", help="input size (default: the model's)")
    b.add_argument("--backends", default="eager,channels_last,bf16,onnxruntime",
                   help=f"comma-separated, of {','.join(BACKENDS)} (default: all but compile, which "
                        "compiles for a minute or more)")
    b.add_argument("--rounds", type=capped_int("MAX_REPEATS"), default=5, help="interleaved rounds (default 5)")
    b.add_argument("--threads", type=threads_int, help="torch and ONNX Runtime threads (default: torch's)")
    b.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    b.set_defaults(func=run_bench)

    p = sub.add_parser("predict", help="top-k classes (segmentation: a mask PNG) of image files with a trained model",
                       description="Top-k classes with probabilities for each image file (any format PIL "
                                   "reads), preprocessed as the run's data was. --backend auto picks the "
                                   "fastest backend whose answers agree with fp32 here, and caches the choice "
                                   "and the ONNX file in the run folder (inference/).")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ... anything PIL reads) or "
                                                              "skimage:NAME (scikit-image's photographs)")
    _source_args(p, positional=False)
    p.add_argument("--top-k", type=capped_int("MAX_CLASSES"), default=5, help="classes per image (default 5)")
    p.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None,
                   help="invert the images (light on dark <-> dark on light); default: a grey model trained on "
                        "dark backgrounds inverts images with a light border, and says so")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    p.add_argument("--backend", choices=PREDICT_BACKENDS, default="auto",
                   help="auto (default): the fastest backend that agrees with fp32 here; or force one")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the run folder's inference/ cache")
    p.add_argument("--masks-dir", default=".", metavar="DIR",
                   help="segmentation models: where <image stem>.mask.png goes, detectors: <image stem>.boxes.png "
                        "(default: the current folder)")
    p.add_argument("--beam-size", type=bounded_int(1, 64, why=" (the captioner's beam search)"), default=3,
                   help="captioning models: the beam search's width (default 3); the greedy caption is printed too")
    threads_option(p)
    p.set_defaults(func=run_predict)


def _load(args: argparse.Namespace, *, positional: str | None):
    from cnnlab.cli.options import pairs
    from cnnlab.export.source import load_model
    from cnnlab.training.rundir import config_for_weights

    sources = [s for s in (positional, args.run, args.weights) if s]
    if len(sources) != 1:
        raise ConfigError("give exactly one of MODEL, --run DIR or --weights FILE (with --model)"
                          if positional is not None or args.run or args.weights else
                          "give --run DIR or --weights FILE --model NAME")
    if args.model and positional:
        raise ConfigError("give MODEL or --model (with --weights), not both")
    config = None
    from cnnlab.models.pretrained import is_weights_name

    if args.weights and not is_weights_name(args.weights):
        weights = Path(args.weights)
        if not weights.is_file():
            raise ConfigError(f"weights file {args.weights}: no such file")
        config = config_for_weights(weights)  # the run the weights came from, if any
    return load_model(model=positional or args.model, run=args.run, weights=args.weights, config=config,
                      sha256=args.sha256, model_config=pairs(args.model_set, "--model-set"))


def _input_size(text: str | None, prep):
    from cnnlab.cli.analyze import parse_input

    dims = parse_input(text)
    if dims is None:
        return prep
    c = dims[0] if dims[0] is not None else prep.input_size[0]
    return prep.with_input_size((c, dims[1], dims[2]))


def run_export(args: argparse.Namespace) -> int:
    from cnnlab.export.export import export_model

    src = _load(args, positional=args.model_name)
    prep = _input_size(args.input, src.preprocessing)
    out = Path(args.out) if args.out else (src.run_dir or Path(".")) / f"{src.name}.{args.format}"
    path = export_model(src.model, out, format=args.format, preprocessing=prep, dynamic_batch=args.dynamic_batch)
    weights = f"weights {src.weights}" if src.weights else "random weights (a zoo name alone)"
    print(f"wrote {path} ({args.format}, {path.stat().st_size / 1e6:.1f} MB): {src.name}, {weights}; input "
          f"{'N' if args.dynamic_batch else '1'}x{'x'.join(map(str, prep.input_size))}, {prep.num_classes} classes; "
          f"preprocessing from {prep.source}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.export.backends import parse_backends
    from cnnlab.export.bench import benchmark, format_bench

    backends = parse_backends(args.backends)
    src = _load(args, positional=args.model_name)
    prep = _input_size(args.input, src.preprocessing)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda msg: print(f"cnnlab bench: {msg}", file=sys.stderr)) if args.format == "table" else None
    try:
        result = benchmark(src.model, prep, backends=backends, batch_size=args.batch_size, rounds=args.rounds,
                           log=log)
    finally:
        torch.set_num_threads(threads)
    print(json.dumps(result, indent=2) if args.format == "json" else format_bench(result))
    return 0


def _check_images(images: list[str]) -> None:
    """Every file a readable image (from its header, nothing decoded), before anything is printed or written."""
    from cnnlab.data.readers import open_image
    from cnnlab.safeio import describe_path

    from cnnlab.foundations.images import PHOTOS, SKIMAGE_PREFIX, open_photo

    for image in images:
        if image.startswith(SKIMAGE_PREFIX) and image.removeprefix(SKIMAGE_PREFIX) in PHOTOS:
            continue
        if image.startswith(SKIMAGE_PREFIX) and not Path(image).is_file():
            open_photo(image)  # UnknownNameError naming the closest photographs
        if not Path(image).is_file():
            raise ConfigError(f"image {image} {describe_path(image)}; give image files")
        open_image(Path(image))


def _predict(predictor, images: list[str], **options):  # noqa: ANN001, ANN003
    """The predictor's answers for image files and scikit-image's photographs (``skimage:NAME``)."""
    import dataclasses

    from cnnlab.foundations.images import PHOTOS, SKIMAGE_PREFIX, open_photo

    def photo(s: str) -> bool:
        return s.startswith(SKIMAGE_PREFIX) and s.removeprefix(SKIMAGE_PREFIX) in PHOTOS and not Path(s).is_file()

    preds = predictor.predict([open_photo(s) if photo(s) else s for s in images], **options)
    return [dataclasses.replace(p, file=s) for p, s in zip(preds, images)]


def run_predict(args: argparse.Namespace) -> int:
    from cnnlab.export.predictor import Predictor, is_segmentation, source_task, write_masks
    from cnnlab.limits import PREDICT_CHUNK

    _check_images(args.images)
    src = _load(args, positional=None)
    if source_task(src) in ("detection", "captioning"):
        return _predict_scenes(args, src, source_task(src))
    if is_segmentation(src):
        masks = write_masks(src, args.images, out_dir=args.masks_dir)
        if args.format == "json":
            print(json.dumps({"model": src.name, "masks": {str(i): str(m) for i, m in zip(args.images, masks)}}, indent=2))
        else:
            print("\n".join(f"{i} -> {m}" for i, m in zip(args.images, masks)))
        return 0
    log = (lambda msg: print(f"cnnlab predict: {msg}", file=sys.stderr)) if args.format == "table" else None
    predictor = Predictor(src, backend=args.backend, cache=not args.no_cache, log=log)
    # A chunk of files at a time: thousands of images are never all in memory, and a table prints as it goes.
    chunks = (_predict(predictor, args.images[i:i + PREDICT_CHUNK], top_k=args.top_k, invert=args.invert)
              for i in range(0, len(args.images), PREDICT_CHUNK))
    if args.format == "json":
        predictions = [p.to_dict() for chunk in chunks for p in chunk]  # one document: printed at the end
        print(json.dumps({"model": src.name, "weights": str(src.weights) if src.weights else None,
                          "backend": predictor.backend.name, "choice": predictor.choice,
                          "predictions": predictions}, indent=2))
        return 0
    print(f"{src.name}, backend {predictor.backend.name} ({for_terminal(predictor.choice.get('reason', ''))})")
    for chunk in chunks:
        for pred in chunk:
            print(for_terminal(pred.file))
            for note in pred.notes:
                print(f"  note: {note}")
            for name, index, prob in pred.top:  # class names come from the run's config.json: escaped
                label = for_terminal(name) if name == str(index) else f"{for_terminal(name)} ({index})"
                print(f"  {100 * prob:6.2f}%  {label}")
        sys.stdout.flush()
    return 0


def _predict_scenes(args: argparse.Namespace, src, task: str) -> int:
    """Detectors: boxes printed and drawn to <stem>.boxes.png; captioners: the greedy and beam captions."""
    from cnnlab.export.predictor import caption_images, write_detections

    if task == "detection":
        results = write_detections(src, args.images, out_dir=args.masks_dir, invert=args.invert)
    else:
        results = caption_images(src, args.images, beam_size=args.beam_size, invert=args.invert)
    if args.format == "json":
        print(json.dumps({"model": src.name, "task": task, "predictions": results}, indent=2))
        return 0
    for r in results:
        print(for_terminal(r["file"]) + (f" -> {for_terminal(r['picture'])}" if "picture" in r else ""))
        for note in r["notes"]:
            print(f"  note: {note}")
        if task == "captioning":
            print(f"  greedy: {for_terminal(r['greedy'])}")
            print(f"  beam {r['beam_size']}: {for_terminal(r['beam'])}")
            continue
        for d in r["detections"]:
            x0, y0, x1, y1 = d["box"]
            print(f"  {100 * d['score']:6.2f}%  {for_terminal(d['class'])}  box {x0:g},{y0:g} - {x1:g},{y1:g}")
    return 0
