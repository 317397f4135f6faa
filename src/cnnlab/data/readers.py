"""Safe readers for the data set files that come from elsewhere.

Nothing here executes code from a file: MNIST IDX files are parsed by hand, CIFAR's python batches
go through a restricted unpickler that can only rebuild numpy arrays and plain containers, SVHN's
``.mat`` files through ``scipy.io.loadmat`` (a data format, not code), images through PIL. Every
malformed file raises :class:`cnnlab.errors.DatasetError` naming the file. The checks are
``if ... raise``, never ``assert``, so they also hold under ``python -O``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import pickle
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import DatasetError
from cnnlab.safeio import GiB, open_pil_image, open_regular, read_regular

__all__ = [
    "read_idx",
    "read_cifar_batch",
    "read_cifar_meta",
    "restricted_load",
    "read_svhn_mat",
    "open_image",
    "decode_image",
    "flatten_alpha",
]

# ----------------------------------------------------------------------------- MNIST IDX

# IDX (LeCun's MNIST format): a big-endian magic number 0x0000TTDD, T the element type (0x08 =
# unsigned byte) and D the number of dimensions, then D big-endian int32 sizes, then the data.
IDX_UBYTE = 0x08
IDX_LABELS_MAGIC = 0x00000801  # 1 dimension: N labels
IDX_IMAGES_MAGIC = 0x00000803  # 3 dimensions: N x rows x cols


# The most IDX data read, decompressed: MNIST's training images are 47 MB. A header declaring more
# is refused before anything is decompressed (a 4 MB gzip file can inflate to 4 GiB).
MAX_IDX_BYTES = 2 * GiB


def _read_exact(stream: Any, n: int, path: Path, what: str) -> bytes:
    """Up to ``n`` bytes of ``stream`` (decompressed as they come); a corrupt gzip stream is a DatasetError."""
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as err:
        if isinstance(err, EOFError) or "truncated" in str(err).lower() or "end-of-stream" in str(err).lower():
            raise DatasetError(f"{path}: truncated gzip data in the {what} ({err})") from None
        raise DatasetError(f"{path}: corrupt or truncated gzip data ({err})") from None


def read_idx(path: str | Path, *, ndim: int, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions (1: labels, 3: images), gzipped or not.

    The header is read first; then exactly the size it declares is read (decompressed as a stream),
    plus one byte to detect excess data, so a decompression bomb costs no more than the declared size.
    """
    path = Path(path)
    expected_magic = IDX_UBYTE << 8 | ndim
    with open_regular(path, what="IDX file", error=DatasetError) as (f, file_size):
        gz = f.read(2) == b"\x1f\x8b"  # gzip magic, whatever the file is called
        f.seek(0)
        stream: Any = gzip.GzipFile(fileobj=f, mode="rb") if gz else f
        head = _read_exact(stream, 4, path, "header")
        if len(head) < 4:
            raise DatasetError(f"{path}: truncated IDX file ({len(head)} bytes, no header)")
        magic = int.from_bytes(head, "big")
        if head[0] != 0 or head[1] != 0 or head[2] != IDX_UBYTE:
            raise DatasetError(
                f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                "(not an IDX file of unsigned bytes)"
            )
        if head[3] != ndim:
            raise DatasetError(
                f"{path}: IDX file has {head[3]} dimensions (magic 0x{magic:08x}), expected {ndim} "
                f"(magic 0x{expected_magic:08x})"
            )
        header = 4 + 4 * ndim
        sizes = _read_exact(stream, 4 * ndim, path, "header")
        if len(sizes) < 4 * ndim:
            raise DatasetError(f"{path}: truncated IDX header ({4 + len(sizes)} bytes, expected at least {header})")
        dims = [int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim)]
        count = 1
        for d in dims:
            count *= d  # Python ints: four 2**32 sizes do not overflow
        expected = header + count
        if count > max_bytes:
            raise DatasetError(
                f"{path}: IDX sizes {dims} declare {count:,} bytes of data, more than the {max_bytes:,} "
                "this reader accepts; refusing to decompress it"
            )
        if not gz and file_size != expected:
            what = "truncated" if file_size < expected else "too long"
            raise DatasetError(
                f"{path}: {what} IDX data: sizes {dims} declare {expected:,} bytes, the file has {file_size:,}"
            )
        body = _read_exact(stream, count + 1, path, "data")
    if len(body) != count:
        what = "truncated" if len(body) < count else "too long"
        has = f"{header + len(body):,}" if len(body) <= count else "more"
        raise DatasetError(
            f"{path}: {what} IDX data: sizes {dims} declare {expected:,} bytes, the file has {has}"
            + (" (decompressed)" if gz else "")
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


# ----------------------------------------------------------------------------- CIFAR batches

# What a CIFAR python batch may reference: numpy's array reconstruction and plain containers. A
# pickle naming anything else (os.system, subprocess, eval, ...) is refused before it is called.
_EXAMPLE = np.zeros(1, dtype=np.uint8)
_RECONSTRUCT = _EXAMPLE.__reduce__()[0]  # numpy.core.multiarray._reconstruct (numpy._core in 2.x)
_FROMBUFFER = _EXAMPLE.__reduce_ex__(5)[0]  # numpy._core.numeric._frombuffer (pickle protocol 5)


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    # Pickle protocol 2 stores ``bytes`` as ``_codecs.encode(str, 'latin1')``; only that is allowed,
    # so no codec module is looked up by a name the file chooses.
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1", errors)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    # Departure from the brief's list, still array reconstruction only: numpy's protocol-5 pickles
    # rebuild arrays with _frombuffer (a copy of raw bytes into an array of a given dtype and shape).
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    **{
        (module, name): obj
        for module in ("builtins", "__builtin__")  # __builtin__: Python 2 pickles (CIFAR's own)
        for name, obj in {
            # protocol 2 spells these as calls (later protocols have opcodes for them)
            "dict": dict, "list": list, "set": set, "frozenset": frozenset,
            "bytes": bytes, "bytearray": bytearray,
        }.items()
    },
}  # fmt: skip


class _ForbiddenGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


# CIFAR-100's training batch, the largest, is 155 MB.
MAX_PICKLE_BYTES = 1 * GiB


def restricted_load(path: str | Path, *, max_bytes: int = MAX_PICKLE_BYTES) -> Any:
    """Unpickle ``path`` allowing only numpy arrays, dtypes and plain containers (never ``pickle.load``)."""
    path = Path(path)
    raw = read_regular(path, what="CIFAR batch", error=DatasetError, max_bytes=max_bytes)
    try:
        # latin1: CIFAR's batches were pickled by Python 2, whose byte strings load as str this way.
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except _ForbiddenGlobal as err:
        raise DatasetError(
            f"{path}: the pickle references {err.qualname}, which is not allowed (a data batch may "
            "only contain numpy arrays and plain containers); refusing to load it"
        ) from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DatasetError(f"{path}: not a readable CIFAR batch ({type(err).__name__}: {err})") from None


def _str_keys(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a dict in the CIFAR batch, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_cifar_batch(path: str | Path, *, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR python batch: images uint8 (N, 3, 32, 32) and labels int64 (N,).

    The batch is a dict with ``data`` (N x 3072 uint8, each row 1024 red, 1024 green, 1024 blue
    values, row-major) and ``label_key`` (N ints in ``[0, num_classes)``).
    """
    path = Path(path)
    batch = _str_keys(restricted_load(path), path)
    for key in ("data", label_key):
        if key not in batch:
            raise DatasetError(f"{path}: CIFAR batch has no {key!r} entry (keys: {sorted(batch)})")
    data, labels = batch["data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        what = f"{data.dtype} array" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: CIFAR 'data' must be a uint8 array, found {what}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{path}: CIFAR {label_key!r} is not a list of integers ({err})") from None
    n = len(labels)
    if data.ndim != 2 or data.shape != (n, 3072):
        raise DatasetError(
            f"{path}: CIFAR 'data' has shape {data.shape} ({data.size:,} values), expected N x 3072 "
            f"with N = {n} labels"
        )
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(
            f"{path}: labels must be in [0, {num_classes}), found {labels.min()}..{labels.max()}"
        )
    return data.reshape(n, 3, 32, 32), labels


def read_cifar_meta(path: str | Path, *, key: str) -> tuple[str, ...]:
    """The class names stored under ``key`` in a CIFAR ``batches.meta`` / ``meta`` file."""
    path = Path(path)
    meta = _str_keys(restricted_load(path), path)
    names = meta.get(key)
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DatasetError(f"{path}: no list of class names under {key!r}")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)


# ----------------------------------------------------------------------------- SVHN .mat


def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN's cropped digits: images uint8 (N, 3, 32, 32) and labels int64 (N,) in 0..9.

    The file holds ``X`` (32, 32, 3, N) and ``y`` (N, 1) with 1..10, 10 standing for the digit 0.
    """
    import scipy.io  # a data format reader; loading it never executes code from the file

    path = Path(path)
    try:
        with open_regular(path, what="SVHN file", error=DatasetError) as (f, _):
            mat = scipy.io.loadmat(f)
    except DatasetError:
        raise
    except Exception as err:  # noqa: BLE001 - scipy raises many types for malformed files
        raise DatasetError(f"{path}: not a readable MATLAB file ({type(err).__name__}: {err})") from None
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise DatasetError(f"{path}: expected arrays 'X' and 'y' in the SVHN file")
    y = y.reshape(-1).astype(np.int64)
    if x.dtype != np.uint8 or x.shape[:3] != (32, 32, 3) or x.ndim != 4 or x.shape[3] != len(y):
        raise DatasetError(f"{path}: 'X' is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, {len(y)})")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise DatasetError(f"{path}: labels must be in 1..10, found {y.min()}..{y.max()}")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y % 10


# ----------------------------------------------------------------------------- images


@contextlib.contextmanager
def _strict_truncation() -> Iterator[None]:
    # A truncated file must fail, whatever a caller set PIL's global switch to.
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def open_image(path: Path) -> tuple[int, int]:
    """The (width, height) from an image's header; DatasetError for empty or non-image files."""
    from PIL import Image, UnidentifiedImageError

    with open_regular(path, what="image", error=DatasetError) as (f, size):
        if size == 0:
            raise DatasetError(f"{path}: empty file (0 bytes)")
        try:
            with open_pil_image(f, name=path, error=DatasetError) as img:
                return img.size
        except UnidentifiedImageError:
            raise DatasetError(f"{path}: not an image (PIL cannot identify it)") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise DatasetError(f"{path}: unreadable image ({type(err).__name__}: {err})") from None


ALPHA_INK_SIDE = 256  # the ink's brightness is judged on a copy at most this large (any image size costs the same)


def flatten_alpha(img: Any) -> Any:
    """A PIL image with transparency (RGBA, LA, PA, or P/L/RGB with a transparent colour) composited onto
    an opaque background; other images as they are.

    The background contrasts with what is drawn: white under dark ink, black under light ink (the
    alpha-weighted mean brightness of the image), so a dark digit on a transparent background stays
    visible (dropping the alpha channel makes it black on black) and a white one too. Grey models
    trained on light-on-dark digits then invert a dark-on-white image as they would a scan.
    """
    from PIL import Image

    if img.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in img.info:
        return img
    rgba = img.convert("RGBA")
    small = rgba.copy()
    small.thumbnail((ALPHA_INK_SIDE, ALPHA_INK_SIDE), Image.Resampling.NEAREST)
    alpha = np.asarray(small.getchannel("A"), dtype=np.float64)
    luma = np.asarray(small.convert("L"), dtype=np.float64)
    ink = float((luma * alpha).sum() / alpha.sum()) if alpha.sum() > 0 else 0.0  # nothing drawn: white
    level = 255 if ink < 127.5 else 0
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (level, level, level, 255)), rgba).convert("RGB")


RESAMPLING = ("bilinear", "bicubic")  # the filters a resize may use (PIL's, antialiased when shrinking)


def fit_image(img: Any, size: tuple[int, int], *, crop_fraction: float | None = None,
              interpolation: str = "bilinear") -> Any:
    """A PIL image resized to ``size`` (H, W). ``crop_fraction``: first take the centred region of that
    fraction of the shorter side, with the aspect of ``size`` (ImageNet's evaluation crop: 0.875 of
    the shorter side resized to 224x224), resized in one step."""
    from PIL import Image

    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[interpolation]
    w, h = img.size
    if crop_fraction is None:
        return img if img.size == (size[1], size[0]) else img.resize((size[1], size[0]), resample)
    scale = crop_fraction * min(w / size[1], h / size[0])  # source pixels per output pixel
    cw, ch = size[1] * scale, size[0] * scale
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return img.resize((size[1], size[0]), resample, box=box)


def decode_image(path: Path, *, mode: str, size: tuple[int, int], crop_fraction: float | None = None,
                 interpolation: str = "bilinear") -> np.ndarray:
    """Decode an image fully, convert it to ``mode`` ("L" or "RGB") and resize it to ``size`` (H, W)
    (after a centre crop with ``crop_fraction``, see :func:`fit_image`).

    Transparency is composited onto a background that contrasts with the ink (:func:`flatten_alpha`).
    PIL's bilinear resize is antialiased when it shrinks. Returns uint8 (C, H, W).
    """
    from PIL import Image

    open_image(path)  # empty / non-image files get their own message
    with open_regular(path, what="image", error=DatasetError) as (f, _):
        try:
            with _strict_truncation(), open_pil_image(f, name=path, error=DatasetError) as img:
                img.load()
                img = fit_image(flatten_alpha(img).convert(mode), size, crop_fraction=crop_fraction,
                                interpolation=interpolation)
                arr = np.asarray(img, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise DatasetError(f"{path}: truncated or corrupt image ({type(err).__name__}: {err})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
