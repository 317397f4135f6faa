"""Filters and the numbers of "monitor your network": per layer, activation mean/std, fraction of
zeros, dead units, weight and gradient norms (lecture 001's babysitting of the learning process),
and the correlation of hidden units and of filters (lecture 001's debugging advice: "hidden
activations should be uncorrelated and high variance"; bad training shows "strong correlations",
good training "learned filters [that] exhibit structure and are uncorrelated")."""

from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.inspect.layers import first_conv, model_device, resolve_layer

__all__ = ["filters", "LayerStats", "activation_stats", "mean_abs_correlation", "ACTIVATIONS"]

MAX_CORR_ROWS = 512  # units (filters) compared per layer: an evenly spaced subset beyond this
MAX_CORR_SAMPLES = 65536  # observations (images x positions) per unit: an evenly spaced subset beyond this

# Modules whose output is an activation (a unit there is "dead" when it is never positive).
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
_ACTIVATION_NAMES = ("ReLU", "Tanh", "Sigmoid", "GELU", "SiLU", "ELU")  # the zoo's own (LeNet's ScaledTanh)


def _measured(module: nn.Module) -> bool:
    """A layer of the table: a leaf with a weight matrix/kernel, or an activation function."""
    if isinstance(module, ACTIVATIONS) or type(module).__name__.endswith(_ACTIVATION_NAMES):
        return True
    weight = getattr(module, "weight", None)
    return isinstance(weight, Tensor) and weight.ndim >= 2 and not any(True for _ in module.children())


def filters(model: nn.Module, *, layer: str | None = None) -> np.ndarray:
    """The kernels of a convolution as an array (out_channels, in_channels/groups, kh, kw).

    ``layer`` defaults to the first ``nn.Conv2d``; any other named layer must be one.
    """
    name = layer if layer is not None else first_conv(model)
    module = resolve_layer(model, name)
    if not isinstance(module, nn.Conv2d):
        raise ConfigError(f"--layer {name!r} is a {type(module).__name__}, not a Conv2d: it has no filters to show")
    return module.weight.detach().float().cpu().numpy()


@dataclass(frozen=True)
class LayerStats:
    """One layer's numbers on a batch. ``weight_norm``/``grad_norm`` (L2, the weight tensor only) are
    None for layers without weights; ``dead`` counts channels (units) never > 0 on the batch."""

    name: str
    type: str
    units: int  # channels (conv, activation maps) or features (linear)
    mean: float
    std: float
    frac_zero: float  # fraction of exact zeros in the output
    dead: int
    weight_norm: float | None
    grad_norm: float | None
    unit_corr: float | None = None  # mean |r| between the units' outputs over images (and positions)
    filter_corr: float | None = None  # mean |r| between the layer's filters (flattened weight rows)
    saturated: float | None = None  # a bounded activation (tanh, sigmoid, ReLU6): fraction of outputs at a bound


# An output within this fraction of the activation's range from either bound is "saturated": its
# gradient is nearly zero (tanh'(x) < 0.04 there), the problem of sigmoid and tanh nets (lecture 002).
SATURATION_MARGIN = 0.02


def _bounds(module: nn.Module) -> tuple[float, float] | None:
    """``(low, high)`` of an element-wise activation with a bounded range (tanh, sigmoid, LeNet's
    scaled tanh, ReLU6), read off its outputs at +-1e4; None for other layers and unbounded ones."""
    if not (isinstance(module, ACTIVATIONS) or type(module).__name__.endswith(_ACTIVATION_NAMES)):
        return None
    try:
        with torch.no_grad():
            lo, hi = (float(v) for v in module(torch.tensor([-1e4, 1e4])))
    except (RuntimeError, TypeError, ValueError):
        return None
    if not (math.isfinite(lo) and math.isfinite(hi)) or max(abs(lo), abs(hi)) > 1e3 or hi <= lo:
        return None
    return lo, hi


def _saturated(module: nn.Module, out: Tensor) -> float | None:
    bounds = _bounds(module)
    if bounds is None:
        return None
    lo, hi = bounds
    margin = SATURATION_MARGIN * (hi - lo)
    return float(((out <= lo + margin) | (out >= hi - margin)).float().mean())


def _spread(n: int, cap: int, device: torch.device) -> Tensor:
    """Indices 0..n-1, or ``cap`` of them evenly spaced when n > cap."""
    return torch.linspace(0, n - 1, cap, device=device).round().long() if n > cap else torch.arange(n, device=device)


def mean_abs_correlation(rows: Tensor, *, max_rows: int = MAX_CORR_ROWS,
                         max_samples: int = MAX_CORR_SAMPLES) -> float | None:
    """The mean ``|r|`` (Pearson) over all pairs of distinct rows of ``rows`` (variables x observations).

    Rows that do not vary (a dead unit, an all-zero filter) have no correlation and are left out;
    None when fewer than two rows vary. Beyond ``max_rows`` rows or ``max_samples`` columns an evenly
    spaced subset is used. Identical rows give 1; independent random rows of n values about
    ``sqrt(2 / (pi n))``.
    """
    x = rows.detach().reshape(rows.shape[0], -1)
    x = x[_spread(x.shape[0], max_rows, x.device)][:, _spread(x.shape[1], max_samples, x.device)].double()
    if x.shape[1] < 2:
        return None
    x = x - x.mean(1, keepdim=True)
    norm = x.norm(dim=1)
    x = x[norm > 1e-12 * max(float(norm.max()), 1e-300)]
    if x.shape[0] < 2:
        return None
    x = x / x.norm(dim=1, keepdim=True)
    r = (x @ x.T).abs()
    k = x.shape[0]
    return float((r.sum() - r.diagonal().sum()) / (k * (k - 1)))


def activation_stats(model: nn.Module, x: Tensor, y: Tensor | None = None) -> list[LayerStats]:
    """Stats of the output of every weight layer (conv, linear) and activation module on the batch ``x``.

    Gradient norms come from one backward of the cross-entropy against ``y`` (default: the model's
    own predictions), with the model in eval mode; nothing is updated and the gradients are cleared.
    """
    names = [n for n, m in model.named_modules() if n and _measured(m)]
    if not names:
        raise ConfigError(f"{type(model).__name__} has no Conv2d, Linear or activation module to measure")
    was_training = model.training
    model.eval()
    device = model_device(model)
    x = x.to(device)
    acc: dict[str, list[Tensor]] = {}

    def hook_for(name: str):
        def hook(_m: nn.Module, _args: tuple, out: Tensor) -> None:
            acc.setdefault(name, []).append(out.detach().float())

        return hook

    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(hook_for(n)) for n in names]
    saved = [(p, p.grad) for p in model.parameters()]
    try:
        for p in model.parameters():
            p.grad = None
        logits = model(x)
        target = logits.argmax(1) if y is None else y.to(device)
        F.cross_entropy(logits, target).backward()
        rows = [_row(n, modules[n], acc[n]) for n in names if n in acc]
    finally:
        for h in handles:
            h.remove()
        for p, g in saved:
            p.grad = g
        model.train(was_training)
    return rows


def _row(name: str, module: nn.Module, outs: list[Tensor]) -> LayerStats:
    out = outs[-1]  # a module called twice: its last call
    per_unit = out.transpose(0, 1).reshape(out.shape[1], -1) if out.ndim >= 2 else out.reshape(1, -1)
    weight = getattr(module, "weight", None)
    has_w = isinstance(weight, Tensor) and weight.ndim >= 2
    return LayerStats(
        name=name,
        type=type(module).__name__,
        units=int(per_unit.shape[0]),
        mean=float(out.mean()),
        std=float(out.std()) if out.numel() > 1 else 0.0,
        frac_zero=float((out == 0).float().mean()),
        dead=int((per_unit.amax(1) <= 0).sum()),
        weight_norm=float(weight.detach().norm()) if has_w else None,
        grad_norm=float(weight.grad.norm()) if has_w and weight.grad is not None else None,
        unit_corr=mean_abs_correlation(per_unit) if per_unit.shape[0] > 1 else None,
        filter_corr=mean_abs_correlation(weight.reshape(weight.shape[0], -1)) if has_w else None,
        saturated=_saturated(module, out),
    )

