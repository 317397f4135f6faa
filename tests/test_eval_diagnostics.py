"""`cnnlab eval`'s per-class accuracy, confusion matrix and mistakes, against scikit-learn."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, recall_score

import cnnlab
from cnnlab.cli import main
from cnnlab.data import TensorPair
from cnnlab.models.weights import save_weights
from cnnlab.training.diagnostics import diagnose


def test_confusion_matrix_and_per_class_accuracy_equal_sklearns():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    pair = TensorPair(torch.randn(300, 3, 2, 2), torch.randint(0, 4, (300,)))
    d = diagnose(model, pair, num_classes=4, batch_size=64)
    pred = model(pair.x).argmax(1)
    assert np.array_equal(d.confusion.numpy(), confusion_matrix(pair.y, pred, labels=range(4)))
    np.testing.assert_allclose(d.per_class_accuracy.numpy(), recall_score(pair.y, pred, average=None), rtol=1e-12)
    conf = d.confidence[d.mistakes]
    assert (conf[:-1] >= conf[1:]).all() and (pred[d.mistakes] != pair.y[d.mistakes]).all()
    assert len(d.mistakes) == int((pred != pair.y).sum())


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "lenet5.safetensors"
    torch.manual_seed(0)
    save_weights(cnnlab.create_model("lenet5"), path)
    return path


def test_eval_writes_confusion_csv_png_and_mistakes(weights, tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["eval", str(weights), "--model", "lenet5", "--data", "digits", "--out", str(out),
                 "--mistakes", "8"]) == 0
    text = capsys.readouterr().out
    assert "per-class accuracy" in text and "confusion.png" in text
    rows = list(csv.reader(open(out / "confusion.csv")))
    assert rows[0] == ["true/predicted", *[str(k) for k in range(10)]]
    total = sum(int(v) for row in rows[1:] for v in row[1:])
    assert f"({total:,} test images)" in text  # every test image is in the matrix once
    for name in ("confusion.png", "mistakes.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("flags, message", [
    (["--tta", "flip"], "mirrored digit"),
    (["--tta", "10crop"], "mirrored digit"),
    (["--dropout-samples", "4"], "no dropout layer"),
])
def test_eval_refuses_views_and_samples_that_mean_nothing(weights, tmp_path, capsys, flags, message):
    assert main(["eval", str(weights), "--model", "lenet5", "--data", "digits", "--out", str(tmp_path / "x"),
                 *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
