"""The training engine: ``fit`` a model on a ``DataBundle`` with a recipe, ``evaluate`` it.

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

With ``out_dir`` a run writes: ``config.json`` (at the start), ``steps.csv`` (step, epoch, batch,
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
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.data import DataBundle, TensorPair
from cnnlab.data.augment import tta_views
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.provenance import git_commit, library_versions
from cnnlab.training import checkpoint as ck
from cnnlab.training import distributed as D
from cnnlab.training.callbacks import (Checkpointing, EarlyStopping, MetricsCsv, NanGuard, ProgressBar, ResultsJson,
                                       RunFiles, StepsCsv, TensorBoard)
from cnnlab.training.device import Precision, resolve_device, resolve_precision
from cnnlab.training.recipes import Recipe, default_recipe_for, get_recipe
from cnnlab.training.rundir import RunDir
from cnnlab.training.tasks import Task, get_task
from cnnlab.training.trainer import FitResult, RunOptions, Trainer, TrainStep

__all__ = ["FitResult", "RunSpec", "fit", "fit_spec", "evaluate", "evaluate_mc_dropout", "TrainStep", "resolve_recipe", "resolve_task",
           "RunOptions", "RESULT_KEYS", "CHECKPOINT_DIR"]

RESULT_KEYS = ("model", "data", "epochs", "best_epoch", "val_acc", "test_acc", "test_acc_last", "test_top5",
               "train_acc", "seconds", "images_per_second")
CHECKPOINT_DIR = "checkpoints"


def resolve_recipe(recipe: Recipe | str | None, *, model_name: str | None = None,
                   overrides: dict | None = None, batch_size: int | None = None,
                   lr: float | None = None, data_name: str | None = None) -> Recipe:
    """The recipe object: by name, or the model's default (``model_info(model_name).recipe``, or the
    recipe registered for that default on ``data_name``: ``recipes.DATA_RECIPES``), with
    ``overrides`` (any field) and the common ``batch_size``/``lr`` applied."""
    if recipe is None:
        if model_name is None:
            raise ConfigError("fit: give recipe= (a Recipe or its name) or model_name= (its default recipe)")
        from cnnlab.models.registry import model_info

        recipe = default_recipe_for(model_info(model_name).recipe, data_name)
    if isinstance(recipe, str):
        recipe = get_recipe(recipe)
    if not isinstance(recipe, Recipe):
        raise ConfigError(f"recipe must be a Recipe or a recipe name, got {type(recipe).__name__}")
    changes = dict(overrides or {})
    if batch_size is not None:
        changes["batch_size"] = batch_size
    if lr is not None:
        changes["lr"] = lr
    return recipe.replace(**changes) if changes else recipe


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


def resolve_task(task: Task | str | None, *, model_name: str | None, recipe: Recipe) -> Task:
    """The task object: given, by name, or the registered model's (``model_info(name).task``), else
    classification; configured from the recipe (e.g. label smoothing)."""
    if task is None:
        task = "classification"
        if model_name is not None:
            from cnnlab.models.registry import list_models, model_info

            if model_name in list_models():
                task = model_info(model_name).task
    if isinstance(task, str):
        task = get_task(task)
    if not isinstance(task, Task):
        raise ConfigError(f"task must be a Task or a task name, got {type(task).__name__}")
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


def _check_args(data, epochs, max_steps, checkpoint_every, resume, out_dir) -> None:
    for name, v in (("epochs", epochs), ("max_steps", max_steps), ("checkpoint_every", checkpoint_every)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    if not isinstance(data, DataBundle):
        raise ConfigError(f"fit: data must be a DataBundle (cnnlab.data.load_dataset), got {type(data).__name__}")
    if data.val is None or len(data.val) == 0:
        raise ConfigError(f"{data.name}: no validation samples to select on (load it with load_dataset, or "
                          "cnnlab.data.with_val_split; raise val_fraction for a tiny data set)")
    if resume and out_dir is None:
        raise ConfigError("fit: resume=True needs out_dir (the run directory to continue)")


@dataclass(frozen=True)
class RunSpec:
    """What ``fit`` trains with, grouped: the :class:`Recipe` (what is learned), the
    :class:`RunOptions` (how the run goes), the arithmetic (precision, memory format, device), the
    task (None: the model's registered one) and what config.json records (``model_name``, ``run_info``)."""

    recipe: Recipe
    options: RunOptions = RunOptions()
    precision: str = "auto"
    memory_format: str = "auto"
    device: str | torch.device | None = None
    task: Task | str | None = None
    model_name: str | None = None
    run_info: dict | None = None


def fit(model: nn.Module, data: DataBundle, recipe: RunSpec | Recipe | str | None = None, *,
        epochs: int | None = None, batch_size: int | None = None, lr: float | None = None, precision: str = "auto",
        device: str | torch.device | None = None, seed: int = 0, out_dir: str | os.PathLike | RunDir | None = None,
        progress: bool = True, overrides: dict | None = None, max_steps: int | None = None,
        checkpoint_every: int | None = None, resume: bool = False, deterministic: bool = False,
        memory_format: str = "auto", model_name: str | None = None, run_info: dict | None = None,
        tensorboard: bool = False, task: Task | str | None = None, callbacks=(),
        test_every_epoch: bool = False) -> FitResult:
    """Train ``model`` on ``data.train``, select on ``data.val``, test once on ``data.test``.

    ``fit(model, data, spec)`` with a :class:`RunSpec` (then only ``out_dir``, ``resume`` and
    ``callbacks`` may be given besides), or the keyword form, which builds the RunSpec:
    ``recipe`` is a :class:`Recipe`, its name, or None for the default recipe of ``model_name``;
    ``overrides`` changes any of its fields, ``batch_size``/``lr`` the common two, ``epochs`` the
    length (milestones scaled in proportion). ``max_steps`` stops after that many updates in all
    (the schedule is not changed: for tests and quick looks). ``out_dir``: None writes nothing;
    else the run's files go there (see the module docstring and :mod:`cnnlab.training.rundir`:
    a new folder, an empty one, or with ``resume=True`` a run to continue from its newest good
    checkpoint). ``checkpoint_every``: also save ``last`` every N updates.
    ``deterministic``: deterministic algorithms only (bitwise-reproducible on a CPU with a fixed
    number of threads). ``model_name``/``run_info`` are recorded in config.json. ``task``: a Task
    or its name (None: the model's registered task). ``callbacks``: the caller's, after the
    built-in ones (see :mod:`cnnlab.training.trainer`; at the end of a run with a folder, after its
    numbers are written and before results.json). ``test_every_epoch``: test columns in
    every metrics row, for curves (never used for selection).
    """
    if isinstance(recipe, RunSpec):
        given = {k: v for k, v in locals().items() if k in _KEYWORD_DEFAULTS and v != _KEYWORD_DEFAULTS[k]}
        if given:
            raise ConfigError(f"fit: with a RunSpec, set {sorted(given)[0]!r} in the spec, not as a keyword")
        return fit_spec(model, data, recipe, out_dir=out_dir, resume=resume, callbacks=callbacks)
    spec = RunSpec(
        recipe=resolve_recipe(recipe, model_name=model_name, overrides=overrides, batch_size=batch_size, lr=lr),
        options=RunOptions(epochs=epochs, seed=seed, max_steps=max_steps, checkpoint_every=checkpoint_every,
                           progress=progress, tensorboard=tensorboard, test_every_epoch=test_every_epoch,
                           deterministic=deterministic),
        precision=precision, memory_format=memory_format, device=device, task=task, model_name=model_name,
        run_info=run_info)
    return fit_spec(model, data, spec, out_dir=out_dir, resume=resume, callbacks=callbacks)


# The keyword form's options a RunSpec holds instead (given with a RunSpec, they would be ignored).
_KEYWORD_DEFAULTS = {"epochs": None, "batch_size": None, "lr": None, "precision": "auto", "device": None, "seed": 0,
                     "progress": True, "overrides": None, "max_steps": None, "checkpoint_every": None,
                     "deterministic": False, "memory_format": "auto", "model_name": None, "run_info": None,
                     "tensorboard": False, "task": None, "test_every_epoch": False}


def fit_spec(model: nn.Module, data: DataBundle, spec: RunSpec, *, out_dir: str | os.PathLike | RunDir | None = None,
             resume: bool = False, callbacks=()) -> FitResult:
    """``fit`` with a :class:`RunSpec`: resolve device, precision and task, open the run folder, train."""
    t_start = time.perf_counter()
    opts = spec.options
    _check_args(data, opts.epochs, opts.max_steps, opts.checkpoint_every, resume, out_dir)
    task = resolve_task(spec.task, model_name=spec.model_name, recipe=spec.recipe)
    task.setup(data)
    dist = D.current()
    dev = resolve_device(spec.device)
    if dev.type == "cuda" and dist.enabled:
        dev = torch.device("cuda", dist.local_rank)
    prec = _without_broken_kernels(resolve_precision(spec.precision, dev, memory_format=spec.memory_format),
                                   model, dev, spec.memory_format)
    owned = out_dir is not None and not isinstance(out_dir, RunDir)  # a RunDir given: its opener closes it
    run_dir = _open_run_dir(out_dir, resume=resume) if owned and dist.is_main else out_dir
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if opts.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    trainer = None
    try:
        n_dropout = _apply_dropout(model, spec.recipe.dropout)
        trainer = Trainer(model, data, spec.recipe, task, device=dev, prec=prec, options=opts)
        out = Path(out_dir) if out_dir is not None else None
        config = _run_config(trainer, spec.model_name or type(model).__name__, spec.precision, spec.run_info,
                             n_dropout)
        trainer.out_dir = out if dist.is_main else None
        trainer.callbacks = _callbacks(trainer, run_dir if dist.is_main else out, config, resume=resume,
                                       extra=callbacks)
        trainer.t_start = t_start  # the run's time counts the set-up (a resume: on top of the stored seconds)
        result = trainer.fit()
        result.out_dir, result.config = out, config
    except BaseException as err:
        if isinstance(run_dir, RunDir):
            run_dir.last_step = trainer.step if trainer is not None else None
            if owned:
                run_dir.abandon(err)
        raise
    else:
        if owned and isinstance(run_dir, RunDir):
            run_dir.succeeded()
    finally:
        if owned and isinstance(run_dir, RunDir):
            run_dir.release()
        torch.use_deterministic_algorithms(was_deterministic)  # a library call leaves the global flag as it was
    return result


def _open_run_dir(out_dir, *, resume: bool) -> RunDir:
    """Open (and lock) the run folder ``fit`` was given as a path."""
    if resume:
        return RunDir.resume(out_dir)
    return RunDir.create(out_dir)


def _callbacks(trainer: Trainer, out: RunDir | Path | None, config: dict, *, resume: bool, extra) -> list:
    """Prepare (or resume) the run folder and list the run's callbacks: the built-in ones, then ``extra``.
    ``out`` is the locked :class:`RunDir` on rank 0, the folder's path on the other ranks."""
    opts, main = trainer.options, trainer.main
    ckpt_dir = Path(out) / CHECKPOINT_DIR if out is not None else None
    patience = trainer.recipe.early_stop_patience
    cbs: list = [NanGuard(ckpt_dir), ProgressBar(opts.progress and main, name=config["model"]["name"])]
    if patience:
        cbs.append(EarlyStopping(patience))  # before the checkpoint, so that `stop` is saved with it
    if out is not None:
        _prepare_run_dir(trainer, out, config, resume=resume)
        if main:
            cbs += [StepsCsv(out / "steps.csv"), MetricsCsv(out / "metrics.csv")]
            if opts.tensorboard:
                cbs.append(TensorBoard(out / "tensorboard"))
        cbs.append(Checkpointing(ckpt_dir, every=opts.checkpoint_every))
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


def _prepare_run_dir(trainer: Trainer, out: RunDir | Path, config: dict, *, resume: bool) -> None:
    if resume:
        _resume(trainer, Path(out) / CHECKPOINT_DIR, config)
    if trainer.main:
        if resume:
            out.record_resume(config)
        else:
            out.write_config(config)


def _resume(trainer: Trainer, ckpt_dir: Path, config: dict) -> None:
    point = ck.choose_resumable(ckpt_dir)
    if point is None:  # killed before its first checkpoint: the run starts again from its first update
        trainer.resumed = config["resumed"] = {"from": None, "step": 0, "epoch": 0, "position": 0,
                                               "note": "no checkpoint yet: started from the beginning"}
        if trainer.main:
            print(f"cnnlab: {ckpt_dir.parent} has no checkpoint yet: starting it again from the beginning",
                  file=sys.stderr)
        return
    if point.message and trainer.main:
        print(f"cnnlab: {point.message}", file=sys.stderr)
    state_dict, ts = ck.load_checkpoint(ckpt_dir, point.tag, map_location="cpu")
    _load_weights(trainer.model, state_dict, f"{ckpt_dir}/{point.tag}.safetensors")
    trainer.load_state_dict(ts, where=f"{ckpt_dir}/{point.tag}.state.pt")
    if trainer.epoch > trainer.resolved.epochs:
        raise ConfigError(f"--epochs {trainer.resolved.epochs}: {ckpt_dir.parent} has already trained "
                          f"{trainer.epoch} epochs; give at least that many")
    if trainer.best_epoch:  # the selected weights so far: the `best` checkpoint
        best, _ = ck.load_checkpoint(ckpt_dir, "best", map_location="cpu")
        ck.check_weight_shapes(trainer.model, best, where=f"{ckpt_dir}/best.safetensors")
        trainer.best_state = best
    trainer.resumed = config["resumed"] = {
        "from": f"{ckpt_dir}/{point.tag}", "step": trainer.step, "epoch": trainer.epoch,
        "position": trainer.loader.position, "note": point.message}
    if trainer.main:
        where = (f"epoch {trainer.epoch + 1}, batch {trainer.loader.position + 1} of {len(trainer.loader)}"
                 if trainer.loader.position else f"the start of epoch {trainer.epoch + 1}")
        print(f"cnnlab: resuming {ckpt_dir.parent} at {where} (update {trainer.step} of {trainer.stop_at} done) "
              f"from checkpoint {point.tag!r}", file=sys.stderr)


def _load_weights(model: nn.Module, state_dict: dict, where: str) -> None:
    ck.check_weight_shapes(model, state_dict, where=where)  # one line, not torch's size-mismatch RuntimeError
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{where} does not match {type(model).__name__}: "
                              f"missing {list(missing)[:4]}, unexpected {list(unexpected)[:4]}")


def _run_config(trainer: Trainer, name: str, precision: str, run_info: dict | None, n_dropout: int) -> dict:
    """The run's record (config.json), written before the first step (a killed run can be repeated)."""
    data, recipe, resolved, prec, opts = trainer.data, trainer.recipe, trainer.resolved, trainer.prec, trainer.options
    model = trainer.model
    return {
        "cnnlab_run": 1,
        "spec": dict(run_info or {}),
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
                     "note": resolved.note, "stop_at_step": trainer.stop_at, "epochs_override": opts.epochs},
        "augment": trainer.augment.to_dict(),
        "seed": opts.seed,
        "selection": {"split": "val", "monitor": trainer.task.monitor, "mode": trainer.task.mode,
                      "test_every_epoch": opts.test_every_epoch},
        "precision": {"asked": precision, "used": prec.name, "channels_last": prec.channels_last,
                      "reason": prec.reason},
        "device": str(trainer.device),
        "world_size": trainer.world,
        "per_rank_batch_size": trainer.loader.batch_size,
        "threads": torch.get_num_threads(),
        "deterministic": opts.deterministic,
        "max_steps": opts.max_steps,
        "checkpoint_every": opts.checkpoint_every,
        "versions": library_versions(),
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
