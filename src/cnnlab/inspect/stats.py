"""Filters and the numbers of "monitor your network": per layer, activation mean/std, fraction of
zeros, dead units, weight and gradient norms (lecture 001's babysitting of the learning process)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.inspect.layers import first_conv, model_device, resolve_layer

__all__ = ["filters", "LayerStats", "activation_stats", "ACTIVATIONS"]

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
    )

