"""Detection: the mnist-boxes scenes, Fast R-CNN's box coding and proposal matching, mAP@0.5 against
hand-computed COCO values, and a run through the engine that `cnnlab predict` draws boxes from."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cnnlab import create_model, model_info
from cnnlab.data.canvas import MAX_OBJECTS, load_scenes
from cnnlab.errors import ConfigError
from cnnlab.models.zoo.rcnn import FastRCNN, decode_boxes, encode_boxes, sliding_windows
from cnnlab.training.detection import DetectionTask, match_proposals, mean_average_precision
from cnnlab.training.tasks import get_task

pycocotools = pytest.importorskip("pycocotools", reason="pip install 'cnnlab[detection]'")

SMALL = dict(n_train=24, n_val=8, n_test=8)


def test_scene_boxes_are_the_tight_boxes_of_all_the_ink():
    x, rows = load_scenes(**SMALL)["test"]
    assert x.shape == (8, 1, 64, 64) and rows.shape == (8, MAX_OBJECTS, 5)
    for img, r in zip(x[:, 0].numpy(), rows.numpy()):
        real = r[r[:, 0] >= 0]
        assert 1 <= len(real) <= MAX_OBJECTS and (r[len(real):] == -1).all()  # padding rows last
        inside = np.zeros_like(img, dtype=bool)
        for label, x0, y0, x1, y1 in real:
            assert 0 <= label <= 9 and 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            inside[y0:y1, x0:x1] = True
        assert not img[~inside].any()  # no ink outside the boxes
    # fixed seeds: the same scenes on every call, whatever the split sizes of the others
    assert torch.equal(load_scenes(**SMALL)["test"][1], load_scenes(n_train=30, n_val=8, n_test=8)["test"][1])


def test_windows_cover_the_canvas_as_counted_by_hand():
    boxes = sliding_windows(64, ((6, 20), (12, 20), (20, 20)), 4)
    # x0 in 0..58 (15), 0..52 (14), 0..44 (12) positions; y0 in 0..44 (12) for every shape
    assert boxes.shape == (15 * 12 + 14 * 12 + 12 * 12, 4)
    assert boxes[0].tolist() == [0, 0, 6, 20] and boxes[-1].tolist() == [44, 44, 64, 64]


def test_box_offsets_follow_rcnn_appendix_c():
    proposal = torch.tensor([0.0, 0.0, 10.0, 20.0])  # centre (5, 10), 10 x 20
    box = torch.tensor([2.0, 4.0, 22.0, 24.0])  # centre (12, 14), 20 x 20
    want = [10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]  # weights 10, 10, 5, 5
    torch.testing.assert_close(encode_boxes(proposal, box), torch.tensor(want))
    torch.testing.assert_close(decode_boxes(proposal, torch.tensor(want)), box)


def test_proposals_match_by_iou_with_every_digit_matched():
    proposals = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10], [40, 40, 50, 50], [30, 0, 40, 10.0]])
    rows = torch.tensor([[[3, 0, 0, 10, 10], [7, 41, 41, 51, 51], [5, 26, 0, 36, 10], [-1, -1, -1, -1, -1]]])
    target, matched = match_proposals(proposals, rows)
    # IoUs: 1.0 with the 3; 50/150 = 0.33 (background); 81/119 = 0.68 with the 7; 60/140 = 0.43 with
    # the 5, below 0.5 but the 5's best proposal, so foreground all the same. Classes: 1 + digit.
    assert target[0].tolist() == [4, 0, 8, 6]
    assert matched[0, 2].tolist() == [41, 41, 51, 51] and matched[0, 3].tolist() == [26, 0, 36, 10]


def test_map50_equals_hand_computed_coco_values():
    # class 1: two true boxes, detections ranked TP (0.9), FP (0.8), TP (0.7): precision 1, 1/2, 2/3 at
    # recall 1/2, 1/2, 1. COCO interpolates at 101 recall points: 1 for r <= 0.5 (51 points), 2/3 after
    # (50 points): AP = (51 + 50 * 2/3) / 101. Class 2: one true box, found at IoU 0.6 (above 0.5)
    # after a box at IoU 0.45 (below, a false positive) with a higher score: precision 1/2 at recall 1,
    # AP = 1/2. Class 5 has detections and no true box: left out of the mean.
    targets = [{"boxes": torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30.0]]), "labels": torch.tensor([1, 1])},
               {"boxes": torch.tensor([[0, 0, 10, 10.0]]), "labels": torch.tensor([2])}]
    detections = [{"boxes": torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30.0]]),
                   "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 1, 1])},
                  {"boxes": torch.tensor([[0, 0, 10, 6], [0, 0, 10, 4.5], [0, 0, 4, 4.0]]),
                   "scores": torch.tensor([0.5, 0.9, 0.3]), "labels": torch.tensor([2, 2, 5])}]
    # IoU of [0,0,10,6] with [0,0,10,10] is 0.6; of [0,0,10,4.5] is 0.45
    ap1, ap2 = (51 + 50 * 2 / 3) / 101, 0.5
    assert mean_average_precision(detections, targets) == pytest.approx((ap1 + ap2) / 2, abs=1e-9)
    assert mean_average_precision(detections[:1], targets[:1]) == pytest.approx(ap1, abs=1e-9)
    # at IoU 0.4 the 0.45 box is the true positive and the 0.6 one a duplicate: class 2's AP is 1
    assert mean_average_precision(detections[1:], targets[1:], iou=0.4) == pytest.approx(1.0)
    assert mean_average_precision([{k: v[:0] for k, v in d.items()} for d in detections], targets) == 0.0


def test_registered_model_and_task_and_bad_config():
    assert model_info("fast_rcnn_digits").task == "detection"
    assert isinstance(get_task("detection"), DetectionTask)
    model = create_model("fast_rcnn_digits")
    assert isinstance(model, FastRCNN) and sum(p.numel() for p in model.parameters()) > 0
    with pytest.raises(ConfigError, match="windows"):
        create_model("fast_rcnn_digits", windows=((0, 20),))
    with pytest.raises(ConfigError, match="no stage of stride 3"):
        create_model("fast_rcnn_digits", reduction=3)
    with pytest.raises(ConfigError, match="fg_fraction"):
        get_task("detection", fg_fraction=0)


def test_every_parameter_gets_a_gradient_and_detect_returns_boxes_in_the_image():
    torch.manual_seed(0)
    model = create_model("fast_rcnn_digits", backbone_width=0.25)
    x, rows = load_scenes(**SMALL)["train"]
    x = x[:2].float() / 255
    task = DetectionTask()
    loss, sums = task.loss(model(x), x, rows[:2])
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert task.summarize(sums)["loss"] == pytest.approx(float(loss.detach()))
    found = model.eval().detect(x)
    assert len(found) == 2 and all(((d.boxes >= 0) & (d.boxes <= 64)).all() for d in found)


def test_a_cli_run_selects_on_val_map_and_predict_draws_boxes(tmp_path):
    from PIL import Image

    from cnnlab.cli import main

    out = tmp_path / "run"
    sets = [a for k, v in SMALL.items() for a in ("--data-set", f"{k}={v}")]
    assert main(["train", "fast_rcnn_digits", "--data", "mnist-boxes", *sets, "--epochs", "1", "--threads", "1",
                 "--model-set", "backbone_width=0.25", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["selected_on"] == "val_map50 (max)" and 0.0 <= results["val_map50"] <= 1.0 and 0.0 <= results["test_map50"] <= 1.0
    image = tmp_path / "scene.png"
    Image.fromarray(load_scenes(**SMALL)["test"][0][0, 0].numpy()).save(image)
    assert main(["predict", str(image), "--run", str(out), "--masks-dir", str(tmp_path / "boxes"), "--format", "json"]) == 0
    drawn = Image.open(tmp_path / "boxes" / "scene.boxes.png")
    assert drawn.size == (256, 256) and drawn.mode == "RGB"
    # never overwritten
    assert main(["predict", str(image), "--run", str(out), "--masks-dir", str(tmp_path / "boxes")]) != 0
