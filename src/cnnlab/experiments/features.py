"""Reading what a frozen network holds: stage features, linear probes, image transformations.

Stages are addressed by the names in ``model.feature_info`` (timm-style ``{"module", "num_chs",
"reduction"}``, :func:`cnnlab.inspect.layers.stage_names`), so the same code probes every model of
the zoo; :func:`cnnlab.inspect.layers.capture` records their outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.inspect.layers import capture, model_device  # the hooks and stage names live in inspect

__all__ = [
    "extract_features",
    "LinearProbe",
    "fit_linear_probe",
    "probe_accuracy",
    "TRANSFORMS",
    "transform_batch",
    "background_fill",
]


@torch.no_grad()
def extract_features(
    model: nn.Module,
    x: Tensor,
    names: Sequence[str],
    *,
    pool: str = "avg",
    batch_size: int = 256,
) -> dict[str, Tensor]:
    """Features of ``x`` at each named module, fp32 on CPU: ``(N, C)`` when ``pool="avg"``
    (global average over space), ``(N, C*H*W)`` when ``pool="none"``."""
    if pool not in ("avg", "none"):
        raise ValueError(f"pool must be 'avg' or 'none', got {pool!r}")
    model.eval()
    device = model_device(model)
    chunks: dict[str, list[Tensor]] = {n: [] for n in names}
    with capture(model, names) as store:
        for start in range(0, len(x), batch_size):
            model(x[start : start + batch_size].to(device))
            for n in names:
                f = store[n].float()
                if pool == "avg" and f.dim() == 4:
                    f = f.mean(dim=(2, 3))  # N x C
                chunks[n].append(f.flatten(1).cpu())
    return {n: torch.cat(c) for n, c in chunks.items()}


class LinearProbe(nn.Module):
    """Standardisation (train mean/std, frozen) followed by a linear layer."""

    def __init__(self, mean: Tensor, std: Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(mean.numel(), num_classes)

    def forward(self, f: Tensor) -> Tensor:
        return self.linear((f - self.mean) / self.std)


def fit_linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    *,
    num_classes: int,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> LinearProbe:
    """Multinomial logistic regression on frozen features, fitted to convergence with L-BFGS.

    Minimises ``mean cross-entropy + l2/2 * ||W||^2`` (bias not penalised) on standardised features,
    which equals scikit-learn's ``LogisticRegression(C=1/(l2*N))``. Full-batch and deterministic:
    a probe measures what the features hold, not how well SGD was tuned.
    """
    x = train_x.double()
    mean = x.mean(0)
    std = x.std(0).clamp_min(1e-6)  # constant features (dead ReLUs) would divide by zero
    probe = LinearProbe(mean, std, num_classes).double()
    nn.init.zeros_(probe.linear.weight)
    nn.init.zeros_(probe.linear.bias)
    z = (x - mean) / std
    opt = torch.optim.LBFGS(
        probe.linear.parameters(), lr=1, max_iter=max_iter, history_size=20,
        tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(probe.linear(z), train_y) + 0.5 * l2 * probe.linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return probe.float().eval()


def probe_accuracy(probe: LinearProbe, x: Tensor, y: Tensor) -> float:
    """Fraction of ``(x, y)`` the probe classifies correctly."""
    with torch.no_grad():
        return (probe(x.float()).argmax(1) == y).float().mean().item()


# ---------------------------------------------------------------------------------------------
# Transformations of Zeiler & Fergus 2014, Fig. 5: vertical translation, scale, rotation
# ---------------------------------------------------------------------------------------------

# name -> (unit, identity magnitude)
TRANSFORMS: dict[str, tuple[str, float]] = {
    "translation": ("pixels, vertical", 0.0),
    "scale": ("factor", 1.0),
    "rotation": ("degrees", 0.0),
}


def background_fill(mean: Sequence[float], std: Sequence[float]) -> list[float]:
    """The normalised value of a black pixel, per channel: what uncovered borders are filled with
    (as torchvision's RandomAffine fills with black before normalisation)."""
    return [(0.0 - m) / s for m, s in zip(mean, std)]


def transform_batch(x: Tensor, kind: str, magnitude: float, *, fill: Sequence[float]) -> Tensor:
    """``x`` (N, C, H, W, normalised) translated vertically by ``magnitude`` pixels, scaled by a
    factor ``magnitude`` about the centre, or rotated by ``magnitude`` degrees; borders get ``fill``."""
    import torchvision.transforms.v2.functional as TF

    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transformation {kind!r}; choose from {', '.join(TRANSFORMS)}")
    if kind == "translation":
        # Whole-pixel shifts are exact with nearest interpolation (no blurring of the digit).
        return TF.affine(x, angle=0.0, translate=[0, int(round(magnitude))], scale=1.0, shear=[0.0, 0.0],
                         interpolation=TF.InterpolationMode.NEAREST, fill=list(fill))
    if kind == "scale":
        if magnitude <= 0:
            raise ValueError(f"scale factor must be positive, got {magnitude}")
        return TF.affine(x, angle=0.0, translate=[0, 0], scale=float(magnitude), shear=[0.0, 0.0],
                         interpolation=TF.InterpolationMode.BILINEAR, fill=list(fill))
    return TF.affine(x, angle=float(magnitude), translate=[0, 0], scale=1.0, shear=[0.0, 0.0],
                     interpolation=TF.InterpolationMode.BILINEAR, fill=list(fill))
