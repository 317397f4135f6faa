"""The run folder has one owner: atomic files, a lock against a second trainer, foreign folders left
alone, no unresumable leftovers after an early failure, failed.json after a late one, and resumes
that say where they start and never ignore a flag."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab import atomic
from cnnlab.cli import main
from cnnlab.training import engine
from cnnlab.training.rundir import LOCK, RunDir, RunLockedError, holds_run
from cli_helpers import one_line as _one_line, run_cli as _run, isolated_cwd  # noqa: F401  (a fixture)

# 128 synthetic images, 10% held out for val: 115 to train, 4 updates of (up to) 32 an epoch.
TINY = ["--data", "synthetic", "--data-set", "n_train=128", "--data-set", "n_test=32", "--epochs", "2",
        "--batch-size", "32", "--threads", "1", "--deterministic", "--precision", "fp32"]


@pytest.fixture(autouse=True)
def _isolated(isolated_cwd):
    yield isolated_cwd


def _inject(monkeypatch, *cbs) -> None:
    """Pass extra callbacks into the CLI's fit (as the NaN test of test_cli_train does)."""
    real = engine._callbacks
    monkeypatch.setattr(engine, "_callbacks", lambda trainer, out, config, *, resume, extra:
                        real(trainer, out, config, resume=resume, extra=(*cbs, *extra)))


class NanAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_loss(self, trainer, step, loss):
        return loss * float("nan") if step == self.step else None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished 2-epoch run, trained once for the tests below (each works on a copy)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    run.mkdir()  # an empty folder is a fine --out
    assert main(["train", "lenet5", *TINY, "--no-progress", "--out", str(run)]) == 0
    return run


# ------------------------------------------------------------------ the atomic writer


def test_atomic_write_keeps_the_old_content_and_no_temporary_when_the_disk_is_full(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        atomic.write_json(target, {"new": 1})
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_atomic_csv_and_json_round_trip(tmp_path):
    atomic.write_csv(tmp_path / "m.csv", ["epoch", "acc"], [{"epoch": 1, "acc": 0.1 + 0.2}, {"epoch": 2}])
    rows = list(csv.DictReader(open(tmp_path / "m.csv", newline="")))
    assert rows == [{"epoch": "1", "acc": repr(0.1 + 0.2)}, {"epoch": "2", "acc": ""}]
    atomic.write_json(tmp_path / "r.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1, 2]}


def test_a_full_disk_during_a_checkpoint_save_keeps_the_last_good_one_and_no_temporaries(tmp_path, monkeypatch):
    from cnnlab.errors import CheckpointError
    from cnnlab.training import checkpoint as ck

    model = torch.nn.Linear(3, 2)
    ck.save_checkpoint(tmp_path, "last", model=model, train_state={"step": 1, "epoch": 0})
    real = os.fsync

    def full(fd):
        if os.fstat(fd).st_size > 0 and not os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", full)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(CheckpointError, match="No space left.*saved before it are kept"):
        ck.save_checkpoint(tmp_path, "last", model=model, train_state={"step": 2, "epoch": 0})
    monkeypatch.undo()
    assert ck.verify_checkpoint(tmp_path, "last")["step"] == 1
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(atomic.TMP_PREFIX)]


# ------------------------------------------------------------------ --out


def test_out_into_a_foreign_folder_is_refused_and_nothing_in_it_is_touched(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    files = {"model.safetensors": os.urandom(256), "results.json": b'{"mine": true}\n',
             "metrics.csv": b"epoch,acc\n1,0.5\n"}
    for name, data in files.items():
        (mine / name).write_bytes(data)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in mine.iterdir()}
    rc, _, err = _run(["train", "lenet5", *TINY, "--no-progress", "--out", str(mine)], capsys)
    _one_line(rc, err, str(mine), "not empty", "nothing in it was touched")
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in mine.iterdir()} == before
    assert not holds_run(mine)


def test_out_into_an_empty_folder_trains_and_writes_the_diagnosis(trained, capsys):
    out = trained
    assert holds_run(out) and not (out / "failed.json").exists()
    results = json.loads((out / "results.json").read_text())
    # the confusion matrix is of the test split and the selected model: its diagonal is test_acc
    rows = list(csv.reader(open(out / "confusion.csv", newline="")))
    counts = [[int(v) for v in r[1:]] for r in rows[1:]]
    assert sum(map(sum, counts)) == 32
    assert sum(counts[k][k] for k in range(len(counts))) / 32 == pytest.approx(results["test_acc"])
    for png in ("confusion.png", "mistakes.png", "curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert not [p.name for p in out.iterdir() if p.name.startswith(atomic.TMP_PREFIX)]
    rc, _, err = _run(["train", "lenet5", *TINY, "--no-progress", "--out", str(out)], capsys)
    _one_line(rc, err, str(out), "already holds a run")


# ------------------------------------------------------------------ failures


def test_a_run_failing_before_its_first_checkpoint_leaves_no_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    # a bad option found only when the model is built, after the folder was made
    rc, _, err = _run(["train", "lenet5", *TINY, "--no-progress", "--model-set", "widht=3", "--out", str(out)],
                      capsys)
    _one_line(rc, err, "widht")
    assert not out.exists()
    _inject(monkeypatch, NanAt(1))
    rc, _, err = _run(["train", "lenet5", *TINY, "--no-progress", "--out", str(out)], capsys)
    line = _one_line(rc, err, "update 1", "nan")
    assert "checkpoints" not in line  # there is none to speak of
    assert not out.exists()
    # an empty folder the user made stays, empty
    out.mkdir()
    rc, _, err = _run(["train", "lenet5", *TINY, "--no-progress", "--out", str(out)], capsys)
    _one_line(rc, err, "nan")
    assert out.is_dir() and list(out.iterdir()) == []
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(["train", "lenet5", *TINY, "--no-progress", "--out", str(out)], capsys)
    assert rc == 0, err


def test_a_missing_optional_package_leaves_no_folder(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    out = tmp_path / "r"
    rc, _, err = _run(["train", "lenet5", *TINY, "--no-progress", "--tensorboard", "--out", str(out)], capsys)
    _one_line(rc, err, "tensorboard")
    assert not out.exists()


def test_a_run_failing_after_a_checkpoint_keeps_it_writes_failed_json_and_resumes(tmp_path, monkeypatch, capsys):
    from cnnlab.viz.runs import read_run

    out = tmp_path / "r"
    _inject(monkeypatch, NanAt(5))  # epoch 1 (updates 1-4) is checkpointed
    rc, _, err = _run(["train", "lenet5", *TINY, "--no-progress", "--out", str(out)], capsys)
    _one_line(rc, err, "update 5", "keep the last finite weights")
    failed = json.loads((out / "failed.json").read_text())
    assert failed["step"] == 4 and "update 5" in failed["error"] and failed["time"]
    assert read_run(out).state == "failed"
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(["train", "--resume", str(out), "--no-progress"], capsys)
    assert rc == 0, err
    assert "resuming" in err and "epoch 2" in err and "'last'" in err
    assert not (out / "failed.json").exists() and read_run(out).state == "finished"


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(trained, tmp_path, capsys):
    killed = tmp_path / "killed"
    killed.mkdir()  # what a kill -9 in the first epoch leaves: config.json and a few rows of steps.csv
    (killed / "config.json").write_bytes((trained / "config.json").read_bytes())
    (killed / "steps.csv").write_text("step,epoch,batch,lr,loss\n1,1,1,0.1,2.3\n2,1,2,0.1,gar")
    rc, _, err = _run(["train", "lenet5", *TINY, "--no-progress", "--out", str(killed)], capsys)
    _one_line(rc, err, "already holds a run", "--resume")
    rc, _, err = _run(["train", "--resume", str(killed), "--no-progress"], capsys)
    assert rc == 0, err
    assert "no checkpoint yet" in err
    assert (killed / "steps.csv").read_text() == (trained / "steps.csv").read_text()


# ------------------------------------------------------------------ the lock

HOLDER = """
import pathlib, sys, time
from cnnlab.training.run import TrainSpec, train

folder, gate = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

class Hold:  # a real training run, held after its first checkpoint until the test opens the gate
    def on_epoch_end(self, trainer, epoch, row):
        if epoch == 1:
            (folder.parent / "holding").write_text("1")
            while not gate.exists():
                time.sleep(0.05)

spec = TrainSpec(model="lenet5", data="synthetic", data_options={"n_train": 128, "n_test": 32}, epochs=2,
                 batch_size=32, threads=1, deterministic=True, precision="fp32")
train(spec, out=folder, progress=False, callbacks=[Hold()])
"""


def test_a_second_trainer_of_a_locked_run_is_refused_at_once_naming_the_folder_and_pid(tmp_path, capsys):
    run, gate = tmp_path / "run", tmp_path / "gate"
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    # the children import this cnnlab (the test's cwd is tmp_path, so a relative PYTHONPATH would not)
    src = str(Path(cnnlab.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, str(script), str(run), str(gate)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "holding").exists():
            assert holder.poll() is None, holder.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--resume", str(run), "--no-progress"],
                                env=env, capture_output=True, text=True, timeout=300)
        _one_line(second.returncode, second.stderr, str(run), f"PID {holder.pid}")
        rc, _, err = _run(["train", "--resume", "auto", "--out", str(run), "--no-progress"], capsys)
        _one_line(rc, err, str(run), f"PID {holder.pid}")
        with pytest.raises(RunLockedError):
            RunDir.resume(run)
    finally:
        gate.write_text("go")
        out, err = holder.communicate(timeout=300)
    assert holder.returncode == 0, err
    assert (run / "results.json").exists() and (run / LOCK).exists()
    RunDir.resume(run).release()  # the lock went with the holder


# ------------------------------------------------------------------ resuming with flags


@pytest.fixture
def finished(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


@pytest.mark.parametrize("flags, named", [
    (["--lr", "0.5"], "--lr"),
    (["--set", "momentum=0.5"], "--set"),
    (["--data", "mnist-5k"], "--data"),
    (["--data-set", "n_train=64"], "--data-set"),
    (["--batch-size", "16"], "--batch-size"),
    (["--seed", "3"], "--seed"),
    (["alexnet"], "MODEL alexnet"),
])
def test_resume_refuses_a_flag_that_would_change_the_run_naming_it(trained, flags, named, capsys):
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    rc, _, err = _run(["train", *flags, "--resume", str(trained), "--no-progress"], capsys)
    _one_line(rc, err, named, str(trained), "would change the run")
    assert {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()} == before


def test_resume_with_more_epochs_extends_the_run_and_records_it(finished, capsys):
    rc, out, err = _run(["train", "--resume", str(finished), "--epochs", "3", "--no-progress"], capsys)
    assert rc == 0, err
    assert "resuming" in err and "start of epoch 3" in err and "update 8 of 12" in err
    config = json.loads((finished / "config.json").read_text())
    assert config["resumes"][-1]["changes"] == {"epochs": {"from": 2, "to": 3}}
    assert config["spec"]["epochs"] == 3 and config["schedule"]["epochs"] == 3
    assert json.loads((finished / "results.json").read_text())["epochs"] == 3
    assert len(list(csv.DictReader(open(finished / "steps.csv", newline="")))) == 12
    rc, _, err = _run(["train", "--resume", str(finished), "--epochs", "1", "--no-progress"], capsys)
    _one_line(rc, err, "--epochs 1", "already trained 3 epochs")


# ------------------------------------------------------------------ what a person sees


def test_the_run_prints_its_length_at_the_start_and_the_time_left_after_each_epoch(tmp_path, capsys):
    rc, out, err = _run(["train", "lenet5", *TINY, "--out", str(tmp_path / "r")], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("lenet5 on synthetic: 2 epochs x 4 updates = 8 updates of batch 32")
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 2 and "left" in epoch_lines[0] and "left" not in epoch_lines[1]
    assert "recipe lenet," in lines[0]
    assert "warning" not in err
    # where each epoch's time went: its parts add up to the epoch's seconds
    assert all(re.search(r"\(data [\d.]+s, updates [\d.]+s, eval [\d.]+s\)", line) for line in epoch_lines)
    with open(tmp_path / "r" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            parts = sum(float(row[k]) for k in ("data_seconds", "update_seconds", "eval_seconds"))
            assert abs(parts - float(row["seconds"])) < 1e-6 and float(row["update_seconds"]) > 0


def test_a_recipe_much_longer_than_the_data_warns_with_the_numbers(tmp_path, capsys):
    rc, out, err = _run(["train", "resnet20", "--data", "synthetic", "--data-set", "n_train=128",
                         "--data-set", "n_test=16", "--batch-size", "32", "--max-steps", "1", "--threads", "1",
                         "--out", str(tmp_path / "r")], capsys)
    assert rc == 0, err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "64,000 updates" in warning[0] and "--epochs N" in warning[0], err
    assert "stopping after update 1" in out.splitlines()[0]
