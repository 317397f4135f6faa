"""Effective receptive field: Luo, Li, Urtasun & Zemel, "Understanding the Effective Receptive Field
in Deep Convolutional Neural Networks", NIPS 2016.

The gradient of the central unit of a feature map with respect to the input image, in absolute
value, summed over channels and averaged over random inputs. Unlike the theoretical field it needs
real weights (the zoo's initialisation, or loaded ones) and real forward/backward passes, on the CPU.
Luo et al. find it roughly Gaussian and much smaller than the theoretical field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.analysis.core import analyze, load_model, resolve_input_size
from cnnlab.errors import ConfigError

__all__ = ["ERFResult", "effective_receptive_field"]


class _Stop(Exception):
    """Raised by the hook once the target feature map is computed: the rest of the net is not needed."""


@dataclass(frozen=True)
class ERFResult:
    grid: np.ndarray  # (H, W) mean |d unit / d input|, normalised to max 1
    model: str
    layer: str  # the feature map whose central unit is differentiated
    unit: tuple[int, int]  # its (row, column)
    feature_shape: tuple[int, ...]  # (C, H', W')
    theoretical: tuple[tuple[int, int], tuple[int, int]]  # pixel rows [a, b) and columns [c, d), unclipped
    rf: tuple[float, float]  # theoretical receptive field (H, W)
    mass95_pixels: int  # fewest pixels holding 95% of the gradient mass
    samples: int

    @property
    def mass95_fraction(self) -> float:
        """Those pixels as a fraction of the theoretical field clipped to the image."""
        (a, b), (c, d) = self.theoretical
        h, w = self.grid.shape
        area = max(0, min(b, h) - max(a, 0)) * max(0, min(d, w) - max(c, 0))
        return self.mass95_pixels / area if area else float("nan")

    def to_dict(self) -> dict:
        return dict(model=self.model, layer=self.layer, unit=list(self.unit), feature_shape=list(self.feature_shape),
                    theoretical=[list(self.theoretical[0]), list(self.theoretical[1])], rf=list(self.rf),
                    mass95_pixels=self.mass95_pixels, mass95_fraction=self.mass95_fraction, samples=self.samples)


def effective_receptive_field(
    model_or_name: nn.Module | str,
    input_size: tuple[int, int, int] | None = None,
    *,
    layer: str | None = None,
    samples: int = 16,
    batch_size: int = 8,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
) -> ERFResult:
    """The effective receptive field of the central unit of ``layer``'s output.

    ``layer`` is a row name of :func:`cnnlab.analyze` (a module name, ``":k"`` for its k-th call);
    default: the last layer whose output still has a spatial extent. A name is built on the CPU
    with the zoo's random initialisation (seeded by ``seed``); inputs are standard normal.
    """
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples must be a positive integer, got {samples!r}")
    plan = analyze(model_or_name, input_size, config=config)
    row = _pick_layer(plan, layer)
    module_name, _, call = row.name.partition(":")
    call_index = int(call) if call else 1

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if isinstance(model_or_name, nn.Module):
            model = model_or_name
        else:
            model = load_model(model_or_name, device="cpu", config=config).model
        size = resolve_input_size(input_size, None if isinstance(model_or_name, nn.Module) else plan.input_size)
        target = dict(model.named_modules())[module_name] if module_name in dict(model.named_modules()) else model
        grid, out_shape = _central_unit_gradients(model, target, call_index, size, samples=samples,
                                                  batch_size=batch_size)
    ch, cw = out_shape[-2] // 2, out_shape[-1] // 2
    grid = (grid / samples).numpy()
    if grid.max() > 0:
        grid = grid / grid.max()
    values = np.sort(grid.ravel())[::-1]
    cum = np.cumsum(values)
    mass95 = int(np.searchsorted(cum, 0.95 * cum[-1]) + 1) if cum[-1] > 0 else 0
    rf = row.receptive_field
    spans = []
    for axis, unit in enumerate((ch, cw)):
        jump = row.jump[axis] or 0
        lo = row.start[axis] - rf[axis] / 2 + unit * jump
        spans.append((round(lo), round(lo + rf[axis])))
    return ERFResult(grid=grid, model=plan.model, layer=row.name, unit=(ch, cw), feature_shape=tuple(out_shape[1:]),
                     theoretical=(spans[0], spans[1]), rf=(rf[0], rf[1]), mass95_pixels=mass95, samples=samples)


def _pick_layer(plan, layer: str | None):
    """The analysis row of ``layer`` (a module's), or the last module row with a spatial output."""
    spatial = [r for r in plan.layers if r.receptive_field is not None and len(r.output_shape) >= 3
               and max(r.output_shape[-2:]) > 1 and r.source == "module"]  # a hook needs a module
    if layer is None:
        if not spatial:
            raise ConfigError(f"{plan.model}: no layer has a spatial output to measure")
        return spatial[-1]
    matches = [r for r in plan.layers if r.name == layer]
    if not matches or matches[0].source != "module":
        raise ConfigError(f"{plan.model}: no module layer named {layer!r}; choose one of the "
                          f"`cnnlab summary` rows, e.g. {', '.join(r.name for r in spatial[-3:])}")
    return matches[0]


def _central_unit_gradients(model: nn.Module, target: nn.Module, call_index: int, size, *, samples: int,
                            batch_size: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Sum over ``samples`` standard-normal inputs of |d(central unit of ``target``'s ``call_index``-th
    output, summed over channels)/dx|, summed over channels: an (H, W) float64 grid, and the shape of
    that output. The forward stops at the hook; the model's train/eval flags are restored."""
    captured: dict[str, torch.Tensor] = {}
    calls = [0]

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        calls[0] += 1
        if calls[0] == call_index:
            captured["out"] = output if isinstance(output, torch.Tensor) else output[0]
            raise _Stop

    training = {m: m.training for m in model.modules()}
    handle = target.register_forward_hook(hook)
    grid = torch.zeros(size[1], size[2], dtype=torch.float64)
    model.eval()
    try:
        done = 0
        while done < samples:
            n = min(batch_size, samples - done)
            x = torch.randn(n, *size, requires_grad=True)
            calls[0] = 0
            captured.clear()
            try:
                model(x)
            except _Stop:
                pass
            out = captured["out"]
            ch, cw = out.shape[-2] // 2, out.shape[-1] // 2
            # d(sum over channels of the central unit)/dx: Luo et al. put gradient 1 at the centre
            out[..., ch, cw].sum().backward()
            grid += x.grad.abs().sum(dim=(0, 1)).double()
            done += n
    finally:
        handle.remove()
        for m, flag in training.items():
            m.train(flag)
    return grid, tuple(out.shape)
