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

from cnnlab.errors import ConfigError

__all__ = ["RunSummary", "find_runs", "read_run", "config_differences", "plot_runs"]

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
    state: str  # "finished", "unfinished" (resumable or running) or "failed"
    created: str

    def to_dict(self) -> dict:
        return asdict(self)


def _json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_run(folder: str | os.PathLike) -> RunSummary:
    """The summary of one run folder; :class:`ConfigError` when it is not a cnnlab run."""
    folder = Path(folder)
    config = _json(folder / "config.json")
    if config is None or "cnnlab_run" not in config:
        raise ConfigError(f"{folder}: not a cnnlab run folder (no readable config.json written by cnnlab train)")
    results = _json(folder / "results.json")
    spec = config.get("spec") if isinstance(config.get("spec"), dict) else {}
    model = (results or {}).get("model") or spec.get("model") or (config.get("model") or {}).get("name") or "?"
    data = (results or {}).get("data") or (config.get("data") or {}).get("name") or spec.get("data") or "?"
    if results is not None:
        state = str(results.get("status", "finished"))
    elif (folder / "failed.json").exists():
        state = "failed"
    else:
        state = "unfinished"
    epochs = (results or {}).get("epochs")
    if epochs is None:
        epochs = len(_metric_rows(folder)) or None
    return RunSummary(path=str(folder), model=str(model), data=str(data),
                      epochs=int(epochs) if isinstance(epochs, int) else None,
                      val_acc=_number((results or {}).get("val_acc")), test_acc=_number((results or {}).get("test_acc")),
                      seconds=_number((results or {}).get("seconds")), state=state,
                      created=str(config.get("created", "")))  # fmt: skip


def find_runs(root: str | os.PathLike) -> list[RunSummary]:
    """Every run folder under ``root`` (``root`` itself included), in no particular order."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder")
    found = []
    for config in sorted(root.rglob("config.json")):
        if "checkpoints" in config.parts:
            continue
        try:
            found.append(read_run(config.parent))
        except ConfigError:
            continue  # an experiment's or a user's config.json: not a run
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
        config = _json(Path(folder) / "config.json")
        if config is None:
            raise ConfigError(f"{folder}: not a cnnlab run folder (no readable config.json)")
        flats.append(_flatten(config))
    keys = sorted(set().union(*flats))
    return [(k, [f.get(k) for f in flats]) for k in keys
            if not k.startswith(_IGNORED) and len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flats}) > 1]


def plot_runs(folders: Sequence[str | os.PathLike], path: str | os.PathLike, *, labels: Sequence[str] | None = None) -> Path:
    """Loss and top-1 error per epoch of several runs in one figure: validation solid (or test,
    for runs that recorded no validation split), training dashed, one colour per run."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.4))
    ax_loss, ax_err = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(folders))]
    for i, folder in enumerate(folders):
        rows = _metric_rows(Path(folder))
        if not rows:
            raise ConfigError(f"{folder}: no metrics.csv to draw (the run has not finished an epoch)")
        held = "val" if any(r.get("val_acc") is not None for r in rows) else "test"
        label = labels[i] if labels else Path(folder).name
        epochs = [r.get("epoch", k + 1) for k, r in enumerate(rows)]
        for ax, key, error in ((ax_loss, "loss", False), (ax_err, "acc", True)):
            for split, style in ((held, "-"), ("train", "--")):
                values = [None if r.get(f"{split}_{key}") is None else
                          (100 * (1 - r[f"{split}_{key}"]) if error else r[f"{split}_{key}"]) for r in rows]
                ax.plot(epochs, [float("nan") if v is None else v for v in values], style, color=colours[i],
                        marker="o" if len(rows) <= 12 else None, markersize=3,
                        label=f"{label} ({'validation' if split == 'val' else split})")
    for ax, name in ((ax_loss, "loss"), (ax_err, "top-1 error (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, names = ax_loss.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(names) - 1) // 4), 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=100, format="png")
    return path
