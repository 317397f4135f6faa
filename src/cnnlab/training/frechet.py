"""The Fréchet distance between two Gaussians, and the feature statistics it is computed from.

Heusel et al. 2017 (the "FID") compare generated and real images by the Fréchet (2-Wasserstein)
distance between Gaussians fitted to a network's features of each set:

    d^2 = |mu_1 - mu_2|^2 + tr(C_1 + C_2 - 2 (C_1 C_2)^{1/2})

cnnlab computes it on the features of a cnnlab classifier trained on the same data (see
:mod:`cnnlab.training.gan`), not on Inception-v3's: the numbers are comparable between runs judged
by the same classifier only, never with published FIDs.

The features enter as sums (count, sum of f, sum of f f^T, in float64), so that batches and DDP
ranks add up exactly; :func:`gaussian_from_sums` turns them into a mean and covariance.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from cnnlab.errors import ConfigError

__all__ = ["frechet_distance", "feature_sums", "gaussian_from_sums", "trace_sqrt_product"]


def feature_sums(features: Tensor) -> Tensor:
    """[n, sum f (d), sum f f^T (d*d, row-major)] of ``features`` (n, d), float64."""
    f = features.detach().double().flatten(1)
    n = torch.tensor([float(f.shape[0])], dtype=torch.float64, device=f.device)
    return torch.cat([n, f.sum(0), (f.T @ f).flatten()])


def gaussian_from_sums(sums: Tensor | np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean, unbiased covariance, n) from :func:`feature_sums` vectors added up."""
    s = np.asarray(torch.as_tensor(sums).detach().cpu().double().numpy() if isinstance(sums, Tensor) else sums,
                   dtype=np.float64)
    if s.shape != (1 + dim + dim * dim,):
        raise ConfigError(f"feature sums of {dim}-d features have {1 + dim + dim * dim} entries, got {s.shape}")
    n = int(round(s[0]))
    if n < 2:
        raise ConfigError(f"a covariance needs at least 2 feature vectors, got {n}")
    mean = s[1 : 1 + dim] / n
    cov = (s[1 + dim :].reshape(dim, dim) - n * np.outer(mean, mean)) / (n - 1)
    return mean, (cov + cov.T) / 2, n


def trace_sqrt_product(c1: np.ndarray, c2: np.ndarray) -> float:
    """tr((C_1 C_2)^{1/2}) for symmetric positive semi-definite C_1, C_2.

    C_1 C_2 is similar to the symmetric PSD matrix C_1^{1/2} C_2 C_1^{1/2} (same eigenvalues, all
    >= 0), so the trace of its square root is the sum of the square roots of that matrix's
    eigenvalues: two symmetric eigendecompositions, real arithmetic throughout (no complex sqrtm
    residue to discard). Eigenvalues below zero by rounding are clipped to 0.
    """
    w1, v1 = np.linalg.eigh(c1)
    root1 = (v1 * np.sqrt(np.clip(w1, 0.0, None))) @ v1.T
    m = root1 @ c2 @ root1
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """|mu_1 - mu_2|^2 + tr(C_1) + tr(C_2) - 2 tr((C_1 C_2)^{1/2}), the squared Fréchet distance between
    N(mu_1, C_1) and N(mu_2, C_2) (what FID reports), >= 0."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    cov1, cov2 = np.asarray(cov1, dtype=np.float64), np.asarray(cov2, dtype=np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ConfigError(f"frechet_distance: means of shape (d,) and covariances (d, d), got {mu1.shape}, "
                          f"{cov1.shape}, {mu2.shape}, {cov2.shape}")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt_product(cov1, cov2))
    return max(value, 0.0)
