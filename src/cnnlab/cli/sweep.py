"""``cnnlab sweep``: a grid search over recipe fields, chosen on the validation split."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from cnnlab.cli.options import capped_int, guard_outputs, pairs, seed_int, threads_int
from cnnlab.errors import ConfigError

EPILOG = """\
examples:
  cnnlab sweep lenet5 --grid lr=0.01,0.05,0.1 --grid weight_decay=0,5e-4 --epochs 10
  cnnlab sweep lenet5 --grid lr=0.01,0.1 --folds 5 --epochs 10     5-fold cross-validation on the training split
  cnnlab train --config sweeps/lenet5-mnist-5k/best.json             train the chosen point

Every run of the sweep has the same seed, data and budget; the choice reads the validation metric
only (the mean over folds with --folds). Re-running the command skips finished runs and resumes
unfinished ones.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from cnnlab.training.device import PRECISIONS

    p = sub.add_parser(
        "sweep", help="grid search over recipe fields (lr, weight decay, ...), chosen on val",
        description="Train MODEL once per point of a grid of recipe fields (one run folder each), choose the "
                    "point with the best validation metric, and write table.csv, table.md, heatmap.png and "
                    "best.json (a run description for `cnnlab train --config`) into --out.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model name (`cnnlab list`)")
    p.add_argument("--grid", action="append", required=True, metavar="FIELD=V1,V2,...",
                   help="a recipe field and its values (repeatable: the grid is every combination)")
    p.add_argument("--folds", type=capped_int("MAX_FOLDS"), metavar="K",
                   help="k-fold cross-validation: each point trained K times, fold i of the training split as "
                        "val (stratified folds, fixed seed); the test split is never read")
    p.add_argument("--data", default="mnist-5k", help="data set (default mnist-5k)")
    p.add_argument("--recipe", help="training recipe (default: the model's)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="a recipe field fixed for every point")
    p.add_argument("--model-set", action="append", metavar="FIELD=VALUE", help="a model config option (repeatable)")
    p.add_argument("--data-set", action="append", metavar="FIELD=VALUE", help="a data set option (repeatable)")
    p.add_argument("--epochs", type=capped_int("MAX_EPOCHS"), help="train each run this many epochs")
    p.add_argument("--max-steps", type=capped_int("MAX_ITERATIONS"), help="stop each run after this many updates")
    p.add_argument("--batch-size", type=capped_int("MAX_BATCH_SIZE"), help="global batch size")
    p.add_argument("--seed", type=seed_int, default=0, help="the seed of every run (default 0)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto (default), fp32, bf16 or fp16")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when present)")
    p.add_argument("--threads", type=threads_int, help="CPU threads for torch")
    p.add_argument("--data-root", default="data", help="where downloadable data sets live (default ./data)")
    p.add_argument("--out", help="the sweep folder (default sweeps/<model>-<data>); re-running resumes it")
    p.add_argument("--no-progress", action="store_true", help="one line per run, no progress bars")
    guard_outputs(p)
    p.set_defaults(func=run)


def parse_grid(items: list[str]) -> dict[str, tuple]:
    """``["lr=0.01,0.1", "weight_decay=0,5e-4"]`` -> ``{"lr": (0.01, 0.1), "weight_decay": (0, 0.0005)}``."""
    grid: dict[str, tuple] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not text.strip():
            raise ConfigError(f"--grid expects FIELD=V1,V2,... (e.g. lr=0.01,0.1), got {item!r}")
        if name in grid:
            raise ConfigError(f"--grid {name} is given twice; list all its values in one --grid")
        grid[name] = tuple(pairs([f"v={v}"], f"--grid {name}")["v"] for v in text.split(","))
    return grid


def run(args: argparse.Namespace) -> int:
    from cnnlab.training.run import TrainSpec
    from cnnlab.training.sweep import SweepSpec, run_sweep
    from cnnlab.viz.sweep_plots import plot_sweep_heatmap

    base = TrainSpec(model=args.model, data=args.data, recipe=args.recipe, overrides=pairs(args.set, "--set"),
                     model_config=pairs(args.model_set, "--model-set"),
                     data_options=pairs(args.data_set, "--data-set"), data_root=args.data_root,
                     epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, precision=args.precision,
                     device=args.device, max_steps=args.max_steps, threads=args.threads)
    spec = SweepSpec(base=base, grid=parse_grid(args.grid), folds=args.folds)
    out = Path(args.out or Path("sweeps") / re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{args.model}-{args.data}"))
    if args.out is not None:
        from cnnlab.safeio import check_output_path

        check_output_path(args.out, what="--out", directory=True)
    total = len(spec.points()) * (spec.folds or 1)
    done = [0]

    def report(row: dict) -> None:
        done[0] += 1
        fold = f" fold {row['fold'] + 1}/{spec.folds}" if row["fold"] is not None else ""
        val = row.get("val", {}).get(row.get("monitor", ""))
        score = f", val {row['monitor']} {val:.4f}" if isinstance(val, float) else ""
        error = f" ({row['error']})" if row.get("error") else ""
        print(f"cnnlab sweep: [{done[0]}/{total}] {row['point']}{fold}: {row['status']}{score}{error}",
              file=sys.stderr)

    result = run_sweep(spec, out=out, progress=not args.no_progress, on_run=report)
    heatmap = plot_sweep_heatmap(out)
    print((out / "table.md").read_text(), end="")
    if result.best is not None:
        key = f"val_{result.monitor}"
        sets = " ".join(f"--set {s}" for s in _best_sets(out))
        print(f"chosen on val: {result.best['folder']} ({key} {result.best[key]:.4f}); train it with "
              f"`cnnlab train --config {out / 'best.json'}` (or {sets})")
    print(f"sweep folder {out}: " + ", ".join(p.name for p in result.files)
          + (f", {heatmap.name}" if heatmap is not None else " (no heat map: more than two grid fields)"))
    return 0


def _best_sets(out: Path) -> list[str]:
    from cnnlab.safeio import read_json

    doc = read_json(out / "best.json", what="best point", error=ConfigError)
    return [str(s) for s in doc.get("set", [])]
