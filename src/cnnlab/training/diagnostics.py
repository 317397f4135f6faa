"""What a classifier gets wrong: the confusion matrix, per-class accuracy and the most confident
mistakes of a split, from one pass of the model (what ``cnnlab eval`` prints and draws)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from cnnlab import atomic
from cnnlab.data import TensorPair
from cnnlab.errors import ConfigError

__all__ = ["Diagnosis", "diagnose", "write_diagnostics"]


@dataclass(frozen=True)
class Diagnosis:
    confusion: Tensor  # int64 (K, K): row = true class, column = predicted class
    mistakes: Tensor  # indices into the split of the wrong predictions, most confident first
    predicted: Tensor  # int64 (N,) predicted class of every sample
    confidence: Tensor  # float32 (N,) softmax probability of the predicted class

    @property
    def per_class_accuracy(self) -> Tensor:
        """Recall of each class (NaN for a class with no sample)."""
        totals = self.confusion.sum(dim=1).double()
        return self.confusion.diagonal().double() / totals.where(totals > 0, torch.tensor(float("nan")))

    @property
    def accuracy(self) -> float:
        return float(self.confusion.diagonal().sum()) / max(int(self.confusion.sum()), 1)


@torch.no_grad()
def diagnose(model: nn.Module, pair: TensorPair, *, num_classes: int, batch_size: int = 512) -> Diagnosis:
    """Run ``model`` (eval mode, fp32, on its own device) over ``pair`` and tabulate its errors."""
    if pair.y.ndim != 1:
        raise ConfigError("the confusion matrix of a classifier needs one label per image")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    preds, confs = [], []
    try:
        for start in range(0, len(pair), batch_size):
            probs = model(pair.x[start : start + batch_size].to(device)).float().softmax(dim=1).cpu()
            conf, pred = probs.max(dim=1)
            preds.append(pred)
            confs.append(conf)
    finally:
        model.train(was_training)
    predicted, confidence = torch.cat(preds), torch.cat(confs)
    if int(predicted.max()) >= num_classes:
        raise ConfigError(f"the model predicts class {int(predicted.max())} but the data has {num_classes} classes")
    y = pair.y.cpu()
    confusion = torch.bincount(y * num_classes + predicted, minlength=num_classes**2).view(num_classes, num_classes)
    wrong = torch.nonzero(predicted != y).flatten()
    order = confidence[wrong].argsort(descending=True, stable=True)
    return Diagnosis(confusion=confusion, mistakes=wrong[order], predicted=predicted, confidence=confidence)


def write_diagnostics(model: nn.Module, data, out_dir: str | os.PathLike, *, mistakes: int = 32,
                      batch_size: int = 512) -> tuple[list[dict], list[str]]:
    """The test split's diagnosis written to ``out_dir`` as numbers: ``confusion.csv`` and (``mistakes``
    > 0) ``mistakes.npz``, the most confident mistakes (``images`` in [0, 1], ``true``, ``predicted``,
    ``confidence``); :func:`cnnlab.viz.confusion.draw_diagnostics` draws them. Returns the per-class
    rows (class, images, correct, accuracy) and the files written. ``data`` is a DataBundle."""
    d = diagnose(model, data.test, num_classes=data.num_classes, batch_size=batch_size)
    names = [str(n) for n in data.class_names]
    acc = d.per_class_accuracy
    rows = [{"class": names[k], "images": int(d.confusion[k].sum()), "correct": int(d.confusion[k, k]),
             "accuracy": None if acc[k] != acc[k] else float(acc[k])} for k in range(data.num_classes)]
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{out_dir}: cannot create the folder ({err.strerror or err})") from None
    table = [{"true/predicted": names[k], **{n: int(v) for n, v in zip(names, d.confusion[k])}}
             for k in range(data.num_classes)]
    atomic.write_csv(out_dir / "confusion.csv", ["true/predicted", *names], table)
    files = [str(out_dir / "confusion.csv")]
    if mistakes:
        idx = d.mistakes[:mistakes]
        mean = torch.tensor(data.mean).view(1, -1, 1, 1)
        std = torch.tensor(data.std).view(1, -1, 1, 1)
        atomic.write_npz(out_dir / "mistakes.npz", images=(data.test.x[idx] * std + mean).numpy(),
                         true=data.test.y[idx].numpy(), predicted=d.predicted[idx].numpy(),
                         confidence=d.confidence[idx].numpy())
        files.append(str(out_dir / "mistakes.npz"))
    return rows, files
