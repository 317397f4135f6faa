"""Experiments that re-run the lectures' claims and say, from the numbers, whether they hold.

``run_experiment("lesion", scale="quick")`` (or ``cnnlab experiment lesion``) trains what it needs
through :mod:`cnnlab.training`, measures, and writes ``results.json``, ``report.md`` and PNG plots
into ``runs/experiments/lesion-quick/``. See :mod:`cnnlab.experiments.framework` for the contract
an experiment module follows; the modules themselves are imported on first use.
"""

from cnnlab.experiments.framework import (
    EXPERIMENT_MODULES,
    SCALES,
    Criterion,
    Experiment,
    ExperimentContext,
    ModelCache,
    Outcome,
    Plot,
    Table,
    get_experiment,
    list_experiments,
    register_experiment,
    run_experiment,
    verdict_from,
)
from cnnlab.training.spec import TrainSpec

__all__ = [
    "EXPERIMENT_MODULES",
    "SCALES",
    "Criterion",
    "Experiment",
    "ExperimentContext",
    "ModelCache",
    "Outcome",
    "Plot",
    "Table",
    "TrainSpec",
    "get_experiment",
    "list_experiments",
    "register_experiment",
    "run_experiment",
    "verdict_from",
]
