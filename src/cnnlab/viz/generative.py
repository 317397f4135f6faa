"""Pictures of autoencoders and VAEs, drawn from the arrays a generative run saves (``generative.npz``,
see ``cnnlab.training.generative.generative_arrays``): images are (N, C, H, W) pixels in [0, 1].

- ``reconstructions.png``: test images (top) and their reconstructions (below); a denoising
  autoencoder adds its corrupted inputs and what it made of them;
- ``samples.png``: a grid of decoded draws from the prior;
- ``interpolation.png``: decoded points on the line between two test digits' posterior means;
- ``latent.png`` (2-d latent): the test set's posterior means coloured by class, beside the decoded
  latent grid (the "manifold", Kingma & Welling 2014 Fig. 4);
- for a GAN (``cnnlab.training.gan``): ``samples.png``, ``interpolation.png`` (rows of images
  generated along lines between two draws of z) and, when conditional, ``classes.png`` (a row per class).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from cnnlab import atomic

__all__ = ["tile", "save_grid", "draw_generative"]

_DPI = 110


def tile(images: np.ndarray, *, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one (rows*H, cols*W[, 3]) mosaic with ``pad`` white pixels between."""
    images = np.asarray(images, dtype=np.float32)
    n, c, h, w = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    out = np.ones((nrow * (h + pad) - pad, ncol * (w + pad) - pad, c), dtype=np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, ncol)
        out[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = img.transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


def _show(ax, mosaic: np.ndarray, title: str | None = None) -> None:
    ax.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    return atomic.save_figure(fig, path, dpi=_DPI)


def save_grid(images: np.ndarray, path: str | Path, *, title: str = "", ncol: int | None = None) -> Path:
    """A grid of images as one PNG (``cnnlab sample``'s output)."""
    mosaic = tile(images, ncol=ncol)
    scale = 6.0 / max(mosaic.shape)
    fig = Figure(figsize=(max(3.0, mosaic.shape[1] * scale), max(3.0, mosaic.shape[0] * scale) + 0.4))
    _show(fig.add_subplot(1, 1, 1), mosaic, title)
    return _save(fig, Path(path))


def _reconstructions(arrays: Mapping[str, np.ndarray], path: Path, title: str) -> Path:
    rows = [("test images", "inputs"), ("reconstructions", "reconstructions")]
    if "noisy" in arrays:
        rows += [("corrupted inputs", "noisy"), ("their reconstructions", "denoised")]
    n = len(arrays["inputs"])
    fig = Figure(figsize=(1.0 * n + 1.2, 1.15 * len(rows) + 0.5))
    for r, (label, key) in enumerate(rows):
        ax = fig.add_subplot(len(rows), 1, r + 1)
        _show(ax, tile(arrays[key], ncol=n))
        ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(f"{title}: reconstructions of unseen test images", fontsize=10)
    return _save(fig, path)


def _latent(arrays: Mapping[str, np.ndarray], path: Path, title: str, class_names: Sequence[str]) -> Path:
    fig = Figure(figsize=(12.5, 6.0))
    ax = fig.add_subplot(1, 2, 1)
    mu, y = arrays["latent_mu"], arrays["latent_y"]
    cmap = matplotlib.colormaps["tab10"]
    for k in np.unique(y):
        sel = y == k
        name = class_names[int(k)] if int(k) < len(class_names) else str(k)
        ax.scatter(mu[sel, 0], mu[sel, 1], s=6, alpha=0.7, color=cmap(int(k) % 10), label=name)
    ax.set(xlabel="z1 (posterior mean)", ylabel="z2", title="test images' posterior means, by class")
    ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2)
    ax.grid(alpha=0.3)
    q = arrays["manifold_z"]
    ax2 = fig.add_subplot(1, 2, 2)
    grid = len(q)
    _show(ax2, tile(arrays["manifold"], ncol=grid, pad=0), "decoded latent grid (z at N(0,1) quantiles)")
    h = arrays["manifold"].shape[-2]
    ticks = [0, grid // 2, grid - 1]
    ax2.set_xticks([(t + 0.5) * h for t in ticks], [f"{q[t]:.1f}" for t in ticks], fontsize=8)
    ax2.set_yticks([(t + 0.5) * h for t in ticks], [f"{q[::-1][t]:.1f}" for t in ticks], fontsize=8)
    ax2.set(xlabel="z1", ylabel="z2")
    fig.suptitle(f"{title}: the 2-d latent space", fontsize=10)
    return _save(fig, path)


def draw_generative(arrays: Mapping[str, np.ndarray], out_dir: str | Path, *, title: str = "",
                    class_names: Sequence[str] = ()) -> list[Path]:
    """Every picture the arrays allow, written into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    paths = [_reconstructions(arrays, out / "reconstructions.png", title)] if "inputs" in arrays else []
    if "samples" in arrays:
        what = "generated from z ~ N(0, I)" if "latent_walk" in arrays else "samples from the prior"
        paths.append(save_grid(arrays["samples"], out / "samples.png", title=f"{title}: {what}"))
    if "latent_walk" in arrays:  # a GAN: rows of G((1 - t) z_a + t z_b)
        steps = int(arrays["latent_walk_steps"])
        paths.append(save_grid(arrays["latent_walk"], out / "interpolation.png", ncol=steps,
                               title=f"{title}: each row G((1-t) z_a + t z_b), t = 0 ... 1"))
    if "class_rows" in arrays:  # a conditional GAN: one row per class
        k = len(arrays["class_rows"]) // 10
        names = ", ".join(list(class_names)[:k]) if class_names else f"{k} classes"
        paths.append(save_grid(arrays["class_rows"], out / "classes.png", ncol=10,
                               title=f"{title}: one row per class ({names})"))
    if "interpolation" in arrays:
        ends, mid = arrays["interpolation_ends"], arrays["interpolation"]
        row = np.concatenate([ends[:1], mid, ends[1:2]])
        fig = Figure(figsize=(0.9 * len(row) + 0.5, 1.8))
        _show(fig.add_subplot(1, 1, 1), tile(row, ncol=len(row)),
              "test digit A | decoded (1-t) mu_A + t mu_B, t = 0 ... 1 | test digit B")
        paths.append(_save(fig, out / "interpolation.png"))
    if "latent_mu" in arrays:
        paths.append(_latent(arrays, out / "latent.png", title, class_names))
    return paths
