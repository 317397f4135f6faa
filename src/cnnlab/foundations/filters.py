"""Hand-crafted filters as named kernels, image filtering, Gaussian and Laplacian pyramids.

Lecture 003's table (identity, three edge detectors, sharpen, box blur, Gaussian blur) is
``LECTURE_FILTERS``; the classic derivative filters (Sobel, Prewitt, Laplacian, Laplacian of
Gaussian) and a Gabor bank complete it. Filtering is cross-correlation with zero padding that keeps
the image size (the CNN convention; for the symmetric kernels of the table it equals convolution).

Pyramids (lecture 001: "multiscale representations are great"; Burt & Adelson 1983): the Gaussian
pyramid blurs with the 5-tap binomial kernel and keeps every other pixel; each Laplacian level is a
Gaussian level minus the expansion of the next, so adding the expansions back reconstructs the
image exactly (up to float rounding).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LECTURE_FILTERS",
    "CLASSIC_FILTERS",
    "gaussian_kernel",
    "log_kernel",
    "gabor_kernel",
    "gabor_bank",
    "filter_bank",
    "BANKS",
    "filter2d",
    "filter_responses",
    "gaussian_pyramid",
    "laplacian_pyramid",
    "reconstruct_laplacian",
    "pyr_down",
    "pyr_up",
]

_A = np.array

# Lecture 003, "Convolution: Hand-crafted Filters", in the table's order.
LECTURE_FILTERS: dict[str, np.ndarray] = {
    "identity": _A([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=float),
    "edge (diagonal)": _A([[1, 0, -1], [0, 0, 0], [-1, 0, 1]], dtype=float),
    "edge (4-neighbour)": _A([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=float),
    "edge (8-neighbour)": _A([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=float),
    "sharpen": _A([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=float),
    "box blur": np.ones((3, 3)) / 9.0,
    "gaussian blur": _A([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=float) / 16.0,
}


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """A normalised ``size x size`` Gaussian (sums to 1)."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return k / k.sum()


def log_kernel(size: int = 9, sigma: float = 1.4) -> np.ndarray:
    """Laplacian of Gaussian (Marr & Hildreth 1980), shifted to sum to zero so flat regions give 0."""
    r = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    q = (xx**2 + yy**2) / (2 * sigma**2)
    k = -(1.0 - q) * np.exp(-q) / (np.pi * sigma**4)
    return k - k.mean()


CLASSIC_FILTERS: dict[str, np.ndarray] = {
    "sobel x": _A([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=float),
    "sobel y": _A([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=float),
    "prewitt x": _A([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=float),
    "prewitt y": _A([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], dtype=float),
    "laplacian": _A([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=float),
    "laplacian of gaussian": log_kernel(),
}


def gabor_kernel(
    *, size: int = 15, theta: float = 0.0, wavelength: float = 6.0, sigma: float = 3.0, aspect: float = 0.5,
    phase: float = 0.0,
) -> np.ndarray:
    """A real Gabor filter: a cosine grating of ``wavelength`` pixels at angle ``theta`` under a Gaussian
    envelope (``aspect`` squeezes it along the grating); zero mean, so it ignores flat regions."""
    r = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    xr = xx * np.cos(theta) + yy * np.sin(theta)
    yr = -xx * np.sin(theta) + yy * np.cos(theta)
    k = np.exp(-(xr**2 + (aspect * yr) ** 2) / (2 * sigma**2)) * np.cos(2 * np.pi * xr / wavelength + phase)
    k -= k.mean()
    return k / np.abs(k).sum()


def gabor_bank(*, orientations: int = 4, wavelengths: tuple[float, ...] = (4.0, 8.0)) -> dict[str, np.ndarray]:
    """Gabor filters at evenly spaced orientations and a few wavelengths, like AlexNet's first layer."""
    bank = {}
    for lam in wavelengths:
        for i in range(orientations):
            theta = np.pi * i / orientations
            bank[f"gabor {round(np.degrees(theta))}deg {lam:g}px"] = gabor_kernel(
                theta=theta, wavelength=lam, sigma=0.5 * lam, size=int(2 * round(1.5 * lam) + 1)
            )
    return bank


BANKS = ("lecture", "sobel", "gabor", "all")


def filter_bank(name: str) -> dict[str, np.ndarray]:
    """``lecture`` (lecture 003's table), ``sobel`` (the derivative filters), ``gabor``, or ``all``."""
    if name == "lecture":
        return dict(LECTURE_FILTERS)
    if name == "sobel":
        return dict(CLASSIC_FILTERS)
    if name == "gabor":
        return gabor_bank()
    if name == "all":
        return {**LECTURE_FILTERS, **CLASSIC_FILTERS, **gabor_bank()}
    raise ValueError(f"unknown filter bank {name!r}; choose from {', '.join(BANKS)}")


def filter2d(image: np.ndarray, kernel: np.ndarray, *, boundary: str = "zero") -> np.ndarray:
    """Correlate a 2-D image with a 2-D kernel, output the size of the image (odd or even kernels).

    ``boundary``: ``"zero"`` padding (the CNN default), ``"reflect"`` or ``"circular"`` (wrap around;
    exactly translation-equivariant under circular shifts).
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if image.ndim != 2 or kernel.ndim != 2:
        raise ValueError(f"filter2d wants a 2-D image and kernel, got {image.shape} and {kernel.shape}")
    kh, kw = kernel.shape
    pads = ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
    mode = {"zero": "constant", "reflect": "reflect", "circular": "wrap"}[boundary]
    padded = np.pad(np.asarray(image, dtype=np.float64), pads, mode=mode)
    # one shifted copy of the image per kernel tap: the same sum as conv2d_forward's im2col, without
    # materialising kH x kW copies at once (a 63x63 kernel on a photo would need gigabytes)
    h, w = image.shape
    out = np.zeros((h, w))
    for i in range(kh):
        for j in range(kw):
            if kernel[i, j] != 0.0:
                out += kernel[i, j] * padded[i : i + h, j : j + w]
    return out


_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # Burt & Adelson's 5-tap generating kernel, a = 0.375


def _blur(image: np.ndarray, taps: np.ndarray, boundary: str) -> np.ndarray:
    if image.ndim == 3:  # colour: each channel on its own
        return np.stack([_blur(image[..., c], taps, boundary) for c in range(image.shape[-1])], axis=-1)
    # separable: rows then columns (see separable.py for why that is allowed and cheaper)
    out = filter2d(image, taps[None, :], boundary=boundary)
    return filter2d(out, taps[:, None], boundary=boundary)


def pyr_down(image: np.ndarray, *, boundary: str = "reflect") -> np.ndarray:
    """Blur with the binomial kernel, then keep every other row and column. (H, W) or (H, W, C).

    ``boundary="circular"`` makes it commute with circular shifts by two pixels (see equivariance.py).
    """
    return _blur(image, _BINOMIAL, boundary)[::2, ::2]


def pyr_up(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Insert zeros between samples up to ``shape`` and interpolate with twice the binomial kernel per axis."""
    up = np.zeros(shape)
    up[::2, ::2] = image[: (shape[0] + 1) // 2, : (shape[1] + 1) // 2]
    return _blur(up, 2.0 * _BINOMIAL, "reflect")


def gaussian_pyramid(image: np.ndarray, levels: int = 4) -> list[np.ndarray]:
    """``[G0 = image, G1, ...]``, each half the size of the previous (rounded up); (H, W) or (H, W, C).

    Stops early when a level is one pixel high or wide.
    """
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    pyramid = [np.asarray(image, dtype=np.float64)]
    for _ in range(levels - 1):
        if min(pyramid[-1].shape[:2]) < 2:
            break
        pyramid.append(pyr_down(pyramid[-1]))
    return pyramid


def laplacian_pyramid(image: np.ndarray, levels: int = 4) -> list[np.ndarray]:
    """``[L0, ..., L_{n-2}, G_{n-1}]`` with ``L_i = G_i - expand(G_{i+1})``: band-pass levels and the coarse residual."""
    gauss = gaussian_pyramid(image, levels)
    bands = [g - pyr_up(g_next, g.shape) for g, g_next in zip(gauss[:-1], gauss[1:])]
    return bands + [gauss[-1]]


def reconstruct_laplacian(pyramid: list[np.ndarray]) -> np.ndarray:
    """Collapse a Laplacian pyramid: ``G_i = L_i + expand(G_{i+1})`` from the coarsest level up."""
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = band + pyr_up(image, band.shape)
    return image


def filter_responses(
    image: np.ndarray, bank: str = "lecture", *, boundary: str = "reflect"
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(kernels, responses)`` of a grey (H, W) image to every filter of ``bank`` (see :func:`filter_bank`).

    Reflected borders by default, so that the large kernels (LoG, Gabor) do not draw a frame of
    zero-padding edges around the picture.
    """
    kernels = filter_bank(bank)
    return kernels, {name: filter2d(image, k, boundary=boundary) for name, k in kernels.items()}
