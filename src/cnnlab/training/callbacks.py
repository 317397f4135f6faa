"""The callbacks ``fit`` gives every run (see :mod:`cnnlab.training.trainer` for the hooks).

``Callback`` is an optional base class (every hook a no-op); any object with some of the methods
will do. Only rank 0 writes files; hooks that gather across ranks (checkpoints) run on every rank.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path

from torch import Tensor

from cnnlab.atomic import write_csv, write_json
from cnnlab.errors import ConfigError, TrainingError
from cnnlab.training import checkpoint as ck

__all__ = ["Callback", "ProgressBar", "StepsCsv", "MetricsCsv", "TensorBoard", "Checkpointing", "NanGuard",
           "EarlyStopping", "RunFiles", "ResultsJson", "RESULT_KEYS", "STEP_FIELDS", "write_csv", "write_json"]

STEP_FIELDS = ("step", "epoch", "batch", "lr", "loss")


class Callback:
    """Every hook of the Trainer, doing nothing."""

    def on_fit_start(self, trainer) -> None: ...
    def on_loss(self, trainer, step: int, loss: Tensor) -> Tensor | None: ...
    def before_update(self, trainer, step: int, value: float) -> None: ...
    def on_step_end(self, trainer, step: int, loss: float) -> None: ...
    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None: ...
    def on_fit_end(self, trainer, result) -> None: ...


def metric_fields(history: list[dict]) -> list[str]:
    """The columns of metrics.csv: every key of the rows, in first-seen order."""
    fields: list[str] = []
    for row in history:
        fields += [k for k in row if k not in fields]
    return fields


class NanGuard(Callback):
    """A non-finite loss raises TrainingError before the update is applied (the checkpoints keep the
    last finite weights)."""

    def __init__(self, ckpt_dir: Path | None = None) -> None:
        self.ckpt_dir = ckpt_dir

    def before_update(self, trainer, step: int, value: float) -> None:
        if math.isfinite(value):
            return
        saved = self.ckpt_dir is not None and (self.ckpt_dir / "manifest.json").exists()  # none before the first
        where = f"; the checkpoints in {self.ckpt_dir} keep the last finite weights" if saved else ""
        raise TrainingError(
            f"the loss became {value} at update {step} (epoch {trainer.epoch + 1}, batch "
            f"{trainer.loader.position}, lr {trainer.lr:.4g}); training stopped before applying it{where}. "
            "Try a lower learning rate (--lr) or fp32 (--precision fp32)")


class EarlyStopping(Callback):
    """Stop when the validation ``monitor`` has not improved for ``patience`` epochs (Keras' rule)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None:
        last = epoch >= trainer.resolved.epochs  # the run ends anyway: not an early stop
        if not trainer.cut and not last and epoch - trainer.best_epoch >= self.patience:
            trainer.stop = True
            if trainer.main and trainer.progress:
                print(f"  early stop: validation {trainer.task.monitor} has not improved for {self.patience} "
                      f"epochs (best: epoch {trainer.best_epoch})", flush=True)


# A recipe's own length (no --epochs) above this many epochs of the data gets a warning at the start:
# the papers' schedules are counted for their data sets (He et al.'s 64,000 CIFAR iterations are
# 2,000 epochs of mnist-5k's 3,600 training digits).
LONG_RUN_EPOCHS = 200


def _duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


# Without a terminal (a log file, a pipe), a line this often inside an epoch, so a long epoch shows progress.
LINE_EVERY_S = 60.0


class ProgressBar(Callback):
    """What a person watching sees (rank 0, progress on): one line at the start (epochs, updates,
    batch, images; a warning when the recipe's length is very long for the data), one line per epoch
    with the estimated time left, and on a terminal a tqdm bar over all the run's updates (its ETA
    is the whole run's); without one (a log file), a line every ``LINE_EVERY_S`` inside an epoch."""

    def __init__(self, enabled: bool, *, name: str = "") -> None:
        self.enabled = enabled
        self.name = name
        self.bar = None
        self._t0 = self._t_fit = self._t_line = 0.0
        self._step0 = 0

    def _say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)  # above the bar, which stays
        else:
            print(line, flush=True)

    def on_fit_start(self, trainer) -> None:
        if not self.enabled:
            return
        r, data = trainer.resolved, trainer.data
        head = f"{self.name} on {data.name}: " if self.name else ""
        print(f"{head}{r.epochs:,} epochs x {r.steps_per_epoch:,} updates = {r.total_steps:,} updates of batch "
              f"{trainer.recipe.batch_size} ({len(data.train):,} train / {len(data.val):,} val / "
              f"{len(data.test):,} test images), recipe {trainer.recipe.name}, {trainer.device} {trainer.prec.name}"
              + (f"; stopping after update {trainer.stop_at:,}" if trainer.stop_at < r.total_steps else "")
              + (f"; resumed after update {trainer.step:,}" if trainer.step else ""), flush=True)
        if trainer.spec.epochs is None and r.epochs > LONG_RUN_EPOCHS:
            print(f"cnnlab: warning: the {trainer.recipe.name} recipe schedules {r.total_steps:,} updates, "
                  f"{r.epochs:,} epochs of these {len(data.train):,} images (its paper's length for its own data); "
                  f"give --epochs N for a shorter run (the schedule scales with it)", file=sys.stderr, flush=True)
        self._t_fit, self._step0 = time.perf_counter(), trainer.step
        self._t_line = self._t_fit
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=trainer.stop_at, initial=trainer.step, file=sys.stderr, dynamic_ncols=True,
                            unit="update", desc=self._desc(trainer), leave=False)
        self._t0 = time.perf_counter()

    def _desc(self, trainer) -> str:
        return f"epoch {trainer.epoch + 1}/{trainer.resolved.epochs}"

    def on_step_end(self, trainer, step: int, loss: float) -> None:
        if self.bar is None:
            if self.enabled and time.perf_counter() - self._t_line >= LINE_EVERY_S:  # a log, not a terminal
                self._t_line = time.perf_counter()
                done = trainer.step - trainer.epoch * trainer.resolved.steps_per_epoch
                left = self.time_left(trainer)
                print(f"  epoch {trainer.epoch + 1}/{trainer.resolved.epochs}: update {done:,}/"
                      f"{trainer.resolved.steps_per_epoch:,}, loss {loss:.4f}, "
                      f"{trainer.epoch_images / max(time.perf_counter() - self._t0, 1e-9):.0f} img/s"
                      + (f", ~{_duration(left)} left" if left else ""), flush=True)
            return
        metrics = trainer.task.summarize(trainer.accum)
        self.bar.update(1)
        post = {k: f"{v:.4f}" for k, v in list(metrics.items())[:2]}
        post["img_s"] = f"{trainer.epoch_images / max(time.perf_counter() - self._t0, 1e-9):.0f}"
        self.bar.set_postfix(post, refresh=False)

    def time_left(self, trainer) -> float | None:
        """Seconds to the run's end at this session's pace so far (evaluations included); None before an update."""
        done = trainer.step - self._step0
        if done <= 0:
            return None
        return (time.perf_counter() - self._t_fit) / done * max(trainer.stop_at - trainer.step, 0)

    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None:
        if not self.enabled:
            return
        parts = [f"epoch {epoch:>3}/{trainer.resolved.epochs}", f"lr {row['lr']:.3g}"]
        for split in ("train", "val", "test"):
            keys = [k for k in row if k.startswith(split + "_")]
            if keys:
                label = "test (not used for selection)" if split == "test" else split
                parts.append(label + " " + " ".join(f"{k[len(split) + 1:]} {row[k]:.4f}" for k in keys))
        parts.append(f"{row['seconds']:.1f}s (data {row['data_seconds']:.1f}s, updates {row['update_seconds']:.1f}s, "
                     f"eval {row['eval_seconds']:.1f}s) {row['images_per_second']:.0f} img/s")
        left = self.time_left(trainer)
        if left and not trainer.cut and not trainer.stop and trainer.step < trainer.stop_at:
            parts.append(f"~{_duration(left)} left")
        self._say("  ".join(parts) + ("  *" if trainer.improved else ""))
        if getattr(trainer, "drop_lr", False):
            self._say(f"  validation {trainer.task.monitor} has not improved for {trainer.recipe.plateau_patience} "
                      f"epochs: learning rate x{trainer.recipe.gamma}")
        if self.bar is not None:
            self.bar.set_description(self._desc(trainer), refresh=False)
        self._t0 = self._t_line = time.perf_counter()

    def on_fit_end(self, trainer, result) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StepsCsv(Callback):
    """steps.csv: one row per update (step, epoch, batch, lr, loss); rows after the checkpoint a resumed
    run starts from are dropped (they were lost with the kill)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = None
        self.writer = None

    def on_fit_start(self, trainer) -> None:
        if trainer.resumed is not None:
            _trim_steps_csv(self.path, trainer.step)
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)
        if self.file.tell() == 0:
            self.writer.writerow(STEP_FIELDS)

    def on_step_end(self, trainer, step: int, loss: float) -> None:
        self.writer.writerow((step, trainer.epoch + 1, trainer.loader.position, repr(trainer.lr), repr(loss)))

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def on_fit_end(self, trainer, result) -> None:
        self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _trim_steps_csv(path: Path, last_step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        # a torn or edited row (no integer step) is dropped with the rows after the checkpoint
        rows = [r for r in csv.DictReader(f) if (r.get("step") or "").isdigit() and int(r["step"]) <= last_step]
    write_csv(path, STEP_FIELDS, rows)


class MetricsCsv(Callback):
    """metrics.csv: the history so far, rewritten after every epoch (and with the partial row at the end)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None:
        if not trainer.cut:
            write_csv(self.path, metric_fields(trainer.history), trainer.history)

    def on_fit_end(self, trainer, result) -> None:
        write_csv(self.path, metric_fields(result.history), result.history)


class TensorBoard(Callback):
    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("tensorboard logging asked for but the tensorboard package is not installed "
                              "(pip install tensorboard)") from None
        self.writer = SummaryWriter(str(folder))

    def on_step_end(self, trainer, step: int, loss: float) -> None:
        self.writer.add_scalar("train/loss_step", loss, step)

    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None:
        for key, value in row.items():
            if key.startswith(("train_", "val_", "test_")) or key == "lr":
                self.writer.add_scalar(key.replace("_", "/", 1), value, epoch)

    def on_fit_end(self, trainer, result) -> None:
        self.close()

    def close(self) -> None:
        self.writer.close()


class Checkpointing(Callback):
    """``last`` every epoch (and every ``every`` updates mid-epoch, and at a max_steps cut), ``best`` on
    a new best validation ``monitor`` (see :mod:`cnnlab.training.checkpoint`)."""

    def __init__(self, directory: Path, *, every: int | None = None) -> None:
        self.directory, self.every = directory, every

    def save(self, trainer, tag: str) -> None:
        state = trainer.state_dict()  # every rank takes part in gathering the RNG states
        if trainer.main:
            for cb in trainer.callbacks:  # steps.csv on disk before the checkpoint that counts its rows
                if hasattr(cb, "flush"):
                    cb.flush()
            ck.save_checkpoint(self.directory, tag, model=trainer.model, train_state=state)

    def on_step_end(self, trainer, step: int, loss: float) -> None:
        if self.every and step % self.every == 0 and 0 < trainer.loader.position < len(trainer.loader) \
                and step < trainer.stop_at:
            self.save(trainer, "last")

    def on_epoch_end(self, trainer, epoch: int, row: dict) -> None:
        if trainer.cut:
            if trainer.step < trainer.resolved.total_steps:
                self.save(trainer, "last")  # max_steps cut: resumable mid-epoch (without the partial row)
            return
        self.save(trainer, "last")
        if trainer.improved:
            self.save(trainer, "best")


class RunFiles(Callback):
    """At the end, the run's numbers: model.safetensors (the selected weights) and a classifier's test
    diagnosis (confusion.csv, mistakes.npz). Pictures are drawn from them by a callback from above
    (:class:`cnnlab.viz.run_pictures.RunPictures`, which ``cnnlab train`` passes), between this one
    and :class:`ResultsJson`."""

    def __init__(self, out: Path, *, name: str, data_name: str) -> None:
        self.out, self.name, self.data_name = out, name, data_name

    def on_fit_end(self, trainer, result) -> None:
        from cnnlab.models.weights import save_weights

        save_weights(result.model, self.out / "model.safetensors",
                     metadata={"cnnlab.model": self.name, "cnnlab.data": self.data_name,
                               "cnnlab.selected_epoch": str(result.best_epoch)})
        if trainer.task.name == "classification" and len(trainer.data.test):
            from cnnlab.training.diagnostics import write_diagnostics

            write_diagnostics(result.model, trainer.data, self.out, batch_size=trainer.recipe.eval_batch_size)


class ResultsJson(Callback):
    """Last of all: results.json, which marks the run finished."""

    def __init__(self, out: Path, *, name: str, data_name: str) -> None:
        self.out, self.name, self.data_name = out, name, data_name

    def on_fit_end(self, trainer, result) -> None:
        write_json(self.out / "results.json", results_record(result, name=self.name, data_name=self.data_name,
                                                             task=trainer.task))


# The keys a classifier's results.json always holds: what the run reports (the test split's numbers
# are written once, at the end); selection reads only the validation metrics (``selected_on``).
RESULT_KEYS = ("model", "data", "epochs", "best_epoch", "val_acc", "test_acc", "test_acc_last", "test_top5",
               "train_acc", "seconds", "images_per_second")


def results_record(result, *, name: str, data_name: str, task) -> dict:
    """What results.json holds: val at the selected epoch, test on the selected and the last weights.

    A metric that is not defined is written ``null`` (JSON has no NaN): e.g. the IU of a class that a
    split neither contains nor predicts, or ``train_acc`` of a task without accuracy."""
    record = {"model": name, "data": data_name, "task": task.name, "epochs": len(result.history),
              "best_epoch": result.best_epoch, "selected_on": f"val_{task.monitor} ({task.mode})",
              "stopped_early": result.stopped_early}
    record.update({f"val_{k}": v for k, v in result.val.items()})
    record.update({f"test_{k}": v for k, v in result.test.items()})
    record.update({f"test_{k}_last": v for k, v in result.test_last.items()})
    record.update({"train_acc": result.train_acc, "seconds": result.seconds,
                   "images_per_second": result.images_per_second, "steps": result.steps})
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
