"""cnnlab.training.checkpoint: layout, manifest, resume equality, corruption, crashes at every step."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

import cnnlab
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.training import checkpoint as ckpt
from cnnlab.training.checkpoint import (
    clean_temporaries,
    find_resumable,
    load_checkpoint,
    read_manifest,
    rng_state,
    save_checkpoint,
    set_rng_state,
    verify_checkpoint,
)


class _Net(nn.Module):
    """Dropout consumes torch's RNG, so resuming without restoring it would change the result."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))

    def forward(self, x):
        return self.body(x)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = _Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 3], gamma=0.1)
    return model, opt, sched


def _step(model, opt, sched) -> float:
    # Every global RNG is consumed, as augmentation and sampling would.
    x = torch.randn(4, 8) + float(np.random.rand()) + random.random()
    y = torch.randint(0, 3, (4,))
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()


def _state(step, opt, sched, **extra):
    return {"step": step, "epoch": step // 2, "batch_in_epoch": step % 2, "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": rng_state(), **extra}


def test_resume_is_bitwise_identical(tmp_path):
    """4 steps straight == 2 steps, save, fresh objects + load + RNG restore, 2 more steps."""
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    model, opt, sched = _setup()
    straight = [_step(model, opt, sched) for _ in range(4)]
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    model, opt, sched = _setup()
    first = [_step(model, opt, sched) for _ in range(2)]
    save_checkpoint(tmp_path, "last", model=model, train_state=_state(2, opt, sched))
    # Disturb every RNG: only the checkpoint may bring them back.
    torch.manual_seed(99), np.random.seed(99), random.seed(99)

    model, opt, sched = _setup(seed=5)
    state_dict, train_state = load_checkpoint(tmp_path)
    model.load_state_dict(state_dict)
    opt.load_state_dict(train_state["optimizer"])
    sched.load_state_dict(train_state["scheduler"])
    set_rng_state(train_state["rng"])
    second = [_step(model, opt, sched) for _ in range(2)]

    assert first + second == straight
    assert all(torch.equal(expected[k], v) for k, v in model.state_dict().items())
    assert train_state["batch_in_epoch"] == 0 and train_state["epoch"] == 1


def test_files_and_manifest_checked_independently(tmp_path):
    model, opt, sched = _setup()
    _step(model, opt, sched)
    entry = save_checkpoint(tmp_path, "last", model=model, train_state=_state(7, opt, sched))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors", "last.state.pt", "manifest.json"]
    doc = json.loads((tmp_path / "manifest.json").read_text())
    last = doc["checkpoints"]["last"]
    assert last == entry and last["step"] == 7 and last["epoch"] == 3 and last["time"] > 0
    for info in last["files"].values():
        data = (tmp_path / info["name"]).read_bytes()
        assert info["size"] == len(data) and info["sha256"] == hashlib.sha256(data).hexdigest()
    # Each file is readable by its own library's safe loader, without cnnlab.
    with safe_open(str(tmp_path / "last.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(model.state_dict())
        assert torch.equal(f.get_tensor("body.0.weight"), model.body[0].weight)
    state = torch.load(tmp_path / "last.state.pt", weights_only=True)
    assert state["step"] == 7 and isinstance(state["rng"]["python"]["state"], list)
    assert set(state["optimizer"]["state"]) == {0, 1, 2, 3}


def test_last_prev_and_best(tmp_path):
    model, opt, sched = _setup()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, "last", model=model, train_state={"step": step})
    save_checkpoint(tmp_path, "best", model=model, train_state={"step": 2})
    save_checkpoint(tmp_path, "best", model=model, train_state={"step": 3})
    manifest = read_manifest(tmp_path)
    assert {t: e["step"] for t, e in manifest.items()} == {"last": 3, "last.prev": 2, "best": 3}
    assert not (tmp_path / "best.prev.safetensors").exists()  # best keeps no previous by default
    save_checkpoint(tmp_path, "best", model=model, train_state={"step": 4}, keep_previous=True)
    assert read_manifest(tmp_path)["best.prev"]["step"] == 3
    for tag in read_manifest(tmp_path):
        verify_checkpoint(tmp_path, tag)
    assert find_resumable(tmp_path) == "best"  # newest step


def test_train_state_must_load_with_weights_only(tmp_path):
    model, _, _ = _setup()
    st = {"step": np.int64(3), "loss": np.float64(0.5), "perm": np.arange(5), "nested": {"ok": [1, (2, 3)]}}
    save_checkpoint(tmp_path, "last", model=model, train_state=st)
    _, loaded = load_checkpoint(tmp_path, "last")
    assert loaded["step"] == 3 and type(loaded["step"]) is int and type(loaded["loss"]) is float
    assert torch.equal(loaded["perm"], torch.arange(5)) and loaded["nested"] == {"ok": [1, (2, 3)]}

    class Custom:
        pass

    with pytest.raises(CheckpointError, match=r"train_state\['extra'\]\[0\].*Custom"):
        save_checkpoint(tmp_path, "last", model=model, train_state={"step": 4, "extra": [Custom()]})
    assert read_manifest(tmp_path)["last"]["step"] == 3  # the refused save changed nothing
    with pytest.raises(ConfigError, match="tag"):
        save_checkpoint(tmp_path, "last.prev", model=model, train_state={})


def test_rng_state_round_trip_with_named_generators():
    gen = torch.Generator().manual_seed(3)
    state = rng_state(generators={"loader": gen})
    a = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    torch.manual_seed(5)
    set_rng_state(state, generators={"loader": gen})
    b = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] and torch.equal(a[3], b[3])
    with pytest.raises(CheckpointError, match="RNG state"):
        set_rng_state({"torch": torch.get_rng_state()})


def test_tied_weights_in_checkpoint(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    model[1].weight = model[0].weight
    save_checkpoint(tmp_path, "last", model=model, train_state={"step": 1})
    sd, _ = load_checkpoint(tmp_path, "last")
    assert set(sd) == {"0.weight", "1.weight"} and torch.equal(sd["0.weight"], sd["1.weight"])


# ---------------------------------------------------------------------------------- corruption


@pytest.fixture
def run_dir(tmp_path):
    """last (step 3), last.prev (step 2), best (step 1): a directory a run leaves."""
    model = cnnlab.create_model("lenet5")
    save_checkpoint(tmp_path, "best", model=model, train_state={"step": 1, "epoch": 0})
    for step in (2, 3):
        with torch.no_grad():
            model.fc.bias.fill_(step)  # the weights tell the checkpoints apart
        save_checkpoint(tmp_path, "last", model=model, train_state={"step": step, "epoch": 0})
    return tmp_path


def _flip_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_weights_is_detected_and_resume_falls_back(run_dir, caplog):
    _flip_byte(run_dir / "last.safetensors")
    with pytest.raises(CheckpointError, match="last.safetensors is corrupted: sha256"):
        load_checkpoint(run_dir, "last")
    with caplog.at_level(logging.WARNING, logger="cnnlab.checkpoint"):
        assert find_resumable(run_dir) == "last.prev"
    message = caplog.text
    assert "last.safetensors is corrupted" in message and "falling back" in message and "'last.prev' (step 2" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cnnlab.checkpoint"):
        sd, ts = load_checkpoint(run_dir)  # no tag: the resumable one
    assert ts["step"] == 2 and torch.all(sd["fc.bias"] == 2)
    assert "falling back" in caplog.text
    point = ckpt.choose_resumable(run_dir)
    assert point.tag == "last.prev" and point.step == 2 and len(point.skipped) == 1


def test_state_cut_in_half_is_detected(run_dir):
    path = run_dir / "last.state.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="last.state.pt is truncated or altered"):
        load_checkpoint(run_dir, "last")
    assert find_resumable(run_dir) == "last.prev"


def test_missing_file_is_named(run_dir):
    (run_dir / "last.state.pt").unlink()
    with pytest.raises(CheckpointError, match="last.state.pt is missing"):
        verify_checkpoint(run_dir, "last")
    assert find_resumable(run_dir) == "last.prev"


def test_everything_corrupted_lists_every_problem(run_dir):
    for name in ("last.safetensors", "last.prev.safetensors", "best.safetensors"):
        _flip_byte(run_dir / name)
    with pytest.raises(CheckpointError, match="no usable checkpoint") as err:
        find_resumable(run_dir)
    for name in ("last.safetensors", "last.prev.safetensors", "best.safetensors"):
        assert name in str(err.value)


def test_manifest_deleted_is_detected(run_dir):
    (run_dir / "manifest.json").unlink()
    for call in (lambda: find_resumable(run_dir), lambda: load_checkpoint(run_dir, "last"), lambda: load_checkpoint(run_dir)):
        with pytest.raises(CheckpointError, match="manifest.json is missing"):
            call()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:40]), id="truncated"),
        pytest.param(lambda p: p.write_text("{not json"), id="not-json"),
        pytest.param(lambda p: p.write_text(p.read_text().replace('"step": 3', '"step": 30')), id="edited"),
    ],
)
def test_manifest_corrupted_is_detected(run_dir, damage):
    damage(run_dir / "manifest.json")
    with pytest.raises(CheckpointError, match="manifest.json is corrupted"):
        find_resumable(run_dir)
    with pytest.raises(CheckpointError, match="manifest.json is corrupted"):
        load_checkpoint(run_dir, "last")


def test_fresh_directories_have_nothing_to_resume(tmp_path):
    assert find_resumable(tmp_path / "does-not-exist") is None
    assert find_resumable(tmp_path) is None
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path, "last")


def test_unknown_tag_lists_the_known_ones(run_dir):
    with pytest.raises(CheckpointError, match=r"no checkpoint 'epoch-3'.*best, last, last.prev"):
        load_checkpoint(run_dir, "epoch-3")


def test_load_from_a_file_path(run_dir):
    _, ts = load_checkpoint(run_dir / "last.state.pt")
    assert ts["step"] == 3
    _, ts = load_checkpoint(run_dir / "last.prev.safetensors")
    assert ts["step"] == 2
    _, ts = load_checkpoint(run_dir / "manifest.json")
    assert ts["step"] == 3


def test_clean_temporaries_removes_only_strays(run_dir):
    (run_dir / ".cnnlab-tmp-last.safetensors.abcd1234").write_bytes(b"half")
    (run_dir / ".cnnlab-tmp-manifest.json.0000").write_bytes(b"{")
    (run_dir / "notes.txt").write_text("mine")
    assert clean_temporaries(run_dir) == [".cnnlab-tmp-last.safetensors.abcd1234", ".cnnlab-tmp-manifest.json.0000"]
    assert (run_dir / "notes.txt").exists() and find_resumable(run_dir) == "last"
    assert clean_temporaries(run_dir / "missing") == []


# ---------------------------------------------------------------------------------- crashes


class _Crash(BaseException):
    """A simulated kill: BaseException, so no `except Exception` in the code under test catches it."""


def _count_fs_ops(monkeypatch, fail_at: int | None):
    """Count os.replace / os.link / os.fsync calls; raise _Crash at call number ``fail_at``."""
    calls = {"n": 0}
    originals = {name: getattr(os, name) for name in ("replace", "link", "fsync")}

    def wrap(name):
        def op(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise _Crash(name)
            return originals[name](*args, **kwargs)

        return op

    for name in originals:
        monkeypatch.setattr(os, name, wrap(name))
    return calls


@pytest.mark.parametrize("tag, before", [("last", 2), ("best", 2), ("last", 0)], ids=["last", "best", "first-save"])
def test_crash_at_every_filesystem_step_keeps_a_truthful_manifest(tmp_path, monkeypatch, tag, before):
    """Interrupt a save at each of its filesystem operations in turn (a deterministic kill -9):
    every entry the manifest then lists loads and matches its hashes, and resuming finds the old
    or the new checkpoint, never a mix. ``before``: saves already in the directory (0: the very
    first save of a run is the one interrupted)."""
    # fsync is still counted as a step but does nothing: these are crashes, not power cuts, and
    # real fsyncs would make up most of this test's time.
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    model = cnnlab.create_model("lenet5")
    for step in range(1, before + 1):
        save_checkpoint(tmp_path / "probe", tag, model=model, train_state={"step": step})
    with monkeypatch.context() as m:
        calls = _count_fs_ops(m, fail_at=None)
        save_checkpoint(tmp_path / "probe", tag, model=model, train_state={"step": before + 1})
    total = calls["n"]  # filesystem operations of the save under test
    assert total >= (12 if before else 8)  # temporaries, links, replaces, manifests (+ their fsyncs)

    for fail_at in range(1, total + 1):
        d = tmp_path / f"crash{fail_at}"
        for step in range(1, before + 1):
            save_checkpoint(d, tag, model=model, train_state={"step": step})
        with monkeypatch.context() as m:
            _count_fs_ops(m, fail_at=fail_at)
            with pytest.raises(_Crash):
                save_checkpoint(d, tag, model=model, train_state={"step": before + 1})
        manifest = read_manifest(d) or {}
        for t in manifest:
            verify_checkpoint(d, t)
        steps = {t: e["step"] for t, e in manifest.items()}
        if before:
            assert steps.get(tag) in (before, before + 1, None) and (tag in steps or f"{tag}.prev" in steps), steps
            _, ts = load_checkpoint(d)
            assert ts["step"] in (before, before + 1)
        else:  # nothing saved yet: either no checkpoint (a fresh start) or the new one
            assert find_resumable(d) in (None, tag)
        clean_temporaries(d)
        assert not [p for p in d.iterdir() if p.name.startswith(".cnnlab-tmp-")]
        save_checkpoint(d, tag, model=model, train_state={"step": 4})  # the next run carries on
        assert read_manifest(d)[tag]["step"] == 4
