"""The machinery every experiment shares: a registry, a run context, criteria, and the runner.

An experiment is a function ``run(ctx, cfg) -> Outcome`` registered with the claim it tests, the
lecture it comes from and one frozen config per scale (``tiny`` for tests, ``quick`` for the 2-core
CPU, ``full`` for the paper's setting on a GPU, and for some experiments ``standard``: real data,
Fashion-MNIST or MNIST, in under an hour of the CPU). The runner (:func:`run_experiment`) gives it an
:class:`ExperimentContext` (data, model building, training and evaluation through the engine, with
trained models cached so that a run never trains the same network twice), then writes into the out
directory:

- ``results.json``: every number measured, plus ``claim``, ``reproduced`` (``true``, ``false`` or
  ``"partly"``), ``verdict``, ``criteria``, ``scale``, ``seed``, ``seconds`` and ``versions``;
- PNG plots, drawn by :mod:`cnnlab.viz.experiment_plots` from that results dict alone;
- ``report.md``, rendered by :mod:`cnnlab.viz.report` from that results dict alone.

The verdict is never written by hand: each experiment states its :class:`Criterion` list (the test
and the measured finding), and :func:`verdict_from` turns them into ``reproduced`` and one sentence.
Everything is written to a temporary directory first and moved into place only when the run has
succeeded, so a failed run never leaves partial output nor replaces an earlier result.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError, UnknownNameError
from cnnlab.training.spec import TrainSpec
from cnnlab.viz.report import Plot

__all__ = [
    "SCALES",
    "SEEDS_DIR",
    "TINY_NOTE",
    "Criterion",
    "Table",
    "Plot",  # re-exported from cnnlab.viz.report
    "Outcome",
    "DIGITS_OVERRIDES",
    "FASHION_OVERRIDES",
    "with_overrides",
    "SUBSET_SEED",
    "train_subset",
    "Experiment",
    "ExperimentContext",
    "ModelCache",
    "register_experiment",
    "list_experiments",
    "get_experiment",
    "run_experiment",
    "verdict_from",
    "lecture_ref",
    "versions",
    "to_jsonable",
    "summarize",
    "SeedComparison",
    "compare_seeds",
    "require_seeds",
    "require_per_class",
    "seed_criterion",
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


# ---------------------------------------------------------------------------------------------
# What an experiment returns
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One test of the claim, stated before the numbers are known, and what was measured.

    ``description`` is the rule ("plain-56 ends with a higher training error than plain-20"),
    ``finding`` the measurement in words with its numbers ("plain-56 3.1% vs plain-20 1.2%"),
    ``passed`` whether the measurement satisfies the rule.
    """

    description: str
    finding: str
    passed: bool
    # "within noise" when a multi-seed comparison could not tell the arms apart (see compare_seeds);
    # the verdict then says so instead of "contrary to the claim". "" otherwise.
    status: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.passed, bool):
            raise ConfigError(f"Criterion.passed must be a bool, got {self.passed!r}")
        if self.status not in ("", "within noise"):
            raise ConfigError(f"Criterion.status must be '' or 'within noise', got {self.status!r}")


@dataclass(frozen=True)
class Table:
    """A table of results for the report: a title, column names and rows of plain values."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ConfigError(f"Table {self.title!r}: row {i} has {len(row)} cells, expected {len(self.columns)}")


@dataclass
class Outcome:
    """What ``run(ctx, cfg)`` returns: the measured numbers and how they bear on the claim.

    ``results`` holds the experiment's own keys (``residual``, ``models``, ...) and goes into
    ``results.json`` as it is; ``setup`` and ``notes`` are report bullets (what was run; departures
    from the paper and caveats).
    """

    results: dict[str, Any]
    criteria: list[Criterion]
    tables: list[Table]
    setup: list[str]
    notes: list[str] = field(default_factory=list)


# What the quick scale changes in the CIFAR recipe (resnet_cifar) to train on mnist-5k digits in a
# few hundred updates: a cosine decay over the short run instead of the paper's steps at 50% and 75%
# of 64k iterations, and no horizontal flips (digits are not mirror-symmetric; the 4-pixel
# pad-and-crop translations stay).
DIGITS_OVERRIDES: tuple[tuple[str, Any], ...] = (("schedule", "cosine"), ("flip", False))
# The same for the standard scale's Fashion-MNIST in a few thousand updates: the cosine decay, and
# the paper's horizontal flips kept (a mirrored garment is the same garment).
FASHION_OVERRIDES: tuple[tuple[str, Any], ...] = (("schedule", "cosine"), ("flip", True))


def with_overrides(base: tuple[tuple[str, Any], ...], **changes: Any) -> tuple[tuple[str, Any], ...]:
    """Recipe overrides ``base`` (field-value pairs, as the frozen configs write them) with the fields
    of ``changes`` set: a field already in ``base`` keeps its place, so that
    :meth:`TrainSpec.describe` names each field once, in order."""
    return tuple({**dict(base), **changes}.items())


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


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
    "cnnlab.experiments.batchnorm",
    "cnnlab.experiments.vgg_depth",
    "cnnlab.experiments.small_filters",
    "cnnlab.experiments.augmentation",
    "cnnlab.experiments.ensemble",
    "cnnlab.experiments.transfer",
    "cnnlab.experiments.autoencoder",
    "cnnlab.experiments.shortcuts",
    "cnnlab.experiments.fractal_droppath",
    "cnnlab.experiments.vgg_filters",
    "cnnlab.experiments.dropout_conv",
    "cnnlab.experiments.batchnorm_more",
    "cnnlab.experiments.localisation",
    "cnnlab.experiments.dense",  # fcn-skips, dilation
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


# ---------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------


def verdict_from(criteria: list[Criterion], *, context: str) -> tuple[bool | str, str]:
    """``(reproduced, sentence)`` from the criteria: all met -> True, none -> False, else "partly".

    The sentence lists every finding and whether it agrees with the claim, so it is as honest as the
    criteria are; ``context`` says where it was measured ("at quick scale on mnist-5k").
    """
    if not criteria:
        raise ValueError("an experiment must state at least one criterion")
    met = sum(c.passed for c in criteria)
    reproduced: bool | str = True if met == len(criteria) else False if met == 0 else "partly"
    head = {True: "Reproduced", False: "Not reproduced", "partly": "Partly reproduced"}[reproduced]
    parts = [f"{c.finding} ({'as claimed' if c.passed else c.status or 'contrary to the claim'})" for c in criteria]
    return reproduced, f"{head} {context}: {'; '.join(parts)}."


# ---------------------------------------------------------------------------------------------
# Run context: data, models, training and evaluation through the library, cached within a run
# ---------------------------------------------------------------------------------------------


class ModelCache:
    """Data sets and trained models of a run, keyed by everything that determines them.

    Pass one cache to several :func:`run_experiment` calls to share trained networks between
    experiments run in one process (e.g. ``probes`` and ``invariance`` on the same ResNet-20).
    Cached models must not be modified: lesions and probes work on copies or read-only.
    """

    def __init__(self) -> None:
        self.data: dict[tuple, Any] = {}
        self.fits: dict[tuple, Any] = {}


class ExperimentContext:
    """What an experiment's ``run`` receives: its settings and the library, with caching.

    Experiments load data with :meth:`load_data`, build zoo models with :meth:`create_model`, train
    with :meth:`train` (``cnnlab.training.fit``; identical requests return the cached result),
    evaluate with :meth:`evaluate` and count parameters/MACs with :meth:`analyze`.
    """

    def __init__(
        self,
        *,
        experiment: str,
        scale: str,
        seed: int = 0,
        device: str | None = None,
        precision: str = "auto",
        progress: bool = True,
        cache: ModelCache | None = None,
        log: Callable[[str], None] | None = None,
        data_root: str | Path = "data",
        download: bool = False,
    ) -> None:
        self.experiment = experiment
        self.data_root = data_root  # where torchvision-backed data sets live (cifar10, ...)
        self.download = download
        self.scale = scale
        self.seed = seed
        self.device = device
        # Where measurements run (evaluations, lesions, features): the device given, else the GPU
        # if there is one. `fit` returns its model on the CPU; experiments move it with `to_device`.
        self.compute_device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = precision
        self.progress = progress
        self.cache = cache if cache is not None else ModelCache()
        self._log = log if log is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._t0 = time.perf_counter()
        self.trained: list[dict[str, Any]] = []  # one entry per network trained (for results.json)

    # -- bookkeeping -----------------------------------------------------------------------------

    def log(self, message: str) -> None:
        """A progress line on stderr, prefixed with the experiment and the elapsed time."""
        if self.progress:
            self._log(f"[{self.experiment} {time.perf_counter() - self._t0:6.1f}s] {message}")

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the run's seed (plus ``offset`` for independent streams)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    # -- data --------------------------------------------------------------------------------------

    def load_data(self, name: str, *, input_size: tuple[int, int, int] | None = None, **options: Any) -> Any:
        """``cnnlab.data.load_dataset(name, ...)``, loaded once per run (and per cache)."""
        from cnnlab.data import load_dataset

        key = (name, input_size, self.seed, str(self.data_root), tuple(sorted(options.items())))
        if key not in self.cache.data:
            self.log(f"loading data set {name}" + (f" at {input_size}" if input_size else ""))
            self.cache.data[key] = load_dataset(name, root=self.data_root, download=self.download,
                                                input_size=input_size, seed=self.seed, **options)  # fmt: skip
        return self.cache.data[key]

    def open_config(self, cfg: Any) -> tuple[Any, dict[str, Any]]:
        """The opening lines every experiment shares: ``(data, model options)`` of a scale's config --
        ``cfg.data`` loaded with ``cfg.data_options`` (and at ``cfg.input_size`` where the config has
        one), its training split cut to ``cfg.train_per_class`` images of each class where the config
        sets one, and ``cfg.model_options`` (if any) as a dict for :meth:`create_model`."""
        data = self.load_data(cfg.data, input_size=getattr(cfg, "input_size", None),
                              **dict(getattr(cfg, "data_options", ())))  # fmt: skip
        per_class = getattr(cfg, "train_per_class", None)
        if per_class is not None:
            data = train_subset(data, per_class)
        return data, dict(getattr(cfg, "model_options", ()))

    # -- models ------------------------------------------------------------------------------------

    def create_model(self, name: str, data: Any, **config: Any) -> nn.Module:
        """A zoo model sized for ``data`` (its classes and channels), initialised from the run's seed."""
        from cnnlab.models import create_model

        torch.manual_seed(self.seed)
        return create_model(name, num_classes=data.num_classes, in_chans=data.input_size[0], **config)

    def train(
        self,
        label: str,
        build: Callable[[], nn.Module],
        data: Any,
        spec: TrainSpec,
        *,
        key: Mapping[str, Any] | None = None,
        callbacks: Sequence[Any] = (),
        task: str | None = None,
    ) -> Any:
        """Train ``build()`` on ``data`` with ``cnnlab.training.fit``; returns its ``FitResult``.

        ``label`` names the network in logs and results. The cache key is ``key`` (what defines the
        network: zoo name and config; the label when None), the data, the spec, the seed and the
        precision, so asking twice for the same network, from any experiment sharing the cache,
        returns the network trained the first time (never retrained, never modified). A run with
        ``callbacks`` (the Trainer's, e.g. ``tools.MeasureEachEpoch``) observes the training, so it
        is always trained and never cached. The result's model holds the weights selected on the
        validation split; ``history`` has per-epoch test columns for the experiments' curves
        (``test_every_epoch``: never used for selection).
        """
        from cnnlab.training import fit

        cache_key = (
            _freeze(key) if key else label,
            data.name,
            tuple(data.input_size),
            len(data.train.y),
            _freeze(data.train.y[:64].tolist()),
            _freeze(spec.to_dict()),
            task,
            self.seed,
            self.precision,
        )
        if cache_key in self.cache.fits and not callbacks:
            result = self.cache.fits[cache_key]
            self.log(f"reusing {label}, already trained in this run")
            self.trained.append(_trained_row(label, data, spec, result, reused=True))
            return result
        model = build()
        self.log(f"training {label} ({_count_params(model):,} params) on {data.name}: {spec.describe()}")
        run = spec.replace(seed=self.seed, precision=self.precision, device=self.device, test_every_epoch=True,
                           task=task or spec.task)
        result = fit(model, data, run, progress=self.progress, callbacks=tuple(callbacks))
        self.log(f"trained {label}: {_headline(result)} in {result.seconds:.1f}s")
        if not callbacks:
            self.cache.fits[cache_key] = result
        self.trained.append(_trained_row(label, data, spec, result, reused=False))
        return result

    def evaluate(self, model: nn.Module, pair: Any, **options: Any) -> dict[str, float]:
        """``cnnlab.training.evaluate`` with the run's precision and device."""
        from cnnlab.training import evaluate

        options.setdefault("precision", self.precision)
        options.setdefault("device", self.compute_device)
        return evaluate(model, pair, **options)

    def to_device(self, model: nn.Module) -> nn.Module:
        """``model`` in eval mode on the run's compute device (in place; returns it)."""
        return model.to(self.compute_device).eval()

    def analyze(self, model: nn.Module, input_size: tuple[int, int, int]) -> dict[str, int]:
        """``{"params", "macs", "depth"}`` of ``model`` at ``input_size`` (one image), from
        :func:`cnnlab.analysis.analyze`; ``depth`` counts weight layers on the longest path."""
        from cnnlab.analysis import analyze

        total = analyze(model, tuple(input_size)).total
        return {"params": int(total.params), "macs": int(total.macs), "depth": int(total.depth)}


# The subset a config's `train_per_class` keeps is drawn with this fixed seed, like the validation
# split (cnnlab.data.datasets.VAL_SPLIT_SEED): every seed and every arm of a run, and runs with
# another --seed, train on the same images.
SUBSET_SEED = 2015


def train_subset(data: Any, per_class: int) -> Any:
    """``data`` with its training split cut to ``per_class`` images of each class, drawn with
    ``SUBSET_SEED``; the validation and test splits (and the normalisation) are kept whole."""
    from cnnlab.data import subset

    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ConfigError(f"train_per_class must be a positive integer, got {per_class!r}")
    train = subset(data.train, per_class=per_class, seed=SUBSET_SEED, relabel=False)
    note = (f"{data.name}: training split cut to {per_class:,} images per class ({len(train.y):,} of "
            f"{len(data.train.y):,}; fixed seed {SUBSET_SEED}); validation and test splits whole")
    return dataclasses.replace(data, train=train, notes=(*data.notes, note))


def _trained_row(label: str, data: Any, spec: TrainSpec, result: Any, *, reused: bool) -> dict[str, Any]:
    """One entry of results.json's ``trained``: the val-selected epoch, its val and test accuracy."""
    return dict(label=label, data=data.name, spec=spec.describe(), best_epoch=int(result.best_epoch),
                val_acc=float(result.val_acc), test_acc=float(result.test_acc), train_acc=float(result.train_acc),
                seconds=0.0 if reused else float(result.seconds), reused=reused)  # fmt: skip


def _freeze(value: Any) -> Any:
    """A hashable version of nested dicts/lists (for cache keys)."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Results files
# ---------------------------------------------------------------------------------------------


def versions() -> dict[str, Any]:
    """Versions of everything that produced a result (:mod:`cnnlab.provenance`: package, libraries,
    Python, git commit), with the run's thread count and GPU."""
    from cnnlab.provenance import git_commit, library_versions

    return {**library_versions(), "git_commit": git_commit(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _headline(result: Any) -> str:
    """The log line's metrics: accuracy for a classifier, else the task's own (mean IU for segmentation)."""
    if "acc" in result.test:
        return (f"val acc {result.val_acc:.4f} (epoch {result.best_epoch}, selected), test acc "
                f"{result.test_acc:.4f}, train acc {result.train_acc:.4f}")
    task = result.config.get("task") if isinstance(result.config, Mapping) else None
    key = task.get("monitor") if isinstance(task, Mapping) else None  # config.json's task.describe()
    key = key if key in result.test else next(iter(result.test), None)
    if key is None:
        return "no test metrics"
    train = result.history[-1].get(f"train_{key}") if result.history else None
    return f"test {key} {float(result.test[key]):.4f}" + (f", train {key} {float(train):.4f}" if train is not None else "")


def to_jsonable(value: Any) -> Any:
    """Plain JSON values from tensors, numpy scalars, tuples, dataclasses and paths (NaN -> None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # tensors, numpy arrays and numpy scalars
        return to_jsonable(value.tolist())
    raise TypeError(f"cannot write {type(value).__name__} to results.json")


def _default_out_dir(name: str, scale: str) -> Path:
    return Path("runs") / "experiments" / f"{name}-{scale}"


def run_experiment(
    name: str,
    *,
    scale: str = "quick",
    data: str | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    device: str | None = None,
    precision: str = "auto",
    progress: bool = True,
    cache: ModelCache | None = None,
    log: Callable[[str], None] | None = None,
    data_root: str | Path = "data",
    download: bool = False,
) -> dict[str, Any]:
    """Run experiment ``name`` at ``scale`` and write results.json, report.md and its plots.

    ``out_dir`` defaults to ``runs/experiments/<name>-<scale>/``; ``data`` replaces the scale's data
    set; ``data_root``/``download`` locate (or fetch) torchvision-backed data sets such as CIFAR-10.
    Returns the results dict written to ``results.json``.
    """
    exp = get_experiment(name)
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    cfg = exp.config(scale, data=data)
    out = Path(out_dir) if out_dir is not None else _default_out_dir(name, scale)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")

    ctx = ExperimentContext(
        experiment=name, scale=scale, seed=seed, device=device, precision=precision,
        progress=progress, cache=cache, log=log, data_root=data_root, download=download,
    )  # fmt: skip
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    ctx.log(f"scale {scale}, data {cfg.data}, seed {seed}")
    outcome = exp.run(ctx, cfg)
    if scale == "tiny":
        outcome.notes.append(TINY_NOTE)
    reproduced, criteria_met, verdict = _verdict(outcome, scale=scale, data=cfg.data)
    results: dict[str, Any] = {
        "experiment": exp.name,
        "title": exp.title,
        "claim": exp.claim,
        "source": "; ".join(lecture_ref(s) for s in exp.lectures),
        "paper": exp.paper,
        "scale": scale,
        "seed": seed,
        "data": cfg.data,
        "config": to_jsonable(cfg),
        "reproduced": reproduced,
        "criteria_met": criteria_met,
        "verdict": verdict,
        "criteria": [dataclasses.asdict(c) for c in outcome.criteria],
        "setup": list(outcome.setup),
        "notes": list(outcome.notes),
        "tables": [
            {"title": t.title, "columns": list(t.columns), "rows": [list(r) for r in t.rows]}
            for t in outcome.tables
        ],
        "trained": ctx.trained,
        **outcome.results,
        "command": f"cnnlab experiment {name} --scale {scale} --seed {seed}" + (f" --data {data}" if data else ""),
        "started": started,
        "precision": precision,
        "device": device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "versions": versions(),
    }
    results = to_jsonable(results)
    _write_experiment_folder(exp, results, out, t0=t0)
    ctx.log(f"{verdict}  ->  {out}/report.md ({results['seconds']:.0f}s)")
    results["out_dir"] = str(out)
    return results


def _verdict(outcome: Outcome, *, scale: str, data: str) -> tuple[Any, Any, str]:
    """``(reproduced, criteria_met, verdict)``: the criteria's verdict, except at the tiny scale, whose
    few updates test the plumbing and measure nothing."""
    criteria_met, verdict = verdict_from(outcome.criteria, context=f"at {scale} scale on {data}")
    if scale != "tiny":
        return criteria_met, criteria_met, verdict
    verdict = (f"Not measured: the tiny scale runs a few updates to test the plumbing, so its numbers say "
               f"nothing about the claim (the criteria below came out {_STATUS_WORDS[criteria_met]} only "
               f"by chance). Run `--scale quick` to measure it.")
    return "not measured", criteria_met, verdict


def _write_experiment_folder(exp: Experiment, results: dict[str, Any], out: Path, *, t0: float) -> None:
    """The plots, results.json (with ``plots`` and ``seconds`` added to ``results``) and report.md, drawn
    in a temporary folder beside ``out`` and renamed into it only once all are complete."""
    from cnnlab import atomic
    from cnnlab.viz.report import render_report

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        plots = exp.plot(results, tmp)
        results["plots"] = [dataclasses.asdict(p) for p in plots]
        results["seconds"] = round(time.perf_counter() - t0, 2)
        atomic.write_text(tmp / "results.json", json.dumps(results, indent=2, allow_nan=False) + "\n")
        atomic.write_text(tmp / "report.md", render_report(results))
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(tmp.iterdir()):  # every file is complete and fsync'd (cnnlab.atomic): rename them in
            os.replace(path, out / path.name)
        atomic.fsync_dir(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_STATUS_WORDS = {True: "reproduced", False: "not reproduced", "partly": "partly reproduced",
                 "not measured": "not measured"}


def summarize(results: Mapping[str, Any]) -> str:
    """One line per experiment for the CLI: name, scale, verdict status, time, report path."""
    status = _STATUS_WORDS[results["reproduced"]]
    return f"{results['experiment']} ({results['scale']}): {status} in {results['seconds']:.0f}s"



def write_index(all_results: Sequence[Mapping[str, Any]], root: str | Path, *, scale: str) -> Path:
    """``root/index.md``: one row per experiment run (claim, verdict, time, link to its report)."""
    from cnnlab.models.weights import atomic_write
    from cnnlab.viz.report import markdown_table

    root = Path(root)
    rows = [[f"[{r['experiment']}]({Path(r['out_dir']).relative_to(root).as_posix()}/report.md)"
             if Path(r["out_dir"]).is_relative_to(root) else r["experiment"],
             r["title"], _STATUS_WORDS[r["reproduced"]], f"{r['seconds']:.0f} s"] for r in all_results]
    total = sum(float(r["seconds"]) for r in all_results)
    text = "\n".join([
        f"# cnnlab experiments at {scale} scale", "",
        *(["> Tiny scale tests the plumbing only: no verdict is measured.", ""] if scale == "tiny" else []),
        f"{len(all_results)} experiments, {total / 60:.1f} minutes in all.", "",
        markdown_table(["experiment", "claim", "verdict", "time"], rows), "",
    ])
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(root / "index.md", text.encode())
    return root / "index.md"


# ---------------------------------------------------------------------------------------------
# Multi-seed verdicts: a criterion decided inside the seed-to-seed spread is a coin toss
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedComparison:
    """Arm ``a`` against arm ``b`` over seeds: the mean difference ``a - b``, its standard error and
    the verdict on the claim that the difference has the sign ``expect`` ("greater": a > b)."""

    a: tuple[float, ...]
    b: tuple[float, ...]
    difference: float
    stderr: float
    paired: bool
    expect: str
    threshold: float  # standard errors the difference must exceed
    verdict: str  # "met", "not met" or "within noise"

    def describe(self, *, scale: float = 100.0, unit: str = " points", verdict: bool = True) -> str:
        """``"+0.45 +- 0.12 points (SE, 3 paired seeds): met"``, values times ``scale``."""
        kind = "paired seeds" if self.paired else f"seeds ({len(self.a)} and {len(self.b)})"
        n = f"{len(self.a)} " if self.paired else ""
        return (f"{scale * self.difference:+.2f} +- {scale * self.stderr:.2f}{unit} (standard error, {n}{kind}; "
                f"decided at {self.threshold:g} SE)" + (f": {self.verdict}" if verdict else ""))


def require_seeds(experiment: str, seeds: Any, *, what: str = "seeds") -> None:
    """A ConfigError naming ``experiment`` unless ``seeds`` is an integer >= 2 (a verdict over seeds
    needs a standard error, so at least two)."""
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 2:
        raise ConfigError(f"{experiment}: {what} must be an integer >= 2 (the verdicts compare seeds), got {seeds!r}")


def require_per_class(experiment: str, per_class: Any) -> None:
    """A ConfigError naming ``experiment`` unless ``per_class`` (a config's ``train_per_class``) is
    None (the whole training split) or a positive integer."""
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ConfigError(f"{experiment}: train_per_class must be a positive integer or None, got {per_class!r}")


def compare_seeds(
    a: Sequence[float], b: Sequence[float], *, expect: str = "greater", paired: bool = True, threshold: float = 2.0,
) -> SeedComparison:
    """Compare per-seed values of two arms; the claim is met only if the difference exceeds
    ``threshold`` standard errors in the ``expect`` direction, "not met" if it does in the other
    one, "within noise" otherwise.

    ``paired``: the arms were run with the same seeds (same data order and initialisation stream),
    so the standard error is that of the per-seed differences, std(a_i - b_i) / sqrt(n); else
    Welch's sqrt(var_a / n_a + var_b / n_b). Sample variances (n - 1); at least 2 seeds per arm.
    """
    a, b = tuple(float(v) for v in a), tuple(float(v) for v in b)
    if expect not in ("greater", "less"):
        raise ConfigError(f"compare_seeds: expect must be 'greater' or 'less', got {expect!r}")
    if len(a) < 2 or len(b) < 2:
        raise ConfigError(f"compare_seeds needs at least 2 seeds per arm, got {len(a)} and {len(b)}")
    if paired and len(a) != len(b):
        raise ConfigError(f"compare_seeds: paired arms need the same seeds, got {len(a)} and {len(b)} values")

    def var(xs: Sequence[float]) -> float:
        m = sum(xs) / len(xs)
        return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)

    if paired:
        d = [x - y for x, y in zip(a, b)]
        diff, se = sum(d) / len(d), math.sqrt(var(d) / len(d))
    else:
        diff = sum(a) / len(a) - sum(b) / len(b)
        se = math.sqrt(var(a) / len(a) + var(b) / len(b))
    signed = diff if expect == "greater" else -diff
    if abs(diff) <= threshold * se or diff == 0:
        verdict = "within noise"
    else:
        verdict = "met" if signed > 0 else "not met"
    return SeedComparison(a=a, b=b, difference=diff, stderr=se, paired=paired, expect=expect,
                          threshold=threshold, verdict=verdict)  # fmt: skip


def seed_criterion(description: str, finding: str, comparison: SeedComparison, *,
                   scale: float = 100.0, unit: str = " points") -> Criterion:
    """A :class:`Criterion` decided by ``comparison``: passed when "met"; "within noise" is said so
    in the verdict rather than counted as contrary to the claim (it still does not pass)."""
    return Criterion(
        description=f"{description} (by more than {comparison.threshold:g} standard errors over seeds)",
        finding=f"{finding}: difference {comparison.describe(scale=scale, unit=unit, verdict=False)}",
        passed=comparison.verdict == "met",
        status="within noise" if comparison.verdict == "within noise" else "",
    )
