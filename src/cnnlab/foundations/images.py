"""Reading an image and a kernel given by a user (for ``cnnlab filters`` / ``convolve`` / ``pyramid``).

An image is a file (any format PIL reads) or ``skimage:NAME``, one of the photographs that
scikit-image ships inside its package (:data:`PHOTOS`; nothing is downloaded).
Bad input is a :class:`~cnnlab.errors.CnnlabError` naming the file or the argument.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError, ConfigError, DatasetError, UnknownNameError, did_you_mean
from cnnlab.safeio import open_pil_image

__all__ = ["load_image", "open_photo", "image_stem", "parse_kernel", "apply_kernel", "MAX_KERNEL", "PHOTOS", "SKIMAGE_PREFIX"]

MAX_KERNEL = 63  # a larger kernel is almost surely a typo, and would take minutes on a photo

SKIMAGE_PREFIX = "skimage:"

# The photographs in scikit-image's wheel, by the name of their loader in `skimage.data` (its own
# descriptions, height x width). Its drawings, synthetic images and masks are left out.
PHOTOS: dict[str, str] = {
    "astronaut": "the astronaut Eileen Collins, 512x512 colour",
    "brick": "a brick wall, 512x512 grey",
    "camera": "the cameraman, 512x512 grey",
    "chelsea": "Chelsea the cat, 300x451 colour",
    "coffee": "a coffee cup, 400x600 colour",
    "coins": "Greek coins from Pompeii, 303x384 grey",
    "grass": "grass, 512x512 grey",
    "gravel": "gravel, 512x512 grey",
    "hubble_deep_field": "the Hubble eXtreme Deep Field, 872x1000 colour",
    "immunohistochemistry": "immunohistochemical staining, 512x512 colour",
    "moon": "the surface of the moon, 512x512 grey",
    "page": "a scanned page, 191x384 grey",
    "retina": "a human retina, 1411x1411 colour",
    "rocket": "DSCOVR's launch on a Falcon 9, 427x640 colour",
    "text": "photographed text, 172x448 grey",
}


def _photo(source: str):
    """``skimage:NAME`` as a PIL image."""
    from PIL import Image

    name = source[len(SKIMAGE_PREFIX):]
    if name not in PHOTOS:
        hint = did_you_mean(name, list(PHOTOS), n=3, prefix=SKIMAGE_PREFIX)
        raise UnknownNameError(f"unknown photograph {source!r}{hint} (scikit-image's photographs: "
                               f"{', '.join(PHOTOS)})")
    try:
        import skimage.data
    except ImportError:
        raise DatasetError(f"{source} needs scikit-image, which is not installed: pip install scikit-image") from None
    try:
        pixels = getattr(skimage.data, name)()
    except Exception as err:  # a scikit-image whose photograph must be downloaded, or has gone
        raise DatasetError(f"cannot load {source} from scikit-image {skimage.__version__}: "
                           f"{type(err).__name__}: {err}".splitlines()[0]) from None
    return Image.fromarray(np.asarray(pixels, dtype=np.uint8))


def open_photo(source: str):
    """``skimage:NAME`` (one of :data:`PHOTOS`) as a PIL image; UnknownNameError naming the closest."""
    return _photo(source)


def image_stem(source: str | os.PathLike) -> str:
    """The name to derive output file names from: ``chelsea`` for ``skimage:chelsea``, else the file's stem."""
    text = os.fspath(source)
    return text[len(SKIMAGE_PREFIX):] if text.startswith(SKIMAGE_PREFIX) else Path(text).stem


def load_image(source: str | os.PathLike, *, grey: bool = True, max_side: int | None = None,
               refuse_side: int | None = None) -> np.ndarray:
    """An image file or ``skimage:NAME`` as float64 in [0, 1]: (H, W) grey (ITU-R 601 luma) or (H, W, 3) RGB.

    ``max_side`` shrinks larger images (keeping the aspect ratio) so filtering stays quick;
    ``refuse_side`` refuses them instead (ConfigError naming the size), read from the header before
    any pixel is decoded: a small PNG can hold a 13000x13000 image, gigabytes once decoded.
    """
    from PIL import UnidentifiedImageError

    from cnnlab.safeio import describe_path

    if isinstance(source, str) and source.startswith(SKIMAGE_PREFIX):
        im = _photo(source)
        _check_side(source, im.size, refuse_side)
        return _to_array(im, grey=grey, max_side=max_side)
    path = Path(source)
    if not path.is_file():
        raise DatasetError(f"image {path} {describe_path(path)}; give an image file")
    try:
        with open_pil_image(path, name=path, error=DatasetError) as im:
            _check_side(path, im.size, refuse_side)
            im.load()
            return _to_array(im, grey=grey, max_side=max_side)
    except CnnlabError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DatasetError(f"cannot read image {path}: not an image file PIL can decode ({type(err).__name__})") from None


def _check_side(source, size: tuple[int, int], refuse_side: int | None) -> None:
    from cnnlab.limits import MAX_IMAGE_SIDE

    if refuse_side is not None and max(size) > refuse_side:
        hint = (f"shrink it to at most {refuse_side} pixels a side first" if refuse_side >= MAX_IMAGE_SIDE else
                f"shrink it, or give a larger --max-side (at most {MAX_IMAGE_SIDE})")
        raise ConfigError(f"image {source} is {size[0]}x{size[1]} pixels, more than --max-side {refuse_side}; {hint}")


def _to_array(im, *, grey: bool, max_side: int | None) -> np.ndarray:
    from PIL import Image

    im = im.convert("L" if grey else "RGB")
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    return np.asarray(im, dtype=np.float64) / 255.0


def parse_kernel(text: str, *, flag: str = "--kernel") -> np.ndarray:
    """A kernel written as a JSON list of rows, e.g. ``[[0,-1,0],[-1,5,-1],[0,-1,0]]``."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"bad {flag} {text!r}: not a JSON list of rows ({err.msg}); "
                          f"expected e.g. '[[0,-1,0],[-1,5,-1],[0,-1,0]]'") from None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) and r for r in rows):
        raise ConfigError(f"bad {flag} {text!r}: expected a non-empty list of non-empty rows, e.g. '[[1,2,1]]'")
    if len({len(r) for r in rows}) != 1:
        raise ConfigError(f"bad {flag} {text!r}: rows have different lengths {[len(r) for r in rows]}")
    values = [v for r in rows for v in r]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ConfigError(f"bad {flag} {text!r}: every entry must be a finite number")
    kernel = np.array(rows, dtype=np.float64)
    if max(kernel.shape) > MAX_KERNEL:
        raise ConfigError(f"bad {flag}: {kernel.shape[0]}x{kernel.shape[1]} is larger than {MAX_KERNEL}x{MAX_KERNEL}")
    return kernel


def apply_kernel(image: np.ndarray, kernel: np.ndarray, *, boundary: str = "zero") -> np.ndarray:
    """Filter a grey (H, W) or colour (H, W, 3) image with a 2-D kernel, channel by channel; same size."""
    from cnnlab.foundations.filters import filter2d

    if image.ndim == 2:
        return filter2d(image, kernel, boundary=boundary)
    return np.stack([filter2d(image[..., c], kernel, boundary=boundary) for c in range(image.shape[-1])], axis=-1)
