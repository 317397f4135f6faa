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

__all__ = ["TrainSpec", "train", "spec_from_config", "new_run_dir", "find_run_to_resume"]


@dataclass(frozen=True)
class TrainSpec:
    """Everything that defines a training run (what config.json's ``"spec"`` holds)."""

    model: str
    data: str = "mnist-5k"
    recipe: str | None = None  # None: the model's default recipe
    overrides: dict[str, Any] = field(default_factory=dict)  # recipe fields (--set)
    model_config: dict[str, Any] = field(default_factory=dict)  # the model family's options (--model-set)
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
        if self.lr is not None and (not isinstance(self.lr, (int, float)) or not self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r} (use {', '.join(PRECISIONS)})")
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"unknown memory format {self.memory_format!r} (use {', '.join(MEMORY_FORMATS)})")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val-fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.bad_files not in ("strict", "skip"):
            raise ConfigError(f"bad_files must be 'strict' or 'skip', got {self.bad_files!r}")

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


def spec_from_config(path: str | os.PathLike) -> TrainSpec:
    """The :class:`TrainSpec` stored in a run's ``config.json`` (or the run directory holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{p}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict) or not doc["spec"].get("model"):
        raise ConfigError(f"{p}: not a cnnlab run configuration (no \"spec\" with a model)")
    return TrainSpec.from_dict(doc["spec"], where=str(p))


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
        raise ConfigError(f"{what} {path}: no such file")
    if not os.access(p, os.R_OK):
        raise ConfigError(f"{what} {path}: not readable")


def train(spec: TrainSpec | None, *, out: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs",
          resume: str | None = None, progress: bool = True, callbacks=()) -> FitResult:
    """Run ``spec``: load the data, build the model, ``fit`` it into a run folder.

    ``out``: the run folder (default: a new ``runs_root/<date>-<model>-<data>/``; an existing run
    is never overwritten). ``resume``: a run folder to continue (its config.json's spec is used),
    or "auto": the newest unfinished run of this model on this data (or ``out``), else a new run.
    ``spec`` may be None when ``resume`` names a run folder. Under ``torchrun`` every rank calls
    this; only rank 0 writes. ``callbacks`` go to ``fit`` (see :mod:`cnnlab.training.trainer`).
    """
    if spec is None and (resume is None or (resume == "auto" and out is None)):
        raise ConfigError("train: give a TrainSpec, or resume= a run folder")
    info_d = D.init_from_env(spec.device if spec is not None else None)
    run_dir: Path | None = None
    resuming = False
    if resume is not None:
        if resume == "auto":
            candidate = Path(out) if out is not None else find_run_to_resume(runs_root, spec.model, _canonical_data(spec.data))
            if spec is None and not (candidate / CHECKPOINT_DIR / "manifest.json").exists():
                raise CheckpointError(f"cannot resume {candidate}: it has no checkpoint; give a MODEL to start a run")
            if candidate is not None and (candidate / "results.json").exists():
                raise ConfigError(f"{candidate} holds a finished run (results.json); nothing to resume")
            if candidate is not None and (candidate / CHECKPOINT_DIR / "manifest.json").exists():
                run_dir, resuming = candidate, True
            elif info_d.is_main and progress:
                print(f"cnnlab: no unfinished {spec.model} run on {spec.data} to resume; starting a new run",
                      file=sys.stderr)
        else:
            run_dir = Path(resume)
            if not (run_dir / "config.json").is_file():
                raise CheckpointError(f"cannot resume {resume}: not a run folder (no config.json)")
            if not (run_dir / CHECKPOINT_DIR / "manifest.json").is_file():
                raise CheckpointError(f"cannot resume {resume}: it has no checkpoint ({CHECKPOINT_DIR}/manifest.json)")
            resuming = True
        if resuming:
            spec = spec_from_config(run_dir)
    if not resuming:  # a resumed run takes its weights from the checkpoint
        _check_file(spec.weights, "weights file")

    threads_before = torch.get_num_threads()
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    try:
        return _train(spec, info_d=info_d, run_dir=run_dir, resuming=resuming, out=out, runs_root=runs_root,
                      progress=progress, callbacks=callbacks)
    finally:
        torch.set_num_threads(threads_before)


def _train(spec: TrainSpec, *, info_d: D.DistInfo, run_dir: Path | None, resuming: bool, out, runs_root,
           progress: bool, callbacks=()) -> FitResult:
    from cnnlab.data import load_dataset
    from cnnlab.models.registry import create_model, model_info

    info = model_info(spec.model)
    recipe = resolve_recipe(spec.recipe, model_name=spec.model, overrides=spec.overrides,
                            batch_size=spec.batch_size, lr=spec.lr)
    data = load_dataset(spec.data, root=spec.data_root, download=spec.download, input_size=info.input_size,
                        seed=spec.seed, bad_files=spec.bad_files, val_fraction=spec.val_fraction,
                        **spec.data_options)
    torch.manual_seed(spec.seed)  # the model's initial weights depend on the seed alone
    model = create_model(spec.model, num_classes=data.num_classes, in_chans=data.input_size[0],
                         weights=None if resuming else spec.weights, sha256=spec.sha256, strict=spec.strict,
                         **spec.model_config)

    if run_dir is None:
        if out is not None:
            run_dir = Path(out)
            if info_d.is_main and (run_dir / "config.json").exists():
                raise ConfigError(f"{run_dir} already holds a run; choose another --out, or --resume it")
        elif info_d.is_main:
            run_dir = new_run_dir(runs_root, spec.model, data.name)
        run_dir = Path(D.broadcast_object(str(run_dir) if run_dir is not None else None))
    run_info = {**spec.to_dict(), "recipe": recipe.name}
    return fit(model, data, recipe, epochs=spec.epochs, precision=spec.precision, device=spec.device,
               seed=spec.seed, out_dir=run_dir, progress=progress, max_steps=spec.max_steps,
               checkpoint_every=spec.checkpoint_every, resume=resuming, deterministic=spec.deterministic,
               memory_format=spec.memory_format, model_name=spec.model, run_info=run_info,
               tensorboard=spec.tensorboard, test_every_epoch=spec.test_every_epoch, callbacks=callbacks)
