"""Helpers shared by the issue-7 experiments (dropout ... autoencoder-pretrain), on top of the
framework's :class:`~cnnlab.experiments.framework.ExperimentContext`.

- :func:`seeded`: a context for another seed that shares the run's cache, log and record of trained
  networks (several seeds where a difference is small against seed noise).
- :func:`predict_proba`: class probabilities of a model over a split, in the run's precision, with
  optional test-time views (the ensemble, dropout and augmentation experiments average them).
- :func:`train_tracked`: ``cnnlab.training.fit`` stopped after every epoch and resumed from its
  checkpoint (bitwise the uninterrupted run), so that something (the error on the clean training
  set) can be measured after each epoch.
- :func:`mean_std`, :func:`restrict`: small numeric and data helpers.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.experiments.framework import ExperimentContext, TrainSpec

__all__ = ["ADAM", "seeded", "seed_list", "predict_proba", "accuracy", "train_tracked", "mean_std", "restrict"]

# The optimiser these experiments were tuned with on the `lenet` recipe (Adam at 2e-3, beta1 0.9, no
# weight decay, no label smoothing), pinned as overrides: the recipe itself is tuned for `cnnlab
# train`'s LeNet-5 job (since commit 1bbd7f9: SGD Nesterov 0.05 with label smoothing, under which
# lenet5_relu stayed at chance for 8 epochs), and retuning it must not silently change these results.
ADAM: tuple[tuple[str, Any], ...] = (
    ("optimizer", "adam"), ("lr", 0.002), ("momentum", 0.9), ("nesterov", False), ("weight_decay", 0.0),
    ("label_smoothing", 0.0),
)  # fmt: skip


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


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    x: Tensor,
    *,
    precision: str = "auto",
    device: str | torch.device | None = None,
    batch_size: int = 500,
    views: Callable[[Tensor], list[Tensor]] | None = None,
    passes: int = 1,
    mean: str = "arithmetic",
) -> Tensor:
    """Softmax probabilities (N, classes), fp32 on the CPU, of ``model`` in eval mode on ``device``
    (the model is moved there; default: where it is).

    ``views(x) -> [x1, x2, ...]`` gives test-time views (``cnnlab.data.augment.tta_views``) whose
    probabilities are averaged; ``passes`` > 1 repeats each forward (stochastic layers such as
    dropout left in training mode by the caller). ``mean``: "arithmetic" averages probabilities,
    "geometric" averages log-probabilities and renormalises.
    """
    from cnnlab.training.device import resolve_device, resolve_precision

    if mean not in ("arithmetic", "geometric"):
        raise ValueError(f"mean must be 'arithmetic' or 'geometric', got {mean!r}")
    dev = resolve_device(device) if device is not None else next((p.device for p in model.parameters()),
                                                                 torch.device("cpu"))  # fmt: skip
    prec = resolve_precision(precision, dev)
    dtype = prec.autocast_dtype
    model.to(dev)
    out: list[Tensor] = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(dev)
        total = None
        count = 0
        for v in views(xb) if views is not None else [xb]:
            if v.dim() == 4:  # channels_last applies to image batches only
                v = v.contiguous(memory_format=prec.memory_format)
            for _ in range(passes):
                with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    logits = model(v)
                logp = logits.float().log_softmax(dim=1)
                term = logp if mean == "geometric" else logp.exp()
                total = term if total is None else total + term
                count += 1
        avg = total / count
        probs = avg.softmax(dim=1) if mean == "geometric" else avg  # geometric: renormalise exp(mean log p)
        out.append(probs.cpu())
    return torch.cat(out)


def accuracy(probs: Tensor, y: Tensor) -> float:
    """Fraction of rows whose highest probability is the label."""
    return float((probs.argmax(dim=1) == y.to(probs.device)).float().mean())


def train_tracked(
    ctx: ExperimentContext,
    label: str,
    build: Callable[[], nn.Module],
    data: Any,
    spec: TrainSpec,
    *,
    measure: Callable[[nn.Module], dict[str, float]],
    key: dict[str, Any] | None = None,
) -> tuple[Any, list[dict[str, float]]]:
    """Train like ``ctx.train`` but call ``measure(model)`` after every epoch; ``(FitResult, rows)``.

    ``cnnlab.training.fit`` has no per-epoch callback, so the run is made of one ``fit`` call per
    epoch on a temporary run directory: the first stops after one epoch's updates (``max_steps``),
    each later one resumes from the checkpoint, which restores everything a step depends on (the
    engine's resume is bitwise on a CPU). The learning-rate schedule is the full run's throughout.
    Results are cached in the run's cache like ``ctx.train``'s.
    """
    from cnnlab.errors import ConfigError
    from cnnlab.training import fit

    if spec.epochs is None:
        raise ConfigError(f"{label}: a tracked run needs TrainSpec.epochs (it is stopped after each epoch)")
    cache_key = ("tracked", tuple(sorted((key or {"label": label}).items())), data.name, tuple(data.input_size),
                 len(data.train.y), spec, ctx.seed, ctx.precision)  # fmt: skip
    if cache_key in ctx.cache.fits:
        ctx.log(f"reusing {label}, already trained in this run")
        return ctx.cache.fits[cache_key]
    model = build()
    steps_per_epoch = math.ceil(len(data.train.y) / (spec.batch_size or _recipe_batch(spec)))
    n_params = sum(p.numel() for p in model.parameters())
    ctx.log(f"training {label} ({n_params:,} params) on {data.name}: {spec.describe()}, measured every epoch")
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="cnnlab-tracked-") as tmp:
        result = None
        for epoch in range(1, spec.epochs + 1):
            result = fit(
                model, data, spec.recipe, epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr,
                overrides=dict(spec.overrides) or None, precision=ctx.precision, device=ctx.device,
                seed=ctx.seed, progress=False, out_dir=tmp, resume=epoch > 1, max_steps=epoch * steps_per_epoch,
            )  # fmt: skip
            model = result.model
            rows.append({"epoch": epoch, **measure(model)})
    assert result is not None
    ctx.log(f"trained {label}: test acc {result.test_acc:.4f} in {result.seconds:.1f}s")
    ctx.trained.append(dict(label=label, data=data.name, spec=spec.describe(), test_acc=float(result.test_acc),
                            train_acc=float(result.train_acc), seconds=float(result.seconds), reused=False))  # fmt: skip
    ctx.cache.fits[cache_key] = (result, rows)
    return result, rows


def _recipe_batch(spec: TrainSpec) -> int:
    from cnnlab.training import get_recipe

    overrides = dict(spec.overrides)
    return int(overrides.get("batch_size", get_recipe(spec.recipe).batch_size))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = [float(v) for v in values]
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


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
