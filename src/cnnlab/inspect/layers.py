"""Addressing layers by name, and capturing their outputs.

A layer is named as in ``model.feature_info`` (the stages: ``layer1``, ``mlpconv2``) or as any
module name of ``named_modules()`` (``layer1.0.conv1``). Unknown names fail with the closest ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError

__all__ = ["stage_names", "resolve_layer", "capture", "model_device", "first_conv", "conv_layers"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def stage_names(model: nn.Module) -> list[str]:
    """The stage module names of ``feature_info``, shallow to deep; ConfigError when there are none."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise ConfigError(f"{type(model).__name__} has no feature_info: name its layers by module name")
    return [str(entry["module"]) for entry in info]


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name``; ConfigError naming the closest stage/module names otherwise."""
    from cnnlab.errors import did_you_mean

    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    stages = [str(e["module"]) for e in getattr(model, "feature_info", []) or []]
    hint = did_you_mean(name, list(dict.fromkeys(stages + [n for n in modules if n])))  # a stage is also a module
    raise ConfigError(f"--layer {name!r}: {type(model).__name__} has no such layer{hint} (stages: {', '.join(stages)})")


def first_conv(model: nn.Module) -> str:
    """Name of the first ``nn.Conv2d`` in module order (the one the image goes through first in the zoo)."""
    names = conv_layers(model)
    if not names:
        raise ConfigError(f"{type(model).__name__} has no Conv2d layer")
    return names[0]


def conv_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@contextlib.contextmanager
def capture(model: nn.Module, names: Sequence[str], *, detach: bool = True) -> Iterator[dict[str, Tensor]]:
    """Within the block, every forward of ``model`` stores the outputs of the named modules
    (a module called twice keeps its last output)."""
    store: dict[str, Tensor] = {}
    handles = []
    for name in names:
        module = resolve_layer(model, name)

        def hook(_m: nn.Module, _args: tuple, out: Tensor, name: str = name) -> None:
            store[name] = out.detach() if detach else out

        handles.append(module.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
