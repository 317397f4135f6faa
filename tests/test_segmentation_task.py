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
    assert got["loss"] == pytest.approx(float(F.cross_entropy(model(x), y, ignore_index=255).detach()), rel=1e-4)
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


def test_a_cli_run_has_miou_an_overlay_and_predict_writes_its_mask_png(data, tmp_path):
    """One `cnnlab train` run (a single training keeps the suite fast): its folder's results.json (strict
    JSON, test mean IU as ``evaluate_segmentation`` computes it) and overlay.png; then `cnnlab predict
    IMAGE --run DIR` writes a palette PNG of class indices equal to the model's argmax on the canvas
    normalised with the data's statistics, and never overwrites it."""
    import numpy as np
    from PIL import Image

    from cnnlab.cli import main
    from cnnlab.data.segmentation import load_mnist_seg
    from cnnlab.models.weights import load_weights

    run = tmp_path / "run"
    sizes = [f"--data-set={k}={v}" for k, v in SMALL.items()]
    assert main(["train", "fcn_digits", "--data", "mnist-seg", *sizes, "--model-set", "width=0.25", "--epochs", "1",
                 "--batch-size", "8", "--precision", "fp32", "--no-progress", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["task"]["name"] == "segmentation"
    assert (run / "overlay.png").stat().st_size > 5000
    model = create_model("fcn_digits", width=0.25)
    load_weights(model, run / "model.safetensors")
    # strict JSON: a class absent from the split and never predicted has no IU, written null (not NaN)
    record = json.loads((run / "results.json").read_text(), parse_constant=pytest.fail)
    reference = evaluate_segmentation(model, data.test, class_names=data.class_names)
    assert record["test_miou"] == pytest.approx(reference["miou"])
    undefined = [k for k, v in reference.items() if k.startswith("iou_") and v != v]
    assert undefined and all(record[f"test_{k}"] is None for k in undefined)  # 6 canvases lack some digits
    assert all(0 <= record[f"test_{k}"] <= 1 for k, v in reference.items() if k.startswith("iou_") and v == v)

    canvas = load_mnist_seg(**SMALL).test[0][0, 0].numpy()  # uint8 64x64, as read
    Image.fromarray(canvas).save(tmp_path / "canvas.png")
    argv = ["predict", str(tmp_path / "canvas.png"), "--run", str(run), "--masks-dir", str(tmp_path / "m")]
    assert main(argv) == 0
    with Image.open(tmp_path / "m" / "canvas.mask.png") as img:
        assert img.mode == "P" and img.size == (64, 64)
        mask = torch.from_numpy(np.asarray(img).astype(np.int64))
    x = (torch.from_numpy(canvas).float() / 255 - data.mean[0]) / data.std[0]
    with torch.no_grad():
        expected = model.eval()(x[None, None]).argmax(1)[0]
    assert torch.equal(mask, expected)
    before = (tmp_path / "m" / "canvas.mask.png").read_bytes()
    assert main(argv) == 2 and (tmp_path / "m" / "canvas.mask.png").read_bytes() == before


def test_dilated_nets_train_bf16_in_nchw_where_channels_last_is_broken():
    """The engine's departure for dilated convolutions on a bf16 CPU (see engine._without_broken_kernels):
    NCHW is chosen only for a model with a dilated conv and only when the layout is "auto"; and in NCHW
    bf16 the gradients of a dilated conv agree with fp32 autograd (channels_last gave NaN here)."""
    from cnnlab.training.device import Precision
    from cnnlab.training.engine import _without_broken_kernels

    cpu = torch.device("cpu")
    bf16 = Precision("bf16", True, "test")
    assert not _without_broken_kernels(bf16, create_model("dilated_digits", width=8), cpu, "auto").channels_last
    assert _without_broken_kernels(bf16, create_model("fcn_digits", width=0.25), cpu, "auto").channels_last
    assert _without_broken_kernels(bf16, create_model("dilated_digits", width=8), cpu, "channels_last").channels_last
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2)
    x = torch.rand(4, 8, 16, 16)
    grads = []
    for bf in (False, True):
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
            y = conv(x)
        y.float().square().sum().backward()
        grads.append(conv.weight.grad.clone())
    assert torch.isfinite(grads[1]).all()
    torch.testing.assert_close(grads[1], grads[0], rtol=0.05, atol=0.05 * grads[0].abs().max().item())
