"""Tasks: what a model is trained to do, i.e. its loss and its metrics.

The :class:`~cnnlab.training.trainer.Trainer` knows nothing about labels or logits: it asks its
``Task`` for the loss of a batch, for the batch sums it accumulates (a float64 vector, so DDP can
all-reduce it), and for the metrics those sums give. A new kind of training (segmentation,
reconstruction, a VAE) is a ``Task`` subclass registered with :func:`register_task`; a model names
its task in the zoo (``register_model(..., task="segmentation")``).

    task = get_task("classification", label_smoothing=0.1)
    sums = task.eval_sums(model, x, y)          # [loss sum, top-1 hits, top-5 hits, count]
    task.summarize(sums)                        # {"loss": ..., "acc": ..., "top5": ...}

The Trainer selects the best epoch on ``summarize(val sums)[task.monitor]`` (``task.mode`` says
whether larger or smaller is better), never on the test split.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.data.bundle import DataBundle
from cnnlab.errors import ConfigError, UnknownNameError, did_you_mean
from cnnlab.models.base import ModelOutput

__all__ = ["Task", "ClassificationTask", "register_task", "get_task", "list_tasks", "topk_hits"]

_TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: make ``get_task(name)`` build the decorated Task subclass."""

    def decorator(cls: type[Task]) -> type[Task]:
        if name in _TASKS and _TASKS[name] is not cls:
            raise RuntimeError(f"task {name!r} is registered twice")
        _TASKS[name] = cls
        return cls

    return decorator


def list_tasks() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_TASKS)


def get_task(name: str, **options: Any) -> Task:
    """A new Task of the registered ``name``, built with ``options`` (the class's keyword arguments)."""
    if name not in _TASKS:
        hint = did_you_mean(name, list(_TASKS), n=3)
        raise UnknownNameError(f"unknown task {name!r}{hint} (known: {', '.join(list_tasks())})")
    try:
        return _TASKS[name](**options)
    except TypeError as err:
        raise ConfigError(f"task {name!r}: {err}") from None


class Task(abc.ABC):
    """Loss and metrics of one kind of training; subclass it and register it with :func:`register_task`.

    ``stat_names`` names the entries of the float64 sums vector that :meth:`loss` (second value) and
    :meth:`eval_sums` return; the Trainer adds them up over batches (and ranks) and hands the total to
    :meth:`summarize`. A subclass must define those three; every other method has a default.
    """

    name: str = "classification"
    monitor: str = "acc"  # key of summarize() the Trainer selects on, read on the validation split
    mode: str = "max"  # "max" or "min" for `monitor`
    stat_names: tuple[str, ...] = ()
    # What reports show of the task, declared once: (key of summarize(), label, unit), the first drawn
    # beside the loss in curves.png and shown by `cnnlab runs` and the report's cards. Unit "%": a
    # fraction shown as a percentage (curves draw 100 - it as the error).
    metrics: tuple[tuple[str, str, str], ...] = (("loss", "loss", ""),)

    def configure(self, recipe: Any) -> None:
        """Take defaults from the training recipe (called by ``fit`` before ``setup``); default: nothing."""

    def setup(self, data: DataBundle) -> None:
        """Learn what the task needs from the data (classes, mean/std); default: nothing."""

    def check(self, model: nn.Module, data: DataBundle) -> None:
        """Probe the model (on its device) with one forward pass; ConfigError if it cannot do this task."""

    def probe(self, model: nn.Module, data: DataBundle) -> tuple[Any, str]:
        """One eval-mode forward of two test images on the model's device, for ``check``: (the output,
        the model's name); a ConfigError naming the model when it cannot take the data's input."""
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        name = getattr(model, "cnnlab_name", None) or type(model).__name__
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return model(data.test.x[:2].to(device)), name
        except RuntimeError as err:
            raise ConfigError(f"{name} cannot take {data.name}'s input of shape {tuple(data.input_size)} "
                              f"({str(err).splitlines()[0][:200]})") from None
        finally:
            model.train(was_training)

    def augment_batch(self, augment, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return (augment(x, generator) if augment.enabled else x), y

    def forward_train(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> Any:
        """The training forward pass of ``model`` on ``x`` (``y``: the batch's targets, for a task whose
        forward reads them, e.g. teacher forcing); default: ``model.forward_train(x)``, else ``model(x)``."""
        return model.forward_train(x) if hasattr(model, "forward_train") else model(x)

    def optimizers(self, model: nn.Module,
                   make: Callable[[nn.Module], torch.optim.Optimizer]) -> list[torch.optim.Optimizer]:
        """The run's optimisers, each built with ``make(module)`` (the recipe's optimiser over the module's
        parameter groups); the checkpoints save and restore them all. Default: one over ``model``."""
        return [make(model)]

    def update(self, trainer: Any, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
        """One training update on the (augmented) batch: (its loss value, float64 sums in ``stat_names``
        order). Default: the forward pass of ``trainer.step_module``, :meth:`loss`, and
        ``trainer.apply(loss, optimizer)`` (backward and step) with the one optimiser. A task with
        several optimisers (a GAN) makes its updates here, each through ``trainer.apply``."""
        with trainer.autocast():
            out = trainer.step_module(x, y)
        loss, sums = self.loss(out, x, y)
        if trainer.recipe.l1:  # the recipe's L1 penalty on the weights (cnnlab.training.param_groups)
            from cnnlab.training.param_groups import l1_penalty

            loss = loss + l1_penalty(trainer.model, trainer.recipe.l1)
        return trainer.apply(loss, trainer.optimizers[0]), sums

    @abc.abstractmethod
    def loss(self, out: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(scalar fp32 loss to backpropagate, float64 batch sums in ``stat_names`` order)."""

    @abc.abstractmethod
    def eval_sums(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Float64 sums of one batch; ``model`` is in eval mode, called under no_grad and autocast."""

    @torch.no_grad()
    def split_sums(self, model: nn.Module, x_all: Tensor, y_all: Tensor, *, batch_size: int, device: torch.device,
                   autocast_dtype: torch.dtype | None, memory_format: torch.memory_format) -> Tensor:
        """:meth:`eval_sums` added up over a whole split, ``batch_size`` images at a time (the model
        already in eval mode): the one evaluation loop of the Trainer and of ``engine.evaluate_task``."""
        sums = self.zeros(device)
        for start in range(0, len(y_all), batch_size):
            x = x_all[start : start + batch_size].to(device, non_blocking=True).contiguous(memory_format=memory_format)
            y = y_all[start : start + batch_size].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                sums += self.eval_sums(model, x, y).to(sums.device)
        return sums

    @abc.abstractmethod
    def summarize(self, sums: Tensor) -> dict[str, float]:
        """Metrics from the (all-reduced) sums."""

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` of ``monitor`` beats ``best`` (None: nothing yet); NaN never does."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        return value > best if self.mode == "max" else value < best

    def zeros(self, device: torch.device | str = "cpu") -> Tensor:
        return torch.zeros(len(self.stat_names), dtype=torch.float64, device=device)

    def describe(self) -> dict:
        """What config.json records of the task."""
        return {"name": self.name, "monitor": self.monitor, "mode": self.mode,
                "metrics": [{"key": k, "label": label, "unit": unit} for k, label, unit in self.metrics]}

    def callbacks(self, out_dir: Path | None) -> list:
        """Trainer callbacks the task adds to every run, on every rank (``out_dir``: the run folder or
        None), after the built-in ones: e.g. the VAE's end-of-run likelihood. Default: none."""
        return []

    def run_callbacks(self, out_dir: Path) -> list:
        """Trainer callbacks the task adds to a run that has a folder, on rank 0, before the caller's:
        the numbers of its end-of-run pictures (segmentation's overlay.npz). Default: none."""
        return []


def topk_hits(scores: Tensor, y: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """Number of samples whose label is the top-1 and among the top-k scores."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    hit = top == y.view(-1, 1)
    return hit[:, 0].sum(), hit.any(dim=1).sum()


@register_task("classification")
class ClassificationTask(Task):
    """Cross-entropy (with label smoothing) on ``ModelOutput.logits`` plus ``sum_i w_i CE(aux_i)``
    (GoogLeNet's auxiliary classifiers, Szegedy et al. 2015 §5: weights 0.3); top-1 and top-5.

    ``label_smoothing`` and ``tta`` None take the recipe's (``configure``). Evaluation scores the
    ``model(x)`` logits, or with ``tta="flip"`` the mean of the logits of x and its mirror (val and
    test alike); ten-crop views and MC dropout are ``engine.evaluate`` / ``engine.evaluate_mc_dropout``.
    """

    name = "classification"
    monitor = "acc"
    mode = "max"
    stat_names = ("loss", "top1", "top5", "count")
    metrics = (("acc", "top-1 accuracy", "%"), ("top5", "top-5 accuracy", "%"))

    def __init__(self, *, label_smoothing: float | None = None, tta: str | None = None) -> None:
        if label_smoothing is not None and not 0.0 <= float(label_smoothing) < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if tta not in (None, "none", "flip"):
            raise ConfigError(f"tta must be 'none' or 'flip', got {tta!r}")
        self.label_smoothing = label_smoothing
        self.tta = tta
        self.num_classes: int | None = None

    def configure(self, recipe: Any) -> None:
        if self.label_smoothing is None:
            self.label_smoothing = float(getattr(recipe, "label_smoothing", 0.0))
        if self.tta is None:
            self.tta = getattr(recipe, "tta", "none")

    def setup(self, data: DataBundle) -> None:
        self.num_classes = data.num_classes

    def check(self, model: nn.Module, data: DataBundle) -> None:
        out, name = self.probe(model, data)
        if out.ndim != 2 or out.shape[1] < data.num_classes:
            raise ConfigError(f"{name} gives {tuple(out.shape[1:])} outputs but {data.name} has "
                              f"{data.num_classes} classes")

    def loss(self, out: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(out, ModelOutput):
            out = ModelOutput(out)
        smoothing = self.label_smoothing or 0.0
        loss = F.cross_entropy(out.logits.float(), y, label_smoothing=smoothing)
        for w, aux in zip(out.aux_weights, out.aux_logits):
            loss = loss + w * F.cross_entropy(aux.float(), y, label_smoothing=smoothing)
        with torch.no_grad():
            top1, top5 = topk_hits(out.logits.detach().float(), y)
            sums = torch.stack([loss.detach().double() * len(y), top1.double(), top5.double(),
                                torch.tensor(float(len(y)), dtype=torch.float64, device=y.device)])
        return loss, sums

    def eval_sums(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        logits = model(x).float()
        if self.tta == "flip":  # airbench's test-time flips: the mean of the two views' logits
            logits = (logits + model(x.flip(-1)).float()) / 2
        loss = F.cross_entropy(logits, y, reduction="sum")
        top1, top5 = topk_hits(logits, y)
        return torch.stack([loss.double(), top1.double(), top5.double(),
                            torch.tensor(float(len(y)), dtype=torch.float64, device=y.device)])

    def summarize(self, sums: Tensor) -> dict[str, float]:
        loss, top1, top5, n = (float(v) for v in sums.cpu())
        n = max(n, 1.0)
        return {"loss": loss / n, "acc": top1 / n, "top5": top5 / n}
