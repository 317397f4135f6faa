"""Selection reads the validation split, never the test split.

The data are built so that val and test disagree: val holds images of the same distribution as test
but with every label shifted by one class, so the better the network learns (test accuracy up), the
worse it does on val. The run must keep the epoch that is best on val, write its weights to
model.safetensors, report that epoch's test accuracy as ``test_acc`` and the last weights' as
``test_acc_last``; the per-epoch test columns (``test_every_epoch``) are there only for curves.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from cnnlab.data import TensorPair, load_dataset
from cnnlab.errors import ConfigError
from cnnlab.training import checkpoint as ck
from cnnlab.training import TrainSpec, fit

RECIPE = dict(optimizer="sgd", lr=0.002, momentum=0.0, nesterov=False, weight_decay=0.0, schedule="constant",
              batch_size=50, translate=0, label_smoothing=0.0, warmup_steps=0, crop_padding=0, flip=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _disagreeing_data():
    data = load_dataset("synthetic", shape=(1, 8, 8), num_classes=4, n_train=400, n_test=200, seed=1)
    shifted = TensorPair(data.val.x, (data.val.y + 1) % 4)  # val: right images, wrong-by-one labels
    return dataclasses.replace(data, val=shifted)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))


class Snapshots:
    """A callback that keeps a copy of the weights after every epoch."""

    def __init__(self) -> None:
        self.weights: dict[int, dict] = {}

    def on_epoch_end(self, trainer, epoch, row):
        self.weights[epoch] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_selection_reads_val_not_test(tmp_path):
    snaps = Snapshots()
    out = tmp_path / "run"
    result = fit(_net(), _disagreeing_data(), TrainSpec(recipe="lenet", epochs=6, overrides=RECIPE, precision="fp32", test_every_epoch=True), progress=False, run_dir=out, callbacks=[snaps])
    val = [row["val_acc"] for row in result.history]
    test = [row["test_acc"] for row in result.history]
    best_val_epoch = 1 + val.index(max(val))
    best_test_epoch = 1 + test.index(max(test))
    assert test[-1] > test[0] + 0.2 and val[-1] < val[0]  # the data disagree as built
    assert best_val_epoch != best_test_epoch
    assert result.best_epoch == best_val_epoch
    # the selected weights: in the model returned, in model.safetensors and in the `best` checkpoint
    saved = load_file(str(out / "model.safetensors"))
    best_ck, _ = ck.load_checkpoint(out / "checkpoints", "best")
    for k, v in snaps.weights[best_val_epoch].items():
        assert torch.equal(saved[k], v) and torch.equal(best_ck[k], v)
        assert torch.equal(result.model.state_dict()[k], v)
    assert not torch.equal(saved["1.weight"], snaps.weights[6]["1.weight"])
    res = json.loads((out / "results.json").read_text())
    assert res["best_epoch"] == best_val_epoch and res["val_acc"] == max(val)
    assert res["test_acc"] == pytest.approx(test[best_val_epoch - 1])  # the selected weights' test accuracy
    assert res["test_acc_last"] == pytest.approx(test[-1])
    assert res["test_acc"] < res["test_acc_last"]
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val_acc", "val_loss", "test_acc"} <= set(header)


def test_early_stopping_counts_epochs_without_a_better_val(tmp_path):
    result = fit(_net(), _disagreeing_data(), TrainSpec(recipe="lenet", epochs=20, overrides={**RECIPE, "early_stop_patience": 2}, precision="fp32"), progress=False)
    val = [row["val_acc"] for row in result.history]
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 20  # stopped 2 epochs after the best
    assert max(val[result.best_epoch:]) <= val[result.best_epoch - 1]  # nothing better since
    assert "test_acc" not in result.history[0]  # no per-epoch test without test_every_epoch


def test_fit_refuses_data_without_val():
    data = dataclasses.replace(_disagreeing_data(), val=None)
    with pytest.raises(ConfigError, match="no validation samples"):
        fit(_net(), data, TrainSpec(recipe="lenet", epochs=1, overrides=RECIPE), progress=False)
