"""The segmentation metrics of Long, Shelhamer & Darrell 2015 (§5, "Metrics"), all from one confusion
matrix ``n[i, j]`` = number of pixels of class ``i`` predicted to be of class ``j``, ``t_i = sum_j n[i, j]``:

    pixel accuracy            sum_i n_ii / sum_i t_i
    mean accuracy             (1 / n_cl) sum_i n_ii / t_i
    mean IU                   (1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
    frequency weighted IU     (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

A class absent from both the truth and the predictions has no IU (0 / 0) and is left out of the
means, as the FCN authors' ``score.py`` does with ``nanmean``. Pixels labelled ``ignore_index``
(VOC's void, 255) are not counted. The matrix is a sum over batches, so it is all-reducible (DDP).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["confusion_matrix", "segmentation_scores"]


def confusion_matrix(pred: Tensor, target: Tensor, *, num_classes: int, ignore_index: int = 255) -> Tensor:
    """``(K, K)`` int64 counts, rows the true class, columns the predicted one (sklearn's layout)."""
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"target has labels outside 0..{num_classes - 1} (other than {ignore_index})")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).view(num_classes, num_classes)


def segmentation_scores(cm: Tensor) -> dict[str, object]:
    """``pixel_acc``, ``mean_acc``, ``miou``, ``fwiou`` (floats) and ``iou`` (per-class list, NaN where
    undefined) from a confusion matrix."""
    cm = cm.double()
    diag = cm.diagonal()
    truth = cm.sum(1)  # t_i
    union = truth + cm.sum(0) - diag
    iou = diag / union  # NaN where the class is absent from truth and predictions
    with torch.no_grad():
        acc_per_class = diag / truth  # NaN where the class is absent from the truth
    total = truth.sum()
    seen = ~torch.isnan(iou)
    return {
        "pixel_acc": float(diag.sum() / total) if total > 0 else float("nan"),
        "mean_acc": float(acc_per_class.nanmean()),
        "miou": float(iou.nanmean()),
        "fwiou": float((truth[seen] * iou[seen]).sum() / total) if total > 0 else float("nan"),
        "iou": iou.tolist(),
    }
