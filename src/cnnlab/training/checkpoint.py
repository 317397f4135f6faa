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
import math
import os
import pickle
import random
import re
import secrets
import stat
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
from cnnlab.safeio import MiB, open_regular, parse_json, read_regular

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
    "check_train_state",
    "check_weight_shapes",
    "check_optimizer_state",
]

log = logging.getLogger("cnnlab.checkpoint")

MANIFEST = "manifest.json"
FORMAT = "cnnlab-checkpoint/1"
PREV = ".prev"
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # no dots: ".prev" stays unambiguous
_CHUNK = 1 << 22
_MAX_MANIFEST_BYTES = 16 * MiB  # a manifest lists a few tags in ~500 bytes each
# What a manifest may name: a plain file name in the checkpoint folder (no folder, no "..", not hidden).
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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
    if not os.path.lexists(path):
        return None
    raw = read_regular(path, what="checkpoint manifest", error=CheckpointError, max_bytes=_MAX_MANIFEST_BYTES)
    try:
        doc = parse_json(raw, where=str(path), error=CheckpointError)
        checkpoints = doc["checkpoints"]
        ok = doc.get("format") == FORMAT and isinstance(checkpoints, dict)
        ok = ok and doc.get("checksum") == _manifest_checksum(checkpoints)
    except (CheckpointError, ValueError, KeyError, TypeError, AttributeError):
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


def _link_or_copy(src: Path, dst: Path, *, size: int) -> None:
    """Make ``dst`` hold ``src``'s content (a hard link where possible), replacing ``dst`` atomically.

    ``src`` must be a regular file of ``size`` bytes (not a symbolic link): a forged manifest entry
    naming ``/dev/zero``, a FIFO or a link out of the folder raises :class:`CheckpointError` instead of
    being copied without end. The copy reads the opened file, so the check cannot be raced."""
    st = os.lstat(src)
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        raise CheckpointError(f"{src} is not the regular file of {size:,} bytes its manifest entry lists")
    tmp = dst.with_name(f"{TMP_PREFIX}{dst.name}.{secrets.token_hex(4)}")
    try:
        os.link(src, tmp, follow_symlinks=False)
    except OSError:  # a filesystem without hard links: copy at most ``size`` bytes, and make the copy durable
        with open_regular(src, what="checkpoint file", error=CheckpointError, max_bytes=size) as (f, n), \
                open(tmp, "xb") as out:
            left = n
            while left > 0 and (block := f.read(min(_CHUNK, left))):
                out.write(block)
                left -= len(block)
            out.flush()
            os.fsync(out.fileno())
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
    if dropped is not None and _entry_problem(dropped) is None:  # only plain names inside the folder
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
            problem = _entry_problem(old)  # a forged entry may name /dev/zero, a FIFO, a file elsewhere
            if problem is not None:
                raise CheckpointError(problem)
            for kind, info in old["files"].items():  # step 3
                _link_or_copy(directory / info["name"], directory / prev_names[kind], size=info["size"])
                info["name"] = prev_names[kind]
            fsync_dir(directory)
            checkpoints[prev] = {**old, "tag": prev}  # step 4
        except (CheckpointError, OSError, KeyError, TypeError, AttributeError) as err:
            # T's files were deleted, altered, or its entry is malformed: there is nothing to keep
            log.warning("not keeping checkpoint %r as %r: %s", tag, prev, err)
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
    """Check a file's size and sha256 against the manifest; return its bytes if ``keep``.

    Only a regular file is opened (a FIFO or ``/dev/zero`` named by a forged manifest is refused,
    never waited on or read without end), and no more than the manifest's size is read.
    """
    path = directory / info["name"]
    if not os.path.lexists(path):
        raise CheckpointError(f"{path} is missing (listed in {MANIFEST})")
    with open_regular(path, what="checkpoint file", error=CheckpointError) as (f, size):
        if size != info["size"]:
            raise CheckpointError(f"{path} is truncated or altered: {size} bytes, the manifest says {info['size']}")
        digest = hashlib.sha256()
        chunks = [] if keep else None
        left = size
        while left > 0 and (block := f.read(min(_CHUNK, left))):
            left -= len(block)
            digest.update(block)
            if chunks is not None:
                chunks.append(block)
    if digest.hexdigest() != info["sha256"]:
        raise CheckpointError(f"{path} is corrupted: sha256 {digest.hexdigest()}, the manifest says {info['sha256']}")
    return b"".join(chunks) if chunks is not None else None


def _entry_problem(entry: Any) -> str | None:
    """Why a manifest entry cannot be used (its files must be plain names inside the folder), or None."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("files"), Mapping):
        return "it has no 'files' mapping"
    for kind in ("weights", "state"):
        info = entry["files"].get(kind)
        if not isinstance(info, Mapping):
            return f"it has no {kind!r} file"
        name, size, digest = info.get("name"), info.get("size"), info.get("sha256")
        if not isinstance(name, str) or not _FILE_NAME_RE.match(name) or ".." in name:
            return (f"its {kind} file name {name!r} is not a plain file name inside the checkpoint folder "
                    "(no folders, no '..', no absolute paths)")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return f"its {kind} file size {size!r} is not a byte count"
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            return f"its {kind} file sha256 {digest!r} is not 64 hexadecimal digits"
    if len(entry["files"]) != 2:
        return f"it lists files {sorted(map(str, entry['files']))}, expected weights and state"
    return None


def _entry(checkpoints: Mapping[str, dict], directory: Path, tag: str) -> dict:
    if tag in checkpoints:
        problem = _entry_problem(checkpoints[tag])
        if problem is None:
            return checkpoints[tag]
        raise CheckpointError(f"{directory / MANIFEST}: the entry for {tag!r} is malformed: {problem}")
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
    # A malformed entry has no trustworthy step to order it by; it is reported, never passed over silently.
    malformed = {tag: p for tag in checkpoints if (p := _entry_problem(checkpoints[tag])) is not None}
    skipped = [f"{tag!r} (its {MANIFEST} entry is malformed: {p})" for tag, p in malformed.items()]
    usable = {tag: e for tag, e in checkpoints.items() if tag not in malformed}
    for tag in _order(usable):
        try:
            entry = _entry(usable, directory, tag)
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
            # "falling back" only past a newer checkpoint; a malformed entry has no order to be newer by
            fell_back = len(skipped) > len(malformed) or (base and base not in checkpoints) or tag.endswith(PREV)
            using = "falling back to the previous good checkpoint" if fell_back else "resuming from"
            message = (
                f"{directory}: " + "; ".join(notes)
                + f"; {using} {tag!r} (step {entry.get('step')}, epoch {entry.get('epoch')})"
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


# --------------------------------------------------------------------------------------- restoring

# What the Trainer's state file holds (trainer.STATE_FORMAT, Trainer.state_dict), by type. A file whose sha256
# matches its manifest can still hold anything a weights_only pickle allows (a hand-edited or
# foreign file): resuming checks it against this first, so a malformed state is one CheckpointError
# naming the file, not a KeyError or a shape error in the middle of the first update.
_NUMBER = (int, float)
TRAIN_STATE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "step": int, "epoch": int, "position": int, "batch_size": int, "world_size": int,
    "optimizer": dict, "schedule": dict, "scaler": dict, "loader": dict, "accum": Tensor, "history": list,
    "best_value": (type(None), *_NUMBER), "best_epoch": int, "stop": bool,
    "seconds": _NUMBER, "train_seconds": _NUMBER, "train_images": _NUMBER, "rng": dict,
}  # fmt: skip
# Optimizer options that torch versions add or drop; every other option must be in the file.
_OPTIONAL_GROUP_KEYS = {"foreach", "fused", "differentiable", "capturable", "maximize", "decoupled_weight_decay",
                        "param_names"}  # fmt: skip


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_train_state(
    ts: Mapping[str, Any],
    *,
    where: str,
    fields: Mapping[str, type | tuple[type, ...]] = TRAIN_STATE_FIELDS,
    accum_size: int = 4,
) -> None:
    """Raise :class:`CheckpointError` naming ``where`` unless ``ts`` holds ``fields`` (name -> type) and
    the parts of them resuming reads (loader position, history rows, schedule, scaler, per-rank RNG)
    are well formed. A trainer whose state differs passes its own ``fields`` and ``accum_size``."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where}: malformed training state: {what}")

    for key, kind in fields.items():
        if key not in ts:
            raise bad(f"no {key!r} entry")
        value = ts[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, _NUMBER)):
            raise bad(f"{key!r} is a {_type_name(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise bad(f"{key!r} is {value}")
    for key in ("step", "epoch", "position", "batch_size", "world_size"):
        if key in fields and ts[key] < (1 if key in ("batch_size", "world_size") else 0):
            raise bad(f"{key!r} is {ts[key]}")
    accum = ts.get("accum")
    if "accum" in fields and (tuple(accum.shape) != (accum_size,)
                              or not (accum.is_floating_point() or accum.dtype == torch.int64)):
        raise bad(f"'accum' is a {accum.dtype} tensor of shape {list(accum.shape)}, expected {accum_size} sums")
    loader = ts.get("loader")
    for key in ("epoch", "position") if isinstance(loader, dict) else ():
        if not isinstance(loader.get(key), int) or isinstance(loader.get(key), bool):
            raise bad(f"the loader's {key!r} is {loader.get(key)!r}")
    history = ts.get("history")
    if isinstance(history, list) and not all(isinstance(r, dict) and all(isinstance(k, str) for k in r) for r in history):
        raise bad("'history' is not a list of rows (dicts keyed by column name)")
    plateau = ts["schedule"].get("plateau") if isinstance(ts.get("schedule"), dict) else None
    if plateau is not None:
        types = {"factor": _NUMBER, "bad_epochs": int, "drops": list}
        if not isinstance(plateau, dict) or any(not isinstance(plateau.get(k), t) for k, t in types.items()) \
                or "best" not in plateau or not all(isinstance(e, int) for e in plateau["drops"]):
            raise bad("the plateau schedule's state is malformed")
    scaler = ts.get("scaler")
    if isinstance(scaler, dict) and scaler and not all(
            isinstance(scaler.get(k), _NUMBER)
            for k in ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")):
        raise bad("the grad scaler's state is malformed")
    ranks = ts.get("rng_ranks")
    if ranks is not None and (not isinstance(ranks, list) or len(ranks) != ts.get("world_size")
                              or not all(isinstance(r, dict) for r in ranks)):
        raise bad(f"'rng_ranks' is not a list of {ts.get('world_size')} RNG states")


def check_weight_shapes(model: nn.Module, state_dict: Mapping[str, Tensor], *, where: str) -> None:
    """Raise :class:`CheckpointError` naming ``where`` when a stored tensor's shape differs from the model's."""
    own = model.state_dict()
    wrong = [f"{k} (file {list(v.shape)} vs model {list(own[k].shape)})"
             for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        more = f" and {len(wrong) - 4} more" if len(wrong) > 4 else ""
        raise CheckpointError(f"{where} does not match the model: shape mismatch in {', '.join(wrong[:4])}{more}")


def _same_kind(new: Any, old: Any) -> bool:
    if isinstance(old, bool) or old is None:
        return isinstance(new, (bool, type(None))) or (old is None and isinstance(new, (int, float, Tensor)))
    if isinstance(old, (int, float)):
        return isinstance(new, (int, float)) and not isinstance(new, bool) and math.isfinite(new)
    if isinstance(old, (tuple, list)):
        return isinstance(new, (tuple, list)) and len(new) == len(old) and all(_same_kind(a, b) for a, b in zip(new, old))
    if isinstance(old, Tensor):
        return isinstance(new, (Tensor, int, float)) and not isinstance(new, bool)
    return isinstance(new, type(old))


def check_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any], *, where: str) -> None:
    """Raise :class:`CheckpointError` naming ``where`` unless ``state`` fits ``optimizer``: the same
    parameter groups and options, and per-parameter buffers shaped like their parameters."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where}: malformed optimizer state: {what}")

    groups, per_param = state.get("param_groups"), state.get("state")
    if not isinstance(groups, list) or not isinstance(per_param, dict):
        raise bad("expected 'param_groups' (a list) and 'state' (a dict)")
    own = optimizer.param_groups
    if len(groups) != len(own):
        raise bad(f"{len(groups)} parameter group(s), the optimizer has {len(own)}")
    params: dict[Any, Tensor] = {}
    for i, (group, mine) in enumerate(zip(groups, own)):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise bad(f"parameter group {i} is not a dict with a 'params' list")
        if len(group["params"]) != len(mine["params"]):
            raise bad(f"parameter group {i} has {len(group['params'])} parameters, the model {len(mine['params'])}")
        for key, value in mine.items():
            if key == "params" or (key not in group and key in _OPTIONAL_GROUP_KEYS):
                continue
            if key not in group or not _same_kind(group[key], value):
                raise bad(f"parameter group {i}'s {key!r} is {group.get(key)!r}")
        params.update(zip(group["params"], mine["params"]))
    for pid, buffers in per_param.items():
        if pid not in params or not isinstance(buffers, dict):
            raise bad(f"state for an unknown parameter {pid!r}")
        for name, value in buffers.items():
            if isinstance(value, Tensor) and value.ndim > 0 and tuple(value.shape) != tuple(params[pid].shape):
                raise bad(f"{name!r} of parameter {pid} has shape {list(value.shape)}, the parameter {list(params[pid].shape)}")
            if not isinstance(value, (Tensor, int, float, type(None))):
                raise bad(f"{name!r} of parameter {pid} is a {_type_name(value)}")


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
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OverflowError) as err:
        raise CheckpointError(f"invalid RNG state in checkpoint ({type(err).__name__}: {err})") from None
