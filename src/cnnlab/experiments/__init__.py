"""Experiments that re-run the lectures' claims and say, from the numbers, whether they hold.

``run_experiment("lesion", scale="quick")`` (or ``cnnlab experiment lesion``) trains what it needs
through :mod:`cnnlab.training`, measures, and writes ``results.json``, ``report.md`` and PNG plots
into ``runs/experiments/lesion-quick/``. The experiment modules (``degradation``, ``lesion``, ...,
listed in :data:`EXPERIMENT_MODULES`) are imported on first use; each registers one or two
experiments and imports no other experiment. What they share:

- :mod:`~cnnlab.experiments.registry`: ``register_experiment``, the scales, lookup by name;
- :mod:`~cnnlab.experiments.outcome`: what ``run(ctx, cfg)`` returns (criteria, tables, verdict);
- :mod:`~cnnlab.experiments.context`: what ``run`` receives (data, models, cached training, seeds);
- :mod:`~cnnlab.experiments.runner`: runs one and writes its results folder;
- :mod:`~cnnlab.experiments.statistics`: verdicts over seeds (paired differences, margins);
- :mod:`~cnnlab.experiments.overrides`: the recipe overrides several experiments train with;
- :mod:`~cnnlab.experiments.arms`: networks trained once per seed, their rows and plot;
- :mod:`~cnnlab.experiments.predictions`, :mod:`~cnnlab.experiments.features`,
  :mod:`~cnnlab.experiments.surgery`, :mod:`~cnnlab.experiments.nets`: probabilities, features and
  linear probes, lesions of trained networks, and the small networks that are not in the zoo.
"""

from cnnlab.experiments.context import ExperimentContext, ModelCache
from cnnlab.experiments.outcome import Criterion, Outcome, Table, verdict_from
from cnnlab.experiments.registry import (
    EXPERIMENT_MODULES,
    SCALES,
    Experiment,
    get_experiment,
    list_experiments,
    register_experiment,
)
from cnnlab.experiments.runner import run_experiment
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.report import Plot

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
