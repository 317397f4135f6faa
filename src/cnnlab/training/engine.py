"""The training engine: ``fit`` a model on a ``DataBundle`` as a :class:`TrainSpec` describes, ``evaluate`` it.

``fit`` is wiring: it resolves the recipe, the device and precision and the task, opens the run
folder (or resumes it), and hands a :class:`~cnnlab.training.trainer.Trainer` its callbacks (progress
bar, steps/metrics CSVs, TensorBoard, checkpoints, NaN guard, early stopping, and the caller's).

One loop serves the laptop CPU and the GPU: in-memory batches (``BatchLoader``), augmentation on
whole batches (``cnnlab.data.augment.Augment``), autocast in the precision ``device.py`` picks,
DistributedDataParallel when a process group exists (``torchrun``), the learning rate set from the
step at every update (``schedules.LRSchedule``). The loss and metrics are the task's
(:mod:`cnnlab.training.tasks`; classification: cross-entropy with GoogLeNet's auxiliary heads).

Selection reads the validation split: the best checkpoint, ``model.safetensors``, the plateau
schedule and early stopping (recipe field ``early_stop_patience``) follow the task's monitor on
``data.val``. The test split is evaluated once at the end, on the selected weights (``test_<k>``)
and on the last ones (``test_<k>_last``); per-epoch test columns only with ``test_every_epoch``.

With a ``run_dir`` a run writes: ``config.json`` (at the start), ``steps.csv`` (step, epoch, batch,
lr, loss: one row per update), ``metrics.csv`` (one row per epoch: train_<k>, val_<k>),
``checkpoints/`` (``last`` every epoch and every ``checkpoint_every`` steps, ``best`` on the best
val metric; see ``cnnlab.training.checkpoint``), and at the end ``model.safetensors`` (the selected
weights), the task's numbers (a classifier's ``confusion.csv`` and ``mistakes.npz``, ...) and last
``results.json``. Only rank 0 writes. Training draws no picture: a caller passes
``cnnlab.viz.run_pictures.RunPictures()`` among the ``callbacks`` for ``curves.png`` and the others
(``cnnlab train`` does).

Resuming restores everything a step depends on (weights, optimizer, plateau state, grad scaler,
the loader's epoch and position, every RNG including the augmentation generator, the partial
epoch's sums, the best val value and epoch), so with ``deterministic=True`` on a CPU an
interrupted and resumed run is bitwise the run that was never interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.data import DataBundle, TensorPair
from cnnlab.data.augment import tta_views
from cnnlab.errors import ConfigError
from cnnlab.provenance import git_commit, library_versions
from cnnlab.training import distributed as D
from cnnlab.training.callbacks import (Checkpointing, EarlyStopping, MetricsCsv, NanGuard, ProgressBar, ResultsJson,
                                       RunFiles, StepsCsv, TensorBoard)
from cnnlab.training.device import Precision, resolve_device, resolve_precision
from cnnlab.training.recipes import Recipe
from cnnlab.training.rundir import RunDir
from cnnlab.training.tasks import Task, get_task
from cnnlab.training.spec import TrainSpec
from cnnlab.training.trainer import FitResult, Trainer, TrainStep

__all__ = ["FitResult", "TrainSpec", "fit", "evaluate", "evaluate_mc_dropout", "TrainStep", "resolve_task",
           "CHECKPOINT_DIR"]

CHECKPOINT_DIR = "checkpoints"


# ---------------------------------------------------------------------------------------------
# evaluation


def _topk_hits(logits: Tensor, y: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """Number of samples whose label is the top-1 and among the top-k scores."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    hit = top == y.view(-1, 1)
    return hit[:, 0].sum(), hit.any(dim=1).sum()


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def _eval_sums(model: nn.Module, pair: TensorPair, *, batch_size: int, prec: Precision, device: torch.device,
               tta: str = "none", tta_pad: int | None = None, shard: tuple[int, int] = (0, 1),
               mc_samples: int = 0) -> Tensor:
    """``[loss sum, top-1 hits, top-5 hits, count]`` (float64) over this rank's shard of ``pair``.

    With TTA or MC-dropout the class probabilities of the views/samples are averaged and the loss is
    the negative log of the averaged probability of the true class.
    """
    rank, world = shard
    x_all, y_all = pair.x, pair.y
    if world > 1:
        x_all, y_all = x_all[rank::world], y_all[rank::world]
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    dtype = prec.autocast_dtype
    for start in range(0, len(y_all), batch_size):
        x = x_all[start : start + batch_size].to(device, non_blocking=True)
        y = y_all[start : start + batch_size].to(device, non_blocking=True)
        views = tta_views(x, tta, pad=tta_pad) if tta != "none" else [x]
        passes = max(mc_samples, 1)
        probs = None
        logits = None
        for v in views:
            v = v.contiguous(memory_format=prec.memory_format)
            for _ in range(passes):
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    out = model(v)
                out = out.float()
                if len(views) == 1 and passes == 1:
                    logits = out
                else:
                    p = out.softmax(dim=1)
                    probs = p if probs is None else probs + p
        if logits is not None:
            loss = F.cross_entropy(logits, y, reduction="sum")
            scores = logits
        else:
            probs = probs / (len(views) * passes)
            loss = F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum")
            scores = probs
        top1, top5 = _topk_hits(scores, y)
        sums += torch.stack([loss.double(), top1.double(), top5.double(), torch.tensor(len(y), dtype=torch.float64, device=device)])
    return sums


def _sums_to_metrics(sums: Tensor) -> dict:
    loss, top1, top5, n = (float(v) for v in sums.cpu())
    n = max(n, 1.0)
    return {"loss": loss / n, "acc": top1 / n, "top5": top5 / n}


def _check_pair(pair: TensorPair) -> None:
    if not isinstance(pair, TensorPair):
        raise ConfigError(f"evaluate: expected a TensorPair (x, y), got {type(pair).__name__}")
    if len(pair) == 0:
        raise ConfigError("evaluate: the split is empty")


def evaluate(model: nn.Module, pair: TensorPair, *, batch_size: int = 512, precision: str = "auto",
             tta: str = "none", device: str | torch.device | None = None, tta_pad: int | None = None) -> dict:
    """Top-1/top-5 accuracy (fractions in [0, 1]) and mean cross-entropy of ``model`` on ``pair``.

    ``tta``: "none", "flip" or "10crop" (``cnnlab.data.augment.tta_views``): the softmax
    probabilities of the views are averaged. ``device`` defaults to the model's. The model is put in
    eval mode and back in the mode it had.
    """
    _check_pair(pair)
    if tta not in ("none", "flip", "10crop"):
        raise ConfigError(f"tta must be 'none', 'flip' or '10crop', got {tta!r}")
    dev = _model_device(model) if device is None else resolve_device(device)
    prec = resolve_precision(precision, dev)
    was_training = model.training
    model.to(dev).eval()
    try:
        sums = _eval_sums(model, pair, batch_size=batch_size, prec=prec, device=dev, tta=tta, tta_pad=tta_pad)
    finally:
        model.train(was_training)
    return _sums_to_metrics(sums)


def evaluate_task(model: nn.Module, pair: TensorPair, task: Task, *, batch_size: int = 512, precision: str = "auto",
                  device: str | torch.device | None = None) -> dict:
    """The ``task``'s own metrics of ``model`` on ``pair`` (``task.eval_sums`` summed, then
    ``task.summarize``), as the Trainer evaluates val and test: the ELBO and importance-sampled NLL of
    a VAE, the reconstruction error of an autoencoder. ``task`` must have been ``setup`` on the data."""
    _check_pair(pair)
    dev = _model_device(model) if device is None else resolve_device(device)
    prec = resolve_precision(precision, dev)
    was_training = model.training
    model.to(dev).eval()
    try:
        sums = task.split_sums(model, pair.x, pair.y, batch_size=batch_size, device=dev,
                               autocast_dtype=prec.autocast_dtype, memory_format=prec.memory_format)
    finally:
        model.train(was_training)
    return task.summarize(sums)


def evaluate_mc_dropout(model: nn.Module, pair: TensorPair, *, samples: int, batch_size: int = 512,
                        precision: str = "auto", device: str | torch.device | None = None, seed: int = 0) -> dict:
    """Monte-Carlo dropout (Gal & Ghahramani 2016): ``samples`` stochastic passes per batch with only
    the ``nn.Dropout`` modules in training mode (batch norm keeps its running statistics), softmax
    probabilities averaged. Compare with :func:`evaluate`, the standard weight scaling (PyTorch's
    inverted dropout already scales at training time, which is the same at test time).

    Returns ``{"loss", "acc", "top5", "dropout_modules"}``; the global RNG is left as it was.
    """
    _check_pair(pair)
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"dropout samples must be a positive integer, got {samples!r}")
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    if not dropouts:
        raise ConfigError(f"{type(model).__name__} has no nn.Dropout module: Monte-Carlo dropout needs one")
    dev = _model_device(model) if device is None else resolve_device(device)
    prec = resolve_precision(precision, dev)
    was_training = model.training
    model.to(dev).eval()
    for m in dropouts:
        m.train()
    try:
        with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            sums = _eval_sums(model, pair, batch_size=batch_size, prec=prec, device=dev, mc_samples=samples)
    finally:
        model.train(was_training)
    return {**_sums_to_metrics(sums), "dropout_modules": len(dropouts)}


# ---------------------------------------------------------------------------------------------
# fit


def _apply_dropout(model: nn.Module, p: float | None) -> int:
    if p is None:
        return 0
    mods = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for m in mods:
        m.p = p
    return len(mods)


def resolve_task(spec: TrainSpec, *, recipe: Recipe) -> Task:
    """The run's task: ``spec.task`` with ``spec.task_options``, else the registered model's
    (``model_info(spec.model).task``), else classification; configured from the recipe (e.g. label
    smoothing)."""
    name = spec.task
    if name is None:
        name = "classification"
        if spec.model is not None:
            from cnnlab.models.registry import list_models, model_info

            if spec.model in list_models():
                name = model_info(spec.model).task
    task = get_task(name, **spec.task_options)
    task.configure(recipe)
    return task


def _without_broken_kernels(prec: Precision, model: nn.Module, dev: torch.device, memory_format: str) -> Precision:
    """Departure from "channels_last everywhere": on this torch's CPU kernels (oneDNN, torch 2.14, Zen 4
    with AVX512-BF16) the backward of a *dilated* convolution in bf16 with channels_last is wrong: NaN
    gradients (dilation 2) or a crash (4, 8), measured on 24 maps of 32x32; fp32 channels_last and bf16
    NCHW are right. A model with a dilated convolution therefore trains in bf16 with the NCHW layout
    unless a layout was asked for."""
    if (dev.type != "cpu" or prec.name != "bf16" or not prec.channels_last or memory_format != "auto"
            or not any(isinstance(m, nn.Conv2d) and max(m.dilation) > 1 for m in model.modules())):
        return prec
    return Precision(prec.name, False, prec.reason + "; NCHW: bf16 channels_last backward of dilated convs is broken here")


def _check_args(data, spec, resume: bool, run_dir) -> None:
    if not isinstance(spec, TrainSpec):
        raise ConfigError(f"fit: the run is described by a TrainSpec (cnnlab.training.TrainSpec(recipe=..., "
                          f"epochs=...)), got {type(spec).__name__}")
    if not isinstance(data, DataBundle):
        raise ConfigError(f"fit: data must be a DataBundle (cnnlab.data.load_dataset), got {type(data).__name__}")
    if data.val is None or len(data.val) == 0:
        raise ConfigError(f"{data.name}: no validation samples to select on (load it with load_dataset, or "
                          "cnnlab.data.with_val_split; raise val_fraction for a tiny data set)")
    if resume and run_dir is None:
        raise ConfigError("fit: resume=True needs run_dir (the run folder to continue)")


def fit(model: nn.Module, data: DataBundle, spec: TrainSpec, *, run_dir: str | os.PathLike | RunDir | None = None,
        resume: bool = False, callbacks=(), progress: bool = True) -> FitResult:
    """Train ``model`` on ``data.train`` as ``spec`` describes, select on ``data.val``, test once on
    ``data.test``.

    ``spec``: a :class:`TrainSpec`; ``fit`` reads what is learned (``recipe``, a name or a Recipe,
    None for the default of ``spec.model``; ``overrides``, ``batch_size``, ``lr``; ``task``) and how
    the run goes (``epochs``: the length, milestones scaled in proportion; ``max_steps``: stop after
    that many updates, the schedule unchanged; ``seed``, ``precision``, ``memory_format``,
    ``device``, ``checkpoint_every``, ``deterministic``: bitwise-reproducible on a CPU with a fixed
    number of threads; ``tensorboard``; ``test_every_epoch``: test columns in every metrics row, for
    curves, never used for selection). The spec is recorded in config.json.

    ``run_dir``: None writes nothing; a path: the run's files go there (a new or empty folder, or with
    ``resume=True`` a run to continue from its newest good checkpoint), and ``fit`` owns the folder's
    lifecycle (:meth:`RunDir.session`); an opened :class:`RunDir`: its opener owns it.
    ``callbacks``: the caller's, after the built-in ones (see :mod:`cnnlab.training.trainer`; at the
    end of a run with a folder, after its numbers are written and before results.json).
    ``progress``: a progress bar (or a line a minute without a terminal).
    """
    _check_args(data, spec, resume, run_dir)
    if run_dir is None or isinstance(run_dir, RunDir) or not D.current().is_main:
        return _fit(model, data, spec, run_dir=run_dir, resume=resume, callbacks=callbacks, progress=progress)
    with RunDir.open(run_dir, resume=resume).session() as opened:
        return _fit(model, data, spec, run_dir=opened, resume=resume, callbacks=callbacks, progress=progress)


def _fit(model: nn.Module, data: DataBundle, spec: TrainSpec, *, run_dir: RunDir | str | os.PathLike | None,
         resume: bool, callbacks, progress: bool) -> FitResult:
    """``fit`` once the run folder is open: resolve recipe, task, device and precision, train."""
    t_start = time.perf_counter()
    recipe = spec.resolve(data_name=data.name)
    task = resolve_task(spec, recipe=recipe)
    task.setup(data)
    dist = D.current()
    dev = resolve_device(spec.device)
    if dev.type == "cuda" and dist.enabled:
        dev = torch.device("cuda", dist.local_rank)
    prec = _without_broken_kernels(resolve_precision(spec.precision, dev, memory_format=spec.memory_format),
                                   model, dev, spec.memory_format)
    out = Path(run_dir) if run_dir is not None else None
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if spec.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    trainer = None
    try:
        n_dropout = _apply_dropout(model, recipe.dropout)
        trainer = Trainer(model, data, recipe, task, device=dev, prec=prec, spec=spec, progress=progress,
                          out_dir=out if dist.is_main else None, started=t_start)
        config = _run_config(trainer, n_dropout)
        cbs = _callbacks(trainer, run_dir if dist.is_main else out, config, resume=resume, extra=callbacks)
        result = trainer.fit(cbs)
        result.out_dir, result.config = out, config
    except BaseException:
        if isinstance(run_dir, RunDir):
            run_dir.last_step = trainer.step if trainer is not None else None
        raise
    finally:
        torch.use_deterministic_algorithms(was_deterministic)  # a library call leaves the global flag as it was
    return result


def _callbacks(trainer: Trainer, out: RunDir | Path | None, config: dict, *, resume: bool, extra) -> list:
    """Prepare (or resume) the run folder and list the run's callbacks: the built-in ones, then ``extra``.
    ``out`` is the locked :class:`RunDir` on rank 0, the folder's path on the other ranks."""
    spec, main = trainer.spec, trainer.main
    ckpt_dir = Path(out) / CHECKPOINT_DIR if out is not None else None
    patience = trainer.recipe.early_stop_patience
    cbs: list = [NanGuard(ckpt_dir), ProgressBar(trainer.progress and main, name=config["model"]["name"])]
    if patience:
        cbs.append(EarlyStopping(patience))  # before the checkpoint, so that `stop` is saved with it
    if out is not None:
        if resume:
            config["resumed"] = trainer.resume(ckpt_dir)
        if main:
            if resume:
                out.record_resume(config)
            else:
                out.write_config(config)
            cbs += [StepsCsv(out / "steps.csv"), MetricsCsv(out / "metrics.csv")]
            if spec.tensorboard:
                cbs.append(TensorBoard(out / "tensorboard"))
        cbs.append(Checkpointing(ckpt_dir, every=spec.checkpoint_every))
    # A task may bring callbacks of its own (the VAE's end-of-run likelihood and generative.npz).
    cbs += trainer.task.callbacks(Path(out) if out is not None else None)
    names = {"name": config["model"]["name"], "data_name": trainer.data.name}
    if out is not None and main:  # the run's numbers, before the caller's callbacks (which may draw them)
        cbs += trainer.task.run_callbacks(Path(out))  # e.g. segmentation's overlay.npz
        cbs.append(RunFiles(out, **names))
    cbs += list(extra)
    if out is not None and main:
        cbs.append(ResultsJson(out, **names))  # last: it marks the run finished
    return cbs


def _run_config(trainer: Trainer, n_dropout: int) -> dict:
    """The run's record (config.json), written before the first step (a killed run can be repeated)."""
    data, recipe, resolved, prec, spec = trainer.data, trainer.recipe, trainer.resolved, trainer.prec, trainer.spec
    model = trainer.model
    name = spec.model or type(model).__name__
    stored = spec.to_dict()
    if not isinstance(spec.recipe, Recipe):
        stored["recipe"] = recipe.name  # the default recipe resolved, so that the spec repeats the run
    return {
        "cnnlab_run": 1,
        "spec": stored,
        "model": {"name": name, "class": type(model).__name__, "params": sum(p.numel() for p in model.parameters()),
                  "dropout_modules_set": n_dropout},
        "task": trainer.task.describe(),
        "data": {"name": data.name, "num_classes": data.num_classes, "input_size": list(data.input_size),
                 "train_size": len(data.train), "val_size": len(data.val), "test_size": len(data.test),
                 "val_fraction": data.val_fraction, "val_split_seed": data.val_seed,
                 "class_names": list(data.class_names), "mean": list(data.mean), "std": list(data.std),
                 "notes": list(data.notes)},
        "recipe": recipe.to_dict(),
        "schedule": {**{k: getattr(resolved, k) for k in ("total_steps", "steps_per_epoch", "epochs",
                                                             "milestones", "step_size", "scale")},
                     "note": resolved.note, "stop_at_step": trainer.stop_at, "epochs_override": spec.epochs},
        "augment": trainer.augment.to_dict(),
        "seed": spec.seed,
        "selection": {"split": "val", "monitor": trainer.task.monitor, "mode": trainer.task.mode,
                      "test_every_epoch": spec.test_every_epoch},
        "precision": {"asked": spec.precision, "used": prec.name, "channels_last": prec.channels_last,
                      "reason": prec.reason},
        "device": str(trainer.device),
        "world_size": trainer.world,
        "per_rank_batch_size": trainer.loader.batch_size,
        "threads": torch.get_num_threads(),
        "deterministic": spec.deterministic,
        "max_steps": spec.max_steps,
        "checkpoint_every": spec.checkpoint_every,
        "versions": library_versions(),
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
