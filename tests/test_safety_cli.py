"""`cnnlab train --weights FILE` and `--resume DIR` refuse files that would run code.

The same live payloads as tests/test_safety.py (its positive control shows they do run when loaded
unsafely): exit code 2, one line on stderr naming the file, and the sentinel never appears.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlab
from cnnlab.cli import main as cli_main
from cnnlab.training.checkpoint import _write_manifest, read_manifest, save_checkpoint
from test_safety import KINDS, _malicious

# A tiny data set so the refusal, not the data, is what the command spends its time on.
DATA = ["--data", "synthetic", "--data-set", "n=32", "--max-steps", "1", "--no-progress"]


@pytest.fixture(params=KINDS)
def evil(request, tmp_path):
    sentinel = tmp_path / f"SENTINEL-{request.param}"
    path = _malicious(request.param, tmp_path / f"evil-{request.param}.pth", sentinel)
    yield path, sentinel
    assert not sentinel.exists(), "the malicious pickle ran code"


def _one_line_refusal(rc: int, err: str, name: str) -> None:
    assert rc == 2, err
    assert "refused to load" in err and name in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_cli_weights_refuses(evil, tmp_path, capsys):
    path, _ = evil
    rc = cli_main(["train", "lenet5", "--weights", str(path), "--out", str(tmp_path / "run"), *DATA])
    _one_line_refusal(rc, capsys.readouterr().err, str(path))


def _run_folder_with_state(run: Path, state_file: Path) -> Path:
    """A run folder as `cnnlab train` leaves it (config.json + checkpoints/), whose `last` training
    state is the malicious file and whose manifest was rewritten to match it."""
    run.mkdir()
    spec = {"model": "lenet5", "data": "synthetic", "data_options": {"n": 32}, "max_steps": 1}
    (run / "config.json").write_text(json.dumps({"spec": spec}))
    ckpt = run / "checkpoints"
    save_checkpoint(ckpt, "last", model=cnnlab.create_model("lenet5"), train_state={"step": 1, "epoch": 0})
    data = state_file.read_bytes()
    (ckpt / "last.state.pt").write_bytes(data)
    checkpoints = read_manifest(ckpt)
    checkpoints["last"]["files"]["state"].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    _write_manifest(ckpt, checkpoints)
    return run


def test_cli_resume_refuses(evil, tmp_path, capsys):
    path, _ = evil
    run = _run_folder_with_state(tmp_path / "run", path)
    rc = cli_main(["train", "--resume", str(run), "--no-progress"])
    _one_line_refusal(rc, capsys.readouterr().err, "last.state.pt")


def test_cli_executable_end_to_end(tmp_path):
    """The entry point in a fresh process: exit code 2, one line, no sentinel."""
    sentinel = tmp_path / "SENTINEL-cli"
    path = _malicious("torch-zip", tmp_path / "evil.pth", sentinel)
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "lenet5", "--weights", str(path), "--out", str(tmp_path / "run"), *DATA],
        capture_output=True, text=True, timeout=300,
    )
    _one_line_refusal(proc.returncode, proc.stderr, str(path))
    assert not sentinel.exists()
