"""A grid search over recipe fields, chosen on the validation split: what ``cnnlab sweep`` does.

``run_sweep(SweepSpec(base=TrainSpec(...), grid={"lr": (0.01, 0.1), "weight_decay": (0, 5e-4)}), out=DIR)``
trains one run per grid point through :func:`cnnlab.training.run.train`, each in its own run folder
``DIR/lr=0.01+weight_decay=0/``, with every run of the sweep on the same seed, data and budget. With
``folds=K`` (k-fold cross-validation) each point is trained K times, ``DIR/<point>/fold-<i>/``, fold
``i`` of the training split serving as its validation split (``load_dataset``'s ``folds``/``fold``:
stratified folds drawn with a fixed seed); a point's score is then the mean over its folds.

The choice reads only the ``val_<monitor>`` of each run's results.json (the task's monitor, e.g.
accuracy): the test split is never read. The sweep folder gets

    sweep.json   the definition, every run's and every point's validation numbers, the choice
    table.csv    one row per point: the grid values, mean (and standard deviation over folds) of val
    table.md     the same as a markdown table, the chosen point in bold
    best.json    the chosen point as a run description: ``cnnlab train --config DIR/best.json``

(``cnnlab sweep`` draws ``heatmap.png`` from sweep.json with :mod:`cnnlab.viz.sweep_plots`.)

Re-running the same sweep into the same folder skips finished runs (results.json), resumes unfinished
ones from their checkpoints and trains the rest; a grid with new values reuses the runs of the points
it shares with the old one. A run whose loss became NaN or infinite (a rate too high) is recorded as
diverged and not retried while its folder exists; delete the folder to try it again. Changing anything
else (model, data, epochs, ``--set`` values, folds) needs a new folder.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.atomic import write_csv, write_json, write_text
from cnnlab.errors import ConfigError, TrainingError, did_you_mean
from cnnlab.limits import MAX_FOLDS, MAX_SWEEP_RUNS
from cnnlab.training.recipes import Recipe
from cnnlab.training.spec import TrainSpec

__all__ = ["SweepSpec", "SweepResult", "run_sweep", "point_name", "choose", "SWEEP_FILE", "SWEEP_CHANGEABLE"]

SWEEP_FILE = "sweep.json"
# Spec fields a re-run of a sweep may change: where and how fast it runs, not what it learns.
SWEEP_CHANGEABLE = ("threads", "device", "data_root", "download", "tensorboard", "checkpoint_every")
# TrainSpec fields that override a recipe field of the same name: a grid over that field would be ignored.
_SPEC_OVER_RECIPE = ("lr", "batch_size", "epochs")
_NOT_SWEPT = ("name", "source")


@dataclass(frozen=True)
class SweepSpec:
    """A grid of recipe fields over one run description (``base``); ``folds``: k-fold cross-validation."""

    base: TrainSpec
    grid: dict[str, tuple[Any, ...]]  # recipe field -> its values, in the order given
    folds: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.base, TrainSpec):
            raise ConfigError(f"sweep: base must be a TrainSpec, got {type(self.base).__name__}")
        if not isinstance(self.grid, dict) or not self.grid:
            raise ConfigError("sweep: give a grid (FIELD=V1,V2,... for at least one recipe field)")
        valid = [f.name for f in dataclasses.fields(Recipe) if f.name not in _NOT_SWEPT]
        for name, values in self.grid.items():
            if name not in valid:
                raise ConfigError(f"--grid {name}: not a recipe field{did_you_mean(name, valid, n=3)}")
            if not isinstance(values, (tuple, list)) or not values:
                raise ConfigError(f"--grid {name}: give at least one value")
            if len({json.dumps(v) for v in values}) != len(values):
                raise ConfigError(f"--grid {name}: a value is given twice ({', '.join(map(str, values))})")
            if name in self.base.overrides:
                raise ConfigError(f"--grid {name} and --set {name} both given; give the field once")
            if name in _SPEC_OVER_RECIPE and getattr(self.base, name) is not None:
                raise ConfigError(f"--grid {name} and --{name.replace('_', '-')} both given; give the field once")
        if self.folds is not None and (isinstance(self.folds, bool) or not isinstance(self.folds, int)
                                       or not 2 <= self.folds <= MAX_FOLDS):
            raise ConfigError(f"--folds must be an integer in 2..{MAX_FOLDS}, got {self.folds!r}")
        if self.folds and {"folds", "fold"} & set(self.base.data_options):
            raise ConfigError("--folds: the sweep chooses the folds; give no --data-set folds/fold")
        runs = math.prod(len(v) for v in self.grid.values()) * (self.folds or 1)
        if runs > MAX_SWEEP_RUNS:
            raise ConfigError(f"the sweep would train {runs:,} runs (grid points x folds); at most "
                              f"{MAX_SWEEP_RUNS} (cnnlab.limits.MAX_SWEEP_RUNS): make the grid coarser")

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values, the first field varying slowest."""
        names = list(self.grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*self.grid.values())]

    def run_spec(self, point: dict[str, Any], fold: int | None) -> TrainSpec:
        data_options = dict(self.base.data_options)
        if fold is not None:
            data_options.update(folds=self.folds, fold=fold)
        return dataclasses.replace(self.base, overrides={**self.base.overrides, **point}, data_options=data_options)

    def definition(self) -> dict[str, Any]:
        """What must not change between runs of the sweep in one folder (the grid may grow)."""
        base = {k: v for k, v in self.base.to_dict().items() if k not in SWEEP_CHANGEABLE}
        return _plain({"base": base, "folds": self.folds})


@dataclass
class SweepResult:
    out: Path
    monitor: str
    mode: str  # "max" or "min"
    points: list[dict]  # one per grid point: its values, val mean (sd), status, folder
    runs: list[dict]  # one per run: point, fold, status, val metrics
    best: dict | None  # the chosen point's row (None: no point finished)
    files: list[Path] = field(default_factory=list)


def _plain(obj: Any) -> Any:
    """``obj`` as JSON gives it back (tuples as lists), for comparisons with stored documents."""
    return json.loads(json.dumps(obj, default=str))


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    text = repr(value) if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def point_name(point: dict[str, Any]) -> str:
    """The folder of a grid point: ``lr=0.01+weight_decay=0.0005``."""
    return "+".join(f"{k}={_fmt(v)}" for k, v in point.items())


# --------------------------------------------------------------------------------------------- running


def run_sweep(spec: SweepSpec, *, out: str | os.PathLike, progress: bool = True, callbacks=(),
              on_run: Callable[[dict], None] | None = None) -> SweepResult:
    """Train every point of ``spec`` (every fold) into ``out``, choose on val, write the table and best.json.

    ``progress``: each run's progress bar and lines; ``callbacks`` go to every run's ``fit``;
    ``on_run(row)`` is called after each run (its point, fold, status and val metrics)."""
    out = Path(out)
    points = spec.points()
    names = [point_name(p) for p in points]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"--grid: two values of a field give the same folder name ({twice}); give distinct values")
    _check_points(spec, points)
    made = not out.exists()
    failed = _open_sweep(out, spec)
    runs: list[dict] = []
    try:
        for point, name in zip(points, names):
            for fold in range(spec.folds) if spec.folds else (None,):
                rel = name if fold is None else f"{name}/fold-{fold}"
                row = {"point": name, "fold": fold, "folder": rel,
                       **_run_one(spec.run_spec(point, fold), out, rel, failed, progress=progress,
                                  callbacks=callbacks)}
                runs.append(row)
                _write_state(out, spec, runs, failed)
                if on_run is not None:
                    on_run(row)
    except BaseException:
        if made:  # a sweep that stopped before its first run ended leaves no folder behind
            _remove_empty(out, out)
        raise
    return _finish(out, spec, points, names, runs, failed)


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove ``folder`` and the folders above it up to ``top`` (included) while they are empty."""
    while True:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): stop
            return
        if folder == top:
            return
        folder = folder.parent


def _check_points(spec: SweepSpec, points: list[dict]) -> None:
    """Every point's recipe, built before anything trains: a bad value is refused at once."""
    from cnnlab.data.datasets import split_folder

    base = spec.base
    for point in points:
        try:
            base.replace(overrides=point).resolve(data_name=split_folder(base.data)[0])
        except ConfigError as err:
            raise ConfigError(f"grid point {point_name(point)}: {err}") from None


def _open_sweep(out: Path, spec: SweepSpec) -> dict[str, str]:
    """Create ``out`` or check that it holds this sweep; the diverged runs recorded there."""
    from cnnlab.safeio import read_json

    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    doc_path = out / SWEEP_FILE
    if doc_path.exists():
        doc = read_json(doc_path, what="sweep record", error=ConfigError)
        if not isinstance(doc, dict) or doc.get("cnnlab_sweep") != 1 or not isinstance(doc.get("definition"), dict):
            raise ConfigError(f"{doc_path}: not a sweep record written by cnnlab")
        _same_definition(doc["definition"], spec.definition(), out)
        failed = doc.get("failed") if isinstance(doc.get("failed"), dict) else {}
        return {str(k): str(v) for k, v in failed.items()}
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty and holds no sweep ({SWEEP_FILE}); nothing in it was touched: "
                          "choose a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the sweep folder {out}: {err.strerror or err}") from None
    return {}


def _same_definition(old: dict, new: dict, out: Path) -> None:
    flat_old = {**old.get("base", {}), "folds": old.get("folds")}
    flat_new = {**new["base"], "folds": new["folds"]}
    for key in sorted(set(flat_old) | set(flat_new)):
        if flat_old.get(key) != flat_new.get(key):
            raise ConfigError(f"{out} holds a sweep with {key} = {json.dumps(flat_old.get(key))}, this one has "
                              f"{json.dumps(flat_new.get(key))}; re-run it as it was, or give a new --out")


def _run_one(run_spec: TrainSpec, out: Path, rel: str, failed: dict[str, str], *, progress: bool,
             callbacks) -> dict:
    """Train (or resume, or read) the run ``out/rel`` of the sweep; its status and validation numbers."""
    from cnnlab.training.run import train
    from cnnlab.training.rundir import holds_run

    folder = out / rel
    if (folder / "results.json").is_file():
        _check_same_run(run_spec, folder)
        return _read_run(folder, "done before")
    if rel in failed and folder.exists():
        return {"status": "diverged", "error": failed[rel]}
    resume = "auto" if holds_run(folder) else None
    # Made here, so that a run diverging before its first checkpoint leaves the (empty) folder that
    # marks it as diverged; deleting the folder asks for it to be tried again.
    folder.mkdir(parents=True, exist_ok=True)
    try:
        train(run_spec, out=folder, resume=resume, progress=progress, callbacks=callbacks)
    except TrainingError as err:  # a NaN or infinite loss: this point's rate or strength is too high
        failed[rel] = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return {"status": "diverged", "error": failed[rel]}
    except BaseException:  # a bad option, Ctrl-C: an empty folder left would look like a diverged run's
        _remove_empty(folder, out / rel.split("/")[0])
        raise
    return _read_run(folder, "resumed" if resume else "trained")


def _check_same_run(run_spec: TrainSpec, folder: Path) -> None:
    """A finished run is reused only when it was trained with this run's description."""
    from cnnlab.training.rundir import read_config

    from cnnlab.data.datasets import split_folder

    doc = read_config(folder, need_spec=True)
    recipe = run_spec.resolve(data_name=split_folder(run_spec.data)[0])
    # config.json's spec names the recipe it resolved ("recipe": "lenet" for None): compare the recipes' values
    stored = {**doc["spec"], "recipe": doc.get("recipe")}
    mine = {**_plain(run_spec.to_dict()), "recipe": _plain(recipe.to_dict())}
    for key in sorted(mine):
        if key not in SWEEP_CHANGEABLE and _plain(stored.get(key)) != mine[key]:
            theirs = json.dumps(_plain(stored.get(key)))
            raise ConfigError(f"{folder} holds a run trained with another {key} ({theirs[:200]}); move it away or "
                              "give a new --out")


def _read_run(folder: Path, status: str) -> dict:
    from cnnlab.safeio import read_json
    from cnnlab.training.rundir import read_config

    results = read_json(folder / "results.json", what="run results", error=ConfigError)
    selection = read_config(folder).get("selection") or {}
    if not isinstance(results, dict):
        raise ConfigError(f"{folder / 'results.json'}: not a run's results")
    return {"status": status, "monitor": selection.get("monitor", "acc"), "mode": selection.get("mode", "max"),
            "val": {k[4:]: v for k, v in results.items() if k.startswith("val_")},
            "best_epoch": results.get("best_epoch"), "steps": results.get("steps"), "seconds": results.get("seconds")}


def _write_state(out: Path, spec: SweepSpec, runs: list[dict], failed: dict, *, points: list[dict] | None = None,
                 best: dict | None = None, selection: dict | None = None) -> None:
    write_json(out / SWEEP_FILE, {
        "cnnlab_sweep": 1, "definition": spec.definition(), "model": spec.base.model, "data": spec.base.data,
        "grid": _plain(spec.grid), "folds": spec.folds, "selection": selection, "points": points or [],
        "best": best, "runs": runs, "failed": failed}, allow_nan=False)


# --------------------------------------------------------------------------------------------- the choice


def choose(points: list[dict], *, key: str, mode: str) -> dict | None:
    """The point with the best ``key`` (a validation metric: highest for mode "max", lowest for "min")
    among those whose every run finished; the first in grid order on a tie; None when there is none."""
    scored = [p for p in points if p.get("status") == "ok" and isinstance(p.get(key), (int, float))
              and math.isfinite(p[key])]
    if not scored:
        return None
    sign = 1.0 if mode == "max" else -1.0
    return max(scored, key=lambda p: (sign * p[key], -scored.index(p)))


def _finite(values: list) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _point_row(point: dict, name: str, runs: list[dict], monitor: str, folds: int | None) -> dict:
    """A grid point's line of the table: its values, the mean (sd) of its runs' val metric, its status."""
    mine = [r for r in runs if r["point"] == name]
    scores = _finite([r.get("val", {}).get(monitor) for r in mine])
    losses = _finite([r.get("val", {}).get("loss") for r in mine])
    diverged = any(r["status"] == "diverged" for r in mine)
    row = {**_plain(point), f"val_{monitor}": statistics.fmean(scores) if scores else None,
           "val_loss": statistics.fmean(losses) if losses else None, "runs": len(scores),
           "status": "diverged" if diverged else ("ok" if len(scores) == (folds or 1) else "incomplete"),
           "folder": name}
    if folds:
        row[f"val_{monitor}_sd"] = statistics.stdev(scores) if len(scores) > 1 else None
    return row


def _finish(out: Path, spec: SweepSpec, points: list[dict], names: list[str], runs: list[dict],
            failed: dict) -> SweepResult:
    scored = [r for r in runs if "monitor" in r]
    monitor, mode = (scored[0]["monitor"], scored[0]["mode"]) if scored else ("acc", "max")
    rows = [_point_row(p, n, runs, monitor, spec.folds) for p, n in zip(points, names)]
    best = choose(rows, key=f"val_{monitor}", mode=mode)
    selection = {"split": "val", "monitor": monitor, "mode": mode, "key": f"val_{monitor}",
                 "over": f"the mean of {spec.folds} folds" if spec.folds else "one run per point"}
    fields = [*spec.grid, f"val_{monitor}", *([f"val_{monitor}_sd"] if spec.folds else []), "val_loss", "runs",
              "status", "folder"]
    write_csv(out / "table.csv", fields, rows)
    write_text(out / "table.md", _markdown(rows, fields, best, selection))
    files = [out / "table.csv", out / "table.md"]
    if best is not None:
        point = points[rows.index(best)]
        write_json(out / "best.json", _best_document(spec, point, best, selection, out), allow_nan=False)
        files.append(out / "best.json")
    _write_state(out, spec, runs, failed, points=rows, best=best, selection=selection)
    return SweepResult(out=out, monitor=monitor, mode=mode, points=rows, runs=runs, best=best,
                       files=[out / SWEEP_FILE, *files])


def _set_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def _best_document(spec: SweepSpec, point: dict, row: dict, selection: dict, out: Path) -> dict:
    """The chosen point as a run description that ``cnnlab train --config`` reads (its ``"spec"``)."""
    best = dataclasses.replace(spec.base, overrides={**spec.base.overrides, **point})
    sets = [f"{k}={_set_text(v)}" for k, v in point.items()]
    return {"spec": _plain(best.to_dict()),
            "sweep": {"folder": str(out), "point": _plain(point), "selection": selection,
                      selection["key"]: row[selection["key"]], "folds": spec.folds},
            "set": sets,
            "train": f"cnnlab train --config {out / 'best.json'}",
            "note": "chosen on the validation split only; the test split was not read"}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _markdown(rows: list[dict], fields: list[str], best: dict | None, selection: dict) -> str:
    lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    for row in rows:
        cells = [_cell(row.get(f)) for f in fields]
        if row is best:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    chosen = (f"Chosen (bold): {best['folder']}, {selection['key']} {_cell(best[selection['key']])} "
              f"({selection['over']}; {selection['mode']}imum on the validation split)." if best else
              "No point finished: nothing chosen.")
    return "\n".join(lines) + "\n\n" + chosen + "\n"
