"""Checkpoints that survive a kill -9 and never run code when loaded.

A checkpoint directory holds, per tag (``last``, ``best``, ...)::

    <tag>.safetensors   the model's weights (safetensors: no code, tied tensors stored as copies)
    <tag>.state.pt      the training state, loadable with torch.load(weights_only=True): optimizer,
                        scheduler and grad-scaler state dicts, epoch, step, position in the epoch,
                        loader state, RNG states (see rng_state) -- plain tensors/numbers/lists/dicts
    manifest.json       per tag: step, epoch, time, and the size and sha256 of both files

The manifest is the single source of truth and it never lies: every save writes complete files
under temporary names first (fsync'd), and the manifest (itself written atomically) only names
files whose content matches it. Saving tag ``T`` over an existing ``T`` goes:

    0. (first save in the directory: write an empty manifest)
    1. write T's new files as temporaries          manifest: T=old, T.prev=older
    2. drop T.prev from the manifest                manifest: T=old
    3. hard-link T's files as T.prev                (same inodes: free)
    4. manifest: T.prev=old (T dropped)             T's names may now change
    5. os.replace the temporaries onto T's names
    6. manifest: T=new, T.prev=old                  (T.prev dropped again unless keep_previous)

A kill at any instant therefore leaves a manifest whose every entry loads and matches its hashes,
and at most the save in progress is lost; the strays (``.cnnlab-tmp-*``) are removed by
:func:`clean_temporaries`, which the engine calls when a run starts. ``last`` keeps its previous
version as ``last.prev`` so that ``--resume auto`` can fall back when ``last`` is corrupted later
(a disk error, a truncated copy). One process writes a directory at a time (rank 0 under DDP).

:func:`find_resumable` picks the newest checkpoint whose files match the manifest and logs, on the
``cnnlab.checkpoint`` logger at WARNING level (printed on stderr when logging is not configured),
which newer ones it skipped and why; :func:`choose_resumable` returns the same decision with its
message for callers that print it themselves.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import random
import re
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.atomic import TMP_PREFIX, atomic_write, fsync_dir, write_temp
from cnnlab.models.weights import sha256_hex, state_dict_for_saving

__all__ = [
    "MANIFEST",
    "ResumePoint",
    "UnsafeCheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "find_resumable",
    "choose_resumable",
    "read_manifest",
    "verify_checkpoint",
    "clean_temporaries",
    "rng_state",
    "set_rng_state",
]

log = logging.getLogger("cnnlab.checkpoint")

MANIFEST = "manifest.json"
FORMAT = "cnnlab-checkpoint/1"
PREV = ".prev"
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # no dots: ".prev" stays unambiguous
_CHUNK = 1 << 22


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file holds Python objects that ``weights_only=True`` refuses: never loaded, never skipped."""


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint to resume from, and why newer ones were skipped (``message`` is None if none were)."""

    directory: Path
    tag: str
    step: int | None
    epoch: int | None
    skipped: tuple[str, ...] = ()
    message: str | None = None


# --------------------------------------------------------------------------------------- manifest


def _files(tag: str) -> dict[str, str]:
    return {"weights": f"{tag}.safetensors", "state": f"{tag}.state.pt"}


def _manifest_checksum(checkpoints: Mapping[str, Any]) -> str:
    return sha256_hex(json.dumps(checkpoints, sort_keys=True, separators=(",", ":")).encode())


def read_manifest(directory: str | os.PathLike) -> dict[str, dict] | None:
    """The checkpoints the manifest lists, by tag; None when the directory has no manifest.

    A manifest that is not valid JSON or whose own checksum does not match raises
    :class:`CheckpointError` naming it.
    """
    path = Path(directory) / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        doc = json.loads(raw)
        checkpoints = doc["checkpoints"]
        ok = doc.get("format") == FORMAT and isinstance(checkpoints, dict)
        ok = ok and doc.get("checksum") == _manifest_checksum(checkpoints)
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path} is corrupted (not a valid {FORMAT} manifest, or its checksum does not match)")
    return checkpoints


def _write_manifest(directory: Path, checkpoints: Mapping[str, dict]) -> None:
    doc = {"format": FORMAT, "checkpoints": dict(checkpoints), "checksum": _manifest_checksum(checkpoints)}
    atomic_write(directory / MANIFEST, json.dumps(doc, indent=1, sort_keys=True).encode())


def _checkpoint_files_present(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.safetensors")) + sorted(p.name for p in directory.glob("*.state.pt"))


def _require_manifest(directory: Path) -> dict[str, dict] | None:
    checkpoints = read_manifest(directory)
    if checkpoints is None:
        present = _checkpoint_files_present(directory) if directory.is_dir() else []
        if present:
            raise CheckpointError(
                f"{directory / MANIFEST} is missing: cannot verify {', '.join(present[:4])}"
                f"{' ...' if len(present) > 4 else ''} (refusing to load checkpoint files without their sha256)"
            )
    return checkpoints


# --------------------------------------------------------------------------------------- saving


def _plain(obj: Any, where: str) -> Any:
    """``obj`` made of what ``torch.load(weights_only=True)`` accepts: tensors, numbers, strings,
    None, lists, tuples, sets and dicts. numpy arrays become tensors and numpy scalars Python numbers;
    anything else raises :class:`CheckpointError` naming where it is."""
    if isinstance(obj, np.generic):  # before the numbers: np.float64 is a float but pickles as numpy
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, Tensor, torch.Size, torch.dtype, torch.device)):
        if isinstance(obj, Tensor) and type(obj) not in (Tensor, nn.Parameter):
            return obj.as_subclass(Tensor)
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise CheckpointError(f"{where}: a numpy array of Python objects cannot be stored safely")
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise CheckpointError(f"{where}: key {k!r} of type {type(k).__name__} cannot be stored safely")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return list(items) if isinstance(obj, list) else set(items) if isinstance(obj, (set, frozenset)) else tuple(items)
    raise CheckpointError(
        f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be stored in a checkpoint "
        "(only tensors, numbers, strings, None, lists, tuples and dicts load with weights_only=True)"
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` hold ``src``'s content (a hard link where possible), replacing ``dst`` atomically."""
    tmp = dst.with_name(f"{TMP_PREFIX}{dst.name}.{secrets.token_hex(4)}")
    try:
        os.link(src, tmp)
    except OSError:  # a filesystem without hard links: copy, and make the copy durable
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)


def _validate_tag(tag: str) -> None:
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise ConfigError(f"checkpoint tag must be letters, digits, '-' or '_' (no dots), got {tag!r}")


def save_checkpoint(
    directory: str | os.PathLike,
    tag: str,
    *,
    model: nn.Module,
    train_state: Mapping[str, Any],
    keep_previous: bool | None = None,
) -> dict:
    """Save ``model``'s weights and ``train_state`` as checkpoint ``tag`` in ``directory``; return its manifest entry.

    ``train_state`` holds what resuming needs (optimizer/scheduler/scaler state dicts, ``epoch``,
    ``step``, position in the epoch, loader state, :func:`rng_state`); ``step`` and ``epoch`` are
    also recorded in the manifest. It must be made of tensors, numbers, strings, lists, tuples and
    dicts (numpy arrays are stored as tensors); anything else raises :class:`CheckpointError`.
    ``keep_previous`` (default: only for ``last``) keeps the replaced checkpoint as ``<tag>.prev``.
    The save is atomic: a kill at any moment leaves the previous checkpoints intact, and an error
    while writing (a full disk) raises :class:`CheckpointError` with the earlier checkpoints and
    their manifest untouched and no temporary file left.
    """
    _validate_tag(tag)
    keep_previous = (tag == "last") if keep_previous is None else keep_previous
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not isinstance(train_state, Mapping):
        raise CheckpointError(f"train_state must be a dict, got {type(train_state).__name__}")
    blobs = _encode(tag, model, train_state)
    entry = _new_entry(tag, train_state, blobs)
    temps: dict[str, Path] = {}
    try:
        for kind, name in _files(tag).items():  # step 1
            temps[kind] = write_temp(directory, name, blobs[kind])
        dropped = _install(directory, tag, entry, temps, keep_previous=keep_previous)  # steps 0, 2-6
    except OSError as err:  # ENOSPC, EDQUOT, EIO: the manifest still names only complete, verified files
        raise CheckpointError(
            f"cannot save checkpoint {tag!r} in {directory}: {err.strerror or err}; the checkpoints saved "
            "before it are kept"
        ) from None
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    if dropped is not None:
        for info in dropped["files"].values():
            (directory / info["name"]).unlink(missing_ok=True)
    return entry


def _encode(tag: str, model: nn.Module, train_state: Mapping[str, Any]) -> dict[str, bytes | memoryview]:
    """The two files' bytes: the weights (safetensors) and the training state (torch.save of plain data)."""
    from safetensors.torch import save

    step, epoch = train_state.get("step"), train_state.get("epoch")
    weights = save(
        state_dict_for_saving(model),
        metadata={"format": "pt", "cnnlab.tag": tag, "cnnlab.step": str(step), "cnnlab.epoch": str(epoch)},
    )
    buf = io.BytesIO()
    torch.save(_plain(dict(train_state), "train_state"), buf)
    return {"weights": weights, "state": buf.getbuffer()}


def _new_entry(tag: str, train_state: Mapping[str, Any], blobs: Mapping[str, bytes | memoryview]) -> dict:
    now = time.time()
    names = _files(tag)
    return {
        "tag": tag,
        "step": _as_int(train_state.get("step")),
        "epoch": _as_int(train_state.get("epoch")),
        "time": now,
        "time_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "torch": torch.__version__,
        "files": {kind: {"name": names[kind], "size": len(blobs[kind]), "sha256": sha256_hex(blobs[kind])} for kind in names},
    }


def _install(directory: Path, tag: str, entry: dict, temps: Mapping[str, Path], *, keep_previous: bool) -> dict | None:
    """Steps 0 and 2-6 of the save protocol (module docstring): the temporaries become ``tag``, the
    old ``tag`` becomes ``tag.prev``. Returns the entry whose files the caller deletes (a dropped
    ``tag.prev``), or None."""
    names = _files(tag)
    checkpoints = _require_manifest(directory)
    if checkpoints is None:
        # A first save: an empty manifest goes first, so that a kill right after the files are
        # in place leaves "no checkpoint yet" rather than files without a manifest (refused).
        checkpoints = {}
        _write_manifest(directory, checkpoints)
    prev = tag + PREV
    if tag in checkpoints:
        if prev in checkpoints:  # step 2: T.prev's files are about to be overwritten
            del checkpoints[prev]
            _write_manifest(directory, checkpoints)
        old = checkpoints.pop(tag)
        prev_names = _files(prev)
        try:
            for kind, info in old["files"].items():  # step 3
                _link_or_copy(directory / info["name"], directory / prev_names[kind])
                info["name"] = prev_names[kind]
            fsync_dir(directory)
            checkpoints[prev] = {**old, "tag": prev}  # step 4
        except (OSError, KeyError, TypeError, AttributeError):
            pass  # T's files were deleted or its entry is malformed: there is nothing to keep
        _write_manifest(directory, checkpoints)
    for kind in names:  # step 5
        os.replace(temps[kind], directory / names[kind])
    fsync_dir(directory)
    checkpoints[tag] = entry  # step 6
    dropped = checkpoints.pop(prev, None) if not keep_previous else None
    _write_manifest(directory, checkpoints)
    return dropped


def _as_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def clean_temporaries(directory: str | os.PathLike) -> list[str]:
    """Remove the ``.cnnlab-tmp-*`` files a killed run left in ``directory``; return their names.

    Call it when a run starts (one writer per directory), never while another process saves there.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for p in sorted(directory.iterdir()):
        if p.name.startswith(TMP_PREFIX) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p.name)
    if removed:
        fsync_dir(directory)
    return removed


# --------------------------------------------------------------------------------------- loading


def _check_file(directory: Path, info: Mapping[str, Any], *, keep: bool) -> bytes | None:
    """Check a file's size and sha256 against the manifest; return its bytes if ``keep``."""
    path = directory / info["name"]
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing (listed in {MANIFEST})") from None
    if size != info["size"]:
        raise CheckpointError(f"{path} is truncated or altered: {size} bytes, the manifest says {info['size']}")
    digest = hashlib.sha256()
    chunks = [] if keep else None
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
            if chunks is not None:
                chunks.append(block)
    if digest.hexdigest() != info["sha256"]:
        raise CheckpointError(f"{path} is corrupted: sha256 {digest.hexdigest()}, the manifest says {info['sha256']}")
    return b"".join(chunks) if chunks is not None else None


def _entry(checkpoints: Mapping[str, dict], directory: Path, tag: str) -> dict:
    try:
        entry = checkpoints[tag]
        if all(isinstance(entry["files"][kind]["name"], str) for kind in ("weights", "state")):
            return entry
    except (KeyError, TypeError):
        pass
    if tag in checkpoints:
        raise CheckpointError(f"{directory / MANIFEST}: the entry for {tag!r} is malformed")
    known = ", ".join(sorted(checkpoints)) or "none"
    raise CheckpointError(f"no checkpoint {tag!r} in {directory / MANIFEST} (it lists: {known})")


def verify_checkpoint(directory: str | os.PathLike, tag: str) -> dict:
    """Check that checkpoint ``tag``'s files match the manifest (size and sha256); return its entry."""
    directory = Path(directory)
    checkpoints = _require_manifest(directory)
    if checkpoints is None:
        raise CheckpointError(f"no checkpoint in {directory} ({MANIFEST} not found)")
    entry = _entry(checkpoints, directory, tag)
    for info in entry["files"].values():
        _check_file(directory, info, keep=False)
    return entry


def _load_entry(directory: Path, entry: Mapping[str, Any], map_location: Any) -> tuple[dict[str, Tensor], dict]:
    from safetensors.torch import load

    weights_info, state_info = entry["files"]["weights"], entry["files"]["state"]
    weights_bytes = _check_file(directory, weights_info, keep=True)
    state_bytes = _check_file(directory, state_info, keep=True)
    try:
        state_dict = load(weights_bytes)
    except Exception as err:
        raise CheckpointError(f"{directory / weights_info['name']}: invalid safetensors file ({err})") from None
    try:
        train_state = torch.load(io.BytesIO(state_bytes), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        from cnnlab.models.weights import _unsafe_reason

        raise UnsafeCheckpointError(
            f"{directory / state_info['name']}: refused to load: it contains Python code or objects other than "
            f"tensors and plain containers ({_unsafe_reason(err)}); cnnlab never loads such files unsafely"
        ) from None
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{directory / state_info['name']}: unreadable training state ({first[:200]})") from None
    if not isinstance(train_state, dict):
        raise CheckpointError(f"{directory / state_info['name']}: holds a {type(train_state).__name__}, not a dict")
    return state_dict, train_state


def _resolve(path: str | os.PathLike, tag: str | None) -> tuple[Path, str | None]:
    """Accept a checkpoint directory, its manifest, or one of its files (whose name gives the tag)."""
    path = Path(path)
    if path.is_file():
        name = path.name
        for suffix in (".safetensors", ".state.pt"):
            if name.endswith(suffix) and tag is None:
                return path.parent, name[: -len(suffix)]
        if name == MANIFEST or name.endswith((".safetensors", ".state.pt")):
            return path.parent, tag
        raise CheckpointError(f"{path} is not a checkpoint directory (give the directory that holds {MANIFEST})")
    return path, tag


def load_checkpoint(
    directory: str | os.PathLike, tag: str | None = None, *, map_location: Any = "cpu"
) -> tuple[dict[str, Tensor], dict]:
    """Load checkpoint ``tag`` (default: the one :func:`find_resumable` picks): ``(state_dict, train_state)``.

    Both files are checked against the manifest's size and sha256 before they are parsed, from the
    very bytes that were hashed. A missing, truncated or corrupted file raises
    :class:`CheckpointError` naming it; a training state holding anything but tensors and plain
    containers raises :class:`UnsafeCheckpointError` (nothing in it is executed). ``directory`` may
    also be the manifest or one of the checkpoint's files.
    """
    directory, tag = _resolve(directory, tag)
    if tag is None:  # the resumable one; its files are read (and hashed) once
        found = _scan(directory, load=True, map_location=map_location)
        if found is None:
            raise CheckpointError(f"no checkpoint to load in {directory}")
        point, loaded = found
        if point.message:
            log.warning(point.message)
        return loaded
    checkpoints = _require_manifest(directory)
    if checkpoints is None:
        raise CheckpointError(f"no checkpoint in {directory} ({MANIFEST} not found)")
    return _load_entry(directory, _entry(checkpoints, directory, tag), map_location)


def _order(checkpoints: Mapping[str, dict]) -> list[str]:
    """Tags, newest first: by step, then ``last``/``last.prev`` before other tags, then by time."""

    def key(tag: str) -> tuple[int, bool, float]:
        e = checkpoints[tag]
        step = e.get("step") if isinstance(e, dict) else None
        t = e.get("time") if isinstance(e, dict) else None
        return (step if isinstance(step, int) else -1, tag in ("last", "last" + PREV), t if isinstance(t, (int, float)) else 0.0)

    return sorted(checkpoints, key=key, reverse=True)


def _scan(directory: Path, *, load: bool, map_location: Any = "cpu") -> tuple[ResumePoint, Any] | None:
    """Walk the checkpoints newest first; stop at the first whose files match (and load, if asked)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    checkpoints = _require_manifest(directory)
    if not checkpoints:
        return None
    skipped = []
    for tag in _order(checkpoints):
        try:
            entry = _entry(checkpoints, directory, tag)
            if load:
                loaded = _load_entry(directory, entry, map_location)
            else:
                loaded = None
                for info in entry["files"].values():
                    _check_file(directory, info, keep=False)
        except UnsafeCheckpointError:
            raise  # a file built to run code is an attack, not an accident: stop, do not fall back
        except CheckpointError as err:
            skipped.append(f"{tag!r} ({err})")
            continue
        notes = []
        if skipped:
            notes.append("skipped unusable checkpoint(s) " + "; ".join(skipped))
        base = tag[: -len(PREV)] if tag.endswith(PREV) else None
        if base and base not in checkpoints:
            notes.append(f"{base!r} was being replaced when the previous run stopped")
        message = None
        if notes:
            message = (
                f"{directory}: " + "; ".join(notes)
                + f"; falling back to the previous good checkpoint {tag!r} (step {entry.get('step')}, epoch {entry.get('epoch')})"
            )
        return ResumePoint(directory, tag, entry.get("step"), entry.get("epoch"), tuple(skipped), message), loaded
    raise CheckpointError(f"no usable checkpoint in {directory}: " + "; ".join(skipped))


def choose_resumable(directory: str | os.PathLike) -> ResumePoint | None:
    """The newest checkpoint in ``directory`` whose files match the manifest, with what was skipped.

    None when the directory holds no checkpoint at all (a fresh run). Raises
    :class:`CheckpointError` when checkpoints exist but none is usable (listing why), or when the
    manifest is missing or corrupted while checkpoint files are present. Only sizes and hashes are
    checked here; :func:`load_checkpoint` also refuses unsafe content.
    """
    found = _scan(Path(directory), load=False)
    return None if found is None else found[0]


def find_resumable(directory: str | os.PathLike) -> str | None:
    """The tag to resume from in ``directory`` (None for a fresh run); see :func:`choose_resumable`.

    When it falls back past a corrupted or half-written checkpoint it says so on the
    ``cnnlab.checkpoint`` logger (WARNING, shown on stderr when logging is not configured).
    """
    point = choose_resumable(directory)
    if point is None:
        return None
    if point.message:
        log.warning(point.message)
    return point.tag


# --------------------------------------------------------------------------------------- RNG


def rng_state(*, generators: Mapping[str, torch.Generator] | None = None) -> dict:
    """Every global RNG's state as plain data (tensors, ints, lists) for ``train_state["rng"]``.

    Captures torch's CPU generator, every CUDA device's when CUDA is available, numpy's legacy global
    generator, Python's ``random``, and the named ``generators`` (the data loader's, augmentation's).
    """
    np_state = np.random.get_state(legacy=False)
    version, py_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": {"version": int(version), "state": list(py_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generators:
        state["generators"] = {name: g.get_state() for name, g in generators.items()}
    return state


def set_rng_state(state: Mapping[str, Any], *, generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_state` captured. CUDA states are restored for the devices present
    (a CPU-only resume ignores them); a named generator missing from ``state`` raises."""
    try:
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state(
            {
                "bit_generator": n["bit_generator"],
                "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
                "has_gauss": int(n["has_gauss"]),
                "gauss": float(n["gauss"]),
            }
        )
        p = state["python"]
        random.setstate((int(p["version"]), tuple(int(v) for v in p["state"]), p["gauss_next"]))
        if "cuda" in state and torch.cuda.is_available():
            cuda = list(state["cuda"])[: torch.cuda.device_count()]
            for device, s in enumerate(cuda):
                torch.cuda.set_rng_state(s, device)
        for name, g in (generators or {}).items():
            g.set_state(state["generators"][name])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise CheckpointError(f"invalid RNG state in checkpoint ({type(err).__name__}: {err})") from None
