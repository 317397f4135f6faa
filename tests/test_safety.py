"""Loading a file never runs code: weights, checkpoints, the CLI; and torch < 2.10 is refused.

The malicious files are real: a pickle whose ``__reduce__`` calls ``exec`` to write a sentinel file,
once inside a torch.save zip and once as a raw pickle. A positive control loads them unsafely in a
child process and sees the sentinel appear, so a test that finds no sentinel proves something.
"""

from __future__ import annotations

import ast
import hashlib
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.errors import CheckpointError, WeightsError
from cnnlab.models.weights import load_weights
from cnnlab.training.checkpoint import _write_manifest, load_checkpoint, read_manifest, save_checkpoint

SRC = Path(cnnlab.__file__).parent


class _Payload:
    """Unpickling this runs ``exec(code)``: the attack a weights file from the internet can carry."""

    def __init__(self, sentinel: Path) -> None:
        self.code = f"open({str(sentinel)!r}, 'w').write('pwned')"

    def __reduce__(self):
        return (exec, (self.code,))


def _malicious(kind: str, path: Path, sentinel: Path) -> Path:
    payload = {"c1.0.weight": torch.zeros(6, 1, 5, 5), "c1.0.bias": _Payload(sentinel)}
    if kind == "torch-zip":
        torch.save(payload, path)  # what torch.save writes: a zip whose data.pkl calls builtins.exec
    else:
        path.write_bytes(pickle.dumps({"state_dict": _Payload(sentinel)}, protocol=2))
    return path


KINDS = ("torch-zip", "raw-pickle")


@pytest.fixture(params=KINDS)
def evil(request, tmp_path):
    """(malicious file, sentinel path that must never appear)."""
    sentinel = tmp_path / f"SENTINEL-{request.param}"
    path = _malicious(request.param, tmp_path / f"evil-{request.param}.pth", sentinel)
    yield path, sentinel
    assert not sentinel.exists(), "the malicious pickle ran code"


def test_positive_control_payload_is_live(tmp_path):
    """Loaded unsafely (in a child process), both files do run their code: the attack is real."""
    files = []
    for kind in KINDS:
        sentinel = tmp_path / f"control-{kind}"
        files.append((_malicious(kind, tmp_path / f"control-{kind}.pth", sentinel), sentinel))
    script = textwrap.dedent(
        """
        import pickle, sys, torch
        torch.load(sys.argv[1], weights_only=False)  # UNSAFE on purpose: the positive control
        with open(sys.argv[2], "rb") as f:
            pickle.load(f)  # UNSAFE on purpose: the positive control
        """
    )
    subprocess.run([sys.executable, "-c", script, str(files[0][0]), str(files[1][0])], check=True, timeout=120)
    assert all(sentinel.read_text() == "pwned" for _, sentinel in files)


def test_create_model_refuses(evil):
    path, _ = evil
    with pytest.raises(WeightsError, match="refused to load") as err:
        cnnlab.create_model("lenet5", weights=str(path))
    assert str(path) in str(err.value)
    assert "weights_only=False" not in str(err.value)  # never advise the unsafe path


def test_load_weights_refuses_even_with_a_matching_sha256_pin(evil):
    path, _ = evil
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(WeightsError, match="refused to load"):
        load_weights(cnnlab.create_model("lenet5"), path, sha256=digest)


def _checkpoint_with_state(directory: Path, state_file: Path, *, replace: str = "state") -> Path:
    """A checkpoint directory whose `last` files are swapped for ``state_file``, with a manifest
    rewritten to match (an attacker can rewrite the manifest too: the hashes catch accidents, not attacks)."""
    model = cnnlab.create_model("lenet5")
    save_checkpoint(directory, "last", model=model, train_state={"step": 1, "epoch": 0})
    save_checkpoint(directory, "last", model=model, train_state={"step": 2, "epoch": 0})
    checkpoints = read_manifest(directory)
    info = checkpoints["last"]["files"][replace]
    data = state_file.read_bytes()
    (directory / info["name"]).write_bytes(data)
    info.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    _write_manifest(directory, checkpoints)
    return directory


def test_load_checkpoint_refuses_and_does_not_fall_back(evil, tmp_path):
    path, _ = evil
    directory = _checkpoint_with_state(tmp_path / "ckpt", path)
    with pytest.raises(CheckpointError, match="refused to load") as err:
        load_checkpoint(directory, "last")
    assert "last.state.pt" in str(err.value)
    # Even with a good `last.prev` there, a file built to run code stops the resume loudly.
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(directory)


def test_malicious_file_posing_as_safetensors_is_rejected(evil, tmp_path):
    path, _ = evil
    directory = _checkpoint_with_state(tmp_path / "ckpt", path, replace="weights")
    with pytest.raises(CheckpointError, match="invalid safetensors") as err:
        load_checkpoint(directory, "last")
    assert "last.safetensors" in str(err.value)


@pytest.mark.parametrize("fake", ["2.9.1", "2.9.0+cu128", "1.13.1"])
def test_old_torch_refused_at_import(monkeypatch, fake):
    """torch older than 2.10 (unsafe weights_only, CVE-2026-24747): ``import cnnlab`` fails with a message.

    cnnlab/__init__.py runs as a fresh module under another name, so the cnnlab that the other tests
    use stays as it is; with a fake old ``torch.__version__`` it must stop before importing anything.
    """
    import importlib.util

    monkeypatch.setattr(torch, "__version__", fake)
    spec = importlib.util.spec_from_file_location("cnnlab_version_probe", SRC / "__init__.py")
    with pytest.raises(ImportError) as err:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    msg = str(err.value)
    assert f"needs torch >= 2.10 (found {fake})" in msg and "CVE-2026-24747" in msg and "pip install" in msg


def test_current_torch_accepted(monkeypatch):
    import importlib.util

    monkeypatch.setattr(torch, "__version__", "2.10.0")
    spec = importlib.util.spec_from_file_location("cnnlab_version_probe", SRC / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.create_model is cnnlab.create_model


def _unsafe_loads(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that can run code from a file: pickle.load(s), torch.load without weights_only=True,
    numpy.load with allow_pickle=True. (A pickle.Unpickler subclass with a restricted find_class,
    as the CIFAR reader uses, is not flagged.)"""

    def keyword_is(node: ast.Call, name: str, value: bool) -> bool:
        return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in node.keywords)

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        if func in ("pickle.load", "pickle.loads"):
            found.append((node.lineno, func))
        elif func == "torch.load" and not keyword_is(node, "weights_only", True):
            found.append((node.lineno, "torch.load without weights_only=True"))
        elif func in ("np.load", "numpy.load") and keyword_is(node, "allow_pickle", True):
            found.append((node.lineno, "numpy.load with allow_pickle=True"))
    return found


def test_no_unsafe_load_anywhere_in_the_package():
    """Project rule: no pickle.load(s), and every torch.load in cnnlab says weights_only=True."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for lineno, what in _unsafe_loads(ast.parse(path.read_text(), filename=str(path))):
            offenders.append(f"{path.relative_to(SRC.parent)}:{lineno}: {what}")
    assert not offenders, "\n".join(offenders)


def test_unsafe_load_detector_detects():
    code = textwrap.dedent(
        """
        import pickle, torch, numpy as np
        pickle.load(f)
        torch.load(p)
        torch.load(p, weights_only=False)
        torch.load(p, map_location="cpu", weights_only=True)
        np.load(p, allow_pickle=True)
        np.load(p)
        """
    )
    assert [line for line, _ in _unsafe_loads(ast.parse(code))] == [3, 4, 5, 7]
