"""``cnnlab train`` / ``cnnlab eval``: bad input gives one line and exit code 2; a run's config.json
alone repeats it; eval reads the model from the run beside the weights."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from cli_helpers import run_cli as _run

TINY = ["--data", "synthetic", "--data-set", "n_train=128", "--data-set", "n_test=32", "--epochs", "2",
        "--batch-size", "32", "--threads", "1", "--deterministic", "--precision", "fp32", "--no-progress"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run folder (./runs/...) would land here, not in the repository
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("cnnlab "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["train", "lenet5", "--epochs", "-3"], ("--epochs", "-3")),
        (["train", "lenet5", "--epochs", "zero"], ("--epochs",)),
        (["train", "lenet5", "--precision", "fp8"], ("--precision", "fp8")),
        (["train", "lenet5", "--lr", "-0.1"], ("--lr",)),
        (["train", "lenet_5"], ("unknown model 'lenet_5'", "lenet5")),
        (["train", "lenet5", "--data", "mnist-6k"], ("mnist-6k",)),
        (["train", "lenet5", "--recipe", "resnet_cifr"], ("resnet_cifar",)),
        (["train", "lenet5", "--set", "lrr=0.1"], ("lrr",)),
        (["train", "lenet5", "--set", "momentum"], ("--set", "FIELD=VALUE")),
        (["train", "lenet5", "--set", "momentum=-1"], ("momentum",)),
        (["train", "--config", "/nonexistent/config.json"], ("/nonexistent/config.json",)),
        (["train", "lenet5", "--weights", "/nonexistent/w.safetensors"], ("/nonexistent/w.safetensors",)),
        (["train", "--resume", "/nonexistent/run"], ("/nonexistent/run",)),
        (["train"], ("MODEL",)),
        # the data cannot reach the model's input size within the memory allowed for it
        (["train", "alexnet", "--data", "mnist-5k", "--data-set", "max_gib=0.01"], ("max_gib",)),
        (["eval", "/nonexistent/model.safetensors"], ("/nonexistent/model.safetensors",)),
        (["eval", "x.safetensors", "--tta", "5crop"], ("--tta",)),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, needles, capsys):
    rc, _, err = _run(argv, capsys)
    _assert_one_line_error(rc, err, *needles)


def test_folder_without_images(tmp_path, capsys):
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "cats" / "notes.txt").write_text("not an image")
    rc, _, err = _run(["train", "lenet5", "--data", f"imagefolder:{tmp_path / 'empty'}", "--out",
                       str(tmp_path / "run")], capsys)
    _assert_one_line_error(rc, err, str(tmp_path / "empty"))
    assert not (tmp_path / "run" / "results.json").exists()


def _metrics(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second", "data_seconds", "update_seconds", "eval_seconds")} for r in csv.DictReader(f)]


def test_config_json_alone_repeats_a_run_and_eval_reads_it(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    rc, out, _ = _run(["train", "lenet5", *TINY, "--set", "lr=0.003", "--out", str(first)], capsys)
    assert rc == 0 and "test accuracy" in out
    config = json.loads((first / "config.json").read_text())
    assert config["spec"]["overrides"] == {"lr": 0.003} and config["recipe"]["lr"] == 0.003
    for key in ("model", "data", "recipe", "seed", "precision", "device", "versions", "command", "git_commit"):
        assert key in config
    assert config["data"]["notes"] and config["versions"]["torchvision"]

    rc, _, _ = _run(["train", "--config", str(first / "config.json"), "--out", str(second)], capsys)
    assert rc == 0
    assert _metrics(first) == _metrics(second) and len(_metrics(first)) == 2
    assert (first / "steps.csv").read_text() == (second / "steps.csv").read_text()

    rc, out, _ = _run(["eval", str(first / "model.safetensors"), "--tta", "flip", "--format", "json"], capsys)
    assert rc == 0
    report = json.loads(out)
    assert report["model"] == "lenet5" and report["data"] == "synthetic"
    results = json.loads((first / "results.json").read_text())
    assert report["standard"]["acc"] == pytest.approx(results["test_acc"])
    assert 0 <= report["tta"]["acc"] <= 1
    rc, _, err = _run(["eval", str(first / "model.safetensors"), "--dropout-samples", "4"], capsys)
    _assert_one_line_error(rc, err, "no dropout layer")  # LeNet-5 has no dropout to sample


def test_nan_loss_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    from cnnlab.training import engine

    class NanAt3:  # the loss of update 3 becomes NaN: injected as a callback into the CLI's fit
        def on_loss(self, trainer, step, loss):
            return loss * float("nan") if step == 3 else None

    real = engine._callbacks
    monkeypatch.setattr(engine, "_callbacks", lambda trainer, out, config, *, resume, extra:
                        real(trainer, out, config, resume=resume, extra=(NanAt3(), *extra)))
    rc, _, err = _run(["train", "lenet5", *TINY, "--out", str(tmp_path / "r")], capsys)
    _assert_one_line_error(rc, err, "update 3", "nan")
    assert not (tmp_path / "r" / "results.json").exists()
    # no checkpoint was saved before update 3 (one per epoch): the message must not point to one
    assert "checkpoints" not in err and not (tmp_path / "r" / "checkpoints" / "manifest.json").exists()
    rc, _, err = _run(["train", "lenet5", *TINY, "--checkpoint-every", "1", "--out", str(tmp_path / "r2")], capsys)
    _assert_one_line_error(rc, err, "update 3", "nan", "keep the last finite weights")


def test_val_fraction_and_test_every_epoch_flags(tmp_path, capsys):
    out = tmp_path / "r"
    rc, stdout, _ = _run(["train", "lenet5", *TINY, "--val-fraction", "0.25", "--test-every-epoch", "--out", str(out)],
                         capsys)
    assert rc == 0 and "selected on val" in stdout
    cfg = json.loads((out / "config.json").read_text())
    sizes = cfg["data"]
    # a quarter of each class of the 128 train images (rounded per class), the 32 test images untouched
    assert sizes["train_size"] + sizes["val_size"] == 128 and 27 <= sizes["val_size"] <= 37
    assert sizes["test_size"] == 32
    assert cfg["spec"]["val_fraction"] == 0.25 and cfg["selection"]["test_every_epoch"] is True
    results = json.loads((out / "results.json").read_text())
    assert {"val_acc", "best_epoch", "test_acc", "test_acc_last", "test_top5"} <= set(results)
    assert 1 <= results["best_epoch"] <= 2
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_acc", "val_acc", "test_acc"} <= set(header)
    rc, _, err = _run(["train", "lenet5", *TINY, "--val-fraction", "1.5", "--out", str(tmp_path / "bad")], capsys)
    _assert_one_line_error(rc, err, "val-fraction")
