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

This module imports nothing from the package, so every layer (models, training, experiments, viz)
may use it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["TMP_PREFIX", "fsync_dir", "write_temp", "atomic_write", "write_text", "write_json", "write_csv",
           "write_npz", "save_figure"]

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


def atomic_write(path: str | os.PathLike, data: bytes | bytearray | memoryview, *, sync_dir: bool = True) -> None:
    """Make ``path`` hold either its old content or all of ``data`` (temporary + fsync + rename + fsync
    of the folder)."""
    path = Path(path)
    tmp = write_temp(path.parent, path.name, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
