"""Self-contained HTML reports of a run folder, an experiment folder, or a folder of them.

Every page is drawn from the files the run or experiment wrote (config.json, results.json,
metrics.csv, steps.csv, the PNGs beside them), never from memory of the run, so a report can be made
later on another machine from a copied folder. Pictures are inlined as base64 PNG, the CSS and the
few lines of JavaScript (table sorting) are inline too: the page needs no network. Jinja2 escapes
every string it shows (a class folder named ``<script>`` is text on the page).
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import io
import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError

__all__ = ["detect_kind", "render_run", "render_experiment", "render_index", "write_report"]

_STATUS = {True: "reproduced", False: "not reproduced", "partly": "partly reproduced", "not measured": "not measured"}
# The run's common numbers, after the task's own metrics (task_metrics).
_RESULT_LABELS = (("best_epoch", "selected epoch (best on val)"), ("train_acc", "training accuracy (last epoch)"),
                  ("epochs", "epochs"), ("steps", "updates"), ("seconds", "wall time (s)"),
                  ("images_per_second", "training images per second"))


def _env():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("cnnlab.viz", "templates"),
                      autoescape=select_autoescape(("html", "j2")), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.filters["code_spans"] = _code_spans
    return env


def _code_spans(text: Any):
    """Escape ``text`` and show its markdown `code` spans (the experiments' setup and notes use
    them) as <code>: the same sentences read in report.md and on the page."""
    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`<>]+)`", r"<code>\1</code>", str(escape(text))))


def _common(source: Path, title: str, *, sortable: bool) -> dict[str, Any]:
    from cnnlab import __version__

    return {"version": __version__, "source": str(source), "title": title, "sortable": sortable,
            "made": _dt.datetime.now().strftime("%Y-%m-%d %H:%M")}


def _read(path: Path, max_bytes: int = 256 << 20) -> bytes | None:
    """A run file's bytes, or None when it is missing, unreadable or not a regular file (a FIFO named
    like a run file must not hang the report, nor /dev/zero fill memory)."""
    from cnnlab.errors import CnnlabError
    from cnnlab.safeio import read_regular

    try:
        return read_regular(path, what="run file", error=ConfigError, max_bytes=max_bytes)
    except CnnlabError:
        return None


def _json(path: Path) -> dict | None:
    """A run file's JSON object, or None when it is missing or cannot be read (too large, not JSON,
    nested too deeply): the page shows what the other files hold."""
    from cnnlab.safeio import MiB, read_json

    try:
        doc = read_json(path, what="run file", error=ConfigError, max_bytes=64 * MiB)
    except ConfigError:
        return None
    return doc if isinstance(doc, dict) else None


def _config(folder: Path) -> dict | None:
    """The folder's config.json (the run folder's one reader, :func:`cnnlab.training.rundir.read_config`),
    or None when it is missing or cannot be read."""
    from cnnlab.training.rundir import read_config

    try:
        return read_config(folder / "config.json")
    except ConfigError:
        return None


def _png(path: Path, caption: str) -> dict[str, str] | None:
    data = _read(path)
    if data is None:
        return None
    if not data.startswith(b"\x89PNG"):
        return None
    return {"data": base64.b64encode(data).decode(), "caption": caption}


def _figure_png(fig: Any, caption: str) -> dict[str, str]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return {"data": base64.b64encode(buf.getvalue()).decode(), "caption": caption}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _pct(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{100 * value:.2f}%"


def detect_kind(path: str | os.PathLike) -> str:
    """"run", "experiment" or "collection" (a folder holding runs or experiments)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise ConfigError(f"{path}: give a run folder, an experiment folder or a folder of them (not a file)")
    config = _config(path)
    if config is not None and "cnnlab_run" in config:
        return "run"
    results = _json(path / "results.json")
    if results is not None and "experiment" in results and "claim" in results:
        return "experiment"
    return "collection"


# ---------------------------------------------------------------------------------------------
# a run


def _read_csv(path: Path) -> list[dict[str, str]]:
    raw = _read(path)
    try:
        return list(csv.DictReader(io.StringIO(raw.decode(), newline=""))) if raw is not None else []
    except (UnicodeDecodeError, csv.Error):
        return []


def _step_curves(folder: Path) -> dict[str, str] | None:
    """Loss and learning rate of every update, from steps.csv."""
    from matplotlib.figure import Figure

    steps, losses, lrs = [], [], []
    for row in _read_csv(folder / "steps.csv"):
        try:
            steps.append(int(row["step"]))
            losses.append(float(row["loss"]))
            lrs.append(float(row["lr"]))
        except (KeyError, TypeError, ValueError):
            continue
    if len(steps) < 2:
        return None
    fig = Figure(figsize=(10, 3.2))
    ax_loss, ax_lr = fig.subplots(1, 2)
    ax_loss.plot(steps, losses, lw=0.6, color="tab:blue", alpha=0.5, label="each update")
    window = max(1, len(losses) // 50)
    if window > 1:  # a running mean shows the trend under the noise of single batches
        smooth = [sum(losses[max(0, i - window + 1): i + 1]) / len(losses[max(0, i - window + 1): i + 1])
                  for i in range(len(losses))]
        ax_loss.plot(steps, smooth, lw=1.6, color="tab:blue", label=f"mean of {window}")
    ax_loss.set(xlabel="update", ylabel="training loss", title="loss per update")
    ax_loss.legend(frameon=False, fontsize=8)
    ax_lr.plot(steps, lrs, color="tab:purple")
    ax_lr.set(xlabel="update", ylabel="learning rate", title="learning rate schedule")
    for ax in (ax_loss, ax_lr):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _figure_png(fig, "Per update (steps.csv): training loss and the learning rate the schedule set.")


def _metrics_table(folder: Path) -> dict[str, Any]:
    rows = _read_csv(folder / "metrics.csv")
    if not rows:
        return {"columns": [], "rows": []}
    columns = [c for c in rows[0] if any(r.get(c) not in (None, "") for r in rows)]

    def cell(column: str, text: str | None) -> str:
        if text in (None, ""):
            return "-"
        try:
            value = float(text)
        except ValueError:
            return text
        if column.endswith(("_acc", "_top5")):
            return f"{100 * value:.2f}%"
        return f"{value:,.0f}" if column in ("epoch", "step") else f"{value:.4g}"

    return {"columns": columns, "rows": [[cell(c, r.get(c)) for c in columns] for r in rows]}


def _per_class(folder: Path) -> list[dict[str, Any]]:
    """Rows of the confusion matrix a run or `cnnlab eval` left (test split): accuracy per class."""
    for path in (folder / "confusion.csv", folder / "eval" / "confusion.csv"):
        raw = _read(path)
        try:
            table = list(csv.reader(io.StringIO(raw.decode(), newline=""))) if raw is not None else None
        except (UnicodeDecodeError, csv.Error):
            continue
        if table is None:
            continue
        out = []
        for k, row in enumerate(table[1:]):
            try:
                counts = [int(v) for v in row[1:]]
                total, correct = sum(counts), counts[k]
            except (ValueError, IndexError):
                return []
            acc = correct / total if total else None
            out.append({"name": row[0], "images": total, "correct": correct, "accuracy": _pct(acc),
                        "value": -1 if acc is None else acc})
        return out
    return []


def _layers(config: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The model's layer table from the analyzer (meta device: no weights are read or allocated)."""
    from cnnlab.analysis import analyze

    spec = config.get("spec") if isinstance(config.get("spec"), Mapping) else {}
    name = spec.get("model") or (config.get("model") or {}).get("name")
    data = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    size = data.get("input_size")
    model_config = dict(spec.get("model_config") or {})
    model_config.pop("weights", None)
    if data.get("num_classes"):
        model_config.setdefault("num_classes", data["num_classes"])
    try:
        analysis = analyze(name, tuple(size) if size else None, config=model_config)
    except Exception as err:  # noqa: BLE001  (a report still renders without its layer table)
        return None, f"The layer table could not be computed for {name!r}: {str(err).splitlines()[0][:200]}"
    analysis = analysis.fold(2) if len(analysis.layers) > 80 else analysis
    rows = [[r.name, r.type, "x".join(map(str, r.output_shape[1:])) or "-", f"{r.params:,}", f"{r.macs:,}",
             "-" if r.receptive_field is None else "x".join(f"{v:g}" for v in sorted(set(r.receptive_field)))]
            for r in analysis.layers]
    t = analysis.total
    caption = (f"{name} at {'x'.join(map(str, analysis.input_size))}: {t.params:,} params, {t.macs:,} MACs, "
               f"receptive field {'x'.join(f'{v:g}' for v in sorted(set(t.receptive_field or ())))}"
               + ("; rows folded to depth 2" if len(rows) < len(analysis.layers) or len(analysis.layers) > 80 else ""))
    return {"columns": ["layer", "type", "output", "params", "MACs", "RF"], "rows": rows, "caption": caption}, ""


def _pictures(folder: Path, used: set[str]) -> list[dict[str, str]]:
    """PNGs that `cnnlab viz` (or anything else) left in the folder, its viz/ and eval/ sub-folders."""
    found = []
    for sub in (folder, folder / "viz", folder / "eval"):
        if not sub.is_dir():
            continue
        for path in sorted(sub.glob("*.png")):
            if path.name in used or str(path.relative_to(folder)) in used:
                continue
            png = _png(path, f"{path.relative_to(folder)}")
            if png:
                found.append(png)
    return found[:40]


def _command(text: Any) -> str:
    """The command line as a user types it: ``cnnlab train ...`` whatever path ran the entry point."""
    if not isinstance(text, str) or not text.strip():
        return ""
    first, _, rest = text.strip().partition(" ")
    if Path(first).name in ("cnnlab", "__main__.py", "cnnlab.exe"):
        return f"cnnlab {rest}".strip()
    return text


def _result_rows(results: Mapping | None, metrics: list[dict]) -> list[tuple[str, str]]:
    """The results table: the task's declared metrics on val, test and test with the last weights,
    then the run's common numbers."""
    from cnnlab.viz.runs import format_metric

    if not results:
        return []
    rows = []
    for m in metrics:
        for prefix, suffix, where in (("val_", "", "validation, selected epoch"), ("test_", "", "test, selected model"),
                                      ("test_", "_last", "test, last weights")):
            value = results.get(f"{prefix}{m['key']}{suffix}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append((f"{m['label']} ({where})", format_metric(value, m)))
    rows += [(label, _pct(results[k]) if k == "train_acc" else _fmt(results[k]))
             for k, label in _RESULT_LABELS if k in results and results[k] is not None]
    return rows


def _run_context(folder: Path) -> dict[str, Any]:
    from cnnlab.viz.runs import format_metric, read_run, task_metrics

    config = _config(folder) or {}
    results = _json(folder / "results.json")
    summary = read_run(folder)
    spec = config.get("spec") if isinstance(config.get("spec"), Mapping) else {}
    data = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    model = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    precision = config.get("precision") if isinstance(config.get("precision"), Mapping) else {}
    overrides = spec.get("overrides") if isinstance(spec.get("overrides"), Mapping) else {}
    splits = "/".join(_fmt(data.get(k)) for k in ("train_size", "val_size", "test_size") if k in data)
    metrics = task_metrics(config)
    head = metrics[0]
    cards = [(f"test {head['label']}", format_metric((results or {}).get(f"test_{head['key']}"), head)),
             (f"validation {head['label']}", format_metric((results or {}).get(f"val_{head['key']}"), head)),
             ("params", _fmt(model.get("params"))), ("epochs", _fmt(summary.epochs)),
             ("time", "-" if summary.seconds is None else f"{summary.seconds:.0f} s")]
    used = {"curves.png", "confusion.png", "mistakes.png", "eval/confusion.png", "eval/mistakes.png"}
    shown = "top-1 error" if head["key"] == "acc" else head["label"]
    curves = [p for p in (_png(folder / "curves.png", f"Loss and {shown} per epoch (curves.png)"),
                          _step_curves(folder)) if p]
    errors = [p for p in (_png(folder / "confusion.png", "Confusion matrix of the test split"),
                          _png(folder / "eval" / "confusion.png", "Confusion matrix of the test split (cnnlab eval)"),
                          _png(folder / "mistakes.png", "The most confident test mistakes"),
                          _png(folder / "eval" / "mistakes.png", "The most confident test mistakes (cnnlab eval)"))
              if p]
    layers, layers_note = _layers(config)
    versions = config.get("versions") if isinstance(config.get("versions"), Mapping) else {}
    return {
        "folder": str(folder), "model": summary.model, "data": {"name": summary.data}, "state": summary.state,
        "created": summary.created or "-", "cards": cards, "notes": [str(n) for n in data.get("notes") or []][:6],
        "summary": [("model", f"{summary.model} ({model.get('class', '?')}, {_fmt(model.get('params'))} params)"),
                    ("model options", _fmt(spec.get("model_config")) if spec.get("model_config") else "defaults"),
                    ("data", f"{summary.data}: {_fmt(data.get('num_classes'))} classes, input "
                             f"{'x'.join(map(str, data.get('input_size') or [])) or '-'}"),
                    ("splits (train/val/test)", splits or "-"),
                    ("classes", _fmt(list(data.get("class_names") or [])[:30])),
                    ("selection", "best epoch on the validation split" if "val_size" in data else "-"),
                    ("task", _fmt((config.get("task") or {}).get("name") if isinstance(config.get("task"), Mapping)
                                  else config.get("task") or "classification")),
                    ("seed", _fmt(config.get("seed"))),
                    ("precision", f"{precision.get('used', '-')} (asked {precision.get('asked', '-')}; "
                                  f"{precision.get('reason', '')})"),
                    ("device", f"{config.get('device', '-')} x {config.get('world_size', 1)} process(es), "
                               f"{_fmt(config.get('threads'))} thread{'' if config.get('threads') == 1 else 's'}")],
        "command": _command(config.get("command")),
        "recipe_changed": sum(1 for k in (config.get("recipe") or {}) if k in overrides),
        "recipe": [(k, _fmt(v), "--set" if k in overrides else "recipe")
                   for k, v in (config.get("recipe") or {}).items()],
        "curves": curves, "metrics": _metrics_table(folder),
        "results": _result_rows(results, metrics),
        "monitor": ((config.get("selection") or {}).get("monitor") if isinstance(config.get("selection"), Mapping)
                    else None) or "accuracy",
        "per_class": _per_class(folder), "errors": errors, "layers": layers, "layers_note": layers_note,
        "pictures": _pictures(folder, used),
        "environment": [(k, _fmt(v)) for k, v in versions.items()] + [("git commit", _fmt(config.get("git_commit")))],
    }


def render_run(folder: str | os.PathLike) -> str:
    folder = Path(folder)
    ctx = _run_context(folder)
    return _env().get_template("run.html.j2").render(
        **_common(folder, f"{ctx['model']} on {ctx['data']['name']}: cnnlab run", sortable=True), **ctx)


# ---------------------------------------------------------------------------------------------
# an experiment


def render_experiment(folder: str | os.PathLike) -> str:
    from cnnlab.viz.report import criterion_met, format_cell

    folder = Path(folder)
    r = _json(folder / "results.json")
    if r is None or "experiment" not in r:
        raise ConfigError(f"{folder}: no experiment results.json")
    status = _STATUS.get(r.get("reproduced"), "unknown")
    plots = [p for p in (_png(folder / str(p.get("file", "")), str(p.get("caption", "")))
                         for p in r.get("plots") or [] if isinstance(p, Mapping)) if p]
    tables = [{"title": t.get("title", ""), "columns": t.get("columns", []),
               "rows": [[format_cell(c) for c in row] for row in t.get("rows", [])]}
              for t in r.get("tables") or [] if isinstance(t, Mapping)]
    criteria = [{"name": c.get("description", ""), "detail": c.get("finding", ""), "passed": bool(c.get("passed")),
                 "met": criterion_met(c)} for c in r.get("criteria") or [] if isinstance(c, Mapping)]
    defaults = {k: r.get(k, "") for k in ("title", "experiment", "scale", "seed", "data", "claim", "source", "paper",
                                          "verdict", "command")}
    view = {**defaults, "setup": r.get("setup") or [], "notes": r.get("notes") or []}
    seconds = r.get("seconds")
    return _env().get_template("experiment.html.j2").render(
        **_common(folder, f"{view['title']}: cnnlab experiment", sortable=True), r=view, status=status,
        status_class=status.replace(" ", "-"), plots=plots, tables=tables, criteria=criteria,
        seconds=f"{seconds:.0f} s" if isinstance(seconds, (int, float)) else "-")


# ---------------------------------------------------------------------------------------------
# a folder of runs and experiments


def _experiments_under(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("results.json")
                  if (doc := _json(p)) is not None and "experiment" in doc and "claim" in doc)


def render_index(root: str | os.PathLike, *, links: Mapping[str, str]) -> str:
    """The index page of ``root``; ``links`` maps each run/experiment folder to its page (relative)."""
    from cnnlab.viz.runs import find_runs, format_metric

    root = Path(root)
    runs = []
    for s in find_runs(root):
        metric = s.metric or {"key": "acc", "unit": "%"}
        runs.append({"name": str(Path(s.path).relative_to(root)) or ".", "link": links.get(s.path, ""),
                     "model": s.model, "data": s.data, "epochs": _fmt(s.epochs),
                     "val": format_metric(s.val, metric, name=True), "test": format_metric(s.test, metric, name=True),
                     "val_v": -1 if s.val is None else s.val, "test_v": -1 if s.test is None else s.test,
                     "state": s.state,
                     "seconds": "-" if s.seconds is None else f"{s.seconds:.0f} s",
                     "seconds_v": -1 if s.seconds is None else s.seconds})  # fmt: skip
    experiments = []
    for folder in _experiments_under(root):
        r = _json(folder / "results.json") or {}
        status = _STATUS.get(r.get("reproduced"), "unknown")
        seconds = r.get("seconds") if isinstance(r.get("seconds"), (int, float)) else None
        experiments.append({"name": r.get("experiment", folder.name), "link": links.get(str(folder), ""),
                            "title": r.get("title", ""), "scale": r.get("scale", ""), "status": status,
                            "status_class": status.replace(" ", "-"),
                            "seconds": "-" if seconds is None else f"{seconds:.0f} s",
                            "seconds_v": -1 if seconds is None else seconds})  # fmt: skip
    return _env().get_template("index.html.j2").render(
        **_common(root, f"cnnlab: {root}", sortable=True), heading=f"Runs and experiments in {root.name or root}",
        root=str(root), runs=runs, experiments=experiments)


def write_report(path: str | os.PathLike, *, out: str | os.PathLike | None = None) -> list[Path]:
    """Write the report(s) of ``path``; return the files written, the main page first.

    A run or experiment folder gets ``report.html`` inside it (or ``out``); a folder of them gets
    ``index.html`` (or ``out``) and a ``report.html`` in each run and experiment folder under it.
    """
    from cnnlab.models.weights import atomic_write
    from cnnlab.viz.runs import find_runs

    path = Path(path)
    kind = detect_kind(path)
    if kind in ("run", "experiment"):
        target = Path(out) if out is not None else path / "report.html"
        html = render_run(path) if kind == "run" else render_experiment(path)
        _write(atomic_write, target, html)
        return [target]
    index = Path(out) if out is not None else path / "index.html"
    written, links = [], {}
    runs = find_runs(path)
    # A run whose config.json cannot be read gets no page of its own: the index lists it as unreadable.
    folders = [Path(s.path) for s in runs if _config(Path(s.path)) is not None] + _experiments_under(path)
    if not folders and not runs:
        raise ConfigError(f"{path}: no run folder (config.json of `cnnlab train`) or experiment folder "
                          "(results.json of `cnnlab experiment`) in it")
    for folder in folders:
        page = folder / "report.html"
        html = render_run(folder) if (folder / "config.json").is_file() and detect_kind(folder) == "run" \
            else render_experiment(folder)
        _write(atomic_write, page, html)
        written.append(page)
        links[str(folder)] = _href(page, index.parent)
    _write(atomic_write, index, render_index(path, links=links))
    return [index, *written]


def _href(page: Path, base: Path) -> str:
    """The link from a page in ``base`` to ``page``: a relative, URL-quoted path starting with ``./``.
    Folder names are the user's and can be anything: ``javascript:alert(1)`` would be a scheme and run
    script, ``#`` and ``?`` would end the path, ``"`` and ``<`` would end the attribute."""
    return "./" + urllib.parse.quote(Path(os.path.relpath(page, base)).as_posix(), safe="/")


def _write(atomic_write: Any, target: Path, html: str) -> None:
    if target.is_dir():
        raise ConfigError(f"--out {target} is a folder; name the .html file to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, html.encode("utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot write {target}: {err.strerror or err}") from None
