"""``cnnlab runs``: the run folders under a root, one line each; ``cnnlab runs compare``: several
runs' curves in one picture and their configuration differences."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys

from cnnlab.errors import ConfigError
from cnnlab.terminal import for_terminal
from cnnlab.cli.options import guard_outputs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list your training runs, or compare some",
                       description="One line per run folder under ROOT: model, data, epochs, validation and "
                                   "test accuracy, time and state (finished, unfinished, failed, or unreadable: a "
                                   "run whose files cannot be read, with why on stderr). "
                                   "`cnnlab runs compare DIR DIR...` overlays their curves.")
    p.add_argument("root", nargs="?", default="runs", metavar="ROOT|compare",
                   help="folder holding run folders (default ./runs), or `compare` followed by run folders")
    p.add_argument("folders", nargs="*", metavar="DIR", help="with `compare`: the run folders to compare")
    from cnnlab.viz.runs import SORT_KEYS

    p.add_argument("--sort", choices=SORT_KEYS, default="created", help="column to sort by (default created)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    p.add_argument("--plot", metavar="FILE.png",
                   help="with `compare`: where the overlaid curves go (default: runs-compare.png in the folder "
                        "holding the runs)")
    guard_outputs(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.viz.runs import find_runs

    if args.root == "compare":
        return _compare(args)
    if args.folders:
        raise ConfigError(f"unexpected argument {args.folders[0]!r}: give one ROOT, or `compare DIR DIR...`")
    runs = find_runs(args.root)
    descending = args.sort in ("val_acc", "test_acc", "created")
    present = sorted((r for r in runs if getattr(r, args.sort) not in (None, "")), key=lambda r: getattr(r, args.sort),
                     reverse=descending)
    runs = present + [r for r in runs if getattr(r, args.sort) in (None, "")]  # runs without the value last
    rows = [r.to_dict() for r in runs]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["path"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
    elif not rows:
        print(f"no run folder under {args.root}")
    else:
        _table(rows)
        for r in rows:
            if r["problem"]:
                print(f"cnnlab runs: {for_terminal(r['path'])} is unreadable: {for_terminal(r['problem'])}",
                      file=sys.stderr)
    return 0


def _table(rows: list[dict]) -> None:
    from cnnlab.viz.runs import format_metric

    header = ("run", "model", "data", "epochs", "val", "test", "time", "state")
    plain = {"key": "acc", "unit": "%"}
    body = [(for_terminal(r["path"]), for_terminal(r["model"]), for_terminal(r["data"]),
             "-" if r["epochs"] is None else str(r["epochs"]),
             for_terminal(format_metric(r["val"], r["metric"] or plain, name=True)),
             for_terminal(format_metric(r["test"], r["metric"] or plain, name=True)),
             "-" if r["seconds"] is None else f"{r['seconds']:.0f} s", for_terminal(r["state"])) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *body)]
    for i, line in enumerate([header, *body]):
        print("  ".join(c.rjust(w) if 3 <= j <= 6 else c.ljust(w) for j, (c, w) in enumerate(zip(line, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _compare(args: argparse.Namespace) -> int:
    from cnnlab.viz.runs import config_differences, plot_runs, read_run

    if len(args.folders) < 2:
        raise ConfigError("runs compare: give at least two run folders")
    for folder in args.folders:
        read_run(folder)  # a clear error for a folder that is not a run
    differences = config_differences(args.folders)
    target = args.plot or os.path.join(os.path.commonpath([os.path.abspath(f) for f in args.folders]),
                                       "runs-compare.png")
    try:
        plot = plot_runs(args.folders, target)
    except OSError as err:
        raise ConfigError(f"--plot {target}: cannot write ({err.strerror or err})") from None
    if args.format == "json":
        print(json.dumps({"plot": str(plot), "differences": {k: v for k, v in differences}}, indent=2, default=str))
        return 0
    print("configuration differences:" if differences else "the runs' configurations are the same")
    for key, values in differences:
        print(f"  {key}: " + "  |  ".join(json.dumps(v, default=str) for v in values))
    print(f"curves: {plot}")
    return 0
