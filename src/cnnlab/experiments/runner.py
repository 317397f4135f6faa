"""Running an experiment: the runner gives it a context, then writes what it found.

:func:`run_experiment` builds an :class:`~cnnlab.experiments.context.ExperimentContext` (data, model
building, training and evaluation through the engine, with trained models cached so that a run never
trains the same network twice), calls the experiment's ``run``, then writes into the out directory:

- ``results.json``: every number measured, plus ``claim``, ``reproduced`` (``true``, ``false`` or
  ``"partly"``), ``verdict``, ``criteria``, ``scale``, ``seed``, ``seconds`` and ``versions``;
- PNG plots, drawn by :mod:`cnnlab.viz.experiment_plots` from that results dict alone;
- ``report.md``, rendered by :mod:`cnnlab.viz.report` from that results dict alone.

Everything is written to a temporary directory first and moved into place only when the run has
succeeded, so a failed run never leaves partial output nor replaces an earlier result.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import ConfigError
from cnnlab.experiments.context import ExperimentContext, ModelCache
from cnnlab.experiments.outcome import Outcome, verdict_from
from cnnlab.experiments.registry import SCALES, TINY_NOTE, Experiment, get_experiment, lecture_ref

__all__ = ["run_experiment", "summarize", "write_index", "to_jsonable", "versions"]


def versions() -> dict[str, Any]:
    """Versions of everything that produced a result (:mod:`cnnlab.provenance`: package, libraries,
    Python, git commit), with the run's thread count and GPU."""
    from cnnlab.provenance import git_commit, library_versions

    return {**library_versions(), "git_commit": git_commit(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def to_jsonable(value: Any) -> Any:
    """Plain JSON values from tensors, numpy scalars, tuples, dataclasses and paths (NaN -> None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # tensors, numpy arrays and numpy scalars
        return to_jsonable(value.tolist())
    raise TypeError(f"cannot write {type(value).__name__} to results.json")


def _default_out_dir(name: str, scale: str) -> Path:
    return Path("runs") / "experiments" / f"{name}-{scale}"


def run_experiment(
    name: str,
    *,
    scale: str = "quick",
    data: str | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    device: str | None = None,
    precision: str = "auto",
    progress: bool = True,
    cache: ModelCache | None = None,
    log: Callable[[str], None] | None = None,
    data_root: str | Path = "data",
    download: bool = False,
) -> dict[str, Any]:
    """Run experiment ``name`` at ``scale`` and write results.json, report.md and its plots.

    ``out_dir`` defaults to ``runs/experiments/<name>-<scale>/``; ``data`` replaces the scale's data
    set; ``data_root``/``download`` locate (or fetch) torchvision-backed data sets such as CIFAR-10.
    Returns the results dict written to ``results.json``.
    """
    exp = get_experiment(name)
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    cfg = exp.config(scale, data=data)
    out = Path(out_dir) if out_dir is not None else _default_out_dir(name, scale)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")

    ctx = ExperimentContext(
        experiment=name, scale=scale, seed=seed, device=device, precision=precision,
        progress=progress, cache=cache, log=log, data_root=data_root, download=download,
    )  # fmt: skip
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    ctx.log(f"scale {scale}, data {cfg.data}, seed {seed}")
    outcome = exp.run(ctx, cfg)
    if scale == "tiny":
        outcome.notes.append(TINY_NOTE)
    reproduced, criteria_met, verdict = _verdict(outcome, scale=scale, data=cfg.data)
    results: dict[str, Any] = {
        "experiment": exp.name,
        "title": exp.title,
        "claim": exp.claim,
        "source": "; ".join(lecture_ref(s) for s in exp.lectures),
        "paper": exp.paper,
        "scale": scale,
        "seed": seed,
        "data": cfg.data,
        "config": to_jsonable(cfg),
        "reproduced": reproduced,
        "criteria_met": criteria_met,
        "verdict": verdict,
        "criteria": [dataclasses.asdict(c) for c in outcome.criteria],
        "setup": list(outcome.setup),
        "notes": list(outcome.notes),
        "tables": [
            {"title": t.title, "columns": list(t.columns), "rows": [list(r) for r in t.rows]}
            for t in outcome.tables
        ],
        "trained": ctx.trained,
        **outcome.results,
        "command": f"cnnlab experiment {name} --scale {scale} --seed {seed}" + (f" --data {data}" if data else ""),
        "started": started,
        "precision": precision,
        "device": device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "versions": versions(),
    }
    results = to_jsonable(results)
    _write_experiment_folder(exp, results, out, t0=t0)
    ctx.log(f"{verdict}  ->  {out}/report.md ({results['seconds']:.0f}s)")
    results["out_dir"] = str(out)
    return results


def _verdict(outcome: Outcome, *, scale: str, data: str) -> tuple[Any, Any, str]:
    """``(reproduced, criteria_met, verdict)``: the criteria's verdict, except at the tiny scale, whose
    few updates test the plumbing and measure nothing."""
    criteria_met, verdict = verdict_from(outcome.criteria, context=f"at {scale} scale on {data}")
    if scale != "tiny":
        return criteria_met, criteria_met, verdict
    verdict = (f"Not measured: the tiny scale runs a few updates to test the plumbing, so its numbers say "
               f"nothing about the claim (the criteria below came out {_STATUS_WORDS[criteria_met]} only "
               f"by chance). Run `--scale quick` to measure it.")
    return "not measured", criteria_met, verdict


def _write_experiment_folder(exp: Experiment, results: dict[str, Any], out: Path, *, t0: float) -> None:
    """The plots, results.json (with ``plots`` and ``seconds`` added to ``results``) and report.md, drawn
    in a temporary folder beside ``out`` and renamed into it only once all are complete."""
    from cnnlab import atomic
    from cnnlab.viz.report import render_report

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        plots = exp.plot(results, tmp)
        results["plots"] = [dataclasses.asdict(p) for p in plots]
        results["seconds"] = round(time.perf_counter() - t0, 2)
        atomic.write_text(tmp / "results.json", json.dumps(results, indent=2, allow_nan=False) + "\n")
        atomic.write_text(tmp / "report.md", render_report(results))
        out.mkdir(parents=True, exist_ok=True)
        atomic.move_into(tmp, out)  # every file is complete and fsync'd; a user's file of the same name is refused
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_STATUS_WORDS = {True: "reproduced", False: "not reproduced", "partly": "partly reproduced",
                 "not measured": "not measured"}


def summarize(results: Mapping[str, Any]) -> str:
    """One line per experiment for the CLI: name, scale, verdict status, time, report path."""
    status = _STATUS_WORDS[results["reproduced"]]
    return f"{results['experiment']} ({results['scale']}): {status} in {results['seconds']:.0f}s"


def write_index(all_results: Sequence[Mapping[str, Any]], root: str | Path, *, scale: str) -> Path:
    """``root/index.md``: one row per experiment run (claim, verdict, time, link to its report)."""
    from cnnlab.models.weights import atomic_write
    from cnnlab.viz.report import markdown_table

    root = Path(root)
    rows = [[f"[{r['experiment']}]({Path(r['out_dir']).relative_to(root).as_posix()}/report.md)"
             if Path(r["out_dir"]).is_relative_to(root) else r["experiment"],
             r["title"], _STATUS_WORDS[r["reproduced"]], f"{r['seconds']:.0f} s"] for r in all_results]
    total = sum(float(r["seconds"]) for r in all_results)
    text = "\n".join([
        f"# cnnlab experiments at {scale} scale", "",
        *(["> Tiny scale tests the plumbing only: no verdict is measured.", ""] if scale == "tiny" else []),
        f"{len(all_results)} experiments, {total / 60:.1f} minutes in all.", "",
        markdown_table(["experiment", "claim", "verdict", "time"], rows), "",
    ])
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(root / "index.md", text.encode())
    return root / "index.md"
