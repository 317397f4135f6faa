"""The one way cnnlab writes a file: complete or not at all.

Every file a run, an experiment or a plot writes goes through :func:`atomic_write`: the bytes go to a
hidden temporary in the same folder (same file system, so the rename is atomic), are flushed and
fsync'd, ``os.replace`` puts the file in place and the folder is fsync'd, so the rename survives a
power cut. A reader (or a crash) sees the old content or all of the new, never a torn file. A crash
leaves at worst a ``.cnnlab-tmp-*`` file, which ``checkpoint.clean_temporaries`` removes; an error
while writing (a full disk) removes the temporary at once.

Checkpoints need the two halves apart (all files durable under temporary names first, then renamed
in a fixed order around the manifest): :func:`write_temp` is the first half, and ``atomic_write`` is
``write_temp`` + rename + :func:`fsync_dir`.

Commands that write into folders the user chose (report, viz, eval, experiment, plots) run inside
:func:`replace_guard`: there a file that already exists is replaced only when cnnlab wrote it there
(its sha256 is in the folder's ``.cnnlab-outputs.json`` ledger, so a re-run refreshes its own
output) or with ``force``; anything else, a user's own file of the same name, is refused before it is
touched.

This module imports nothing from the package, so every layer (models, training, experiments, viz)
may use it.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

__all__ = ["TMP_PREFIX", "fsync_dir", "write_temp", "atomic_write", "write_text", "write_json", "write_csv",
           "write_npz", "save_figure", "replace_guard", "check_replace", "cnnlab_wrote", "move_into", "LEDGER"]

# Temporary files are hidden and carry this prefix, so `clean_temporaries` can find the strays a
# killed run leaves without ever touching a user's file.
TMP_PREFIX = ".cnnlab-tmp-"


def fsync_dir(directory: str | os.PathLike) -> None:
    """fsync a directory so a rename in it survives a power cut (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; its renames are journaled by NTFS.
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_temp(directory: str | os.PathLike, name: str, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to a new fsync'd temporary ``.cnnlab-tmp-<name>.<random>`` in ``directory``; return it.

    On any error (ENOSPC, EIO, an interrupt) the partial temporary is removed before the error
    propagates.
    """
    tmp = Path(directory) / f"{TMP_PREFIX}{name}.{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


# ------------------------------------------------------------------ outputs a command may replace

LEDGER = ".cnnlab-outputs.json"  # in each folder a guarded command wrote to: {file name: sha256}
MAX_LEDGER_BYTES = 4 << 20
MAX_HASHED_BYTES = 512 << 20  # a larger file at an output's path is never one of cnnlab's outputs
_GUARD: ContextVar[tuple[bool, type[Exception]] | None] = ContextVar("cnnlab_replace_guard", default=None)


@contextlib.contextmanager
def replace_guard(*, force: bool, error: type[Exception]) -> Iterator[None]:
    """Inside: :func:`atomic_write` refuses (raising ``error``) to replace a file that cnnlab did not
    write there, unless ``force``; every file written is recorded in its folder's ledger."""
    token = _GUARD.set((force, error))
    try:
        yield
    finally:
        _GUARD.reset(token)


def _read_ledger(directory: Path) -> dict[str, str]:
    path = directory / LEDGER
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_LEDGER_BYTES:
            return {}
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    return {k: v for k, v in doc.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(doc, dict) else {}


def cnnlab_wrote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file that a guarded cnnlab command wrote and nobody changed since."""
    path = Path(path)
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_HASHED_BYTES:
            return False
        digest = _read_ledger(path.parent).get(path.name)
        return digest is not None and hashlib.sha256(path.read_bytes()).hexdigest() == digest
    except OSError:
        return False


def check_replace(path: str | os.PathLike) -> None:
    """Inside :func:`replace_guard`, refuse ``path`` now (before any work) if writing it would replace a
    file cnnlab did not write there."""
    path = Path(path)
    guard = _GUARD.get()
    if guard is None or guard[0] or not (path.exists() or path.is_symlink()) or cnnlab_wrote(path):
        return
    raise guard[1](f"{path} exists and cnnlab did not write it there (or it was changed since): not replaced; "
                   "pass --force to replace it, or choose another output")


def move_into(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename the complete (fsync'd) files of the folder ``src`` into ``dst``: inside
    :func:`replace_guard` each is checked first (:func:`check_replace`; nothing moves if one is
    refused) and ``src``'s ledger is merged into ``dst``'s."""
    src, dst = Path(src), Path(dst)
    names = sorted(p.name for p in src.iterdir() if p.name != LEDGER)
    for name in names:
        check_replace(dst / name)
    written = _read_ledger(src)
    for name in names:
        os.replace(src / name, dst / name)
    if _GUARD.get() is not None and written:
        ledger = {**_read_ledger(dst), **written}
        tmp = write_temp(dst, LEDGER, json.dumps(ledger, indent=1, sort_keys=True).encode())
        try:
            os.replace(tmp, dst / LEDGER)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    fsync_dir(dst)


def _record(path: Path, data: bytes | bytearray | memoryview) -> None:
    if _GUARD.get() is None or path.name == LEDGER:
        return
    ledger = _read_ledger(path.parent)
    ledger[path.name] = hashlib.sha256(data).hexdigest()
    tmp = write_temp(path.parent, LEDGER, json.dumps(ledger, indent=1, sort_keys=True).encode())
    try:
        os.replace(tmp, path.parent / LEDGER)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | bytearray | memoryview, *, sync_dir: bool = True) -> None:
    """Make ``path`` hold either its old content or all of ``data`` (temporary + fsync + rename + fsync
    of the folder). Inside :func:`replace_guard`, a file cnnlab did not write there is not replaced."""
    path = Path(path)
    check_replace(path)
    tmp = write_temp(path.parent, path.name, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _record(path, data)
    if sync_dir:
        fsync_dir(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, *, allow_nan: bool = True) -> None:
    """``obj`` as indented JSON (anything JSON cannot hold written with ``str``), atomically."""
    write_text(path, json.dumps(obj, indent=2, default=str, allow_nan=allow_nan) + "\n")


def _cell(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else v  # repr: the float's exact digits (bitwise comparisons)


def write_csv(path: str | os.PathLike, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A CSV with a header row ``fields`` and one line per row (missing keys empty), atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(r.get(k)) for k in fields})
    write_text(path, buf.getvalue())


def write_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Arrays in a compressed ``.npz`` (``numpy.savez_compressed``), atomically."""
    import numpy as np

    path = Path(path)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(path, buf.getbuffer())
    return path


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """A matplotlib figure written as a PNG atomically (rendered in memory, then :func:`atomic_write`)."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, **{"format": "png", **savefig_kwargs})
    atomic_write(path, buf.getbuffer())
    return path
