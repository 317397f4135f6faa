"""Run folders read back: one summary per run (``cnnlab runs``), and several runs side by side
(``cnnlab runs compare``: their curves overlaid and their configuration differences).

Only the files a run wrote are read (config.json, results.json, metrics.csv), so a copied folder
reads the same on another machine. Nothing here changes a run folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cnnlab import atomic
from cnnlab.errors import ConfigError

__all__ = ["RunSummary", "find_runs", "read_run", "config_differences", "plot_runs", "task_metrics", "format_metric"]

# Runs written before config.json declared the task's metrics: what each task reported.
_LEGACY_METRICS = {
    "classification": [{"key": "acc", "label": "top-1 accuracy", "unit": "%"},
                       {"key": "top5", "label": "top-5 accuracy", "unit": "%"}],
    "segmentation": [{"key": "miou", "label": "mean IU", "unit": "%"}],
    "reconstruction": [{"key": "mse", "label": "reconstruction MSE (pixels in [0, 1])", "unit": ""}],
    "vae": [{"key": "neg_elbo", "label": "negative ELBO (nats)", "unit": ""}],
}


def task_metrics(config: Any) -> list[dict]:
    """The metrics a run's task declares for reports (config.json ``task.metrics``: key, label, unit;
    the first is the headline), or what the task reported before it declared them."""
    task = config.get("task") if isinstance(config, dict) else None
    declared = task.get("metrics") if isinstance(task, dict) else None
    if isinstance(declared, list):
        good = [{"key": m["key"], "label": m["label"], "unit": m.get("unit", "")} for m in declared
                if isinstance(m, dict) and isinstance(m.get("key"), str) and isinstance(m.get("label"), str)
                and m.get("unit", "") in ("", "%")]
        if good:
            return good
    name = task.get("name") if isinstance(task, dict) else task if isinstance(task, str) else "classification"
    return _LEGACY_METRICS.get(name, [{"key": "loss", "label": "loss", "unit": ""}])


def format_metric(value: Any, metric: dict, *, name: bool = False) -> str:
    """``value`` of ``metric`` as reports show it ("98.10%", "196.4"; "-" for what is not a number, as a
    crafted file may hold); ``name``: with its key after it where the key is not plain accuracy ("61.20%
    miou", "196.4 neg_elbo")."""
    value = _number(value)
    if value is None or value != value:
        return "-"
    text = f"{100 * value:.2f}%" if metric.get("unit") == "%" else f"{value:.4g}"
    return f"{text} {metric['key']}" if name and metric.get("key") != "acc" else text

SORT_KEYS = ("created", "model", "data", "val_acc", "test_acc", "seconds", "epochs", "state")


@dataclass(frozen=True)
class RunSummary:
    path: str
    model: str
    data: str
    epochs: int | None
    val_acc: float | None
    test_acc: float | None
    seconds: float | None
    state: str  # "finished", "unfinished" (resumable or running), "failed" or "unreadable"
    created: str
    problem: str | None = None  # why the run's files could not be read (state "unreadable")
    metric: dict | None = None  # the task's headline metric (key, label, unit: see task_metrics)
    val: float | None = None  # its value on val at the selected epoch
    test: float | None = None  # ... and on test, the selected weights

    def to_dict(self) -> dict:
        return asdict(self)


def _read(path: Path) -> tuple[dict | None, str | None]:
    """``(document, None)``, ``(None, None)`` when ``path`` does not exist, or ``(None, problem)`` when it
    cannot be read: not a regular file (a FIFO must not hang `cnnlab runs`), too large, not JSON, nested
    too deeply, not an object."""
    from cnnlab.safeio import MiB, read_json

    if not os.path.lexists(path):
        return None, None
    try:
        doc = read_json(path, what="run file", error=ConfigError, max_bytes=64 * MiB)
    except ConfigError as err:
        return None, str(err)
    return (doc, None) if isinstance(doc, dict) else (None, f"run file {path}: not a JSON object")


def _json(path: Path) -> dict | None:
    return _read(path)[0]


def _read_config(folder: Path) -> tuple[dict | None, str | None]:
    """Like :func:`_read`, for the folder's config.json, through the run folder's one reader."""
    from cnnlab.training.rundir import CONFIG, read_config

    if not os.path.lexists(folder / CONFIG):
        return None, None
    try:
        return read_config(folder / CONFIG), None
    except ConfigError as err:
        return None, str(err)


def _config(folder: Path) -> dict | None:
    return _read_config(folder)[0]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(*candidates: Any) -> str:
    """The first candidate that is a non-empty string or number (a crafted file may hold anything)."""
    for value in candidates:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value):
            return str(value)
    return "?"


def _field(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def read_run(folder: str | os.PathLike) -> RunSummary:
    """The summary of one run folder; :class:`ConfigError` when it is not a cnnlab run. A run whose
    results.json cannot be read is summarised with the state "unreadable"."""
    folder = Path(folder)
    config, problem = _read_config(folder)
    if config is None or "cnnlab_run" not in config:
        raise ConfigError(problem or f"{folder}: not a cnnlab run folder (no readable config.json written by cnnlab train)")
    return _summary(folder, config)


def _summary(folder: Path, config: dict) -> RunSummary:
    results, problem = _read(folder / "results.json")
    model = _text(_field(results, "model"), _field(config, "spec", "model"), _field(config, "model", "name"))
    data = _text(_field(results, "data"), _field(config, "data", "name"), _field(config, "spec", "data"))
    if problem is not None:
        state = "unreadable"
    elif results is not None:
        state = _text(results.get("status"), "finished")
    elif (folder / "failed.json").exists():
        state = "failed"
    else:
        state = "unfinished"
    epochs = _field(results, "epochs")
    if epochs is None:
        epochs = len(_metric_rows(folder)) or None
    metric = task_metrics(config)[0]
    return RunSummary(path=str(folder), model=model, data=data,
                      epochs=epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None,
                      val_acc=_number(_field(results, "val_acc")), test_acc=_number(_field(results, "test_acc")),
                      seconds=_number(_field(results, "seconds")), state=state,
                      created=config["created"] if isinstance(config.get("created"), str) else "",
                      problem=problem, metric=metric, val=_number(_field(results, f"val_{metric['key']}")),
                      test=_number(_field(results, f"test_{metric['key']}")))  # fmt: skip


_RUN_FILES = ("metrics.csv", "model.safetensors", "checkpoints/manifest.json", "failed.json")  # a run's alone


def _unreadable_run(folder: Path, problem: str) -> RunSummary | None:
    """A folder whose config.json cannot be read, if it is a run's (it says "cnnlab_run" near its start,
    or the folder holds files only a run writes): listed as "unreadable" rather than left out."""
    from cnnlab.safeio import open_regular

    looks = any(os.path.lexists(folder / name) for name in _RUN_FILES)
    if not looks:
        try:
            with open_regular(folder / "config.json", what="run file", error=ConfigError) as (f, _):
                looks = b'"cnnlab_run"' in f.read(4096)
        except (ConfigError, OSError):
            looks = False
    if not looks:
        return None
    return RunSummary(path=str(folder), model="?", data="?", epochs=None, val_acc=None, test_acc=None, seconds=None,
                      state="unreadable", created="", problem=problem)


def find_runs(root: str | os.PathLike) -> list[RunSummary]:
    """Every run folder under ``root`` (``root`` itself included), in no particular order. A run whose
    files cannot be read is listed with the state "unreadable" and its ``problem``; one bad run never
    hides the others."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder")
    found = []
    for config in sorted(root.rglob("config.json")):
        if "checkpoints" in config.parts:
            continue
        doc, problem = _read_config(config.parent)
        if doc is not None and "cnnlab_run" in doc:
            found.append(_summary(config.parent, doc))
        elif problem is not None and (summary := _unreadable_run(config.parent, problem)) is not None:
            found.append(summary)
        # else: an experiment's or a user's config.json, not a run
    return found


def _metric_rows(folder: Path) -> list[dict[str, Any]]:
    from cnnlab.viz.curves import read_metrics

    path = folder / "metrics.csv"
    try:
        return read_metrics(path) if path.is_file() else []
    except (OSError, UnicodeDecodeError, ValueError):
        return []


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# What every run has different anyway, or says twice: not a difference worth reading.
_IGNORED = ("created", "command", "git_commit", "versions.", "resumes", "resumed")


def config_differences(folders: Sequence[str | os.PathLike]) -> list[tuple[str, list[Any]]]:
    """``(key, [value in each run])`` for every config.json entry whose value is not the same in all."""
    flats = []
    for folder in folders:
        config = _config(Path(folder))
        if config is None:
            raise ConfigError(f"{folder}: not a cnnlab run folder (no readable config.json)")
        flats.append(_flatten(config))
    keys = sorted(set().union(*flats))
    return [(k, [f.get(k) for f in flats]) for k in keys
            if not k.startswith(_IGNORED) and len({_comparable(f.get(k)) for f in flats}) > 1]


def _comparable(value: Any) -> str:
    """``value`` as text, floats to 6 significant digits: two runs whose data std differs in the 8th
    digit (float32 against float64 summation) have the same configuration."""
    def round_floats(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.6g}")
        if isinstance(v, (list, tuple)):
            return [round_floats(x) for x in v]
        return v
    return json.dumps(round_floats(value), sort_keys=True, default=str)


def plot_runs(folders: Sequence[str | os.PathLike], path: str | os.PathLike, *, labels: Sequence[str] | None = None) -> Path:
    """Loss and the task's headline metric (:func:`task_metrics` of the first run: top-1 error for
    classifiers) per epoch of several runs in one figure: validation solid (or test, for runs that
    recorded no validation split), training dashed, one colour per run; a log axis where the values
    span more than a decade."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metric = task_metrics(_config(Path(folders[0])))[0]
    error = metric["unit"] == "%"
    metric_label = ("top-1 error (%)" if metric["key"] == "acc" else f"100 - {metric['label']} (%)") if error \
        else metric["label"]
    fig = Figure(figsize=(11, 4.4))
    ax_loss, ax_err = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(folders))]
    drawn: dict[int, list[float]] = {0: [], 1: []}
    for i, folder in enumerate(folders):
        rows = _metric_rows(Path(folder))
        if not rows:
            raise ConfigError(f"{folder}: no metrics.csv to draw (the run has not finished an epoch)")
        held = "val" if any(r.get("val_loss") is not None for r in rows) else "test"
        label = labels[i] if labels else Path(folder).name
        epochs = [r.get("epoch", k + 1) for k, r in enumerate(rows)]
        for panel, (ax, key, as_error) in enumerate(((ax_loss, "loss", False), (ax_err, metric["key"], error))):
            for split, style in ((held, "-"), ("train", "--")):
                values = [None if not isinstance(r.get(f"{split}_{key}"), (int, float)) else
                          (100 * (1 - r[f"{split}_{key}"]) if as_error else r[f"{split}_{key}"]) for r in rows]
                drawn[panel] += [v for v in values if v is not None]
                ax.plot(epochs, [float("nan") if v is None else v for v in values], style, color=colours[i],
                        marker="o" if len(rows) <= 12 else None, markersize=3,
                        label=f"{label} ({'validation' if split == 'val' else split})")
    for panel, (ax, name) in enumerate(((ax_loss, "loss"), (ax_err, metric_label))):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        positive = [v for v in drawn[panel] if v == v and v > 0]
        if positive and max(positive) / min(positive) > 10:
            ax.set_yscale("log")
    handles, names = ax_loss.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(names) - 1) // 4), 1, 1))
    return atomic.save_figure(fig, path, dpi=100)
