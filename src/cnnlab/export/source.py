"""The model to export, benchmark or predict with: a zoo name, a run folder, or weights + a model name.

Weights are loaded with :func:`cnnlab.models.weights.load_weights` (safetensors, or
``torch.load(weights_only=True)``): nothing here executes code from a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.export.preprocess import Preprocessing

__all__ = ["InferenceModel", "load_model"]



@dataclass
class InferenceModel:
    """A model in eval mode with what is needed to feed it and to name its outputs."""

    name: str
    model: nn.Module
    preprocessing: Preprocessing
    weights: Path | None = None  # None: random weights (a zoo name alone)
    weights_sha256: str | None = None
    run_dir: Path | None = None
    config: dict[str, Any] | None = None  # the run's config.json


def load_model(*, model: str | None = None, run: str | os.PathLike | None = None,
               weights: str | os.PathLike | None = None, config: dict[str, Any] | None = None,
               sha256: str | None = None, model_config: dict[str, Any] | None = None,
               num_classes: int | None = None, seed: int = 0) -> InferenceModel:
    """Build the model in eval mode from exactly one of: ``run`` (a run folder), ``weights`` (with
    ``model``, or with ``config`` = the config.json of the run they belong to), ``model`` alone
    (random weights drawn with ``seed``; for export and benchmarks)."""
    from cnnlab.models.pretrained import is_weights_name
    from cnnlab.models.registry import model_info
    from cnnlab.training.rundir import load_run_model, resolve_model_source

    if is_weights_name(weights) and run is None:
        return _load_published(model, str(weights), sha256=sha256, model_config=model_config)
    run_dir = Path(run) if run is not None else None
    config, weights, name = resolve_model_source(run=run, weights=weights, config=config, model=model)
    spec = (config or {}).get("spec") or {}
    info = model_info(name)  # UnknownNameError with the closest names
    if config is not None and name == spec.get("model"):
        prep = Preprocessing.from_run_config(config, where=str((run_dir or Path(weights).parent) / "config.json"))
    else:
        prep = Preprocessing.default_for(name, info.input_size, num_classes or info.num_classes,
                                         model_config=dict(model_config or {}))
    loaded = load_run_model(weights=weights, config=config, model=name, model_config=model_config, sha256=sha256,
                            num_classes=prep.num_classes, in_chans=prep.input_size[0], seed=seed)
    prep = Preprocessing(**{**prep.__dict__, "model_config": loaded.model_config})
    return InferenceModel(name=name, model=loaded.model, preprocessing=prep, weights=loaded.weights,
                          weights_sha256=loaded.report.sha256 if loaded.report is not None else None,
                          run_dir=run_dir, config=config)


def _load_published(model: str | None, weights: str, *, sha256: str | None,
                    model_config: dict[str, Any] | None) -> InferenceModel:
    """A zoo model with published weights (``weights="imagenet"``) and the preprocessing they expect."""
    from cnnlab.errors import ConfigError
    from cnnlab.models.pretrained import get_published, locate
    from cnnlab.models.registry import create_model, model_info

    if not model:
        raise ConfigError(f"--weights {weights}: name the model with --model (e.g. --model efficientnet_lite0)")
    if sha256 is not None:
        raise ConfigError(f"--weights {weights}: published weights are pinned by their own sha256; give no --sha256")
    model_info(model)  # UnknownNameError with the closest names
    entry = get_published(model, weights)
    net = create_model(model, weights=weights, **dict(model_config or {})).eval()
    prep = Preprocessing.for_published(entry, model_config=model_config)
    return InferenceModel(name=model, model=net, preprocessing=prep, weights=locate(entry),
                          weights_sha256=entry.sha256)
