"""SegmentationTask through the engine: sums that add up over batches (DDP all-reduce), void pixels
ignored by loss and metrics, shape checks, joint augmentation, and a run folder with overlay.png whose
test mean IU ``cnnlab.training.segmentation.evaluate_segmentation`` reproduces."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from cnnlab import create_model
from cnnlab.data.augment import Augment
from cnnlab.data.datasets import load_dataset
from cnnlab.errors import ConfigError
from cnnlab.training import fit
from cnnlab.training.seg_metrics import confusion_matrix, segmentation_scores
from cnnlab.training.segmentation import SegmentationTask, evaluate_segmentation
from cnnlab.training.tasks import get_task

SMALL = dict(n_train=16, n_val=4, n_test=6)


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist-seg", input_size=(1, 64, 64), **SMALL)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("fcn_digits", width=0.25).eval()


def test_registered_and_the_models_name_it():
    from cnnlab import model_info

    assert isinstance(get_task("segmentation"), SegmentationTask)
    assert {model_info(n).task for n in ("fcn8s_vgg16", "fcn_digits", "unet_small", "dilated_digits")} == {"segmentation"}


def test_sums_add_up_over_batches_to_the_whole_splits_metrics(data, model):
    task = SegmentationTask()
    task.setup(data)
    x, y = data.test.x, data.test.y
    with torch.no_grad():
        whole = task.eval_sums(model, x, y)
        parts = task.eval_sums(model, x[:2], y[:2]) + task.eval_sums(model, x[2:], y[2:])
        pred = model(x).argmax(1)
    torch.testing.assert_close(parts, whole)
    got = task.summarize(parts)
    want = segmentation_scores(confusion_matrix(pred, y, num_classes=11))
    assert got["miou"] == pytest.approx(want["miou"]) and got["pixel_acc"] == pytest.approx(want["pixel_acc"])
    assert got["loss"] == pytest.approx(float(F.cross_entropy(model(x), y, ignore_index=255)), rel=1e-4)
    assert "iou_background" in got and "iou_7" in got


def test_void_pixels_change_neither_loss_nor_metrics(data):
    task = SegmentationTask()
    task.setup(data)
    y = data.train.y[:4]
    logits = torch.randn(4, 11, 64, 64, generator=torch.Generator().manual_seed(0))
    noisy = logits.clone()
    noisy[(y == 255).unsqueeze(1).expand_as(noisy)] = 100.0  # arbitrary scores where the truth is void
    (l1, s1), (l2, s2) = task.loss(logits, None, y), task.loss(noisy, None, y)
    assert (y == 255).any() and float(l1) == pytest.approx(float(l2)) and torch.equal(s1, s2)


def test_a_classifier_or_class_labels_are_refused(data):
    task = SegmentationTask()
    task.setup(data)
    with pytest.raises(ConfigError, match="per-pixel logits"):
        task.check(create_model("resnet20", num_classes=11, in_chans=1), data)  # one score per image
    with pytest.raises(ConfigError, match="per-pixel masks"):
        task.setup(load_dataset("synthetic", shape=(1, 8, 8), n=8))


def test_augment_batch_moves_masks_with_their_images(data):
    task = SegmentationTask()
    x, y = data.train.x[:8], data.train.y[:8]
    off = Augment()
    assert task.augment_batch(off, x, y, torch.Generator()) == (x, y)
    xa, ya = task.augment_batch(Augment(flip=True), x, y, torch.Generator().manual_seed(3))
    for i in range(8):
        flipped = torch.allclose(xa[i], x[i].flip(-1), atol=1e-4)  # grid_sample's float error at 64 px
        assert flipped or torch.allclose(xa[i], x[i], atol=1e-4)
        assert torch.equal(ya[i], y[i].flip(-1) if flipped else y[i])


def test_a_run_folder_has_miou_and_an_overlay(data, tmp_path):
    torch.manual_seed(0)
    net = create_model("fcn_digits", width=0.25)
    result = fit(net, data, "fcn_digits", epochs=1, batch_size=8, precision="fp32", progress=False,
                 out_dir=tmp_path / "run", model_name="fcn_digits")
    assert result.config["task"]["name"] == "segmentation"
    record = json.loads((tmp_path / "run" / "results.json").read_text().replace("NaN", "null"))
    assert (tmp_path / "run" / "overlay.png").stat().st_size > 5000
    assert record["test_miou"] == pytest.approx(evaluate_segmentation(result.model, data.test,
                                                                      class_names=data.class_names)["miou"])
