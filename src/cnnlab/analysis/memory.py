"""Training memory: what a training step keeps besides the forward activations.

Lecture 002 ends the VGG-16 walk-through with "TOTAL memory: 24M * 4 bytes ~= 96MB / image (only
forward! ~*2 for bwd)". :func:`training_memory` breaks the step down from an :class:`Analysis`:

- **activations kept for backward**: estimated as the analyzer's forward activations (every value
  written to a new tensor, input included). Autograd saves a layer's input (convolution, linear,
  batch norm) or its output (ReLU, sigmoid); in-place ReLUs share their input's storage, so nearly
  every activation is kept once. :func:`measure_saved_activations` counts what autograd really
  saves, with ``torch.autograd.graph.saved_tensors_hooks``, for a check (tests/test_memory.py).
- **activation gradients**: the backward pass writes one gradient per kept activation, so the
  lecture's "x2" bounds forward + backward activation memory by twice the forward. PyTorch frees
  each gradient once it is used, so the real peak is lower; the bound is what the lecture states.
- **weights, weight gradients, optimizer state**: one fp32 copy each of the parameters, plus one
  (SGD with momentum) or two (Adam's first and second moments) more.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.analysis.result import Analysis
from cnnlab.errors import ConfigError

__all__ = ["OPTIMIZER_STATES", "TrainingMemory", "training_memory", "measure_saved_activations"]

# fp32 copies of the parameters an optimizer keeps (PyTorch's torch.optim implementations).
OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adam": 2}
_PARAM_BYTES = 4  # weights, gradients and optimizer state stay fp32 under bf16/fp16 autocast


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes of one training step at ``batch_size`` (see the module docstring)."""

    batch_size: int
    optimizer: str
    forward_activations: int  # the analyzer's activation bytes (input included)
    kept_for_backward: int  # estimate: = forward_activations
    activation_gradients: int  # the lecture's x2: one gradient per kept activation, at most
    weights: int
    weight_gradients: int
    optimizer_state: int

    @property
    def total(self) -> int:
        return (self.kept_for_backward + self.activation_gradients + self.weights + self.weight_gradients
                + self.optimizer_state)

    def lines(self) -> list[str]:
        mb = lambda b: f"{b / 1e6:,.1f} MB"  # noqa: E731
        return [
            f"training memory at batch {self.batch_size} with {self.optimizer} (estimate; lecture 002: "
            "'only forward! ~*2 for bwd'):",
            f"  activations kept for backward  {mb(self.kept_for_backward)}  (= the forward activations above)",
            f"  their gradients (at most)      {mb(self.activation_gradients)}  (the lecture's x2)",
            f"  weights + weight gradients     {mb(self.weights + self.weight_gradients)}  (fp32)",
            f"  optimizer state                {mb(self.optimizer_state)}  "
            f"({OPTIMIZER_STATES[self.optimizer]} fp32 cop{'y' if OPTIMIZER_STATES[self.optimizer] == 1 else 'ies'} "
            "of the parameters)",
            f"  total                          {mb(self.total)}  "
            f"({self.total / max(self.forward_activations, 1):.1f}x the forward activations)",
        ]


def training_memory(analysis: Analysis, *, optimizer: str = "momentum") -> TrainingMemory:
    """The training-step memory of ``analysis`` (its batch size and activation dtype)."""
    if optimizer not in OPTIMIZER_STATES:
        raise ConfigError(f"unknown optimizer {optimizer!r} for the memory estimate; choose from "
                          f"{', '.join(OPTIMIZER_STATES)}")
    act = int(analysis.total.activation_bytes)
    params = int(analysis.total.trainable_params) * _PARAM_BYTES
    return TrainingMemory(
        batch_size=analysis.batch_size, optimizer=optimizer, forward_activations=act, kept_for_backward=act,
        activation_gradients=act, weights=int(analysis.total.params) * _PARAM_BYTES, weight_gradients=params,
        optimizer_state=OPTIMIZER_STATES[optimizer] * params,
    )  # fmt: skip


def measure_saved_activations(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """What autograd really saves for backward in one training-mode forward of ``model`` on ``x``.

    Returns ``{"bytes": ..., "float_bytes": ..., "index_bytes": ...}``: distinct storages saved
    by the graph, parameters left out (they are counted as weights), the input included (a first
    convolution saves it). ``index_bytes`` are integer tensors (max-pool indices, int64), which
    the analyzer's activation count does not include.
    """
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, tuple[int, bool]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in param_storages and t.device.type != "meta":
            seen[ptr] = (storage.nbytes(), t.dtype.is_floating_point)
        return t

    model.train()
    x = x.detach().requires_grad_(False)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    floats = sum(n for n, is_float in seen.values() if is_float)
    ints = sum(n for n, is_float in seen.values() if not is_float)
    return {"bytes": floats + ints, "float_bytes": floats, "index_bytes": ints}
