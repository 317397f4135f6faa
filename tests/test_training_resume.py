"""Kill and resume: N updates straight == N/2 + kill -9 + resume in a new process + N/2, bitwise.

One run is killed twice: mid-epoch (update 12 of 24, just after a ``--checkpoint-every 4``
checkpoint) and at an epoch boundary (update 16, after the epoch's checkpoint), then finished. Its
per-update losses (steps.csv), per-epoch metrics and final weights must equal, bit for bit, those of
the run that was never interrupted. The kill is a real SIGKILL, sent by a callback that a small
script in the subprocess passes to ``cnnlab.training.train`` (the run is the CLI's: same spec).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import torch
from safetensors.torch import load_file

from cnnlab.cli import main
from cnnlab.training import checkpoint as ck

# 256 synthetic images, batch 32: 8 updates an epoch, 3 epochs, 24 updates. The lenet recipe
# augments (random shifts), so the augmentation generator's state is part of what must survive.
ARGS = ["train", "lenet5", "--data", "synthetic", "--data-set", "n_train=256", "--data-set", "n_test=64",
        "--epochs", "3", "--batch-size", "32", "--deterministic", "--threads", "1", "--precision", "fp32",
        "--checkpoint-every", "4", "--no-progress"]


# The CLI's run of ARGS, with a callback that SIGKILLs the process once update K is checkpointed:
# after on_step_end mid-epoch (the Checkpointing callback runs before it), after on_epoch_end when K
# ends an epoch (after the epoch's checkpoint).
KILL_SCRIPT = """
import os, signal, sys
from cnnlab.cli import build_parser
from cnnlab.cli.train import _spec_from_args
from cnnlab.training.run import train

class KillAt:
    def __init__(self, k):
        self.k = k
    def _kill(self):
        os.kill(os.getpid(), signal.SIGKILL)
    def on_step_end(self, trainer, step, loss):
        if step == self.k and trainer.loader.position < len(trainer.loader):
            self._kill()
    def on_epoch_end(self, trainer, epoch, row):
        if trainer.step == self.k:
            self._kill()

k, args = int(sys.argv[1]), sys.argv[2:]
ns = build_parser().parse_args(args)
train(_spec_from_args(ns), out=ns.out, resume=ns.resume, progress=False, callbacks=[KillAt(k)])
"""


def _cli(args: list[str], kill_at: int | None = None, tmp=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kill_at is None:
        cmd = [sys.executable, "-m", "cnnlab", *args]
    else:
        script = tmp / "kill_run.py"
        script.write_text(KILL_SCRIPT)
        cmd = [sys.executable, str(script), str(kill_at), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_kill_and_resume_is_bitwise_identical(tmp_path):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main([*ARGS, "--out", str(straight)]) == 0

    first = _cli([*ARGS, "--out", str(cut)], 12, tmp_path)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert ck.read_manifest(cut / "checkpoints")["last"]["step"] == 12  # mid-epoch 2
    second = _cli(["train", "--resume", str(cut), "--no-progress"], 16, tmp_path)
    assert second.returncode == -signal.SIGKILL, second.stderr
    assert ck.read_manifest(cut / "checkpoints")["last"]["step"] == 16  # end of epoch 2
    third = _cli(["train", "--resume", "auto", "--out", str(cut), "--no-progress"])
    assert third.returncode == 0, third.stderr

    a, b = _rows(straight / "steps.csv"), _rows(cut / "steps.csv")
    assert len(a) == 24 and [r["step"] for r in b] == [str(k) for k in range(1, 25)]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # repr of each float: bitwise
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    keep = ("epoch", "step", "lr", "train_loss", "train_acc", "train_top5", "val_loss", "val_acc", "val_top5")
    assert [{k: r[k] for k in keep} for r in _rows(straight / "metrics.csv")] == \
        [{k: r[k] for k in keep} for r in _rows(cut / "metrics.csv")]
    wa, wb = load_file(str(straight / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (straight, cut))
    assert {k: ra[k] for k in ("best_epoch", "val_acc", "test_acc", "test_acc_last")} == \
        {k: rb[k] for k in ("best_epoch", "val_acc", "test_acc", "test_acc_last")}
