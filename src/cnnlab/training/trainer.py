"""The ``Trainer``: one object holding what a training run changes, with short methods.

It owns the model, the :class:`~cnnlab.training.tasks.Task` (loss and metrics; it builds the
optimizers and makes each update: by default one optimizer and one backward pass), the optimizers,
the learning-rate schedule, the grad scaler, the :class:`~cnnlab.data.BatchLoader` (the only holder of
the position in the epoch) and the augmentation with its generator. Everything else a run does
(progress bar, CSVs, TensorBoard, checkpoints, the NaN guard, early stopping, experiments' per-epoch
measurements) is a callback: an object with any of

    on_fit_start(trainer)                      before the first update (after a resume is loaded)
    on_loss(trainer, step, loss) -> loss|None  the loss tensor of update ``step`` (1-based) before
                                               backward; a returned tensor replaces it (tests inject NaN)
    before_update(trainer, step, value)        its value (all-reduced float), before anything is applied
    on_step_end(trainer, step, loss)           after update ``step`` (loss: a Python float)
    on_epoch_end(trainer, epoch, row)          after the epoch's evaluation; ``row`` is its metrics row
    on_fit_end(trainer, result)                with the :class:`FitResult`

called in list order; a callback's ``close()``, if it has one, is called when ``fit`` ends, also on an
error. A task with several optimisers (a GAN) applies several losses per update: ``on_loss`` and
``before_update`` then run once for each, with the same ``step``. ``trainer.stop = True`` ends the
run after the current epoch (early stopping).

Selection reads the validation split only: after every epoch the task's ``monitor`` metric on
``data.val`` decides ``trainer.improved`` / ``best_epoch`` (a copy of the best weights is kept), and
feeds the plateau schedule. The test split is evaluated once at the end, on the selected weights and
on the last ones (per-epoch test columns only with ``TrainSpec.test_every_epoch``, never read for
selection).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.data import BatchLoader, DataBundle, TensorPair
from cnnlab.data.augment import Augment
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.models.base import Classifier
from cnnlab.training import checkpoint as ck
from cnnlab.training import distributed as D
from cnnlab.training.device import Precision
from cnnlab.training.param_groups import param_groups
from cnnlab.training.recipes import Recipe
from cnnlab.training.schedules import LRSchedule, resolve_schedule
from cnnlab.training.spec import TrainSpec
from cnnlab.training.tasks import Task

# Training images handed to Classifier.init_from_data, evenly spaced over the split (airbench: 5,000).
WARM_START_IMAGES = 5000

__all__ = ["Trainer", "FitResult", "TrainStep", "STATE_FORMAT"]

STATE_FORMAT = 2  # 2: the loader's state holds the position; best_value/best_epoch; the task's sums


@dataclass
class FitResult:
    model: nn.Module  # the selected (best-val) weights, in eval mode, fp32, on CPU
    history: list[dict]  # one metrics row per epoch (train_<k>, val_<k>, [test_<k>])
    test_acc: float  # the selected model's test accuracy (nan when the task has no "acc")
    test_top5: float
    train_acc: float  # the last epoch's
    seconds: float
    images_per_second: float
    steps: int = 0  # updates made in the whole run
    step_losses: list[float] = field(default_factory=list)  # the loss of each update made by this call
    out_dir: Path | None = None
    config: dict = field(default_factory=dict)  # what config.json holds (also without out_dir)
    val: dict = field(default_factory=dict)  # the task's metrics on val at the selected epoch
    test: dict = field(default_factory=dict)  # ... on test, selected weights
    test_last: dict = field(default_factory=dict)  # ... on test, last weights
    best_epoch: int = 0  # the selected epoch (1-based; 0: no full epoch, the last weights are kept)
    stopped_early: bool = False

    @property
    def val_acc(self) -> float:
        return float(self.val.get("acc", float("nan")))

    @property
    def test_acc_last(self) -> float:
        return float(self.test_last.get("acc", float("nan")))


class TrainStep(nn.Module):
    """``forward(x, y) = task.forward_train(model, x, y)``: the module DDP wraps, so its hooks still run.
    ``y`` (the batch's targets) is for tasks whose forward pass reads them (a captioner's teacher forcing)."""

    def __init__(self, model: nn.Module, task: Task | None = None) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, x: Tensor, y: Tensor | None = None) -> Any:
        if self.task is not None:
            return self.task.forward_train(self.model, x, y)
        return self.model.forward_train(x) if hasattr(self.model, "forward_train") else self.model(x)


def make_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``model``'s parameter groups (``param_groups``: freeze, lr_mult, decay)."""
    params = param_groups(model, recipe)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                               weight_decay=recipe.weight_decay)
    cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=recipe.lr, betas=(recipe.momentum, 0.999), weight_decay=recipe.weight_decay)


class Trainer:
    """Train ``model`` on ``data.train`` for ``task``; see the module docstring."""

    def __init__(self, model: nn.Module, data: DataBundle, recipe: Recipe, task: Task, *, device: torch.device,
                 prec: Precision, spec: TrainSpec = TrainSpec(), progress: bool = False,
                 out_dir: Path | None = None, started: float | None = None) -> None:
        dist = D.current()
        self.rank, self.world, self.main, self.distributed = dist.rank, dist.world_size, dist.is_main, dist.enabled
        self.model, self.data, self.recipe, self.task, self.spec = model, data, recipe, task, spec
        self.device, self.prec, self.progress = device, prec, progress
        self.out_dir = out_dir  # the run folder, on rank 0; None without one
        self.callbacks: list = []  # given to ``fit``
        self._build_loader()
        self.augment = Augment(recipe, data=data)
        # Augmentation draws from its own generator: (seed, rank) fix it, and a checkpoint stores it.
        self.aug_gen = torch.Generator().manual_seed((spec.seed * 1_000_003 + 17 * self.rank + 1)
                                                     & 0x7FFF_FFFF_FFFF_FFFF)
        torch.manual_seed(spec.seed + self.rank)  # dropout and other in-model randomness
        if isinstance(model, Classifier):  # data-dependent initialisation (a resumed run's weights replace it)
            x = data.train.x
            model.init_from_data(x[:: max(1, len(x) // WARM_START_IMAGES)][:WARM_START_IMAGES])
        model.to(device, memory_format=prec.memory_format)
        task.check(model, data)
        # The task builds the optimisers (default: one over the model's parameter groups); ``optimizer`` is
        # the first. Before DDP: it must not wait for frozen parameters.
        self.optimizers = task.optimizers(model, lambda module: make_optimizer(recipe, module))
        self.optimizer = self.optimizers[0]
        self.step_module: nn.Module = TrainStep(model, task)
        if self.distributed:
            self.step_module = nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[device.index] if device.type == "cuda" else None)
        self.scaler = torch.amp.GradScaler("cuda", enabled=prec.name == "fp16")
        self.step = 0
        self.history: list[dict] = []
        self.accum = task.zeros(device)  # this epoch's train sums
        self.best_value: float | None = None
        self.best_epoch = 0
        self.best_state: dict[str, Tensor] | None = None
        self.improved = False  # the epoch just ended is the new best on val
        self.cut = False  # the epoch just ended was cut short by max_steps
        self.drop_lr = False  # the plateau rule dropped the rate after the epoch just ended
        self.stop = False
        self.lr = self.schedule(0)
        self.step_losses: list[float] = []
        self.seconds = self.train_seconds = self.train_images = 0.0  # counted over resumes too
        self.epoch_images = 0
        self.epoch_data_seconds = 0.0
        self.resumed: dict | None = None  # where a resumed run went on from (``resume``)
        self.t_start = time.perf_counter() if started is None else started  # the run's time counts its set-up

    def _build_loader(self) -> None:
        recipe, data = self.recipe, self.data
        if recipe.batch_size % self.world:
            raise ConfigError(f"batch size {recipe.batch_size} cannot be split evenly across {self.world} processes")
        pair = data.train
        if self.device.type == "cuda":  # small sets live on the GPU: batches are then slices of device memory
            pair = TensorPair(pair.x.to(self.device), pair.y.to(self.device))
        self.loader = BatchLoader(pair, recipe.batch_size // self.world, shuffle=True, drop_last=recipe.drop_last,
                                  seed=self.spec.seed, rank=self.rank, world_size=self.world)
        if len(self.loader) == 0:
            raise ConfigError(f"{data.name}: {len(data.train)} training samples make no batch of "
                              f"{recipe.batch_size}" + (" with drop_last" if recipe.drop_last else ""))
        self.resolved = resolve_schedule(recipe, steps_per_epoch=len(self.loader), epochs=self.spec.epochs)
        self.schedule = LRSchedule(recipe, self.resolved)
        total = self.resolved.total_steps
        self.stop_at = total if self.spec.max_steps is None else min(self.spec.max_steps, total)

    # ------------------------------------------------------------------ the loop

    @property
    def epoch(self) -> int:
        """The epoch in progress (0-based) = the number of epochs completed when between epochs."""
        return self.loader.epoch

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    def train_step(self, x: Tensor, y: Tensor) -> float:
        """One update on the batch (x, y); returns its loss (averaged over ranks)."""
        t0 = time.perf_counter()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        x, y = self.task.augment_batch(self.augment, x, y, self.aug_gen)
        x = x.contiguous(memory_format=self.prec.memory_format)
        self.epoch_data_seconds += time.perf_counter() - t0  # augmentation and layout (CPU: synchronous)
        self.lr = self.schedule(self.step)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.lr * group.get("lr_mult", 1.0)
        value, sums = self.task.update(self, x, y)  # default: forward, loss, apply(loss, optimizer)
        self.accum += sums.to(self.accum.device)
        self.step += 1
        self.epoch_images += len(y) * self.world
        return value

    def autocast(self):
        """The forward passes' autocast context, in the run's precision."""
        dtype = self.prec.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def apply(self, loss: Tensor, optimizer: torch.optim.Optimizer) -> float:
        """Backpropagate ``loss`` and step ``optimizer`` (after the on_loss and before_update hooks, with
        the grad scaler and clipping of its parameters); returns the loss (averaged over ranks)."""
        for cb in self.callbacks:  # a test's callback may replace the loss (NaN injection)
            fn = getattr(cb, "on_loss", None)
            replaced = fn(self, self.step + 1, loss) if fn is not None else None
            loss = loss if replaced is None else replaced
        check = loss.detach().clone()
        if self.world > 1:
            D.all_reduce_sum(check)  # every rank sees the same value: a NaN anywhere stops all at once
        value = float(check) / self.world
        self._call("before_update", self.step + 1, value)  # the NaN guard raises here: nothing applied
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.recipe.grad_clip is not None:
            self.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], self.recipe.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        return value

    def run_epoch(self) -> bool:
        """Train from the loader's position to the end of its epoch (or to ``max_steps``); True when cut
        short mid-epoch. Afterwards the loader is at the next epoch, or at the cut."""
        self.step_module.train()
        self.epoch_images = 0
        self.epoch_data_seconds = 0.0  # batches taken from the loader, augmented and laid out
        t0 = t_fetch = time.perf_counter()
        epoch = self.loader.epoch
        if self.loader.position < len(self.loader):
            for x, y in self.loader:
                self.epoch_data_seconds += time.perf_counter() - t_fetch
                loss = self.train_step(x, y)
                self.step_losses.append(loss)
                self._call("on_step_end", self.step, loss)
                if self.step >= self.stop_at:
                    break
                t_fetch = time.perf_counter()
        self.epoch_seconds = time.perf_counter() - t0
        self.train_seconds += self.epoch_seconds
        self.train_images += self.epoch_images
        if self.loader.epoch == epoch and self.loader.position >= len(self.loader):
            self.loader.set_epoch(epoch + 1)  # the last batch was taken: the epoch is done
        return self.loader.epoch == epoch

    @torch.no_grad()
    def evaluate(self, pair: TensorPair) -> dict[str, float]:
        """The task's metrics of the model on ``pair`` (sharded over ranks, summed); eval mode, autocast."""
        was_training = self.model.training
        self.model.eval()
        x_all, y_all = pair.x, pair.y
        if self.world > 1:
            x_all, y_all = x_all[self.rank :: self.world], y_all[self.rank :: self.world]
        try:
            sums = self.task.split_sums(self.model, x_all, y_all, batch_size=self.recipe.eval_batch_size,
                                        device=self.device, autocast_dtype=self.prec.autocast_dtype,
                                        memory_format=self.prec.memory_format)
        finally:
            self.model.train(was_training)
        return self.task.summarize(D.all_reduce_sum(sums))

    def end_epoch(self, cut: bool) -> dict:
        """Evaluate on val (and test with test_every_epoch), record the row, select, call on_epoch_end."""
        t_eval = time.perf_counter()
        train = self.task.summarize(D.all_reduce_sum(self.accum.clone()))
        val = self.evaluate(self.data.val)
        row: dict[str, Any] = {"epoch": len(self.history) + 1, "step": self.step, "lr": self.lr}
        row.update({f"train_{k}": v for k, v in train.items()})
        row.update({f"val_{k}": v for k, v in val.items()})
        if self.spec.test_every_epoch:
            row.update({f"test_{k}": v for k, v in self.evaluate(self.data.test).items()})
        row["seconds"] = self.epoch_seconds + time.perf_counter() - t_eval
        row["images_per_second"] = self.epoch_images / self.epoch_seconds if self.epoch_seconds > 0 else 0.0
        # Where the epoch's time went (on a CPU every step is synchronous, so the split is exact; on a
        # GPU the update's kernels may still run while the next batch is prepared).
        row["data_seconds"] = self.epoch_data_seconds
        row["update_seconds"] = self.epoch_seconds - self.epoch_data_seconds  # forward, backward, optimiser
        row["eval_seconds"] = row["seconds"] - self.epoch_seconds
        self.cut, self.improved = cut, False
        if not cut:
            self._select(row, val)
        self._call("on_epoch_end", row["epoch"], row)
        if not cut:
            self.accum.zero_()
        return row

    def _select(self, row: dict, val: dict) -> None:
        value = float(val[self.task.monitor])
        sign = 1.0 if self.task.mode == "max" else -1.0  # the plateau rule maximises
        self.drop_lr = self.schedule.end_of_epoch(sign * value, epoch=row["epoch"])
        self.history.append(row)
        if self.task.better(value, self.best_value):
            self.best_value, self.best_epoch, self.improved = value, row["epoch"], True
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def fit(self, callbacks=()) -> FitResult:
        """Run to the end (epochs, max_steps or ``stop``) with ``callbacks`` (see the module docstring);
        evaluate test on the selected and last weights."""
        self.callbacks = list(callbacks)
        try:
            self._call("on_fit_start")
            partial = None
            while self.epoch < self.resolved.epochs and self.step < self.stop_at and not self.stop:
                cut = self.run_epoch()
                row = self.end_epoch(cut)
                if cut:
                    partial = row
                    break
            result = self.finish(partial)
            self._call("on_fit_end", result)
            return result
        finally:  # also after an error (a NaN loss): files closed, progress bar gone
            for cb in self.callbacks:
                if hasattr(cb, "close"):
                    cb.close()

    def finish(self, partial: dict | None) -> FitResult:
        """The test split, once: on the last weights, then on the selected ones (which the model keeps)."""
        test_last = self.evaluate(self.data.test)
        test = test_last
        if self.best_state is not None and self.best_epoch != len(self.history):
            self.model.load_state_dict(self.best_state)
            test = self.evaluate(self.data.test)
        selected = self.history[self.best_epoch - 1] if self.best_epoch else (partial or {})
        val = {k[4:]: v for k, v in selected.items() if k.startswith("val_")}
        last = partial or (self.history[-1] if self.history else {})
        self.model.to("cpu", memory_format=torch.contiguous_format).eval()
        return FitResult(
            model=self.model, history=self.history + ([partial] if partial else []),
            test_acc=float(test.get("acc", float("nan"))), test_top5=float(test.get("top5", float("nan"))),
            train_acc=float(last.get("train_acc", float("nan"))), seconds=self.total_seconds(),
            images_per_second=self.train_images / self.train_seconds if self.train_seconds > 0 else 0.0,
            steps=self.step, step_losses=self.step_losses, val=val, test=test, test_last=test_last,
            best_epoch=self.best_epoch, stopped_early=self.stop)

    def total_seconds(self) -> float:
        return self.seconds + time.perf_counter() - self.t_start

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Everything a step depends on besides the weights (``checkpoint.save_checkpoint``'s train_state).
        Every rank must call it (the RNG states are gathered)."""
        rng = ck.rng_state(generators={"augment": self.aug_gen})
        mid_epoch = self.loader.position > 0
        state = {
            "format": STATE_FORMAT, "step": self.step, "epoch": self.epoch, "position": self.loader.position,
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "loader": self.loader.state_dict(),
            "accum": self.accum.detach().cpu().clone() if mid_epoch else self.task.zeros(),
            "history": self.history, "best_value": self.best_value, "best_epoch": self.best_epoch,
            "stop": self.stop, "batch_size": self.recipe.batch_size, "world_size": self.world,
            "seconds": self.total_seconds(), "train_seconds": self.train_seconds,
            "train_images": self.train_images, "recipe": self.recipe.to_dict(), "task": self.task.name,
        }
        if len(self.optimizers) > 1:  # a task with several (a GAN's discriminator and generator)
            state["optimizers"] = [opt.state_dict() for opt in self.optimizers[1:]]
        if self.world > 1:
            state["rng_ranks"] = D.gather_objects(rng)
            state["rng"] = state["rng_ranks"][0]
        else:
            state["rng"] = rng
        return state

    def load_state_dict(self, ts: dict, *, where: str = "checkpoint") -> None:
        if ts.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{where}: unknown training-state format {ts.get('format')!r} "
                                  f"(this cnnlab writes {STATE_FORMAT})")
        if ts.get("world_size", 1) != self.world or ts.get("batch_size") != self.recipe.batch_size:
            raise CheckpointError(
                f"{where}: the checkpoint was made with {ts.get('world_size')} process(es) and batch "
                f"{ts.get('batch_size')}; resume with the same (now {self.world} and {self.recipe.batch_size})")
        # a checksummed but malformed state: one CheckpointError now, not a KeyError or a shape error later
        ck.check_train_state(ts, where=where, accum_size=len(self.task.zeros()))
        ck.check_optimizer_state(self.optimizer, ts["optimizer"], where=where)
        more = ts.get("optimizers", [])
        if not isinstance(more, list) or len(more) != len(self.optimizers) - 1:
            raise CheckpointError(f"{where}: the checkpoint holds {1 + len(more) if isinstance(more, list) else '?'} "
                                  f"optimizer state(s), the task has {len(self.optimizers)}")
        for opt, state in zip(self.optimizers[1:], more):
            ck.check_optimizer_state(opt, state, where=where)
        for opt, state in zip(self.optimizers, [ts["optimizer"], *more]):
            opt.load_state_dict(state)
        self.schedule.load_state_dict(ts["schedule"])
        if ts.get("scaler"):
            self.scaler.load_state_dict(ts["scaler"])
        self.loader.load_state_dict(ts["loader"])
        rng = ts["rng_ranks"][self.rank] if "rng_ranks" in ts else ts["rng"]
        ck.set_rng_state(rng, generators={"augment": self.aug_gen})
        self.step = int(ts["step"])
        self.accum = ts["accum"].to(self.device, torch.float64)
        self.history = list(ts["history"])
        self.best_value = None if ts["best_value"] is None else float(ts["best_value"])
        self.best_epoch, self.stop = int(ts["best_epoch"]), bool(ts["stop"])
        self.seconds, self.train_seconds = float(ts["seconds"]), float(ts["train_seconds"])
        self.train_images = float(ts["train_images"])
        self.lr = self.schedule(max(self.step - 1, 0))
        self.t_start = time.perf_counter()

    def resume(self, ckpt_dir: Path) -> dict:
        """Go on from the newest good checkpoint in ``ckpt_dir``: weights, training state and the
        selected weights so far; returns where it went on from (``self.resumed``, for config.json)."""
        point = ck.choose_resumable(ckpt_dir)
        if point is None:  # killed before its first checkpoint: the run starts again from its first update
            self.resumed = {"from": None, "step": 0, "epoch": 0, "position": 0,
                            "note": "no checkpoint yet: started from the beginning"}
            self._say(f"{ckpt_dir.parent} has no checkpoint yet: starting it again from the beginning")
            return self.resumed
        if point.message:
            self._say(point.message)
        state_dict, ts = ck.load_checkpoint(ckpt_dir, point.tag, map_location="cpu")
        where = f"{ckpt_dir}/{point.tag}.safetensors"
        ck.check_weight_shapes(self.model, state_dict, where=where)  # one line, not torch's RuntimeError
        missing, unexpected = self.model.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{where} does not match {type(self.model).__name__}: "
                                  f"missing {list(missing)[:4]}, unexpected {list(unexpected)[:4]}")
        self.load_state_dict(ts, where=f"{ckpt_dir}/{point.tag}.state.pt")
        if self.epoch > self.resolved.epochs:
            raise ConfigError(f"--epochs {self.resolved.epochs}: {ckpt_dir.parent} has already trained "
                              f"{self.epoch} epochs; give at least that many")
        if self.best_epoch:  # the selected weights so far: the `best` checkpoint
            best, _ = ck.load_checkpoint(ckpt_dir, "best", map_location="cpu")
            ck.check_weight_shapes(self.model, best, where=f"{ckpt_dir}/best.safetensors")
            self.best_state = best
        self.resumed = {"from": f"{ckpt_dir}/{point.tag}", "step": self.step, "epoch": self.epoch,
                        "position": self.loader.position, "note": point.message}
        where = (f"epoch {self.epoch + 1}, batch {self.loader.position + 1} of {len(self.loader)}"
                 if self.loader.position else f"the start of epoch {self.epoch + 1}")
        self._say(f"resuming {ckpt_dir.parent} at {where} (update {self.step} of {self.stop_at} done) "
                  f"from checkpoint {point.tag!r}")
        return self.resumed

    def _say(self, message: str) -> None:
        if self.main:
            print(f"cnnlab: {message}", file=sys.stderr)
