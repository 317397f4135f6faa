"""The model to export, benchmark or predict with: a zoo name, a run folder, or weights + a model name.

Weights are loaded with :func:`cnnlab.models.weights.load_weights` (safetensors, or
``torch.load(weights_only=True)``): nothing here executes code from a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.export.preprocess import Preprocessing
from cnnlab.safeio import read_json

__all__ = ["InferenceModel", "load_model", "read_run_config"]

WEIGHTS_NAME = "model.safetensors"  # what a finished run folder holds (cnnlab.training.engine)


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


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run folder's ``config.json``; ConfigError naming the folder when it is not a run."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise ConfigError(f"run folder {run_dir}: no such folder")
    path = folder / "config.json"
    if not os.path.lexists(path):
        raise ConfigError(f"{run_dir}: not a run folder (no config.json)")
    doc = read_json(path, what="run configuration", error=ConfigError)
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict) or not doc["spec"].get("model"):
        raise ConfigError(f"{path}: not a cnnlab run configuration (no \"spec\" with a model)")
    return doc


def load_model(*, model: str | None = None, run: str | os.PathLike | None = None,
               weights: str | os.PathLike | None = None, config: dict[str, Any] | None = None,
               sha256: str | None = None, model_config: dict[str, Any] | None = None,
               num_classes: int | None = None, seed: int = 0) -> InferenceModel:
    """Build the model in eval mode from exactly one of: ``run`` (a run folder), ``weights`` (with
    ``model``, or with ``config`` = the config.json of the run they belong to), ``model`` alone
    (random weights drawn with ``seed``; for export and benchmarks)."""
    from cnnlab.models.registry import create_model, model_info
    from cnnlab.models.weights import load_weights

    run_dir = None
    if run is not None:
        if weights is not None:
            raise ConfigError("give a run folder or a weights file, not both")
        config = read_run_config(run)
        run_dir = Path(run)
        weights = run_dir / WEIGHTS_NAME
        if not weights.is_file():
            raise ConfigError(f"{run}: no {WEIGHTS_NAME} (an unfinished run? give --weights "
                              f"{run_dir / 'checkpoints' / 'best.safetensors'} --model NAME)")
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"weights file {weights}: no such file")
    spec = (config or {}).get("spec") or {}
    name = model or spec.get("model")
    if not name:
        raise ConfigError(f"{weights}: no config.json of a run beside it; name the model with --model"
                          if weights is not None else "give a MODEL, --run DIR or --weights FILE --model NAME")
    info = model_info(name)  # UnknownNameError with the closest names
    same_model = config is not None and name == spec.get("model")
    mconfig = {**((spec.get("model_config") or {}) if same_model else {}), **(model_config or {})}
    if same_model:
        prep = Preprocessing.from_run_config(config, where=str((run_dir or Path(weights).parent) / "config.json"))
        prep = Preprocessing(**{**prep.__dict__, "model_config": mconfig})
    else:
        n = num_classes or info.num_classes
        prep = Preprocessing.default_for(name, info.input_size, n, model_config=mconfig)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # a name alone: the same random weights every time
        net = create_model(name, num_classes=prep.num_classes, in_chans=prep.input_size[0], **mconfig)
    digest = None
    if weights is not None:
        digest = load_weights(net, weights, sha256=sha256, strict=True).sha256
    return InferenceModel(name=name, model=net.eval(), preprocessing=prep,
                          weights=Path(weights) if weights is not None else None, weights_sha256=digest,
                          run_dir=run_dir, config=config)
