"""``cnnlab summary`` and ``cnnlab compare``: the analyzer's tables on the command line."""

from __future__ import annotations

import argparse
import re

from cnnlab.errors import ConfigError
from cnnlab.atomic import check_replace
from cnnlab.cli.options import capped_int, guard_outputs
from cnnlab.limits import MAX_BATCH_SIZE, MAX_SIDE

_FORMATS = ("table", "markdown", "json", "csv")
_DTYPES = ("float32", "bfloat16", "float16", "float64")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary", help="per-layer shapes, params, MACs, memory and receptive fields of a model",
        description="Per-layer output shape, parameters, MACs (multiply-accumulates; FLOPs = 2 x MACs), "
                    "activation memory and receptive field of a model, computed on the meta device "
                    "(no weights, no activations allocated). MODEL is a zoo name (`cnnlab list`) or "
                    "torchvision:NAME.")
    p.add_argument("model", metavar="MODEL", help="a zoo name (`cnnlab list`) or torchvision:NAME")
    _common(p)
    p.add_argument("--format", choices=_FORMATS, default="table", help="output format (default table)")
    p.add_argument("--depth", type=int, metavar="N", help="fold rows to module-name depth N (1 = top-level modules)")
    p.add_argument("--model-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a model option, e.g. stride_in_1x1=true (repeatable; as `cnnlab train --model-set`)")
    p.add_argument("--config", action="append", default=[], help=argparse.SUPPRESS)  # train's --config is a file
    p.add_argument("--erf", metavar="IMAGE.png",
                   help="also measure the effective receptive field (Luo et al. 2016, random weights and "
                        "inputs, real forward/backward on the CPU) and save it as a heat map")
    p.add_argument("--erf-layer", metavar="NAME", help="row whose central unit --erf measures (default: last spatial)")
    p.add_argument("--erf-samples", type=capped_int("MAX_REPEATS"), default=16, metavar="N", help="random inputs averaged (default 16)")
    p.add_argument("--optimizer", choices=("sgd", "momentum", "adam"), default="momentum",
                   help="optimizer whose state the training-memory estimate counts (default momentum)")
    guard_outputs(p)
    p.set_defaults(func=run_summary)

    c = sub.add_parser(
        "compare", help="several models side by side: params, MACs, memory, depth, receptive field",
        description="One table of params, MACs, activation memory, depth (weight layers on the longest "
                    "path) and receptive field, and optionally a MACs-vs-params bubble chart (Canziani "
                    "et al. 2017).")
    c.add_argument("models", nargs="+", metavar="MODEL", help="zoo names or torchvision:NAME, two or more")
    _common(c)
    c.add_argument("--format", choices=_FORMATS, default="table", help="output format (default table)")
    c.add_argument("--plot", metavar="FILE.png", help="save the bubble chart (area = activation memory) and, as "
                   "FILE_accuracy.png, published ImageNet top-1 against MACs (area = parameters)")
    guard_outputs(c)
    c.set_defaults(func=run_compare)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", metavar="CxHxW", help="input size, e.g. 3x224x224, 224x224, or with the batch "
                                                    "8x3x224x224 (default: the model's)")
    p.add_argument("--batch-size", type=capped_int("MAX_BATCH_SIZE"), default=None, metavar="N",
                   help="images per batch (default 1)")
    p.add_argument("--dtype", choices=_DTYPES, default="float32", help="activation dtype for byte counts")


def input_batch(text: str | None) -> int | None:
    """The N of an ``--input NxCxHxW`` (None when the size has no batch dimension)."""
    if text is None or not re.fullmatch(r"\d+x\d+x\d+x\d+", text.strip().lower()):
        return None
    return int(text.strip().lower().split("x")[0])


def parse_input(text: str | None) -> tuple[int | None, int, int] | None:
    """``1x3x224x224`` (the batch dimension is read by :func:`input_batch`), ``3x224x224``, ``224x224``
    or ``224`` (channels None: each model's own); None keeps the model's size."""
    if text is None:
        return None
    if not re.fullmatch(r"\d+(x\d+){0,3}", text.strip().lower()):
        raise ConfigError(f"bad --input {text!r}: expected NxCxHxW (1x3x224x224), CxHxW (3x224x224), HxW (224x224) "
                          "or a side (224)")
    dims = [int(v) for v in text.strip().lower().split("x")]
    if any(v <= 0 for v in dims):
        raise ConfigError(f"bad --input {text!r}: sizes must be positive")
    if len(dims) == 4 and dims[0] > MAX_BATCH_SIZE:
        raise ConfigError(f"bad --input {text!r}: the batch must be at most {MAX_BATCH_SIZE:,} (cnnlab.limits)")
    dims = dims[1:] if len(dims) == 4 else dims
    if any(v > MAX_SIDE for v in dims):  # channels too: no input of the zoo has more channels than pixels
        raise ConfigError(f"bad --input {text!r}: each size must be at most {MAX_SIDE} (cnnlab.limits.MAX_SIDE)")
    return tuple(dims) if len(dims) == 3 else (None, dims[0], dims[-1])


def _batch(args: argparse.Namespace) -> int:
    """--batch-size, or the N of --input NxCxHxW; the two must agree when both are given."""
    n = input_batch(args.input)
    if n is None:
        return args.batch_size
    if args.batch_size not in (None, n):
        raise ConfigError(f"--input {args.input} says batch {n} but --batch-size says {args.batch_size}; give one")
    return n


def model_options(args: argparse.Namespace) -> dict:
    """The model options of ``--model-set`` (one parser with ``cnnlab train``'s); ``--config``, which
    names a run's configuration file in ``cnnlab train``, is answered with the flag to use."""
    from cnnlab.cli.options import pairs

    if args.config:
        raise ConfigError(f"--config {args.config[0]}: a model option is given with --model-set FIELD=VALUE "
                          "(--config names a run's config.json in `cnnlab train`)")
    return pairs(args.model_set, "--model-set")


def _check_positive(value: int, flag: str) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag} must be a positive integer, got {value}")


def _render(obj: object, fmt: str) -> str:
    return {"table": obj.table, "markdown": obj.to_markdown, "json": obj.to_json, "csv": obj.to_csv}[fmt]()


def run_summary(args: argparse.Namespace) -> int:
    from cnnlab.analysis import analyze

    _check_positive(args.batch_size, "--batch-size")
    _check_positive(args.depth, "--depth")
    _check_positive(args.erf_samples, "--erf-samples")
    config = model_options(args)
    size = parse_input(args.input)
    result = analyze(args.model, size, batch_size=_batch(args) or 1, dtype=args.dtype, config=config)
    erf_line = None
    if args.erf:
        from cnnlab.safeio import check_output_path

        check_output_path(args.erf, what="--erf", directory=False)  # before the measurement, not after
        check_replace(args.erf)
        from cnnlab.analysis import effective_receptive_field
        from cnnlab.viz.analysis_plots import plot_erf

        erf = effective_receptive_field(args.model, size, layer=args.erf_layer, samples=args.erf_samples,
                                        config=config)
        rf = "x".join(f"{v:g}" for v in erf.rf)
        caption = (f"{erf.model}, centre unit {erf.unit} of {erf.layer} ({'x'.join(map(str, erf.feature_shape))}); "
                   f"{erf.samples} random inputs, random weights")
        plot_erf(erf.grid, args.erf, theoretical=erf.theoretical, caption=caption,
                 title=f"effective receptive field of {erf.layer} (theoretical {rf})")
        erf_line = (f"effective receptive field of {erf.layer}: 95% of the gradient in {erf.mass95_pixels:,} pixels "
                    f"= {100 * erf.mass95_fraction:.1f}% of the theoretical {rf} field (in the image); "
                    f"heat map saved to {args.erf}")
    print(_render(result.fold(args.depth), args.format))
    _print_memory_and_notes(result, args)
    if erf_line:
        import sys

        print(erf_line, file=sys.stderr if args.format in ("json", "csv") else sys.stdout)
    return 0


def _print_memory_and_notes(result: object, args: argparse.Namespace) -> None:
    """The training-memory estimate and the notes on the lectures' numbers, after the table
    (on stderr for json/csv, which stay machine-readable)."""
    import sys
    import textwrap

    from cnnlab.analysis.memory import training_memory
    from cnnlab.analysis.notes import notes_for

    lines = ["", *training_memory(result, optimizer=args.optimizer).lines()]
    for note in notes_for(args.model):
        lines += textwrap.wrap(note, 110, initial_indent="note: ", subsequent_indent="      ")
    print("\n".join(lines), file=sys.stderr if args.format in ("json", "csv") else sys.stdout)


def run_compare(args: argparse.Namespace) -> int:
    from cnnlab.analysis import compare

    _check_positive(args.batch_size, "--batch-size")
    size = parse_input(args.input)
    if args.plot:
        from cnnlab.safeio import check_output_path

        check_output_path(args.plot, what="--plot", directory=False)
        check_replace(args.plot)
    result = compare(args.models, size, batch_size=_batch(args) or 1, dtype=args.dtype)
    if args.plot:
        from cnnlab.viz.analysis_plots import plot_complexity

        plot_complexity(result.rows, args.plot)
        accuracy_plot, skipped = _plot_accuracy(result.rows, args.plot)
    print(_render(result, args.format))
    if args.plot and args.format == "table":
        print(f"chart saved to {args.plot}")
        if accuracy_plot:
            print(f"accuracy-vs-MACs chart (published top-1, cnnlab.results) saved to {accuracy_plot}"
                  + (f"; no published ImageNet figure for {', '.join(skipped)}" if skipped else ""))
        else:
            print("no accuracy-vs-MACs chart: none of these models has a published ImageNet figure")
    return 0


def _plot_accuracy(rows: tuple[dict, ...], plot: str) -> tuple[str | None, list[str]]:
    """Second chart of ``compare --plot FILE.png``: ``FILE_accuracy.png``, published top-1 against MACs."""
    from pathlib import Path

    from cnnlab.results import headline_top1
    from cnnlab.viz.analysis_plots import plot_accuracy_vs_macs

    chart, skipped = [], []
    for r in rows:
        paper, tv = headline_top1(r["model"])
        if paper is None and tv is None:
            skipped.append(r["model"])
        else:
            chart.append(dict(r, top1_paper=paper, top1_torchvision=tv))
    if not chart:
        return None, skipped
    path = Path(plot)
    target = path.with_name(f"{path.stem}_accuracy{path.suffix or '.png'}")
    plot_accuracy_vs_macs(chart, target)
    return str(target), skipped
