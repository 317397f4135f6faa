"""The run folder: one class owns what a training run writes there, and the lock that keeps it one writer.

A run folder holds ``config.json`` (written before the first update), ``steps.csv``,
``metrics.csv``, ``checkpoints/`` (see :mod:`cnnlab.training.checkpoint`), and at the end
``model.safetensors``, the test split's diagnostics (``confusion.csv``, ``mistakes.npz``), the
pictures drawn from those numbers by :mod:`cnnlab.viz.run_pictures` when the caller asks for them
(``curves.png``, ``confusion.png``, ``mistakes.png``, ...) and last ``results.json``;
``failed.json`` when a run stopped on an
error after its folder was kept. Every file goes through :mod:`cnnlab.atomic` (temporary + fsync +
rename + fsync of the folder).

The rules, in one place:

- a folder *holds a run* when its ``config.json`` was written by cnnlab (``"cnnlab_run"``) or it
  has ``checkpoints/manifest.json``; :func:`holds_run` decides, for ``--out``, ``--resume`` and
  ``cnnlab runs`` alike;
- a new run goes into a folder that does not exist or is empty; a folder holding a run is refused
  (resume it), and so is a non-empty folder that is not a run (nothing in it is touched);
- while a run trains, its folder is locked (``fcntl.flock`` on ``.lock`` inside it, which holds the
  PID); a second trainer of the same folder is refused at once with :class:`RunLockedError`;
- a new run that fails before its first checkpoint leaves nothing behind (the folder is removed if
  the run created it, emptied if it was an empty folder before); any other failure leaves the
  checkpoints and writes ``failed.json`` (error, step, time), which a successful resume removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab import atomic
from cnnlab.errors import CheckpointError, ConfigError

__all__ = ["RunDir", "RunLockedError", "holds_run", "read_config", "config_for_weights", "finished_run", "RunModel",
           "load_run_model", "CONFIG", "RESULTS", "MODEL", "CHECKPOINTS", "FAILED", "LOCK", "MAX_CONFIG_BYTES"]

CONFIG = "config.json"
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"
FAILED = "failed.json"
LOCK = ".lock"
MODEL = "model.safetensors"  # the selected weights of a finished run
MAX_CONFIG_BYTES = 16 << 20  # a config.json is a few kB; a bigger "config.json" is not a run's


class RunLockedError(ConfigError):
    """Another process is training this run folder."""


def read_config(path: str | os.PathLike, *, need_spec: bool = False) -> dict:
    """The one reader of a run's ``config.json`` (``path``: the run folder or the file itself): a
    regular file of at most :data:`MAX_CONFIG_BYTES` holding a JSON object, else a ConfigError naming
    the file. ``need_spec``: it must also hold a ``"spec"`` mapping with a model (what rebuilding the
    run's model needs)."""
    from cnnlab.safeio import read_json

    path = Path(path)
    if path.is_dir():
        path = path / CONFIG
    doc = read_json(path, what="run configuration", error=ConfigError, max_bytes=MAX_CONFIG_BYTES)
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a run configuration (a JSON object)")
    if need_spec and (not isinstance(doc.get("spec"), dict) or not doc["spec"].get("model")):
        raise ConfigError(f"{path}: not a cnnlab run configuration (no \"spec\" with a model)")
    return doc


def _config_or_none(folder: Path) -> dict | None:
    """The folder's config.json, or None when it is absent, not a regular file, or not a JSON object."""
    try:
        return read_config(folder / CONFIG)
    except (ConfigError, OSError):
        return None


def holds_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a cnnlab run folder (finished, unfinished or failed)."""
    path = Path(path)
    if os.path.lexists(path / CHECKPOINTS / "manifest.json"):
        return True
    doc = _config_or_none(path)
    return doc is not None and "cnnlab_run" in doc


class RunDir:
    """A run folder. Open it with :meth:`create` (a new run) or :meth:`resume`; both lock it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.created = False  # this process made the folder (a failure before any checkpoint removes it)
        self.new = False  # a new run (not a resume)
        self.last_step: int | None = None  # the step the run had reached (for failed.json)
        self.resume_changes: dict = {}  # what the user changed on resuming (--epochs ...): field -> {from, to}
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ what it holds

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def holds_run(self) -> bool:
        return holds_run(self.path)

    def has_checkpoint(self) -> bool:
        return os.path.lexists(self.checkpoints / "manifest.json")

    def is_finished(self) -> bool:
        return (self.path / RESULTS).exists()

    def read_config(self) -> dict:
        doc = _config_or_none(self.path)
        if doc is None:
            raise CheckpointError(f"{self.path / CONFIG}: missing or unreadable (not a run folder?)")
        return doc

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(cls, path: str | os.PathLike, *, created: bool = False) -> RunDir:
        """A new run in ``path``: it must not exist, or be an empty folder. ``created``: the caller
        has just made it (a failure before the first checkpoint then removes it)."""
        rd = cls(path)
        rd._check_new()
        if not rd.path.exists():
            try:
                rd.path.mkdir(parents=True)
            except FileExistsError:
                pass  # another process made it just now: the lock and the second check decide
            except OSError as err:
                raise ConfigError(f"cannot create the run folder {rd.path}: {err.strerror or err}") from None
            else:
                created = True
        rd.created, rd.new = created, True
        rd.lock()
        try:
            rd._check_new(locked=True)  # a run started between the first check and the lock
        except ConfigError:
            rd.release()
            raise
        return rd

    def _check_new(self, *, locked: bool = False) -> None:
        p = self.path
        if os.path.lexists(p) and not p.is_dir():
            raise ConfigError(f"--out {p} exists and is not a folder")
        if not p.exists():
            return
        if holds_run(p):
            raise ConfigError(f"{p} already holds a run; choose another --out, or --resume it")
        try:
            entries = [e.name for e in os.scandir(p) if not (locked and e.name == LOCK)]
        except OSError as err:
            raise ConfigError(f"--out {p}: cannot read the folder ({err.strerror or err})") from None
        if entries:
            shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
            raise ConfigError(f"--out {p} is not empty and holds no cnnlab run ({shown}); nothing in it was "
                              "touched: choose a new or empty folder")

    @classmethod
    def resume(cls, path: str | os.PathLike) -> RunDir:
        """An existing run folder to continue; locked, its stray temporaries removed."""
        from cnnlab.training.checkpoint import clean_temporaries

        rd = cls(path)
        if not rd.path.is_dir():
            raise CheckpointError(f"cannot resume {rd.path}: no such folder")
        if not rd.holds_run():
            raise CheckpointError(f"cannot resume {rd.path}: not a run folder (no config.json written by cnnlab)")
        rd.lock()
        clean_temporaries(rd.checkpoints)  # safe now: we are the only writer
        return rd

    @classmethod
    def open(cls, path: str | os.PathLike, *, resume: bool, created: bool = False) -> RunDir:
        """:meth:`resume` the run in ``path``, or :meth:`create` a new one there."""
        return cls.resume(path) if resume else cls.create(path, created=created)

    @contextlib.contextmanager
    def session(self):
        """The run's lifecycle around its training, for whoever opened the folder: on success
        ``failed.json`` (of an earlier try) goes; on an error the folder is abandoned
        (:meth:`abandon`) and the error raised again; the lock is released either way."""
        try:
            yield self
        except BaseException as err:
            self.abandon(err)
            raise
        else:
            self.succeeded()
        finally:
            self.release()

    # ------------------------------------------------------------------ the lock

    def lock(self) -> None:
        """Hold ``.lock`` (flock, exclusive, non-blocking) with this PID in it; RunLockedError if held."""
        try:
            import fcntl
        except ImportError:  # Windows: no flock; one writer per folder is then the user's promise
            return
        path = self.path / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"cannot lock the run folder {self.path}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(f"{self.path} is being trained by another process (PID {pid}); wait for it "
                                 "to end or stop it, then resume") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock; the file stays (unlinking it would race)
            self._lock_fd = None

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    # ------------------------------------------------------------------ writing

    def write_json(self, name: str, obj: Any) -> Path:
        atomic.write_json(self.path / name, obj)
        return self.path / name

    def write_csv(self, name: str, fields, rows) -> Path:
        atomic.write_csv(self.path / name, fields, rows)
        return self.path / name

    def write_config(self, config: dict) -> None:
        self.write_json(CONFIG, config)

    def record_resume(self, config: dict) -> None:
        """Append this resume (``config["resumed"]``) to config.json's ``resumes``; changes the user
        asked for on resuming (``--epochs``, ...) update its spec and schedule."""
        old = self.read_config()
        resumed = dict(config["resumed"])
        if self.resume_changes:
            resumed["changes"] = self.resume_changes
        old.setdefault("resumes", []).append(resumed)
        if self.resume_changes:
            for key in ("spec", "schedule", "max_steps", "checkpoint_every"):
                if key in config:
                    old[key] = config[key]
        self.write_config(old)

    # ------------------------------------------------------------------ ending

    def succeeded(self) -> None:
        (self.path / FAILED).unlink(missing_ok=True)

    def abandon(self, err: BaseException) -> str:
        """After ``err`` stopped the run: "removed" (a new run without a checkpoint: nothing left
        behind), "failed" (failed.json written), or "kept" (an interrupt: resumable as it is)."""
        if self.new and not self.has_checkpoint():
            self.release()
            if self.created:
                shutil.rmtree(self.path, ignore_errors=True)
            else:  # an empty folder before the run: empty again
                for entry in list(os.scandir(self.path)):
                    (shutil.rmtree if entry.is_dir(follow_symlinks=False) else os.unlink)(entry.path)
            return "removed"
        if not isinstance(err, Exception):  # Ctrl-C: not a failure, the run resumes as it is
            return "kept"
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        try:
            self.write_json(FAILED, {"error": message, "type": type(err).__name__, "step": self.last_step,
                                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        except OSError:
            pass  # a full disk: the error being raised says more than failed.json would
        return "failed"


# ---------------------------------------------------------------------------------------------
# A finished run's model, again (cnnlab eval / export / predict / viz / sample)
# ---------------------------------------------------------------------------------------------


def config_for_weights(weights: str | os.PathLike) -> dict | None:
    """The config.json of the run a weights file belongs to (beside it, or above a ``checkpoints/``
    folder), with its spec checked field by field (a ConfigError names a wrong type); None when
    neither folder holds a run's config.json."""
    weights = Path(weights)
    for folder in (weights.parent, weights.parent.parent):
        if (folder / CONFIG).is_file():
            doc = read_config(folder)
            if isinstance(doc.get("spec"), dict):
                from cnnlab.training.run import TrainSpec

                TrainSpec.from_dict(doc["spec"], where=str(folder / CONFIG))  # a wrong type names its field
                if not isinstance(doc.get("data", {}), dict):
                    raise ConfigError(f"{folder / CONFIG}: \"data\" is not a mapping")
                return doc
    return None


def finished_run(run_dir: str | os.PathLike) -> tuple[dict, Path]:
    """A finished run folder's config.json (with a spec) and the path of its selected weights;
    ConfigError naming what is missing."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run folder {run_dir}: no such folder")
    if not os.path.lexists(run / CONFIG):
        raise ConfigError(f"{run_dir}: not a run folder (no {CONFIG}; is it a `cnnlab train` run folder?)")
    config = read_config(run, need_spec=True)
    weights = run / MODEL
    if not weights.is_file():
        raise ConfigError(f"{run_dir}: no {MODEL} (the run has not finished; its checkpoints are in "
                          f"{run / CHECKPOINTS}: give --weights {run / CHECKPOINTS / 'best.safetensors'} "
                          "--model NAME)")
    return config, weights


@dataclass
class RunModel:
    """What :func:`load_run_model` built."""

    model: Any  # nn.Module, in eval mode, on the CPU
    name: str  # its zoo name
    model_config: dict  # what create_model got besides num_classes and in_chans
    config: dict | None  # the run's config.json (None: no run behind the weights)
    weights: Path | None  # None: random initial weights
    report: Any = None  # the LoadReport of the weights (None without weights)


def resolve_model_source(*, run=None, weights=None, config: dict | None = None,
                         model: str | None = None) -> tuple[dict | None, Path | None, str]:
    """(config, weights, model name) from exactly one source: a finished ``run`` folder, a ``weights``
    file (with ``config`` and/or ``model``), or ``model`` alone; one-line errors otherwise."""
    if run is not None:
        if weights is not None:
            raise ConfigError("give a run folder or a weights file, not both")
        config, weights = finished_run(run)
    elif weights is not None and not Path(weights).is_file():
        raise ConfigError(f"weights file {weights}: no such file")
    spec = (config or {}).get("spec") or {}
    name = model or spec.get("model")
    if not name:
        raise ConfigError(f"{weights}: no config.json of a run beside it; name the model with --model"
                          if weights is not None else "give a MODEL, --run DIR or --weights FILE --model NAME")
    return config, (Path(weights) if weights is not None else None), str(name)


def load_run_model(run: str | os.PathLike | None = None, *, weights: str | os.PathLike | None = None,
                   config: dict | None = None, model: str | None = None, model_config: dict | None = None,
                   num_classes: int | None = None, in_chans: int | None = None, sha256: str | None = None,
                   strict: bool = True, seed: int | None = None) -> RunModel:
    """The one way to rebuild a trained model: a fresh zoo model with weights loaded, in eval mode.

    From ``run`` (a finished run folder: its config.json and model.safetensors), or ``weights`` with
    ``config`` (the config.json of the run they belong to, see :func:`config_for_weights`) and/or
    ``model``, or ``model`` alone (random weights; drawn from ``seed`` without touching the global
    generator when it is given). ``model`` replaces the run's model; ``model_config`` updates the
    run's (replaces it for another model); ``num_classes`` and ``in_chans`` default to the run's data
    (the same model), else the zoo's. ``sha256`` pins the weights; ``strict=False`` loads what matches.
    """
    import torch

    from cnnlab.models.registry import create_model, model_info
    from cnnlab.models.weights import load_weights

    config, weights, name = resolve_model_source(run=run, weights=weights, config=config, model=model)
    spec = (config or {}).get("spec") or {}
    info = model_info(name)  # UnknownNameError with the closest names
    same_model = config is not None and name == spec.get("model")
    data = (config or {}).get("data") or {}
    run_config = dict(spec.get("model_config") or {}) if same_model else {}
    for key, value in run_config.items():  # JSON turned the tuples of the config into lists
        if isinstance(value, list):
            run_config[key] = tuple(value)
    mconfig = {**run_config, **(model_config or {})}
    try:
        if num_classes is None:
            num_classes = int(data.get("num_classes") or 0) if same_model else 0
            num_classes = num_classes or info.num_classes
        if in_chans is None:
            in_chans = int(data["input_size"][0]) if same_model and data.get("input_size") else info.input_size[0]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as err:
        raise ConfigError(f"{name}: not a readable run configuration ({type(err).__name__}: {err})") from None
    if seed is None:
        net = create_model(name, num_classes=num_classes, in_chans=in_chans, **mconfig)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # a name alone: the same random weights every time
            net = create_model(name, num_classes=num_classes, in_chans=in_chans, **mconfig)
    report = load_weights(net, weights, sha256=sha256, strict=strict) if weights is not None else None
    return RunModel(model=net.eval(), name=name, model_config=mconfig, config=config,
                    weights=Path(weights) if weights is not None else None, report=report)
