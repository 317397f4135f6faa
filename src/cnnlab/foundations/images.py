"""Reading an image and a kernel given by a user (for ``cnnlab filters`` / ``cnnlab convolve``).

Bad input is a :class:`~cnnlab.errors.CnnlabError` naming the file or the argument.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from cnnlab.errors import ConfigError, DatasetError

__all__ = ["load_image", "parse_kernel", "apply_kernel", "MAX_KERNEL"]

MAX_KERNEL = 63  # a larger kernel is almost surely a typo, and would take minutes on a photo


def load_image(path: str | os.PathLike, *, grey: bool = True, max_side: int | None = None) -> np.ndarray:
    """An image file as float64 in [0, 1]: (H, W) grey (ITU-R 601 luma) or (H, W, 3) RGB.

    ``max_side`` shrinks larger images (keeping the aspect ratio) so filtering stays quick.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("L" if grey else "RGB")
            if max_side and max(im.size) > max_side:
                scale = max_side / max(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
            return np.asarray(im, dtype=np.float64) / 255.0
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
        raise DatasetError(f"cannot read image {path}: not an image file PIL can decode ({type(err).__name__})") from None


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
