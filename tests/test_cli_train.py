"""``cnnlab train`` / ``cnnlab eval``: bad input gives one line and exit code 2; a run's config.json
alone repeats it; eval reads the model from the run beside the weights."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from cnnlab.cli import main

TINY = ["--data", "synthetic", "--data-set", "n_train=128", "--data-set", "n_test=32", "--epochs", "2",
        "--batch-size", "32", "--threads", "1", "--deterministic", "--precision", "fp32", "--no-progress"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run folder (./runs/...) would land here, not in the repository
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


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
        return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in csv.DictReader(f)]


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
    _assert_one_line_error(rc, err, "Dropout")  # LeNet-5 has no dropout to sample


def test_nan_loss_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_DEBUG_NAN_AT_STEP", "3")
    rc, _, err = _run(["train", "lenet5", *TINY, "--out", str(tmp_path / "r")], capsys)
    _assert_one_line_error(rc, err, "update 3", "nan")
    assert not (tmp_path / "r" / "results.json").exists()
    # no checkpoint was saved before update 3 (one per epoch): the message must not point to one
    assert "checkpoints" not in err and not (tmp_path / "r" / "checkpoints" / "manifest.json").exists()
    rc, _, err = _run(["train", "lenet5", *TINY, "--checkpoint-every", "1", "--out", str(tmp_path / "r2")], capsys)
    _assert_one_line_error(rc, err, "update 3", "nan", "keep the last finite weights")
