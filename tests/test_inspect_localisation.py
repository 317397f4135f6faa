"""mnist-canvas and the localisation measures against their definitions; the experiment at tiny scale (plumbing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from cnnlab import ConfigError
from cnnlab.data import load_dataset
from cnnlab.data.canvas import CANVAS_SIZE, _canvases, canvas_boxes, load_mnist_canvas_val
from cnnlab.data.embedded import load_mnist_5k
from cnnlab.experiments.localisation import area, deletion_curve, pointing_game, rank_correlation


def test_canvas_boxes_hold_all_the_ink_tightly_and_splits_come_from_disjoint_digits():
    data = _canvases()
    raw = load_mnist_5k()
    assert [len(data[s][1]) for s in ("train", "val", "test")] == [3500, 500, 1000]
    for split in ("train", "val", "test"):
        canvas, _, boxes = data[split]
        for i in range(0, len(boxes), 97):
            x0, y0, x1, y1 = boxes[i]
            img = canvas[i, 0].numpy()
            inside = img[y0:y1, x0:x1]
            assert img.sum() == inside.sum()  # no ink outside the box
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()  # tight
    # the test canvases carry mnist-5k's test digits, in order: the digit pasted is the source digit
    canvas, labels, boxes = data["test"]
    assert torch.equal(labels, raw.test_y)
    for i in (0, 500, 999):
        ink = raw.test_x[i, 0].numpy()
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        x0, y0, x1, y1 = boxes[i]
        np.testing.assert_array_equal(canvas[i, 0, y0:y1, x0:x1].numpy(),
                                      ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    # train and val come from mnist-5k's train digits, never the same one twice
    train_val = torch.cat([data["train"][0], data["val"][0]]).flatten(1)
    assert len({tuple(r.nonzero().flatten().tolist()[:5]) + (int(r.sum()),) for r in train_val}) > 3900


def test_mnist_canvas_loads_deterministically_with_boxes_scaled_to_any_size():
    a, b = load_dataset("mnist-canvas"), load_dataset("mnist_canvas")
    assert a.input_size == (1, CANVAS_SIZE, CANVAS_SIZE) and torch.equal(a.test.x, b.test.x)
    assert len(a.train) == 3500 and len(a.test) == 1000
    np.testing.assert_allclose(canvas_boxes("test", size=32), canvas_boxes("test") / 2)
    assert len(load_mnist_canvas_val()[1]) == 500
    with pytest.raises(ConfigError, match="no split 'dev'"):
        canvas_boxes("dev")


def test_pointing_game_counts_maxima_inside_boxes():
    maps = np.zeros((3, 8, 8))
    maps[0, 2, 3] = 1  # inside (x 3 in [2, 5), y 2 in [1, 4))
    maps[1, 4, 3] = 1  # y 4 = y1: outside (exclusive)
    maps[2, 1, 2] = 1  # the corner x0, y0: inside
    boxes = np.array([[2, 1, 5, 4]] * 3, dtype=float)
    assert pointing_game(maps, boxes).tolist() == [True, False, True]


def test_deletion_curve_and_its_area():
    class Bright(torch.nn.Module):  # class 1 when the top-left pixel is bright
        def forward(self, x):
            return torch.stack([-x[:, 0, 0, 0], x[:, 0, 0, 0]], 1)

    x = torch.ones(2, 1, 4, 4)
    y = torch.tensor([1, 1])
    good = np.zeros((2, 4, 4))
    good[:, 0, 0] = 1.0  # the evidence first
    bad = np.ones((2, 4, 4))
    bad[:, 0, 0] = 0.0  # the evidence last
    fr = (0.0, 1 / 16, 0.5, 1.0)
    assert deletion_curve(Bright(), x, y, good, fractions=fr, fill=-1.0) == [1.0, 0.0, 0.0, 0.0]
    assert deletion_curve(Bright(), x, y, bad, fractions=fr, fill=-1.0) == [1.0, 1.0, 1.0, 0.0]
    assert area((0.0, 0.5, 1.0), [1.0, 1.0, 0.0]) == pytest.approx(0.75)


def test_rank_correlation_is_spearmans():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 5, 5)), rng.random((3, 5, 5))
    b[0] = a[0] ** 2  # monotone: 1
    expected = np.mean([spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(3)])
    assert rank_correlation(a, b) == pytest.approx(expected)
    assert rank_correlation(a[:1], b[:1]) == pytest.approx(1.0)


def test_scored_images_are_spread_over_the_classes_deterministically():
    from cnnlab.experiments.localisation import scored_indices

    labels = np.repeat(np.arange(10), [100, 90, 80, 70, 60, 50, 40, 30, 20, 3])  # class-ordered, like the splits
    idx = scored_indices(labels, 200)
    assert len(set(idx.tolist())) == 200 and np.array_equal(idx, scored_indices(labels, 200))
    counts = np.bincount(labels[idx], minlength=10)
    assert counts[9] == 3 and counts[:9].min() >= 20  # the short class gives all it has, the rest share the remainder
    assert np.bincount(labels[idx[:20]], minlength=10).tolist() == [2] * 10  # any prefix is balanced
    assert not np.array_equal(idx, scored_indices(labels, 200, seed=1))


def test_cascade_steps_group_layers_top_down_and_end_at_the_input():
    from cnnlab.experiments.localisation import _cascade
    from cnnlab.models import create_model

    net = create_model("resnet20", num_classes=10, in_chans=1, widths=(4, 4, 8))
    full = _cascade(net)
    assert [name for name, _ in full] == ["fc", "layer3", "layer2", "layer1", "bn1", "conv1"]
    two = _cascade(net, 2)
    assert [name for name, _ in two] == ["layer2", "conv1"]
    assert [id(m) for _, mods in two for m in mods] == [id(m) for _, mods in full for m in mods]  # every layer, once


def test_shuffled_label_net_selects_on_shuffled_val_labels():
    from cnnlab.experiments.localisation import _shuffled_labels

    data = load_dataset("mnist-canvas", input_size=(1, 16, 16))
    shuffled = _shuffled_labels(data, 1)
    for a, b in ((data.train.y, shuffled.train.y), (data.val.y, shuffled.val.y)):
        assert torch.equal(a.sort().values, b.sort().values) and (a != b).float().mean() > 0.5
    assert torch.equal(shuffled.test.y, data.test.y) and shuffled.val.x is data.val.x


def test_localisation_tiny_writes_its_table(tmp_path):
    """Plumbing (tens of seconds): 2 scored canvases at 16x16, a 5k-parameter net, the cascade in 2 steps."""
    from cnnlab.experiments import run_experiment
    from cnnlab.inspect import METHODS

    res = run_experiment("localisation", scale="tiny", out_dir=tmp_path / "loc", progress=False)
    assert [r["method"] for r in res["methods"]] == list(METHODS)
    assert res["scored_per_class"] == [1, 1] + [0] * 8  # stratified, not the first two test canvases (both zeros)
    assert 0.0 < res["chance"] < 0.2
    untouched = {r["deletion"][0] for r in res["methods"]}
    assert len(untouched) == 1 and untouched.pop() in (0.0, 0.5, 1.0)  # nothing deleted: one accuracy for all maps
    for r in res["methods"]:
        assert r["pointing"] in (0.0, 0.5, 1.0) and len(r["deletion"]) == 3
        assert all(0.0 <= v <= 1.0 for v in r["deletion"]) and 0.0 <= r["deletion_auc"] <= 1.0
        assert [c["randomised_to"] for c in r["cascade"]] == ["layer2", "conv1"]
        assert r["rank_corr_all_random"] == r["cascade"][-1]["rank_corr"]
        assert -1.0 <= r["rank_corr_all_random"] <= 1.0 and -1.0 <= r["rank_corr_shuffled_labels"] <= 1.0
    assert (tmp_path / "loc" / "localisation.png").is_file() and (tmp_path / "loc" / "report.md").is_file()
