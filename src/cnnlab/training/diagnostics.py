"""What a classifier gets wrong: the confusion matrix, per-class accuracy and the most confident
mistakes of a split, from one pass of the model (what ``cnnlab eval`` prints and draws)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.data import TensorPair
from cnnlab.errors import ConfigError

__all__ = ["Diagnosis", "diagnose"]


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
