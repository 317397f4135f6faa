"""The training engine: ``fit`` a model on a ``DataBundle`` with a recipe, ``evaluate`` it.

One loop serves the laptop CPU and the GPU: in-memory batches (``BatchLoader``), augmentation on
whole batches (``cnnlab.data.augment.Augment``), autocast in the precision ``device.py`` picks,
DistributedDataParallel when a process group exists (``torchrun``), the learning rate set from the
step at every update (``schedules.LRSchedule``).

The model is trained on ``model.forward_train(x)``: the loss is ``CE(logits) + sum_i w_i CE(aux_i)``
(GoogLeNet's auxiliary classifiers, Szegedy et al. 2015 §5: weights 0.3). ``TrainStep`` wraps the
model so that DDP sees ``forward_train`` as the module's forward and its hooks still run.

With ``out_dir`` a run writes: ``config.json`` (at the start), ``steps.csv`` (step, epoch, batch,
lr, loss: one row per update), ``metrics.csv`` (one row per epoch), ``checkpoints/`` (``last``
every epoch and every ``checkpoint_every`` steps, ``best`` on the best test accuracy; see
``cnnlab.training.checkpoint``), and at the end ``results.json``, ``model.safetensors`` and
``curves.png``. Only rank 0 writes.

Resuming restores everything a step depends on (weights, optimizer, plateau state, grad scaler,
epoch, position in the epoch, loader order, every RNG including the augmentation generator, the
partial epoch's sums), so with ``deterministic=True`` on a CPU an interrupted and resumed run is
bitwise the run that was never interrupted.

A non-finite loss raises :class:`TrainingError` before the update is applied; nothing is saved
after it, so ``last`` and ``best`` keep their finite weights.

Test hooks (debugging only, read from the environment when ``fit`` starts):
``CNNLAB_DEBUG_NAN_AT_STEP=k`` makes the loss of update ``k`` (1-based) NaN;
``CNNLAB_DEBUG_KILL_AT_STEP=k`` sends SIGKILL to the process once ``k`` updates are done (after any
checkpoint of step ``k``), as an abrupt kill would.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.data import BatchLoader, DataBundle, TensorPair
from cnnlab.data.augment import Augment, tta_views
from cnnlab.errors import CheckpointError, ConfigError, TrainingError
from cnnlab.models.base import ModelOutput
from cnnlab.training import checkpoint as ck
from cnnlab.training import distributed as D
from cnnlab.training.device import Precision, resolve_device, resolve_precision
from cnnlab.training.recipes import Recipe, get_recipe
from cnnlab.training.schedules import LRSchedule, resolve_schedule

__all__ = ["FitResult", "fit", "evaluate", "evaluate_mc_dropout", "TrainStep", "resolve_recipe",
           "RESULT_KEYS", "METRIC_FIELDS"]

RESULT_KEYS = ("model", "data", "epochs", "test_acc", "test_top5", "train_acc", "seconds", "images_per_second")
METRIC_FIELDS = ("epoch", "step", "lr", "train_loss", "train_acc", "train_top5", "test_loss", "test_acc",
                 "test_top5", "seconds", "images_per_second")
STEP_FIELDS = ("step", "epoch", "batch", "lr", "loss")
CHECKPOINT_DIR = "checkpoints"
STATE_FORMAT = 1


@dataclass
class FitResult:
    model: nn.Module  # trained, in eval mode, fp32, on CPU
    history: list[dict]  # one dict per epoch (METRIC_FIELDS)
    test_acc: float
    test_top5: float
    train_acc: float
    seconds: float
    images_per_second: float
    steps: int = 0  # updates made in the whole run
    step_losses: list[float] = field(default_factory=list)  # the loss of each update made by this call
    out_dir: Path | None = None
    config: dict = field(default_factory=dict)  # what config.json holds (also without out_dir)


class TrainStep(nn.Module):
    """``forward(x) = model.forward_train(x)`` (a :class:`ModelOutput`), for DDP and the loss."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> ModelOutput:
        if hasattr(self.model, "forward_train"):
            return self.model.forward_train(x)
        return ModelOutput(self.model(x))


def resolve_recipe(recipe: Recipe | str | None, *, model_name: str | None = None,
                   overrides: dict | None = None, batch_size: int | None = None,
                   lr: float | None = None) -> Recipe:
    """The recipe object: by name, or the model's default (``model_info(model_name).recipe``),
    with ``overrides`` (any field) and the common ``batch_size``/``lr`` applied."""
    if recipe is None:
        if model_name is None:
            raise ConfigError("fit: give recipe= (a Recipe or its name) or model_name= (its default recipe)")
        from cnnlab.models.registry import model_info

        recipe = model_info(model_name).recipe
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
# helpers of fit


def _debug_step(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer step, got {value!r}") from None


def _make_optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                               weight_decay=recipe.weight_decay)
    cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=recipe.lr, betas=(recipe.momentum, 0.999), weight_decay=recipe.weight_decay)


def _loss(out: ModelOutput, y: Tensor, label_smoothing: float) -> Tensor:
    loss = F.cross_entropy(out.logits.float(), y, label_smoothing=label_smoothing)
    for w, aux in zip(out.aux_weights, out.aux_logits):
        loss = loss + w * F.cross_entropy(aux.float(), y, label_smoothing=label_smoothing)
    return loss


def _apply_dropout(model: nn.Module, p: float | None) -> int:
    if p is None:
        return 0
    mods = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for m in mods:
        m.p = p
    return len(mods)


def _probe(model: nn.Module, data: DataBundle, device: torch.device, name: str) -> None:
    """One forward pass on two test images: the model must take the data's input and give enough logits."""
    x = data.test.x[:2].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as err:
        first = str(err).splitlines()[0][:200]
        raise ConfigError(f"{name} cannot take {data.name}'s input of shape {tuple(data.input_size)} ({first})") from None
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[1] < data.num_classes:
        raise ConfigError(f"{name} gives {tuple(out.shape[1:])} outputs but {data.name} has {data.num_classes} classes")


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in fields})
    os.replace(tmp, path)


def _fmt(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else v


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _trim_steps_csv(path: Path, last_step: int) -> None:
    """Keep the rows of updates 1..last_step (those after the checkpoint were lost with the kill)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        # a garbage row (a torn write, an edit) is dropped, not a ValueError
        rows = [r for r in csv.DictReader(f) if (r.get("step") or "").isdigit() and int(r["step"]) <= last_step]
    with open(path.with_name(path.name + ".tmp"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(STEP_FIELDS), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(path.with_name(path.name + ".tmp"), path)


def _versions() -> dict:
    import platform

    import numpy
    import torchvision

    from cnnlab import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "cnnlab": __version__, "platform": platform.platform()}


def _git_commit() -> str | None:
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


class _Progress:
    """tqdm bar per epoch on stderr (only on a terminal, rank 0, progress=True) and a line per epoch."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def start(self, epoch: int, epochs: int, total: int, initial: int) -> None:
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch}/{epochs}", leave=False,
                            file=sys.stderr, dynamic_ncols=True, unit="batch")

    def update(self, n: int, **postfix: str) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)


# ---------------------------------------------------------------------------------------------
# fit


def fit(
    model: nn.Module,
    data: DataBundle,
    recipe: Recipe | str | None = None,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    precision: str = "auto",
    device: str | torch.device | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    overrides: dict | None = None,
    max_steps: int | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    deterministic: bool = False,
    memory_format: str = "auto",
    model_name: str | None = None,
    run_info: dict | None = None,
    tensorboard: bool = False,
) -> FitResult:
    """Train ``model`` on ``data.train`` with ``recipe``, testing on ``data.test`` after every epoch.

    ``recipe``: a :class:`Recipe`, its name, or None for the default recipe of ``model_name``;
    ``overrides`` changes any of its fields, ``batch_size``/``lr`` the common two, ``epochs`` the
    length (milestones scaled in proportion). ``max_steps`` stops after that many updates in all
    (the schedule is not changed: for tests and quick looks). ``out_dir``: None writes nothing;
    else the run's files go there (see the module docstring) and ``resume=True`` continues from
    its newest good checkpoint. ``checkpoint_every``: also save ``last`` every N updates.
    ``deterministic``: deterministic algorithms only (bitwise-reproducible on a CPU with a fixed
    number of threads). ``model_name``/``run_info`` are recorded in config.json (the CLI puts
    there everything needed to repeat the run).
    """
    t_start = time.perf_counter()
    recipe = resolve_recipe(recipe, model_name=model_name, overrides=overrides, batch_size=batch_size, lr=lr)
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1):
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ConfigError(f"max_steps must be a positive integer, got {max_steps!r}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ConfigError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if not isinstance(data, DataBundle):
        raise ConfigError(f"fit: data must be a DataBundle (cnnlab.data.load_dataset), got {type(data).__name__}")
    if resume and out_dir is None:
        raise ConfigError("fit: resume=True needs out_dir (the run directory to continue)")

    dist_info = D.current()
    rank, world = dist_info.rank, dist_info.world_size
    main = dist_info.is_main
    dev = resolve_device(device)
    if dev.type == "cuda" and dist_info.enabled:
        dev = torch.device("cuda", dist_info.local_rank)
    prec = resolve_precision(precision, dev, memory_format=memory_format)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    try:
        return _fit(model, data, recipe, epochs=epochs, precision=precision, dev=dev, prec=prec, seed=seed,
                    out_dir=out_dir, progress=progress, max_steps=max_steps, checkpoint_every=checkpoint_every,
                    resume=resume, deterministic=deterministic, model_name=model_name, run_info=run_info,
                    tensorboard=tensorboard, t_start=t_start)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)  # a library call leaves the global flag as it was


def _fit(model: nn.Module, data: DataBundle, recipe: Recipe, *, epochs: int | None, precision: str,
         dev: torch.device, prec: Precision, seed: int, out_dir, progress: bool, max_steps: int | None,
         checkpoint_every: int | None, resume: bool, deterministic: bool, model_name: str | None,
         run_info: dict | None, tensorboard: bool, t_start: float) -> FitResult:
    dist_info = D.current()
    rank, world, main = dist_info.rank, dist_info.world_size, dist_info.is_main
    name = model_name or type(model).__name__

    if recipe.batch_size % world:
        raise ConfigError(f"batch size {recipe.batch_size} cannot be split evenly across {world} processes")
    per_rank = recipe.batch_size // world
    train_pair = data.train
    if dev.type == "cuda":  # small sets live on the GPU: batches are then slices of device memory
        train_pair = TensorPair(train_pair.x.to(dev), train_pair.y.to(dev))
    loader = BatchLoader(train_pair, per_rank, shuffle=True, drop_last=recipe.drop_last, seed=seed,
                         rank=rank, world_size=world)
    if len(loader) == 0:
        raise ConfigError(f"{data.name}: {len(data.train)} training samples make no batch of {recipe.batch_size}"
                          + (" with drop_last" if recipe.drop_last else ""))
    resolved = resolve_schedule(recipe, steps_per_epoch=len(loader), epochs=epochs)
    schedule = LRSchedule(recipe, resolved)
    stop_at = resolved.total_steps if max_steps is None else min(max_steps, resolved.total_steps)
    augment = Augment(recipe, data=data)
    # Augmentation draws from its own generator: (seed, rank) fix it, and a checkpoint stores it.
    aug_gen = torch.Generator().manual_seed((seed * 1_000_003 + 17 * rank + 1) & 0x7FFF_FFFF_FFFF_FFFF)
    torch.manual_seed(seed + rank)  # dropout and other in-model randomness

    n_dropout = _apply_dropout(model, recipe.dropout)
    model.to(dev, memory_format=prec.memory_format)
    _probe(model, data, dev, name)
    step_module: nn.Module = TrainStep(model)
    if dist_info.enabled:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = _make_optimizer(recipe, model.parameters())
    scaler = torch.amp.GradScaler("cuda", enabled=prec.name == "fp16")

    # --- the run's record, written before the first step (a killed run can be repeated or resumed)
    config = {
        "cnnlab_run": 1,
        "spec": dict(run_info or {}),
        "model": {"name": name, "class": type(model).__name__,
                  "params": sum(p.numel() for p in model.parameters()),
                  "dropout_modules_set": n_dropout},
        "data": {"name": data.name, "num_classes": data.num_classes, "input_size": list(data.input_size),
                 "train_size": len(data.train), "test_size": len(data.test), "mean": list(data.mean),
                 "std": list(data.std), "notes": list(data.notes)},
        "recipe": recipe.to_dict(),
        "schedule": {**{k: getattr(resolved, k) for k in ("total_steps", "steps_per_epoch", "epochs",
                                                             "milestones", "step_size", "scale")},
                     "note": resolved.note, "stop_at_step": stop_at, "epochs_override": epochs},
        "augment": augment.to_dict(),
        "seed": seed,
        "precision": {"asked": precision, "used": prec.name, "channels_last": prec.channels_last,
                      "reason": prec.reason},
        "device": str(dev),
        "world_size": world,
        "per_rank_batch_size": per_rank,
        "threads": torch.get_num_threads(),
        "deterministic": deterministic,
        "max_steps": max_steps,
        "checkpoint_every": checkpoint_every,
        "versions": _versions(),
        "git_commit": _git_commit(),
        "command": " ".join(sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    out = Path(out_dir) if out_dir is not None else None
    ckpt_dir = out / CHECKPOINT_DIR if out is not None else None
    history: list[dict] = []
    step = start_epoch = position = 0
    accum = torch.zeros(4, dtype=torch.float64, device=dev)  # loss sum, top-1, top-5, count (this epoch)
    best_acc = -1.0
    prior_seconds = prior_train_seconds = prior_images = 0.0

    if out is not None:
        if main:
            if resume:
                if not (out / "config.json").exists():
                    raise CheckpointError(f"cannot resume: {out} holds no run (config.json is missing)")
            elif (out / "config.json").exists() or (ckpt_dir is not None and ckpt_dir.exists()):
                raise ConfigError(f"{out} already holds a run; choose another output directory or resume it")
            out.mkdir(parents=True, exist_ok=True)
            ck.clean_temporaries(ckpt_dir)
        if resume:
            point = ck.choose_resumable(ckpt_dir)
            if point is None:
                raise CheckpointError(f"cannot resume: no checkpoint in {ckpt_dir}")
            if point.message and main:
                print(f"cnnlab: {point.message}", file=sys.stderr)
            state_dict, ts = ck.load_checkpoint(ckpt_dir, point.tag, map_location="cpu")
            if ts.get("format") != STATE_FORMAT:
                raise CheckpointError(f"{ckpt_dir}/{point.tag}.state.pt: unknown training-state format {ts.get('format')!r}")
            if ts.get("world_size", 1) != world or ts.get("batch_size") != recipe.batch_size:
                raise CheckpointError(
                    f"{ckpt_dir}: the checkpoint was made with {ts.get('world_size')} process(es) and batch "
                    f"{ts.get('batch_size')}; resume with the same (now {world} and {recipe.batch_size})")
            ck.check_train_state(ts, where=f"{ckpt_dir}/{point.tag}.state.pt")  # one line, not a KeyError later
            ck.check_weight_shapes(model, state_dict, where=f"{ckpt_dir}/{point.tag}.safetensors")
            missing, unexpected = model.load_state_dict(state_dict, strict=False)
            if missing or unexpected:
                raise CheckpointError(f"{ckpt_dir}/{point.tag}.safetensors does not match {name}: "
                                      f"missing {list(missing)[:4]}, unexpected {list(unexpected)[:4]}")
            ck.check_optimizer_state(optimizer, ts["optimizer"], where=f"{ckpt_dir}/{point.tag}.state.pt")
            optimizer.load_state_dict(ts["optimizer"])
            schedule.load_state_dict(ts["schedule"])
            if ts.get("scaler"):
                scaler.load_state_dict(ts["scaler"])
            loader.load_state_dict(ts["loader"])
            rng = ts["rng_ranks"][rank] if "rng_ranks" in ts else ts["rng"]
            ck.set_rng_state(rng, generators={"augment": aug_gen})
            step, start_epoch, position = int(ts["step"]), int(ts["epoch"]), int(ts["position"])
            accum = ts["accum"].to(dev, torch.float64)
            history = list(ts["history"])
            best_acc = float(ts["best_acc"])
            prior_seconds, prior_train_seconds = float(ts["seconds"]), float(ts["train_seconds"])
            prior_images = float(ts["train_images"])
            config["resumed"] = {"from": f"{ckpt_dir}/{point.tag}", "step": step, "epoch": start_epoch,
                                 "position": position, "note": point.message}
            if main:
                _trim_steps_csv(out / "steps.csv", step)
        if main:
            if resume:
                old = json.loads((out / "config.json").read_text())
                old.setdefault("resumes", []).append(config["resumed"])
                _write_json(out / "config.json", old)
            else:
                _write_json(out / "config.json", config)
    writer = None
    if tensorboard and out is not None and main:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("tensorboard logging asked for but the tensorboard package is not installed "
                              "(pip install tensorboard)") from None
        writer = SummaryWriter(str(out / "tensorboard"))

    nan_at = _debug_step("CNNLAB_DEBUG_NAN_AT_STEP")
    kill_at = _debug_step("CNNLAB_DEBUG_KILL_AT_STEP")
    steps_file = open(out / "steps.csv", "a", newline="") if out is not None and main else None
    steps_writer = csv.writer(steps_file) if steps_file is not None else None
    if steps_file is not None and steps_file.tell() == 0:
        steps_writer.writerow(STEP_FIELDS)
    bar = _Progress(progress and main)
    step_losses: list[float] = []
    train_seconds = prior_train_seconds
    train_images = prior_images

    def train_state(epoch: int, pos: int) -> dict:
        rng = ck.rng_state(generators={"augment": aug_gen})
        state = {
            "format": STATE_FORMAT, "step": step, "epoch": epoch, "position": pos,
            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "loader": {**loader.state_dict(), "epoch": epoch, "position": pos},
            "accum": accum.detach().cpu().clone() if pos else torch.zeros(4, dtype=torch.float64),
            "history": history, "best_acc": best_acc, "batch_size": recipe.batch_size, "world_size": world,
            "seconds": prior_seconds + time.perf_counter() - t_start, "train_seconds": train_seconds,
            "train_images": train_images, "recipe": recipe.to_dict(),
        }
        if world > 1:
            state["rng_ranks"] = D.gather_objects(rng)
            state["rng"] = state["rng_ranks"][0]
        else:
            state["rng"] = rng
        return state

    def save(tag: str, epoch: int, pos: int) -> None:
        if ckpt_dir is None:
            return
        state = train_state(epoch, pos)  # every rank takes part in gathering the RNG states
        if main and ckpt_dir is not None:
            if steps_file is not None:
                steps_file.flush()
                os.fsync(steps_file.fileno())
            ck.save_checkpoint(ckpt_dir, tag, model=model, train_state=state)

    epoch = start_epoch
    lr_now = schedule(step)
    try:
        while epoch < resolved.epochs and step < stop_at:
            loader.set_epoch(epoch)
            loader.load_state_dict({**loader.state_dict(), "epoch": epoch, "position": position})
            step_module.train()
            t_epoch = time.perf_counter()
            epoch_train_time, epoch_images = 0.0, 0
            bar.start(epoch + 1, resolved.epochs, len(loader), position)
            stopped_mid_epoch = False
            if position < len(loader):
                t0 = time.perf_counter()
                for x, y in loader:
                    if kill_at is not None and step == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                    x = x.to(dev, non_blocking=True)
                    y = y.to(dev, non_blocking=True)
                    if augment.enabled:
                        x = augment(x, aug_gen)
                    x = x.contiguous(memory_format=prec.memory_format)
                    lr_now = schedule(step)
                    for group in optimizer.param_groups:
                        group["lr"] = lr_now
                    with torch.autocast(dev.type, dtype=prec.autocast_dtype or torch.float32,
                                        enabled=prec.autocast_dtype is not None):
                        out_step = step_module(x)
                    loss = _loss(out_step, y, recipe.label_smoothing)
                    if nan_at is not None and step + 1 == nan_at:
                        loss = loss * float("nan")
                    check = loss.detach().clone()
                    if world > 1:
                        D.all_reduce_sum(check)  # a NaN on any rank stops every rank at the same step
                    loss_value = float(check) / world
                    if not math.isfinite(loss_value):
                        raise TrainingError(
                            f"the loss became {loss_value} at update {step + 1} (epoch {epoch + 1}, batch "
                            f"{position + 1}, lr {lr_now:.4g}); training stopped before applying it"
                            + (f"; the checkpoints in {ckpt_dir} keep the last finite weights"
                               if ckpt_dir is not None and (ckpt_dir / ck.MANIFEST).exists() else "")
                            + ". Try a lower learning rate (--lr) or fp32 (--precision fp32)")
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if recipe.grad_clip is not None:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    with torch.no_grad():
                        top1, top5 = _topk_hits(out_step.logits.detach().float(), y)
                        accum += torch.stack([loss.detach().double() * len(y), top1.double(), top5.double(),
                                              torch.tensor(float(len(y)), dtype=torch.float64, device=dev)])
                    step += 1
                    position += 1
                    epoch_images += len(y) * world
                    step_losses.append(loss_value)
                    if steps_writer is not None:
                        steps_writer.writerow((step, epoch + 1, position, repr(lr_now), repr(loss_value)))
                    if writer is not None:
                        writer.add_scalar("train/loss_step", loss_value, step)
                    if bar.bar is not None:
                        seen = max(float(accum[3]), 1.0)
                        bar.update(1, loss=f"{float(accum[0]) / seen:.4f}", acc=f"{100 * float(accum[1]) / seen:.2f}%",
                                   img_s=f"{epoch_images / max(time.perf_counter() - t0, 1e-9):.0f}")
                    if step >= stop_at:
                        stopped_mid_epoch = position < len(loader)
                        break
                    if checkpoint_every and step % checkpoint_every == 0 and position < len(loader):
                        save("last", epoch, position)
                epoch_train_time = time.perf_counter() - t0
            bar.close()
            train_seconds += epoch_train_time
            train_images += epoch_images
            if stopped_mid_epoch and step < resolved.total_steps and ckpt_dir is not None:
                save("last", epoch, position)  # max_steps cut: resumable mid-epoch, before the partial row

            # --- end of the epoch (or of the run, mid-epoch): test, record, checkpoint
            sums = D.all_reduce_sum(accum.clone())
            train = _sums_to_metrics(sums)
            step_module.eval()
            test = _sums_to_metrics(D.all_reduce_sum(_eval_sums(
                model, data.test, batch_size=recipe.eval_batch_size, prec=prec, device=dev, shard=(rank, world))))
            row = {"epoch": epoch + 1, "step": step, "lr": lr_now,
                   "train_loss": train["loss"], "train_acc": train["acc"], "train_top5": train["top5"],
                   "test_loss": test["loss"], "test_acc": test["acc"], "test_top5": test["top5"],
                   "seconds": time.perf_counter() - t_epoch,
                   "images_per_second": epoch_images / epoch_train_time if epoch_train_time > 0 else 0.0}
            history.append(row)
            bar.line(f"epoch {epoch + 1:>3}/{resolved.epochs}  lr {lr_now:.3g}  "
                     f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}% "
                     f"top5 {100 * row['train_top5']:.2f}%  test loss {row['test_loss']:.4f} "
                     f"acc {100 * row['test_acc']:.2f}% top5 {100 * row['test_top5']:.2f}%  "
                     f"{row['seconds']:.1f}s {row['images_per_second']:.0f} img/s")
            if writer is not None:
                for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
                    writer.add_scalar(key.replace("_", "/", 1), row[key], epoch + 1)
            if stopped_mid_epoch and step < resolved.total_steps:
                break  # the partial epoch's row is reported, not checkpointed
            if schedule.end_of_epoch(test["acc"], epoch=epoch + 1):
                bar.line(f"  test accuracy has not improved for {recipe.plateau_patience} epochs: "
                         f"learning rate x{recipe.gamma}")
            is_best = test["acc"] > best_acc
            best_acc = max(best_acc, test["acc"])
            epoch, position = epoch + 1, 0
            accum.zero_()
            if main and out is not None:
                _write_csv(out / "metrics.csv", METRIC_FIELDS, history)
            if ckpt_dir is not None:
                save("last", epoch, 0)
                if is_best:
                    save("best", epoch, 0)
    finally:
        bar.close()
        if steps_file is not None:
            steps_file.close()
        if writer is not None:
            writer.close()

    model.to("cpu", memory_format=torch.contiguous_format).eval()
    seconds = prior_seconds + time.perf_counter() - t_start
    last = history[-1] if history else {}
    result = FitResult(
        model=model, history=history, test_acc=float(last.get("test_acc", float("nan"))),
        test_top5=float(last.get("test_top5", float("nan"))), train_acc=float(last.get("train_acc", float("nan"))),
        seconds=seconds, images_per_second=train_images / train_seconds if train_seconds > 0 else 0.0,
        steps=step, step_losses=step_losses, out_dir=out, config=config,
    )
    if main and out is not None:
        _finish_run_dir(out, result, name=name, data_name=data.name)
    return result


def _finish_run_dir(out: Path, result: FitResult, *, name: str, data_name: str) -> None:
    from cnnlab.models.weights import save_weights
    from cnnlab.viz.curves import plot_training_curves

    _write_csv(out / "metrics.csv", METRIC_FIELDS, result.history)
    save_weights(result.model, out / "model.safetensors", metadata={"cnnlab.model": name, "cnnlab.data": data_name})
    plot_training_curves(result.history, out / "curves.png", title=f"{name} on {data_name}")
    results = {"model": name, "data": data_name, "epochs": len(result.history), "test_acc": result.test_acc,
               "test_top5": result.test_top5, "train_acc": result.train_acc, "seconds": result.seconds,
               "images_per_second": result.images_per_second, "steps": result.steps}
    _write_json(out / "results.json", results)
