"""Loading a file never runs code: weights, checkpoints, the CLI; and torch < 2.10 is refused.

The malicious files are real: a pickle whose ``__reduce__`` calls ``exec`` to write a sentinel file,
once inside a torch.save zip and once as a raw pickle. A positive control loads them unsafely in a
child process and sees the sentinel appear, so a test that finds no sentinel proves something.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
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


# ------------------------------------------------------------------------------ crafted .pt2 programs
# torch.export.load reads a program's graph (models/model.json in the zip) and turns some of its text
# into code: a shape expression goes to sympy.sympify (an eval), guards_code runs when the module is
# called, names become the Python source of the generated forward, a tree spec's {"__enum__": ...}
# imports a module by name. Each crafted file below carries one of these, with a payload that writes a
# sentinel; the positive control shows torch runs each; cnnlab.export.load_pt2 must refuse each with
# one line naming the file and the field, and no sentinel may appear.


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory) -> Path:
    from cnnlab.export import export_pt2, load_model

    im = load_model(model="lenet5")
    return export_pt2(im.model, tmp_path_factory.mktemp("pt2") / "good.pt2", preprocessing=im.preprocessing)


def _craft_pt2(good: Path, bad: Path, mutate) -> Path:
    """A copy of ``good`` whose models/model.json is ``mutate(json)`` (a dict, or bytes to store as is)."""
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("models/model.json"):
                doc = mutate(json.loads(data))
                data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
            dst.writestr(item, data)
    return bad


def _graph(doc):
    return doc["graph_module"]["graph"]


def _evil_expr(doc, code):
    for meta in _graph(doc)["tensor_values"].values():
        for size in meta["sizes"]:
            if "as_expr" in size:  # the dynamic batch dimension
                size["as_expr"]["expr_str"] = f"({code}) and Symbol('s77', positive=True, integer=True)"
                return doc
    raise AssertionError("no symbolic size in the exported program")


def _evil_guards(doc, code):
    doc["guards_code"] = [f"({code}) == 0"]
    return doc


def _evil_name(doc, code):
    # the input placeholder "x" becomes "x=<code>": a default argument of the generated forward()
    return json.loads(json.dumps(doc).replace('"x"', json.dumps(f"x={code}")))


def _evil_enum(doc, code):
    signature = doc["graph_module"]["module_call_graph"][0]["signature"]
    spec = json.loads(signature["in_spec"])
    spec[1]["children_spec"][1]["context"] = json.dumps([{"__enum__": True, "fqn": "cnnlab_evil_enum:E", "name": "A"}])
    signature["in_spec"] = json.dumps(spec)
    return doc


def _evil_target(doc, code):
    _graph(doc)["nodes"][0]["target"] = "torch.load"  # looked up in torch by name and called
    return doc


def _evil_from_file(doc, code):
    _graph(doc)["nodes"][0]["target"] = "torch.ops.aten.from_file.default"  # reads any file
    return doc


def _evil_stack_trace(doc, code):
    # "\r" ends a comment line for Python's tokenizer: FX's verbose code puts this line in a comment
    _graph(doc)["nodes"][0]["metadata"]["stack_trace"] = f'File "a.py", line 1, in f\n  x\r    {code}'
    return doc


def _evil_parameter_name(doc, code):
    # becomes getattr(self, "<part>") in generated code: a quote ends the string
    spec = doc["graph_module"]["signature"]["input_specs"][0]["parameter"]
    spec["parameter_name"] = f'c1.0") or ({code}) or ("'
    return doc


def _evil_subgraph(doc, code):
    _graph(doc)["nodes"][0]["inputs"][0]["arg"] = {"as_graph": {"name": "g", "graph": json.loads(json.dumps(_graph(doc)))}}
    return doc


def _evil_depth(doc, code):
    return b'{"graph_module": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


# (case, the field the error must name, whether torch.export.load runs the payload: the positive control)
PT2_CASES = [
    (_evil_expr, "expr_str", True),
    (_evil_guards, "guards_code", True),
    (_evil_name, ".name", True),
    (_evil_enum, "in_spec", True),
    (_evil_target, "target", False),
    (_evil_from_file, "target", False),
    (_evil_stack_trace, "stack_trace", False),
    (_evil_parameter_name, "parameter_name", False),
    (_evil_subgraph, "as_graph", False),
    (_evil_depth, "nested too deeply", False),
]


def _payload(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').write('pwned')"


def _enum_module(folder: Path, sentinel: Path) -> None:
    (folder / "cnnlab_evil_enum.py").write_text(f"{_payload(sentinel)}\nimport enum\nclass E(enum.Enum):\n    A = 1\n")


def test_positive_control_crafted_pt2_runs_code_in_torch_export_load(good_pt2, tmp_path):
    """Loaded by torch.export.load (in a child process) and called, each live case writes its sentinel."""
    runs = []
    for case, field, live in PT2_CASES:
        if live:
            sentinel = tmp_path / f"control-{case.__name__}"
            runs.append((_craft_pt2(good_pt2, tmp_path / f"{case.__name__}.pt2",
                                    lambda d, c=case, s=sentinel: c(d, _payload(s))), sentinel))
    _enum_module(tmp_path, tmp_path / "control-_evil_enum")
    script = textwrap.dedent(
        """
        import sys, torch
        sys.path.insert(0, sys.argv[1])
        for path in sys.argv[2:]:
            try:  # UNSAFE on purpose: the positive control
                torch.export.load(path).module()(torch.zeros(2, 1, 32, 32))
            except Exception:
                pass
        """
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path), *(str(p) for p, _ in runs)], check=True,
                   timeout=300, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert [s.name for _, s in runs if not s.exists()] == []


@pytest.mark.parametrize("case, field", [(c, f) for c, f, _ in PT2_CASES], ids=[c.__name__[6:] for c, _, _ in PT2_CASES])
def test_load_pt2_refuses_a_graph_that_would_run_code(good_pt2, tmp_path, monkeypatch, case, field):
    from cnnlab.export import load_pt2

    sentinel = tmp_path / "SENTINEL"
    _enum_module(tmp_path, sentinel)
    monkeypatch.syspath_prepend(str(tmp_path))
    bad = _craft_pt2(good_pt2, tmp_path / "crafted.pt2", lambda d: case(d, _payload(sentinel)))
    with pytest.raises(WeightsError) as err:
        program, _ = load_pt2(bad)
        program.module()(torch.zeros(2, 1, 32, 32))
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(bad) in message and field in message, message
    assert not sentinel.exists(), "the crafted .pt2 ran code"


def test_load_pt2_still_loads_and_runs_what_export_pt2_wrote(good_pt2):
    from cnnlab.export import load_model, load_pt2

    program, prep = load_pt2(good_pt2)
    im = load_model(model="lenet5")
    x = torch.randn(3, *prep.input_size)
    torch.testing.assert_close(program.module()(x), im.model(x))
    assert prep == im.preprocessing


def test_load_pt2_reads_only_a_regular_file(tmp_path):
    from cnnlab.export import load_pt2

    os.mkfifo(tmp_path / "pipe.pt2")
    with pytest.raises(WeightsError, match="FIFO"):
        load_pt2(tmp_path / "pipe.pt2")
