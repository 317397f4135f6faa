"""``cnnlab experiment``: re-run a lecture's claim and report whether it holds."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from cnnlab.cli.options import guard_outputs, seed_int
from cnnlab.experiments.registry import SCALES
from cnnlab.experiments.runner import write_index


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="re-run a lecture's claim and report whether it holds (`cnnlab experiment list`)",
        description="Run an experiment and write results.json, report.md and plots into --out. "
        "`cnnlab experiment list` lists them; `cnnlab experiment all` runs every one, sharing trained "
        "networks.",
    )
    p.add_argument("name", metavar="NAME", help="experiment name, `list`, or `all`")
    p.add_argument("--scale", choices=SCALES, default="quick",
                   help="quick: mnist-5k, minutes on a CPU (default); standard: Fashion-MNIST or MNIST, under an "
                   "hour on a CPU (the experiments that have it: `cnnlab experiment list`); full: the paper's "
                   "setting, for a GPU; tiny: seconds, plumbing only")  # fmt: skip
    p.add_argument("--data", default=None, help="data set replacing the scale's (see cnnlab.data.list_datasets); "
                   "the scale's input size, if it sets one, is kept")
    p.add_argument("--data-root", default="data", help="where torchvision-backed data sets live (default ./data)")
    p.add_argument("--download", action="store_true", help="download a missing data set (CIFAR-10 for --scale full)")
    p.add_argument("--out", default=None, help="output directory (default runs/experiments/NAME-SCALE); with "
                   "`all`, the folder that gets one NAME-SCALE folder per experiment and an index.md")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of initialisation, data order and sampling")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--precision", default="auto", help="training/evaluation precision passed to the engine")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="with `list`: a table (default) or JSON")
    guard_outputs(p)
    p.set_defaults(func=run)


def _list(fmt: str = "table") -> int:
    from cnnlab.experiments import get_experiment, list_experiments

    names = list_experiments()
    if fmt == "json":
        import json

        rows = [{"name": n, "title": (e := get_experiment(n)).title, "claim": e.claim, "paper": e.paper,
                 "lectures": list(e.lectures), "scales": [s for s in SCALES if s in e.scales]} for n in names]
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(n) for n in names) + 2
    for name in names:
        exp = get_experiment(name)
        print(f"{name:<{width}}{exp.title}")
        scales = ", ".join(s for s in SCALES if s in exp.scales)
        lectures = ", ".join(s.split("_")[0] for s in exp.lectures)
        print(textwrap.indent(f"{exp.paper}; lectures {lectures}; scales {scales}", " " * width))
    return 0


def _check_outputs(out_dir: Path) -> None:
    """An experiment's results.json, report.md and PNG plots are drawn elsewhere and renamed into
    ``out_dir`` once complete: a file of those kinds there that cnnlab did not write is refused now,
    before the training (:func:`cnnlab.atomic.check_replace`; --force replaces it)."""
    from cnnlab.atomic import check_replace

    if out_dir.is_dir():
        for path in sorted(out_dir.iterdir()):
            if path.name in ("results.json", "report.md") or path.suffix.lower() == ".png":
                check_replace(path)


def run(args: argparse.Namespace) -> int:
    from cnnlab.errors import ConfigError, MissingExtraError
    from cnnlab.experiments import ModelCache, get_experiment, list_experiments, run_experiment
    from cnnlab.experiments.runner import _default_out_dir, summarize

    if args.name == "list":
        return _list(args.format)
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    names = list_experiments() if args.name == "all" else [get_experiment(args.name).name]
    if args.name == "all":  # the standard scale exists for some experiments only
        names = [n for n in names if args.scale in get_experiment(n).scales]
    root = Path(args.out) if args.name == "all" and args.out else Path("runs/experiments")
    if args.name == "all" and root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root} exists and is not a directory")
    out_dirs = {name: root / f"{name}-{args.scale}" if args.name == "all" else
                (Path(args.out) if args.out else _default_out_dir(name, args.scale)) for name in names}
    for out_dir in out_dirs.values():  # before any training
        _check_outputs(out_dir)
    cache = ModelCache()  # `all` shares data sets and trained networks between experiments
    done = []
    for name in names:
        out_dir = out_dirs[name]
        try:
            results = run_experiment(
                name, scale=args.scale, data=args.data, out_dir=out_dir, seed=args.seed, device=args.device,
                precision=args.precision, progress=not args.quiet, cache=cache, data_root=args.data_root,
                download=args.download,
            )  # fmt: skip
        except MissingExtraError as err:  # `all` goes on without an experiment whose extra is not installed
            if args.name != "all":
                raise
            print(f"{name}: skipped: {err}")
            continue
        done.append(results)
        print(summarize(results))
        print(f"  {results['verdict']}")
        print(f"  report: {results['out_dir']}/report.md")
        if args.name == "all":  # rewritten after each experiment: an interrupted `all` keeps its index
            index = write_index(done, root, scale=args.scale)
    if args.name == "all" and done:  # none ran when every one was skipped
        print(f"index: {index}")
    return 0
