"""How alike two pixels of a photograph are as a function of their distance (lecture 001's quiz "which
is higher: correlation between points with distance ΔA or ΔB?", and its answer: "statistical
dependences between pixels decay as a power law of distance [...] it is therefore often sufficient to
model local dependences only -> convolution").

:func:`pixel_correlation` measures Pearson's correlation of the grey values of all pixel pairs ``d``
pixels apart (horizontal and vertical pairs pooled); :func:`fit_power_law` fits ``y = a d^b`` by least
squares on ``log y`` against ``log d``. Two curves are fitted: the correlation itself, and
``1 - correlation`` (half the variance-normalised mean squared difference of the pair, the "structure
function" of image statistics, which the scale invariance of natural images makes a power law of
distance: Ruderman & Bialek, "Statistics of natural images: scaling in the woods", PRL 1994).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PowerLaw", "pixel_correlation", "fit_power_law", "log_distances", "DEFAULT_PHOTOS"]

# scikit-image's photographs of scenes and objects (its textures, brick, grass and gravel, left out:
# they are not what "real photographs" means in the quiz).
DEFAULT_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "moon", "rocket")


@dataclass(frozen=True)
class PowerLaw:
    """``y = a d^exponent``, fitted in log-log; ``r2`` is the fit's R^2 on ``log y``."""

    a: float
    exponent: float
    r2: float

    def __call__(self, d: np.ndarray) -> np.ndarray:
        return self.a * np.asarray(d, dtype=float) ** self.exponent


def log_distances(max_distance: int, count: int = 14) -> np.ndarray:
    """About ``count`` integer distances from 1 to ``max_distance``, evenly spaced in log (duplicates dropped)."""
    if max_distance < 2:
        raise ValueError(f"max_distance must be at least 2, got {max_distance}")
    return np.unique(np.round(np.geomspace(1, max_distance, count)).astype(int))


def pixel_correlation(image: np.ndarray, distances: Sequence[int]) -> np.ndarray:
    """Pearson's r between the values of pixel pairs ``d`` apart, for each ``d`` in ``distances``.

    ``image`` is (H, W) grey; pairs run along rows and along columns (both pooled). A distance at
    least the image's shorter side, or a flat image, has no pairs that vary and raises ValueError.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"pixel_correlation takes a grey (H, W) image, got shape {img.shape}")
    out = []
    for d in distances:
        d = int(d)
        if not 1 <= d < min(img.shape):
            raise ValueError(f"distance {d} must be in 1..{min(img.shape) - 1} for a "
                             f"{img.shape[0]}x{img.shape[1]} image")
        a = np.concatenate([img[:, :-d].ravel(), img[:-d, :].ravel()])
        b = np.concatenate([img[:, d:].ravel(), img[d:, :].ravel()])
        a, b = a - a.mean(), b - b.mean()
        denom = np.sqrt((a * a).sum() * (b * b).sum())
        if denom == 0:
            raise ValueError("the image is flat: its pixels have no correlation")
        out.append(float((a * b).sum() / denom))
    return np.array(out)


def fit_power_law(d: Sequence[float], y: Sequence[float]) -> PowerLaw:
    """Least squares of ``log y = log a + b log d`` over the points with ``y > 0`` (at least two)."""
    d, y = np.asarray(d, dtype=float), np.asarray(y, dtype=float)
    keep = (y > 0) & (d > 0)
    if keep.sum() < 2:
        raise ValueError("a power law needs at least two points with positive values")
    ld, ly = np.log(d[keep]), np.log(y[keep])
    b, log_a = np.polyfit(ld, ly, 1)
    resid = ly - (log_a + b * ld)
    total = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - (resid**2).sum() / total if total > 0 else 1.0
    return PowerLaw(a=float(np.exp(log_a)), exponent=float(b), r2=float(r2))
