"""The experiment registry: each experiment's claim, source, scales and run function, by name.

An experiment is a function ``run(ctx, cfg) -> Outcome`` registered with the claim it tests, the
lecture it comes from and one frozen config per scale (``tiny`` for tests, ``quick`` for the 2-core
CPU, ``full`` for the paper's setting on a GPU, and for some experiments ``standard``: real data,
Fashion-MNIST or MNIST, in under an hour of the CPU). The modules in :data:`EXPERIMENT_MODULES`
register their experiments when imported; :func:`list_experiments` and :func:`get_experiment`
import them on first use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from cnnlab.experiments.context import ExperimentContext
    from cnnlab.experiments.outcome import Outcome
    from cnnlab.viz.report import Plot

__all__ = [
    "SCALES",
    "REQUIRED_SCALES",
    "TINY_NOTE",
    "SEEDS_DIR",
    "EXPERIMENT_MODULES",
    "Experiment",
    "register_experiment",
    "list_experiments",
    "get_experiment",
    "lecture_ref",
]

# tiny: seconds, for the tests (plumbing and output format only; its numbers mean nothing).
# quick: the embedded mnist-5k data, under 10 minutes on the project's 2-core CPU.
# standard: real data (Fashion-MNIST, or full MNIST where the claim is about digits) with enough
#   images and updates for the nets to train to their capacity; under 45 minutes on the 2-core CPU
#   (each config aims at 15-30 minutes on one thread and states its estimate).
# full: the paper's setting (CIFAR-10, the paper's recipe), meant for a GPU.
SCALES = ("tiny", "quick", "standard", "full")
# Every experiment has these; ``standard`` where one has been designed.
REQUIRED_SCALES = ("tiny", "quick", "full")

# The note every tiny-scale report gets (its config, in results.json, says what it ran).
TINY_NOTE = ("tiny scale: random images, narrow networks and a few updates (see `config`); the numbers only "
             "test the plumbing.")

# Where the lecture decks live, as the reports cite them ("lecture 004 (seeds/004_....txt)").
SEEDS_DIR = "seeds"


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: the claim it tests, where the claim comes from, how to run it."""

    name: str
    title: str  # short title for `cnnlab experiment list` and the report heading
    claim: str  # the lecture's claim, in one or two sentences
    lectures: tuple[str, ...]  # seed files the claim comes from, e.g. ("004_727cdc94a52d7899.txt",)
    paper: str  # the paper behind the claim, e.g. "Veit, Wilber & Belongie, NIPS 2016"
    run: Callable[[ExperimentContext, Any], Outcome]
    scales: Mapping[str, Any]  # scale -> frozen config dataclass with at least a `data` field
    plot: Callable[[dict, Path], list[Plot]]  # draws PNGs from the results dict into a directory

    def config(self, scale: str, *, data: str | None = None) -> Any:
        """The config of ``scale``, with the data set replaced by ``data`` if given."""
        if scale not in self.scales:
            have = ", ".join(s for s in SCALES if s in self.scales)
            what = "has no standard scale yet" if scale == "standard" else f"has no scale {scale!r}"
            raise ConfigError(f"experiment {self.name} {what}; choose from {have}")
        cfg = self.scales[scale]
        if data is None:
            return cfg
        # Options of the scale's own data set (synthetic's shape, ...) do not apply to another one.
        extra = {"data_options": ()} if hasattr(cfg, "data_options") else {}
        return dataclasses.replace(cfg, data=data, **extra)


_REGISTRY: dict[str, Experiment] = {}

# The modules that register experiments when imported, in the order `experiment list` shows them.
EXPERIMENT_MODULES = [
    "cnnlab.experiments.degradation",
    "cnnlab.experiments.lesion",
    "cnnlab.experiments.ablation",
    "cnnlab.experiments.probes",
    "cnnlab.experiments.invariance",
    "cnnlab.experiments.dropout",
    "cnnlab.experiments.dropout_rate",
    "cnnlab.experiments.regularisers",
    "cnnlab.experiments.batchnorm",
    "cnnlab.experiments.vgg_depth",
    "cnnlab.experiments.small_filters",
    "cnnlab.experiments.augmentation",
    "cnnlab.experiments.ensemble",
    "cnnlab.experiments.transfer",
    "cnnlab.experiments.imagenet_transfer",
    "cnnlab.experiments.autoencoder",
    "cnnlab.experiments.shortcuts",
    "cnnlab.experiments.fractal_droppath",
    "cnnlab.experiments.vgg_filters",
    "cnnlab.experiments.dropout_conv",
    "cnnlab.experiments.batchnorm_more",
    "cnnlab.experiments.localisation",
    "cnnlab.experiments.dense",  # fcn-skips, dilation
    "cnnlab.experiments.relu_tanh",
    "cnnlab.experiments.vanishing_gradients",
    "cnnlab.experiments.identity_mapping",
    "cnnlab.experiments.depth_width",
]


def register_experiment(
    *,
    name: str,
    title: str,
    claim: str,
    lectures: tuple[str, ...],
    paper: str,
    scales: Mapping[str, Any],
    plot: Callable[[dict, Path], list[Plot]],
) -> Callable[[Callable[[ExperimentContext, Any], Outcome]], Callable[[ExperimentContext, Any], Outcome]]:
    """Register the decorated ``run(ctx, cfg) -> Outcome`` under ``name``; names are unique."""

    missing = [s for s in REQUIRED_SCALES if s not in scales]
    if missing:
        raise RuntimeError(f"experiment {name!r} has no config for scale(s) {missing}")
    for scale, cfg in scales.items():
        if not dataclasses.is_dataclass(cfg) or not hasattr(cfg, "data"):
            raise RuntimeError(f"experiment {name!r}: the {scale} config must be a dataclass with a `data` field")

    def decorator(run: Callable[[ExperimentContext, Any], Outcome]) -> Callable[[ExperimentContext, Any], Outcome]:
        if name in _REGISTRY:
            raise RuntimeError(f"experiment {name!r} is registered twice")
        _REGISTRY[name] = Experiment(
            name=name, title=title, claim=claim, lectures=tuple(lectures), paper=paper,
            run=run, scales=dict(scales), plot=plot,
        )  # fmt: skip
        return run

    return decorator


def _ensure_loaded() -> None:
    import importlib

    for module in EXPERIMENT_MODULES:
        importlib.import_module(module)


def list_experiments() -> list[str]:
    """Registered experiment names, in the order of ``EXPERIMENT_MODULES`` (not of first import,
    which depends on what imported an experiment module first)."""
    _ensure_loaded()
    order = {module: i for i, module in enumerate(EXPERIMENT_MODULES)}
    return sorted(_REGISTRY, key=lambda name: order.get(_REGISTRY[name].run.__module__, len(order)))


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; an unknown name lists the closest ones."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        from cnnlab.errors import did_you_mean

        hint = did_you_mean(name, list(_REGISTRY))
        raise UnknownNameError(
            f"unknown experiment {name!r}{hint} (`cnnlab experiment list` shows all {len(_REGISTRY)})"
        ) from None


def lecture_ref(seed_file: str) -> str:
    """``"004_727cdc94a52d7899.txt"`` -> ``"lecture 004 (seeds/004_727cdc94a52d7899.txt)"``."""
    return f"lecture {seed_file.split('_', 1)[0]} ({SEEDS_DIR}/{seed_file})"
