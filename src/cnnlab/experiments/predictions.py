"""Class probabilities of a trained model, and the accuracy they give.

:func:`predict_proba` runs a model over a split in the run's precision, optionally averaging
test-time views or repeated stochastic passes (the ensemble, dropout and augmentation experiments
average them); :func:`accuracy` scores the probabilities against the labels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["predict_proba", "accuracy"]


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
