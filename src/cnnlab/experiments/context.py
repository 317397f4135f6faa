"""What an experiment's ``run`` receives: the run's settings and the library, with trained models cached.

- :class:`ExperimentContext`: data, model building, training and evaluation through
  :mod:`cnnlab.training`, with a :class:`ModelCache` so that a run never trains the same network
  twice.
- Seeds: the run's seed lives in the context; :func:`seeded` gives the context of another seed
  (sharing the cache, log and record of trained networks), :func:`seed_list` the seeds of a
  multi-seed arm, :meth:`ExperimentContext.generator` independent random streams.
- :class:`MeasureEachEpoch`: a callback for :meth:`ExperimentContext.train` that measures something
  after each epoch.
- :func:`train_subset`, :func:`restrict`: a data set with its training split cut down (per class, or
  to some classes).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.training.spec import TrainSpec

__all__ = [
    "ModelCache",
    "ExperimentContext",
    "seeded",
    "seed_list",
    "MeasureEachEpoch",
    "SUBSET_SEED",
    "train_subset",
    "restrict",
]


class ModelCache:
    """Data sets and trained models of a run, keyed by everything that determines them.

    Pass one cache to several :func:`~cnnlab.experiments.runner.run_experiment` calls to share
    trained networks between experiments run in one process (e.g. ``probes`` and ``invariance`` on
    the same ResNet-20).
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
        ``callbacks`` (the Trainer's, e.g. :class:`MeasureEachEpoch`) observes the training, so it
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


def seeded(ctx: ExperimentContext, seed: int) -> ExperimentContext:
    """A context like ``ctx`` but for ``seed``, sharing its cache, log and ``trained`` list."""
    if seed == ctx.seed:
        return ctx
    sub = ExperimentContext(
        experiment=ctx.experiment, scale=ctx.scale, seed=seed, device=ctx.device, precision=ctx.precision,
        progress=ctx.progress, cache=ctx.cache, log=lambda msg: ctx.log(msg.split("] ", 1)[-1]),
        data_root=ctx.data_root, download=ctx.download,
    )  # fmt: skip
    sub.trained = ctx.trained  # every network trained appears in results.json once
    return sub


def seed_list(ctx: ExperimentContext, n: int) -> list[int]:
    """``n`` seeds starting at the run's: ``[seed, seed + 1, ...]`` (the first is the run's own, so
    a network trained for one seed is the one any single-seed experiment would train)."""
    return [ctx.seed + i for i in range(n)]


class MeasureEachEpoch:
    """An ``on_epoch_end`` callback for ``ctx.train``: ``rows`` gets ``{"epoch": e, **measure(model)}``
    after every epoch (``every_epoch``) or only after the last one. ``measure`` sees the weights of
    that epoch (not the selected ones) and must not draw from the global RNG (evaluation only)."""

    def __init__(self, measure: Callable[[nn.Module], dict[str, float]], *, every_epoch: bool = True) -> None:
        self.measure, self.every_epoch = measure, every_epoch
        self.rows: list[dict[str, float]] = []

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict) -> None:
        if trainer.cut or not (self.every_epoch or epoch == trainer.resolved.epochs):
            return
        was_training = trainer.model.training
        self.rows.append({"epoch": epoch, **self.measure(trainer.model)})
        trainer.model.train(was_training)


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


def restrict(data: Any, *, classes: Sequence[int] | None = None, per_class: int | None = None,
             seed: int = 0, name: str | None = None) -> Any:
    """``data`` (a DataBundle) with its training split cut to ``classes`` (relabelled 0..k-1) and at most
    ``per_class`` samples of each, the val and test splits to the same classes (all of their samples)."""
    from cnnlab.data import subset

    train = subset(data.train, classes=classes, per_class=per_class, seed=seed)
    test = subset(data.test, classes=classes)
    val = subset(data.val, classes=classes) if data.val is not None else None
    kept = list(classes) if classes is not None else list(range(data.num_classes))
    return dataclasses.replace(
        data,
        name=name or data.name,
        train=train,
        val=val,
        test=test,
        num_classes=len(kept),
        class_names=tuple(data.class_names[c] for c in kept),
        notes=(*data.notes, f"classes {kept}" + (f", {per_class} training samples per class" if per_class else "")),
    )


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
