"""The run description: one serialisable :class:`TrainSpec` for every way into training.

A ``TrainSpec`` says what a run learns (the recipe, by name or as a :class:`Recipe`, with its
overrides and the common ``batch_size``/``lr``) and how it goes (epochs, seed, precision, device,
checkpoints, ...); for :func:`cnnlab.training.run.train` it also names what to build (model and
data, with their options). ``fit(model, data, spec)`` reads the recipe and run fields,
``train(spec)`` all of them, an experiment's config holds one per trained network, and a run's
``config.json`` stores it under ``"spec"`` (``cnnlab train --config`` repeats a run from it).

A new run option is a field here, a flag in ``cnnlab.cli.train`` and the line that uses it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.limits import check_seed, check_threads
from cnnlab.training.device import MEMORY_FORMATS, PRECISIONS
from cnnlab.training.recipes import Recipe, default_recipe_for, get_recipe

__all__ = ["TrainSpec", "RESERVED_MODEL_OPTIONS", "RESERVED_DATA_OPTIONS"]

# Chosen by the run itself (the data set's classes and channels, --weights/--sha256/--strict): a
# --model-set or config.json "model_config" naming them would clash with them in create_model.
RESERVED_MODEL_OPTIONS = ("num_classes", "in_chans", "weights", "sha256", "strict")
RESERVED_DATA_OPTIONS = ("name", "root", "download", "input_size", "seed", "bad_files")


@dataclass(frozen=True)
class TrainSpec:
    """Everything that defines a training run (what config.json's ``"spec"`` holds)."""

    # -- what to build (read by ``train``; ``fit`` is given the model and the data)
    model: str | None = None  # a zoo name; for ``fit`` only recorded (and its default recipe)
    data: str = "mnist-5k"
    model_config: dict[str, Any] = field(default_factory=dict)  # the model family's options (--model-set)
    data_options: dict[str, Any] = field(default_factory=dict)  # the data set's options (--data-set)
    data_root: str = "data"
    download: bool = False
    bad_files: str = "strict"
    val_fraction: float = 0.1  # of train held out for selection when the data set has no val split
    weights: str | None = None  # initial weights (fine-tuning)
    sha256: str | None = None
    strict: bool = True
    # -- what is learned
    recipe: str | Recipe | None = None  # a name, a Recipe, or None: the model's default recipe
    overrides: dict[str, Any] = field(default_factory=dict)  # recipe fields (--set)
    batch_size: int | None = None
    lr: float | None = None
    task: str | None = None  # None: the model's registered task (classification for a bare module)
    task_options: dict[str, Any] = field(default_factory=dict)  # the task's options (--task-set)
    # -- how the run goes
    epochs: int | None = None  # None: the recipe's length (milestones scale with it)
    seed: int = 0
    precision: str = "auto"
    memory_format: str = "auto"
    device: str | None = None  # None: CUDA when present, else CPU
    max_steps: int | None = None  # stop after this many updates in all (the schedule is unchanged)
    checkpoint_every: int | None = None  # also save `last` every N updates
    deterministic: bool = False
    threads: int | None = None  # torch CPU threads (None: torch's default)
    tensorboard: bool = False
    test_every_epoch: bool = False  # per-epoch test columns (curves; never used for selection)

    def __post_init__(self) -> None:
        if isinstance(self.overrides, (tuple, list)) and all(
                isinstance(p, (tuple, list)) and len(p) == 2 for p in self.overrides):
            object.__setattr__(self, "overrides", dict(self.overrides))  # pairs, as frozen configs write them
        if isinstance(self.recipe, dict):  # a Recipe stored in config.json
            object.__setattr__(self, "recipe", Recipe.from_dict(self.recipe))
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise ConfigError(f"model must be a name, got {self.model!r}")
        for name in ("epochs", "batch_size", "max_steps", "checkpoint_every", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"{name.replace('_', '-')} must be a positive integer, got {v!r}")
        for problem in (check_threads(self.threads) if self.threads is not None else None, check_seed(self.seed)):
            if problem:
                raise ConfigError(problem)
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                    or not math.isfinite(self.lr) or not self.lr > 0):
            raise ConfigError(f"lr must be a finite positive number, got {self.lr!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r} (use {', '.join(PRECISIONS)})")
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"unknown memory format {self.memory_format!r} (use {', '.join(MEMORY_FORMATS)})")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val-fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.bad_files not in ("strict", "skip"):
            raise ConfigError(f"bad_files must be 'strict' or 'skip', got {self.bad_files!r}")
        self._check_types()

    def _check_types(self) -> None:
        """ConfigError naming the field for a value of the wrong type (a hand-edited config.json)."""
        for name in ("overrides", "model_config", "data_options", "task_options"):
            value = getattr(self, name)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ConfigError(f"{name} must be a mapping of option names to values, got {value!r}")
            for key, v in value.items():
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"{name}: {key}={v} is not a finite number")
        for name in ("data", "data_root", "device", "weights", "sha256", "task"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string, got {value!r}")
        if self.recipe is not None and not isinstance(self.recipe, (str, Recipe)):
            raise ConfigError(f"recipe must be a Recipe or a recipe name, got {type(self.recipe).__name__}")
        for name in ("download", "strict", "deterministic", "tensorboard", "test_every_epoch"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        clash = [k for k in RESERVED_DATA_OPTIONS if k in self.data_options]
        if clash:
            raise ConfigError(f"data set option {clash[0]!r} cannot be set with --data-set / data_options: it is "
                              "the run's own (--data-root, --download, --seed, --bad-files, the model's input size)")
        clash = [k for k in RESERVED_MODEL_OPTIONS if k in self.model_config]
        if clash:
            raise ConfigError(
                f"model option {clash[0]!r} cannot be set with --model-set / model_config: the data set sets "
                "num_classes and in_chans, and --weights, --sha256 and --strict choose the weights"
            )

    def __hash__(self) -> int:  # the option mappings are dicts: hash their JSON form (experiments cache by spec)
        import json

        return hash(json.dumps(self.to_dict(), sort_keys=True, default=repr))

    # ------------------------------------------------------------------ resolving

    def resolve(self, *, data_name: str | None = None) -> Recipe:
        """The :class:`Recipe` this run learns with: ``recipe`` (a name or a Recipe), or the default of
        ``model`` (``model_info(model).recipe``, or the recipe registered for it on ``data_name``:
        ``recipes.DATA_RECIPES``), with ``overrides`` and ``batch_size``/``lr`` applied."""
        recipe = self.recipe
        if recipe is None:
            if self.model is None:
                raise ConfigError("TrainSpec: give recipe= (a Recipe or its name) or model= (its default recipe)")
            from cnnlab.models.registry import model_info

            recipe = default_recipe_for(model_info(self.model).recipe, data_name)
        if isinstance(recipe, str):
            recipe = get_recipe(recipe)
        changes = dict(self.overrides)
        if self.batch_size is not None:
            changes["batch_size"] = self.batch_size
        if self.lr is not None:
            changes["lr"] = self.lr
        return recipe.replace(**changes) if changes else recipe

    def replace(self, **changes: Any) -> TrainSpec:
        """A copy with ``changes`` (validated); ``overrides`` given here are merged into the spec's."""
        if "overrides" in changes:
            changes["overrides"] = {**self.overrides, **dict(changes["overrides"])}
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ describing

    def describe(self) -> str:
        """One line for logs and reports: the recipe, the length and what is changed."""
        name = self.recipe.name if isinstance(self.recipe, Recipe) else self.recipe or "the model's default recipe"
        length = ("the recipe's length" if self.epochs is None
                  else f"{self.epochs} epoch{'s' if self.epochs > 1 else ''}")
        parts = [f"recipe `{name}`" if self.recipe is not None else name, length]
        if self.batch_size is not None:
            parts.append(f"batch {self.batch_size}")
        if self.lr is not None:
            parts.append(f"lr {self.lr:g}")
        parts += [f"{k}={v}" for k, v in self.overrides.items()]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "spec") -> TrainSpec:
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
        if not d.get("model"):
            raise ConfigError(f"{where}: no model")
        return cls(**d)
