"""A training run from a specification: what ``cnnlab train`` does, as a library call.

:class:`~cnnlab.training.spec.TrainSpec` holds everything the user chose (model, data, recipe and
overrides, seed, precision, ...); :func:`train` chooses the run folder, loads the data, builds the
model and calls :func:`~cnnlab.training.engine.fit` into the folder. The spec is stored in the run's ``config.json`` under ``"spec"``, so
``cnnlab train --config runs/.../config.json`` (``spec_from_config``) repeats a run from that file
alone, and ``--resume`` continues it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.training import distributed as D
from cnnlab.training.device import MEMORY_FORMATS, PRECISIONS
from cnnlab.training.engine import CHECKPOINT_DIR, FitResult, fit
from cnnlab.training.rundir import CONFIG, RunDir, RunLockedError, holds_run, read_config
from cnnlab.training.spec import RESERVED_DATA_OPTIONS, RESERVED_MODEL_OPTIONS, TrainSpec

__all__ = ["TrainSpec", "train", "spec_from_config", "new_run_dir", "find_run_to_resume", "RunLockedError",
           "RESUME_CHANGEABLE", "RESERVED_DATA_OPTIONS", "RESERVED_MODEL_OPTIONS"]


def spec_from_config(path: str | os.PathLike) -> TrainSpec:
    """The :class:`TrainSpec` stored in a run's ``config.json`` (or the run directory holding it)."""
    p = Path(path)
    doc = read_config(p, need_spec=True)
    return TrainSpec.from_dict(doc["spec"], where=str(p / CONFIG if p.is_dir() else p))


def _slug(text: str) -> str:
    text = text.replace("imagefolder:", "imagefolder-")
    text = os.path.basename(text.rstrip("/")) if "/" in text else text
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "data"


def _data_slug(data: str) -> str:
    if data.startswith("imagefolder:"):
        return "imagefolder-" + _slug(data[len("imagefolder:"):])
    return _slug(data)


def _canonical_data(name: str) -> str:
    """The data set's own spelling of ``name`` (``mnist5k`` -> ``mnist-5k``), as run folders are named."""
    from cnnlab.data import dataset_info

    info = dataset_info(name)
    return name if info.name == "imagefolder:PATH" else info.name


def new_run_dir(root: str | os.PathLike, model: str, data: str) -> Path:
    """Create ``root/<date>-<model>-<data>/`` (``-2``, ``-3``, ... when it exists) and return it."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the runs folder {root}: {err.strerror or err}") from None
    base = f"{time.strftime('%Y-%m-%d')}-{_slug(model)}-{_data_slug(data)}"
    for i in range(1, 10_000):
        candidate = root / (base if i == 1 else f"{base}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as err:
            raise ConfigError(f"cannot create the run folder {candidate}: {err.strerror or err}") from None
    raise ConfigError(f"too many runs named {base} in {root}")


def find_run_to_resume(root: str | os.PathLike, model: str, data: str) -> Path | None:
    """The newest run folder of ``model`` on ``data`` under ``root`` that has a checkpoint and no results yet."""
    root = Path(root)
    if not root.is_dir():
        return None
    pattern = re.compile(rf"^\d{{4}}-\d{{2}}-\d{{2}}-{re.escape(_slug(model))}-{re.escape(_data_slug(data))}(-\d+)?$")
    runs = [p for p in root.iterdir() if p.is_dir() and pattern.match(p.name)
            and (p / CHECKPOINT_DIR / "manifest.json").exists() and not (p / "results.json").exists()]
    return max(runs, key=lambda p: (p / CHECKPOINT_DIR / "manifest.json").stat().st_mtime) if runs else None


def _check_file(path: str | None, what: str) -> None:
    if path is None:
        return
    p = Path(path)
    if not p.is_file():
        from cnnlab.safeio import describe_path

        raise ConfigError(f"{what} {path} {describe_path(p)}")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"{what} {path}: not readable")


# Fields a resume may change: how and where the run goes on, not what it learns. ``epochs`` extends
# (or shortens) the schedule and is recorded in config.json; every other field is refused.
RESUME_CHANGEABLE = ("epochs", "max_steps", "checkpoint_every", "threads", "device", "data_root", "download",
                     "tensorboard")
_FLAGS = {"model": "MODEL", "overrides": "--set", "model_config": "--model-set", "data_options": "--data-set"}


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _resume_spec(stored: TrainSpec, spec: TrainSpec | None, changes: dict | None, where: Path
                 ) -> tuple[TrainSpec, dict]:
    """The spec a resumed run goes on with: the stored one, with the changes asked for applied where
    they only change how the run goes on (:data:`RESUME_CHANGEABLE`); any other change is refused.

    ``changes``: the fields the caller set explicitly (the CLI's flags); without it, the fields of
    ``spec`` that differ from both the stored value and the default."""
    if changes is None:
        default = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                   for f in dataclasses.fields(TrainSpec) if f.name != "model"}
        changes = {} if spec is None else {k: v for k, v in spec.to_dict().items()
                                            if k == "model" or v != default.get(k)}
    asked = {}
    for name, value in changes.items():
        old = getattr(stored, name)
        if name in ("overrides", "model_config", "data_options"):
            value = {**old, **value}
        if name == "data" and value != old:
            value = _canonical_data(value) if not str(value).startswith("imagefolder:") else value
        if value != old:
            asked[name] = (old, value)
    refused = [n for n in asked if n not in RESUME_CHANGEABLE]
    if refused:
        name = refused[0]
        old, new = asked[name]
        raise ConfigError(f"--resume {where}: {_flag(name)} {_show(new)} would change the run (it was trained with "
                          f"{_show(old)}); resume without it, or start a new run (--config {where / 'config.json'} "
                          f"{_flag(name)} ...)")
    applied = {name: {"from": old, "to": new} for name, (old, new) in asked.items()}
    return dataclasses.replace(stored, **{k: v[1] for k, v in asked.items()}), applied


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "{}"
    return "the recipe's default" if value is None else str(value)


def _choose_run(spec: TrainSpec | None, *, out, runs_root, resume: str | None, progress: bool,
                is_main: bool) -> tuple[Path | None, bool]:
    """The run folder (None: a new default one) and whether it is resumed."""
    if resume is None:
        return (Path(out) if out is not None else None), False
    if resume != "auto":
        run_dir = Path(resume)
        if not run_dir.is_dir() or not holds_run(run_dir):
            raise CheckpointError(f"cannot resume {resume}: not a run folder (no config.json written by cnnlab)")
        return run_dir, True
    if out is not None:
        candidate = Path(out)
        if holds_run(candidate):
            if (candidate / "results.json").exists():
                raise ConfigError(f"{candidate} holds a finished run (results.json); nothing to resume")
            return candidate, True
        if spec is None:
            raise CheckpointError(f"cannot resume {candidate}: it holds no run; give a MODEL to start one")
        return candidate, False
    candidate = find_run_to_resume(runs_root, spec.model, _canonical_data(spec.data))
    if candidate is not None:
        return candidate, True
    if is_main and progress:
        print(f"cnnlab: no unfinished {spec.model} run on {spec.data} to resume; starting a new run", file=sys.stderr)
    return None, False


def train(spec: TrainSpec | None, *, out: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs",
          resume: str | None = None, progress: bool = True, callbacks=(), changes: dict | None = None) -> FitResult:
    """Run ``spec``: load the data, build the model, ``fit`` it into a run folder.

    ``out``: the run folder (default: a new ``runs_root/<date>-<model>-<data>/``); an existing run is
    never overwritten, nor a non-empty folder that is not a run. ``resume``: a run folder to continue
    (its config.json's spec is used), or "auto": the newest unfinished run of this model on this data
    (or ``out``), else a new run. ``changes``: the spec fields the caller asks to change on resuming
    (the CLI's flags; default: those of ``spec`` that differ from the run's and from the defaults):
    ``epochs`` and the others in :data:`RESUME_CHANGEABLE` are applied and recorded in config.json,
    any other is refused. ``spec`` may be None when ``resume`` names a run folder. The folder is
    locked while the run trains (a second trainer of it gets :class:`RunLockedError`); a new run
    that fails before its first checkpoint leaves no folder behind. Under ``torchrun`` every rank
    calls this; only rank 0 writes. ``callbacks`` go to ``fit`` (see :mod:`cnnlab.training.trainer`).
    """
    if spec is None and (resume is None or (resume == "auto" and out is None)):
        raise ConfigError("train: give a TrainSpec, or resume= a run folder")
    if spec is not None and not spec.model:
        raise ConfigError("train: the TrainSpec names no model (TrainSpec(model=..., ...))")
    info_d = D.init_from_env(spec.device if spec is not None else None)
    target, resuming = _choose_run(spec, out=out, runs_root=runs_root, resume=resume, progress=progress,
                                   is_main=info_d.is_main)
    applied: dict = {}
    if resuming:
        spec, applied = _resume_spec(spec_from_config(target), spec, changes, target)
    else:
        _check_file(spec.weights, "weights file")  # a resumed run takes its weights from the checkpoint
    run_dir: RunDir | None = None
    if info_d.is_main:
        if resuming:
            run_dir = RunDir.resume(target)
            run_dir.resume_changes = applied
        elif target is not None:
            run_dir = RunDir.create(target)
        else:
            run_dir = RunDir.create(new_run_dir(runs_root, spec.model, _canonical_data(spec.data)), created=True)
    path = Path(D.broadcast_object(str(run_dir.path) if run_dir is not None else None))
    threads_before = torch.get_num_threads()
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    try:
        with run_dir.session() if run_dir is not None else contextlib.nullcontext():
            result = _train(spec, run_dir=run_dir if run_dir is not None else path, resuming=resuming,
                            progress=progress, callbacks=callbacks)
    finally:
        torch.set_num_threads(threads_before)
    result.out_dir = path
    return result


def _train(spec: TrainSpec, *, run_dir, resuming: bool, progress: bool, callbacks=()) -> FitResult:
    from cnnlab.data import load_dataset
    from cnnlab.data.datasets import split_folder
    from cnnlab.models.registry import create_model, model_info

    info = model_info(spec.model)
    # The default recipe resolved for this data set, by name, so that config.json's spec repeats the run.
    spec = spec.replace(recipe=spec.resolve(data_name=split_folder(spec.data)[0]).name) if spec.recipe is None else spec
    spec.resolve()  # a bad recipe field fails before the data is loaded
    data = load_dataset(spec.data, root=spec.data_root, download=spec.download, input_size=info.input_size,
                        seed=spec.seed, bad_files=spec.bad_files, val_fraction=spec.val_fraction,
                        **spec.data_options)
    torch.manual_seed(spec.seed)  # the model's initial weights depend on the seed alone
    model = create_model(spec.model, num_classes=data.num_classes, in_chans=data.input_size[0],
                         weights=None if resuming else spec.weights, sha256=spec.sha256, strict=spec.strict,
                         **spec.model_config)
    return fit(model, data, spec, run_dir=run_dir, resume=resuming, progress=progress, callbacks=callbacks)
