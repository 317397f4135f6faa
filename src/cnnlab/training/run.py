"""A training run from a specification: what ``cnnlab train`` does, as a library call.

:class:`TrainSpec` holds everything the user chose (model, data, recipe and overrides, seed,
precision, ...); :func:`train` loads the data, builds the model and calls :func:`fit` with a run
directory. The spec is stored in the run's ``config.json`` under ``"spec"``, so
``cnnlab train --config runs/.../config.json`` (``spec_from_config``) repeats a run from that file
alone, and ``--resume`` continues it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.training import distributed as D
from cnnlab.training.device import MEMORY_FORMATS, PRECISIONS
from cnnlab.training.engine import CHECKPOINT_DIR, FitResult, fit, resolve_recipe
from cnnlab.limits import check_seed, check_threads
from cnnlab.training.rundir import CONFIG, RunDir, RunLockedError, holds_run, read_config

__all__ = ["TrainSpec", "train", "spec_from_config", "new_run_dir", "find_run_to_resume", "RunLockedError",
           "RESUME_CHANGEABLE"]


@dataclass(frozen=True)
class TrainSpec:
    """Everything that defines a training run (what config.json's ``"spec"`` holds)."""

    model: str
    data: str = "mnist-5k"
    recipe: str | None = None  # None: the model's default recipe
    overrides: dict[str, Any] = field(default_factory=dict)  # recipe fields (--set)
    model_config: dict[str, Any] = field(default_factory=dict)  # the model family's options (--model-set)
    task_options: dict[str, Any] = field(default_factory=dict)  # the model's Task's options (--task-set)
    data_options: dict[str, Any] = field(default_factory=dict)  # the data set's options (--data-set)
    data_root: str = "data"
    download: bool = False
    bad_files: str = "strict"
    epochs: int | None = None  # None: the recipe's length
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    precision: str = "auto"
    memory_format: str = "auto"
    device: str | None = None  # None: CUDA when present, else CPU
    max_steps: int | None = None
    checkpoint_every: int | None = None
    deterministic: bool = False
    threads: int | None = None  # torch CPU threads (None: torch's default)
    weights: str | None = None  # initial weights (fine-tuning)
    sha256: str | None = None
    strict: bool = True
    tensorboard: bool = False
    val_fraction: float = 0.1  # of train held out for selection when the data set has no val split
    test_every_epoch: bool = False  # per-epoch test columns (curves; never used for selection)

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"{name.replace('_', '-')} must be a positive integer, got {v!r}")

        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"model must be a name, got {self.model!r}")
        for name in ("epochs", "batch_size", "max_steps", "checkpoint_every", "threads"):
            positive(name)
        for problem in (check_threads(self.threads) if self.threads is not None else None, check_seed(self.seed)):
            if problem:
                raise ConfigError(problem)
        if self.lr is not None and (not isinstance(self.lr, (int, float)) or not self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r} (use {', '.join(PRECISIONS)})")
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"unknown memory format {self.memory_format!r} (use {', '.join(MEMORY_FORMATS)})")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val-fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.bad_files not in ("strict", "skip"):
            raise ConfigError(f"bad_files must be 'strict' or 'skip', got {self.bad_files!r}")
        _check_spec_types(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "spec") -> TrainSpec:
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
        if "model" not in d:
            raise ConfigError(f"{where}: no model")
        return cls(**d)


# Chosen by the run itself (the data set's classes and channels, --weights/--sha256/--strict): a
# --model-set or config.json "model_config" naming them would clash with them in create_model.
RESERVED_MODEL_OPTIONS = ("num_classes", "in_chans", "weights", "sha256", "strict")
RESERVED_DATA_OPTIONS = ("name", "root", "download", "input_size", "seed", "bad_files")


def _check_spec_types(spec: TrainSpec) -> None:
    """ConfigError naming the field for a value of the wrong type (a hand-edited config.json)."""
    import math

    for name in ("overrides", "model_config", "data_options"):
        value = getattr(spec, name)
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{name} must be a mapping of option names to values, got {value!r}")
        for key, v in value.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{name}: {key}={v} is not a finite number")
    for name in ("data", "data_root", "recipe", "device", "weights", "sha256"):
        value = getattr(spec, name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
    for name in ("download", "strict", "deterministic", "tensorboard"):
        if not isinstance(getattr(spec, name), bool):
            raise ConfigError(f"{name} must be true or false, got {getattr(spec, name)!r}")
    if spec.lr is not None and not math.isfinite(spec.lr):
        raise ConfigError(f"lr must be a finite positive number, got {spec.lr!r}")
    clash = [k for k in RESERVED_DATA_OPTIONS if k in spec.data_options]
    if clash:
        raise ConfigError(f"data set option {clash[0]!r} cannot be set with --data-set / data_options: it is "
                          "the run's own (--data-root, --download, --seed, --bad-files, the model's input size)")
    clash = [k for k in RESERVED_MODEL_OPTIONS if k in spec.model_config]
    if clash:
        raise ConfigError(
            f"model option {clash[0]!r} cannot be set with --model-set / model_config: the data set sets "
            "num_classes and in_chans, and --weights, --sha256 and --strict choose the weights"
        )


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
        result = _train(spec, out_dir=run_dir if run_dir is not None else path, resuming=resuming,
                        progress=progress, callbacks=callbacks)
    except BaseException as err:
        if run_dir is not None:
            run_dir.abandon(err)
        raise
    else:
        if run_dir is not None:
            run_dir.succeeded()
    finally:
        if run_dir is not None:
            run_dir.release()
        torch.set_num_threads(threads_before)
    result.out_dir = path
    return result


def _train(spec: TrainSpec, *, out_dir, resuming: bool, progress: bool, callbacks=()) -> FitResult:
    from cnnlab.data import load_dataset
    from cnnlab.data.datasets import split_folder
    from cnnlab.models.registry import create_model, model_info

    info = model_info(spec.model)
    recipe = resolve_recipe(spec.recipe, model_name=spec.model, overrides=spec.overrides,
                            batch_size=spec.batch_size, lr=spec.lr, data_name=split_folder(spec.data)[0])
    data = load_dataset(spec.data, root=spec.data_root, download=spec.download, input_size=info.input_size,
                        seed=spec.seed, bad_files=spec.bad_files, val_fraction=spec.val_fraction,
                        **spec.data_options)
    torch.manual_seed(spec.seed)  # the model's initial weights depend on the seed alone
    model = create_model(spec.model, num_classes=data.num_classes, in_chans=data.input_size[0],
                         weights=None if resuming else spec.weights, sha256=spec.sha256, strict=spec.strict,
                         **spec.model_config)
    run_info = {**spec.to_dict(), "recipe": recipe.name}
    task = None  # the model's registered task with its defaults, unless --task-set changes them
    if spec.task_options:
        from cnnlab.training.tasks import get_task

        task = get_task(info.task, **spec.task_options)
    return fit(model, data, recipe, task=task, epochs=spec.epochs, precision=spec.precision, device=spec.device,
               seed=spec.seed, out_dir=out_dir, progress=progress, max_steps=spec.max_steps,
               checkpoint_every=spec.checkpoint_every, resume=resuming, deterministic=spec.deterministic,
               memory_format=spec.memory_format, model_name=spec.model, run_info=run_info,
               tensorboard=spec.tensorboard, test_every_epoch=spec.test_every_epoch, callbacks=callbacks)
