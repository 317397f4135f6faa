"""Opening files that come from elsewhere: regular files only, their size known before reading.

Every reader of an outside file (weights, checkpoints and their manifest, data set files,
``config.json``) opens it through :func:`open_regular` or :func:`read_regular`, so that:

- a FIFO, a device (``/dev/zero``, ``/dev/stdin``), a socket or a directory is refused with one line
  naming the path and what it is, also behind a symbolic link (the check is on the opened file, so it
  cannot be raced by swapping the link). A FIFO is opened with ``O_NONBLOCK``, so opening it never
  waits for a writer;
- the size is read with ``fstat`` before anything is read, checked against the reader's limit, and
  no more than that size is read even if the file grows meanwhile.

:func:`describe_path` says what a path is, for messages ("does not exist", "is a directory", "is a
FIFO (named pipe)"), so that "no such file" is never printed for something that exists.

:func:`read_json` is the one reader of the JSON files a run, an experiment or a cache holds
(``config.json``, ``results.json``, manifests): a regular file, at most ``max_bytes``, UTF-8, and
nested at most ``max_depth`` deep, so that a crafted file gives one line instead of a
``MemoryError`` or a ``RecursionError`` (in the parser, or later in code that walks the document).

:func:`open_pil_image` is the one door to PIL: the image's header is read, and an image declaring
more pixels than ``cnnlab.limits.MAX_IMAGE_PIXELS`` is refused in one line naming the file (PIL would
warn, decode gigabytes, or raise its own ``DecompressionBombError``).

Like :mod:`cnnlab.errors` this module imports nothing else of the package (but its limits).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from cnnlab.errors import CnnlabError, ConfigError

__all__ = ["open_regular", "read_regular", "read_json", "parse_json", "json_depth", "describe_path",
           "check_output_path", "open_pil_image", "GiB", "MiB", "MAX_JSON_BYTES", "MAX_JSON_DEPTH"]

MiB = 1 << 20
GiB = 1 << 30
MAX_JSON_BYTES = 16 * MiB  # a config.json is a few kB, a results.json a few hundred
MAX_JSON_DEPTH = 64  # cnnlab writes documents 2-8 deep; 64 leaves room and stays far from the recursion limit

_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # Windows has no FIFOs to block on
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _link_note(path: Path) -> str:
    try:
        if path.is_symlink():
            return f" (a symbolic link to {os.path.realpath(path)})"
    except OSError:
        pass
    return ""


def describe_path(path: str | os.PathLike) -> str:
    """What ``path`` is, as the end of a sentence: "does not exist", "is a directory", "is a FIFO
    (named pipe)", ..., or "is a regular file". Never opens the file."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist" + (" (a broken symbolic link)" if os.path.islink(path) else "")
    except NotADirectoryError:
        return "does not exist (a folder on its path is a file)"
    except PermissionError:
        return "cannot be reached (permission denied)"
    except OSError as err:
        return f"cannot be examined ({err.strerror or err})"
    if stat.S_ISREG(st.st_mode):
        return "is a regular file"
    return f"is {_kind(st.st_mode)}{_link_note(path)}"


@contextlib.contextmanager
def open_regular(
    path: str | os.PathLike, *, what: str, error: type[CnnlabError], max_bytes: int | None = None
) -> Iterator[tuple[BinaryIO, int]]:
    """Open ``path`` for reading if it is a regular file of at most ``max_bytes``: ``(file, size)``.

    ``what`` names the file in messages ("weights file", "IDX file"); every problem raises ``error``
    as ``"<what> <path> <problem>"`` on one line.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY)
    except FileNotFoundError:
        raise error(f"{what} {path} {describe_path(path)}") from None
    except NotADirectoryError:
        raise error(f"{what} {path} does not exist (a folder on its path is a file)") from None
    except IsADirectoryError:  # Windows; Linux opens directories and fstat tells below
        raise error(f"{what} {path} is a directory, not a file") from None
    except OSError as err:
        reason = "permission denied" if err.errno == errno.EACCES else (err.strerror or str(err))
        raise error(f"cannot open {what} {path}: {reason}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is {_kind(st.st_mode)}{_link_note(path)}, not a regular file; refusing to read it")
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(
                f"{what} {path} is {st.st_size:,} bytes, more than the {max_bytes:,} this reader accepts; "
                "refusing to read it"
            )
        if _O_NONBLOCK:
            import fcntl  # not on Windows, where _O_NONBLOCK is 0

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_NONBLOCK)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f, st.st_size


@contextlib.contextmanager
def open_pil_image(source: str | os.PathLike | BinaryIO, *, name: object, error: type[CnnlabError]) -> Iterator[Any]:
    """``PIL.Image.open(source)`` (a path or an open binary file; nothing decoded yet), refused with
    ``error`` naming ``name`` when its header declares more than ``MAX_IMAGE_PIXELS`` pixels.

    PIL's own check (a ``DecompressionBombWarning`` above its limit, an error above twice that) is
    replaced by this one: the warning is silenced and the error becomes the same one-line refusal.
    PIL's other errors (not an image, truncated) propagate for the caller to word.
    """
    from PIL import Image

    from cnnlab.limits import MAX_IMAGE_PIXELS

    def refuse(pixels: str) -> CnnlabError:
        return error(f"image {name} is {pixels} pixels, more than the {MAX_IMAGE_PIXELS:,} cnnlab decodes "
                     "(cnnlab.limits.MAX_IMAGE_PIXELS, PIL's decompression-bomb limit); shrink it first")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
    except Image.DecompressionBombError as err:  # above twice PIL's limit: its message has the count
        found = re.search(r"\((\d+) pixels\)", str(err))
        raise refuse(f"{int(found[1]):,}" if found else "too many") from None
    with img:
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            raise refuse(f"{width}x{height} = {width * height:,}")
        yield img


def read_regular(
    path: str | os.PathLike, *, what: str, error: type[CnnlabError], max_bytes: int | None = None
) -> bytes:
    """The content of the regular file ``path`` (see :func:`open_regular`): at most the size that
    ``fstat`` gave before reading, so a file that grows meanwhile is not read without bound."""
    with open_regular(path, what=what, error=error, max_bytes=max_bytes) as (f, size):
        try:
            return f.read(size)
        except OSError as err:
            raise error(f"cannot read {what} {path}: {err.strerror or err}") from None


def check_output_path(path: str | os.PathLike, *, what: str, directory: bool, error: type[CnnlabError] = ConfigError) -> None:
    """Refuse, before any work, an output path that cannot be written: for a ``directory`` an
    existing non-directory, a file on the path, a read-only or unwritable parent; for a file, an
    existing directory (or non-regular file), or a parent that is not a writable folder."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        st_ok = path.is_dir() if directory else path.is_file()
        if not st_ok:
            want = "a folder" if directory else "a file name"
            raise error(f"{what} {path} {describe_path(path)}; give {want}")
        target = path if directory else path.parent
    else:
        target = path.parent
        while not target.exists():  # the first existing ancestor is where the folders get created
            if target.is_symlink() or target == target.parent:
                break
            target = target.parent
        if target.exists() and not target.is_dir():
            raise error(f"{what} {path}: {target} is a file, not a folder")
    if target.exists() and not os.access(target, os.W_OK | os.X_OK):
        raise error(f"{what} {path}: {target} is not writable")
    if target.exists():
        try:
            vfs = os.statvfs(target)
        except (OSError, AttributeError):
            return
        if vfs.f_flag & getattr(os, "ST_RDONLY", 1):
            raise error(f"{what} {path}: {target} is on a read-only file system")


def json_depth(doc: Any, *, limit: int) -> int:
    """How deeply ``doc`` nests (a scalar is 0, ``[1]`` is 1), counted without recursion; counting
    stops once ``limit`` is passed, so the answer is at most ``limit + 1``."""
    deepest, stack = 0, [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        depth += 1
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        stack.extend((child, depth) for child in node)
    return deepest


def parse_json(raw: bytes | str, *, where: str, error: type[CnnlabError], max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document ``raw`` (read from ``where``); ``error`` on one line when it is not UTF-8, not
    JSON, or nested more than ``max_depth`` deep."""
    try:
        doc = json.loads(raw)
    except UnicodeDecodeError as err:
        raise error(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise error(f"{where}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    except RecursionError:  # the parser's own limit, reached long before max_depth would be counted
        raise error(f"{where}: JSON nested too deeply (more than {max_depth} levels); refusing to read it") from None
    if json_depth(doc, limit=max_depth) > max_depth:
        raise error(f"{where}: JSON nested too deeply (more than {max_depth} levels); refusing to read it")
    return doc


def read_json(
    path: str | os.PathLike,
    *,
    what: str,
    error: type[CnnlabError],
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """The JSON document in the regular file ``path`` (see :func:`read_regular` and :func:`parse_json`)."""
    raw = read_regular(path, what=what, error=error, max_bytes=max_bytes)
    return parse_json(raw, where=f"{what} {path}", error=error, max_depth=max_depth)
