"""FCN's four metrics (Long et al. 2015 §5) from one confusion matrix, against a hand-computed matrix
and against scikit-learn's ``confusion_matrix`` and ``jaccard_score``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import jaccard_score

from cnnlab.training.seg_metrics import confusion_matrix, segmentation_scores


def test_a_hand_computed_example():
    # 3 classes; rows truth, columns prediction
    cm = torch.tensor([[5, 1, 0],
                       [2, 3, 1],
                       [0, 0, 4]])  # fmt: skip
    s = segmentation_scores(cm)
    assert s["pixel_acc"] == pytest.approx(12 / 16)
    assert s["mean_acc"] == pytest.approx((5 / 6 + 3 / 6 + 4 / 4) / 3)
    iou = [5 / (6 + 7 - 5), 3 / (6 + 4 - 3), 4 / (4 + 5 - 4)]
    assert s["iou"] == pytest.approx(iou)
    assert s["miou"] == pytest.approx(sum(iou) / 3)
    assert s["fwiou"] == pytest.approx((6 * iou[0] + 6 * iou[1] + 4 * iou[2]) / 16)


def test_ignore_index_pixels_are_not_counted_and_absent_classes_are_left_out():
    target = torch.tensor([[0, 0, 255], [1, 1, 255]])
    pred = torch.tensor([[0, 1, 3], [1, 1, 0]])
    cm = confusion_matrix(pred, target, num_classes=4)
    assert cm.sum() == 4 and cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 2
    s = segmentation_scores(cm)
    assert math.isnan(s["iou"][2]) and math.isnan(s["iou"][3])  # 0 / 0: neither true nor predicted
    assert s["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = 5
    target = rng.integers(0, k, size=(4, 16, 16))
    target[rng.random(target.shape) < 0.1] = 255
    pred = np.where(rng.random(target.shape) < 0.6, target % 255 % k, rng.integers(0, k, size=target.shape))
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), num_classes=k)
    keep = target != 255
    want = sk_confusion_matrix(target[keep], pred[keep], labels=list(range(k)))
    np.testing.assert_array_equal(cm.numpy(), want)
    s = segmentation_scores(cm)
    ious = jaccard_score(target[keep], pred[keep], labels=list(range(k)), average=None)
    np.testing.assert_allclose(s["iou"], ious)
    assert s["miou"] == pytest.approx(jaccard_score(target[keep], pred[keep], average="macro"))
    assert s["fwiou"] == pytest.approx(jaccard_score(target[keep], pred[keep], average="weighted"))
    assert s["pixel_acc"] == pytest.approx((target[keep] == pred[keep]).mean())


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 3]), num_classes=3)
