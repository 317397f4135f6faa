"""One registry for the zoo: ``register_model``, ``list_models``, ``create_model``, ``model_info``.

Builders are plain functions ``name(*, num_classes, in_chans, **config) -> nn.Module`` registered
with the paper they come from. The registry refuses duplicate names, and an unknown name fails with
the closest registered names.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from cnnlab.errors import ConfigError, UnknownNameError, closest_names, did_you_mean  # closest_names re-exported

__all__ = [
    "ModelInfo",
    "register_model",
    "list_models",
    "model_info",
    "create_model",
    "build_config",
    "closest_names",
    "describe_models",
]


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about a registered architecture."""

    name: str
    family: str  # "resnet", "vgg", ...: groups models in `cnnlab list`
    paper: str  # "He et al., 2016": authors and year of the paper the model follows
    input_size: tuple[int, int, int]  # (C, H, W) the architecture was designed for
    num_classes: int  # default number of classes (1000 for ImageNet, 10 for CIFAR/MNIST)
    builder: Callable[..., nn.Module]
    recipe: str  # default training recipe name (see cnnlab.training.recipes)
    torchvision: str | None = None  # torchvision builder this model is state_dict-compatible with
    departures: str = ""  # how the model departs from its paper, for docs/zoo.md and `cnnlab list`
    task: str = "classification"  # the Task it trains with (cnnlab.training.tasks.get_task)

    @property
    def in_chans(self) -> int:
        return self.input_size[0]


_REGISTRY: dict[str, ModelInfo] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(
    *,
    family: str,
    paper: str,
    input_size: tuple[int, int, int],
    num_classes: int,
    recipe: str,
    torchvision: str | None = None,
    departures: str = "",
    name: str | None = None,
    task: str = "classification",
) -> Callable[[F], F]:
    """Register the decorated builder under its function name (or ``name``)."""

    def decorator(builder: F) -> F:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise RuntimeError(f"model {key!r} is registered twice")
        _REGISTRY[key] = ModelInfo(
            name=key,
            family=family,
            paper=paper,
            input_size=tuple(input_size),
            num_classes=num_classes,
            builder=builder,
            recipe=recipe,
            torchvision=torchvision,
            departures=departures,
            task=task,
        )
        return builder

    return decorator


def _ensure_zoo_loaded() -> None:
    import cnnlab.models.zoo  # noqa: F401  (registers every family on import)


def list_models(filter: str = "*", *, pretrained: bool = False, family: str | None = None) -> list[str]:
    """Registered model names matching the shell-style pattern ``filter``, in natural order
    (``resnet18`` before ``resnet101``, as timm sorts them; timm's keywords).

    ``pretrained=True`` keeps the models that can load torchvision's published weights (cnnlab
    downloads none itself); ``family`` keeps one family ("vgg", "resnet", ...).
    """
    _ensure_zoo_loaded()
    return sorted((k for k, info in _REGISTRY.items()
                   if fnmatch.fnmatchcase(k, filter)
                  and (not pretrained or info.torchvision is not None)
                   and (family is None or info.family == family)), key=_natural_key)  # fmt: skip


def _natural_key(name: str) -> list:
    """Sort key that orders the numbers inside a name by value (timm's ``_natural_key``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model; unknown names list the closest ones."""
    _ensure_zoo_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = did_you_mean(name, list(_REGISTRY))
        raise UnknownNameError(
            f"unknown model {name!r}{hint} (`cnnlab list` shows all {len(_REGISTRY)} models)"
        ) from None


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    weights: str | os.PathLike | None = None,
    pretrained: bool | str | os.PathLike = False,
    sha256: str | None = None,
    strict: bool = True,
    features_only: bool = False,
    out_indices: tuple[int, ...] | None = None,
    **config: Any,
) -> nn.Module:
    """Build a registered model as a plain fp32 CPU module (or on the current default device).

    ``num_classes`` and ``in_chans`` default to the model's own; ``config`` holds family options
    (``shortcut="A"``, ``batch_norm=True``, ...), validated at construction: a bad value raises
    ``ValueError`` naming the field. ``weights`` loads a ``.safetensors`` or ``.pth`` file safely, or
    published weights by name (``weights="imagenet"``, see :mod:`cnnlab.models.pretrained`; with a
    ``num_classes`` of its own the model gets a fresh classifier after loading, for fine-tuning).

    timm's conventions: ``pretrained`` is a weights path (timm's ``pretrained_cfg_overlay=dict(file=...)``
    in one word; cnnlab downloads nothing) or False; ``num_classes=0`` builds the model without its
    classifier, so ``forward`` returns pooled features (weights are loaded first, into the model's
    own classifier); ``features_only=True`` returns a :class:`FeatureListNet` whose ``forward`` gives
    the maps of the stages in ``feature_info`` (``out_indices`` picks some).
    """
    info = model_info(name)
    for field, value, low in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            kind = "a non-negative" if low == 0 else "a positive"
            raise ConfigError(f"{name}: {field} must be {kind} integer, got {value!r}")
    if pretrained not in (False, None) and weights is not None:
        raise ConfigError(f"{name}: give weights= or pretrained=, not both")
    if pretrained is True:
        raise ConfigError(f"{name}: pretrained=True needs a file: cnnlab downloads no weights at build time; "
                          "pass pretrained='path/to/weights.safetensors' (or .pth)")
    if pretrained not in (False, None):
        weights = pretrained
    headless = num_classes == 0
    published = _published_entry(name, weights, in_chans)
    model = info.builder(
        num_classes=info.num_classes if num_classes is None or headless or published else num_classes,
        in_chans=info.in_chans if in_chans is None else in_chans,
        **config,
    )
    if published is not None:
        from cnnlab.models.pretrained import load_published

        if sha256 is not None:
            raise ConfigError(f"{name}: weights={weights!r} are pinned by their own sha256; give no sha256")
        load_published(model, published, strict=strict)
        if num_classes not in (None, 0, info.num_classes):  # fine-tuning: a fresh classifier
            model.reset_classifier(num_classes)
    elif weights is not None:
        from cnnlab.models.weights import load_weights

        load_weights(model, weights, sha256=sha256, strict=strict)
    if headless or features_only:
        from cnnlab.models.base import Classifier, FeatureListNet

        if not isinstance(model, Classifier):
            raise ConfigError(f"{name} is not a classifier: num_classes=0 / features_only do not apply")
        if headless:
            model.reset_classifier(0)
        if features_only:
            return FeatureListNet(model, out_indices)
    return model


def _published_entry(name: str, weights: object, in_chans: int | None):
    """The published weights that ``weights`` names ("imagenet"), or None when it is a file or absent."""
    from cnnlab.models.pretrained import get_published, is_weights_name

    if not is_weights_name(weights):
        return None
    entry = get_published(name, str(weights))
    if in_chans not in (None, entry.input_size[0]):
        raise ConfigError(f"{name}: weights={weights!r} take {entry.input_size[0]} input channels, not in_chans={in_chans}")
    return entry


C = TypeVar("C")


def build_config(cls: type[C], model: str, overrides: dict[str, Any], **defaults: Any) -> C:
    """Make the frozen config dataclass ``cls`` from a builder's defaults and the user's overrides.

    Unknown keys raise :class:`ConfigError` naming the field and the valid ones, so a typo fails at
    construction rather than as a ``TypeError`` deep inside a builder. The dataclass's
    ``__post_init__`` validates values and raises ``ConfigError`` naming the field.
    """
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(
            f"{model}: unknown config field {unknown[0]!r}; valid fields: {', '.join(sorted(valid))}"
        )
    return cls(**{**defaults, **overrides})


def describe_models(pattern: str = "*", *, family: str | None = None) -> list[dict[str, Any]]:
    """One row per model matching ``pattern``: name, family, paper, params, input_size, ...

    Parameters are counted on the ``meta`` device, so even VGG-19 costs no memory.
    """
    import torch

    rows = []
    for name in list_models(pattern, family=family):
        info = model_info(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in create_model(name).parameters())
        rows.append(
            dict(
                name=name,
                family=info.family,
                paper=info.paper,
                params=params,
                input_size=list(info.input_size),
                num_classes=info.num_classes,
                recipe=info.recipe,
                torchvision=info.torchvision,
                departures=info.departures,
            )
        )
    return rows
