"""Fuzzing every reader of an outside file, and the command line (issue 12).

The property, for each kind of input: reading it either succeeds or raises a subclass of
:class:`cnnlab.errors.CnnlabError` (which the CLI prints as one line, exit code 2) -- never another
exception, and within a bounded time and memory. The inputs are mutations of valid files
(safetensors headers, IDX headers and bodies, CIFAR pickles, config.json, checkpoint manifests,
checkpoint training states), argument lists for every sub-command, and finished run folders whose
config.json and results.json have fields of the wrong type, huge, nested or missing, as `runs`,
`report`, `eval`, `export` and `predict` read them.

All families run in ONE child process (``python tests/test_fuzz.py``), started once per test
session: after importing torch and cnnlab it caps its address space with ``RLIMIT_AS`` (what it has
mapped so far plus ``HEADROOM``), so an unbounded read becomes a ``MemoryError``, which the property
counts as a failure; hypothesis's ``deadline`` bounds each example's time and the parent's
``timeout`` the whole run. The examples are derandomized, so CI runs the same cases every time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

HEADROOM = 3 << 30  # bytes of address space the child may add to what torch and cnnlab mapped at import
FAMILIES = ("safetensors", "idx", "cifar", "config", "manifest", "state", "cli", "runfolder")


# ============================================================================ the parent (pytest)


@pytest.fixture(scope="module")
def child_results() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    proc = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=420, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and lines, f"fuzz child failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1])


@pytest.mark.parametrize("family", FAMILIES)
def test_fuzz(child_results, family):
    result = child_results[family]
    assert result["examples"] > 0, result
    assert result["failure"] is None, f"{family}: {result['failure']}"


# ============================================================================ the child

if __name__ == "__main__":  # the rest runs only in the child process
    import numpy as np
    import torch
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    import cnnlab
    from cnnlab.cli import main as cli_main
    from cnnlab.data.readers import read_cifar_batch, read_idx
    from cnnlab.errors import CnnlabError
    from cnnlab.models.weights import load_weights, read_state_dict, save_weights
    from cnnlab.training import checkpoint as ck
    from cnnlab.training.run import spec_from_config

    WORK = Path(tempfile.mkdtemp(prefix="cnnlab-fuzz-"))
    COUNT: dict[str, int] = {}
    # No shrinking: a failing example is reported as drawn, at once (shrinking a hang costs 10 s a step).
    SETTINGS = dict(database=None, derandomize=True, deadline=None, print_blob=False,
                    phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))  # fmt: skip

    def budget(n: int) -> settings:
        return settings(max_examples=n, **SETTINGS)

    import signal

    class Hang(BaseException):  # not an OSError/Exception, which the code under test may catch
        pass

    def _too_slow(signum, frame):
        raise Hang("one example ran for more than 10 s (a hang?)")

    signal.signal(signal.SIGALRM, _too_slow)

    def expect_clean(family: str, fn, *args, **kwargs):
        """Run ``fn``: success or a CnnlabError pass; anything else (a MemoryError under the cap, a
        TimeoutError from the alarm) fails the property."""
        COUNT[family] = COUNT.get(family, 0) + 1
        signal.alarm(10)
        try:
            return fn(*args, **kwargs)
        except CnnlabError as err:
            assert "\n" not in str(err).strip(), f"multi-line message: {err}"
            return None
        finally:
            signal.alarm(0)

    def quiet(argv: list[str]) -> int:
        """Run the CLI in this process; its exit code (any exception but SystemExit propagates)."""
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                return cli_main(argv)
            except SystemExit as exc:  # argparse
                return int(exc.code or 0)

    # a byte-level mutation: flips, insertions, deletions, truncation, extension
    @st.composite
    def mutated(draw, base: bytes, max_edits: int = 6) -> bytes:
        data = bytearray(base)
        for _ in range(draw(st.integers(0, max_edits))):
            kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend"]))
            pos = draw(st.integers(0, max(len(data) - 1, 0)))
            if kind == "flip" and data:
                data[pos] ^= 1 << draw(st.integers(0, 7))
            elif kind == "set" and data:
                data[pos] = draw(st.integers(0, 255))
            elif kind == "insert":
                data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
            elif kind == "delete" and data:
                del data[pos : pos + draw(st.integers(1, 16))]
            elif kind == "truncate":
                del data[pos:]
            elif kind == "extend":
                data += draw(st.binary(min_size=1, max_size=64))
        return bytes(data)

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=12,
    )

    # Now and then the reader gets, instead of a file, what a careless or hostile path names: a FIFO
    # (opening it for reading would wait for a writer), /dev/zero (endless), a directory.
    SPECIALS = WORK / "specials"
    SPECIALS.mkdir()
    os.mkfifo(SPECIALS / "fifo")
    (SPECIALS / "zero").symlink_to("/dev/zero")
    (SPECIALS / "dir").mkdir()
    place = st.sampled_from(["file"] * 12 + ["fifo", "zero", "dir"])

    def write(name: str, data: bytes, where: str = "file") -> Path:
        if where != "file":
            return SPECIALS / where
        path = WORK / name
        path.write_bytes(data)
        return path

    # ------------------------------------------------------------------ safetensors
    from safetensors.torch import save as st_save

    ST_BASE = st_save({"c1.0.weight": torch.zeros(6, 1, 5, 5), "c1.0.bias": torch.ones(6)})
    HEADER_LEN = int.from_bytes(ST_BASE[:8], "little")

    @st.composite
    def safetensors_files(draw) -> bytes:
        header = json.loads(ST_BASE[8 : 8 + HEADER_LEN])
        body = ST_BASE[8 + HEADER_LEN :]
        how = draw(st.sampled_from(["header-json", "header-values", "length", "bytes"]))
        if how == "header-json":
            text = json.dumps(draw(json_values)).encode()
        elif how == "header-values":
            key = draw(st.sampled_from(sorted(header)))
            field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
            if key != "__metadata__":
                header[key][field] = draw(json_values | st.lists(st.integers(-(2**64), 2**64), max_size=5))
            text = json.dumps(header).encode()
        else:
            text = json.dumps(header).encode()
        length = len(text) if how != "length" else draw(st.integers(0, 2**64 - 1))
        data = length.to_bytes(8, "little") + text + body
        return draw(mutated(data)) if how == "bytes" else data

    @given(safetensors_files(), place)
    @budget(150)
    def fuzz_safetensors(data: bytes, where: str) -> None:
        path = write("w.safetensors", data, where)
        expect_clean("safetensors", read_state_dict, path)
        expect_clean("safetensors", load_weights, cnnlab.create_model("lenet5"), path, strict=False)

    # ------------------------------------------------------------------ IDX
    import gzip

    @st.composite
    def idx_files(draw) -> tuple[bytes, int]:
        ndim = draw(st.sampled_from([1, 3]))
        dims = draw(st.lists(st.integers(0, 40), min_size=ndim, max_size=ndim))
        if draw(st.booleans()):  # a forged size: anything a u32 holds
            dims[draw(st.integers(0, ndim - 1))] = draw(st.integers(0, 2**32 - 1))
        magic = draw(st.sampled_from([0x0800 | ndim, 0x0800 | (4 - ndim), draw(st.integers(0, 2**32 - 1))]))
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
        n = int(np.prod([min(d, 40) for d in dims]))
        body = bytes(n) + (bytes(draw(st.integers(0, 1 << 20))) if draw(st.booleans()) else b"")
        data = draw(mutated(header + body[: draw(st.integers(0, len(body)))] if draw(st.booleans()) else header + body))
        if draw(st.booleans()):
            data = gzip.compress(data, compresslevel=1)
            if draw(st.booleans()):
                data = draw(mutated(data, 3))
        return data, draw(st.sampled_from([1, 3]))

    @given(idx_files(), place)
    @budget(200)
    def fuzz_idx(case: tuple[bytes, int], where: str) -> None:
        data, ndim = case
        expect_clean("idx", read_idx, write("x-idx-ubyte", data, where), ndim=ndim)

    # ------------------------------------------------------------------ CIFAR pickles
    arrays = st.builds(
        lambda shape, dtype: np.zeros(shape, dtype=dtype),
        st.lists(st.integers(0, 40), max_size=3).map(tuple),
        st.sampled_from([np.uint8, np.int64, np.float32, np.object_]),
    )
    cifar_values = st.recursive(
        st.none() | st.integers(-(2**40), 2**40) | st.binary(max_size=8) | st.text(max_size=8) | arrays
        | st.just(np.zeros((2, 3072), np.uint8)),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
            [b"data", b"labels", "data", "labels", b"x"]), inner, max_size=4),
        max_leaves=8,
    )  # fmt: skip
    CIFAR_BASE = pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}, protocol=2)

    @st.composite
    def cifar_files(draw) -> bytes:
        if draw(st.booleans()):
            return pickle.dumps(draw(cifar_values), protocol=draw(st.sampled_from([2, 4, 5])))
        return draw(mutated(CIFAR_BASE, 8))

    @given(cifar_files(), place)
    @budget(150)
    def fuzz_cifar(data: bytes, where: str) -> None:
        expect_clean("cifar", read_cifar_batch, write("data_batch_1", data, where), label_key="labels", num_classes=10)

    # ------------------------------------------------------------------ config.json
    spec_fields = st.fixed_dictionaries(
        {"model": st.sampled_from(["lenet5", "lenet_5", ""]) | json_values},
        optional={
            "data": st.sampled_from(["synthetic", "mnist-5k", "imagefolder:/dev"]) | json_values,
            "recipe": st.sampled_from(["lenet", "resnet_cifar", "nope"]) | json_values,
            "overrides": st.dictionaries(st.sampled_from(["lr", "momentum", "epochs", "weight_decay", "x"]),
                                         json_values, max_size=3) | json_values,
            "model_config": st.dictionaries(st.sampled_from(["num_classes", "activation", "x"]), json_values,
                                            max_size=2) | json_values,
            "data_options": st.dictionaries(st.sampled_from(["n", "shape", "seed", "max_gib"]), json_values,
                                            max_size=2) | json_values,
            "epochs": json_values, "batch_size": json_values, "lr": json_values, "seed": json_values,
            "precision": json_values, "strict": json_values, "weights": json_values, "extra": json_values,
        },
    )  # fmt: skip

    @given(st.one_of(spec_fields.map(lambda s: json.dumps({"spec": s}).encode()),
                     json_values.map(lambda v: json.dumps(v).encode()),
                     spec_fields.flatmap(lambda s: mutated(json.dumps({"spec": s}).encode(), 4))))
    @budget(120)
    def fuzz_config(data: bytes) -> None:
        def use(path: Path) -> None:
            spec = spec_from_config(path)
            spec.resolve()
            cnnlab.create_model(spec.model, **spec.model_config)

        path = write("config.json", data)
        expect_clean("config", use, path)
        # as `cnnlab train --config` merges it with flags (the unknown model option stops it before training)
        rc = quiet(["train", "--config", str(path), "--set", "momentum=0.9", "--model-set", "no_such_option=1",
                    "--data-set", "n=16", "--out", str(WORK / "config-run")])
        assert rc == 2, rc

    # ------------------------------------------------------------------ manifest.json
    MANIFEST_DIR = WORK / "ckpt"
    ck.save_checkpoint(MANIFEST_DIR, "last", model=cnnlab.create_model("lenet5"), train_state={"step": 1, "epoch": 0})
    ck.save_checkpoint(MANIFEST_DIR, "last", model=cnnlab.create_model("lenet5"), train_state={"step": 2, "epoch": 0})
    GOOD = ck.read_manifest(MANIFEST_DIR)
    MANIFEST_BYTES = (MANIFEST_DIR / ck.MANIFEST).read_bytes()
    names = st.sampled_from(["last.safetensors", "last.state.pt", "/dev/zero", "../x", "", ".", "manifest.json",
                             "last.prev.state.pt", "a/b"]) | json_values  # fmt: skip

    @st.composite
    def manifests(draw) -> bytes:
        how = draw(st.sampled_from(["entries", "whole", "bytes"]))
        if how == "bytes":
            return draw(mutated(MANIFEST_BYTES, 4))
        if how == "whole":
            checkpoints = draw(json_values)
        else:
            checkpoints = json.loads(json.dumps(GOOD))
            for _ in range(draw(st.integers(1, 3))):
                tag = draw(st.sampled_from(sorted(checkpoints) + ["best"]))
                entry = checkpoints.setdefault(tag, {})
                target = draw(st.sampled_from(["entry", "files", "name", "size", "sha256", "step"]))
                value = draw(names if target == "name" else json_values)
                if target == "entry":
                    checkpoints[tag] = value
                elif target == "step" and isinstance(entry, dict):
                    entry["step"] = value
                elif isinstance(entry, dict) and isinstance(entry.get("files"), dict):
                    if target == "files":
                        entry["files"] = value
                    else:
                        entry["files"].setdefault(draw(st.sampled_from(["weights", "state"])), {})
                        info = entry["files"][draw(st.sampled_from(sorted(entry["files"])))]
                        if isinstance(info, dict):
                            info[target] = value
        doc = {"format": ck.FORMAT, "checkpoints": checkpoints}
        try:
            doc["checksum"] = ck._manifest_checksum(checkpoints)
        except (TypeError, ValueError):
            pass
        return json.dumps(doc).encode()

    @given(manifests(), place)
    @budget(120)
    def fuzz_manifest(data: bytes, where: str) -> None:
        manifest = MANIFEST_DIR / ck.MANIFEST
        manifest.unlink(missing_ok=True)
        if where == "file":
            manifest.write_bytes(data)
        else:
            manifest.symlink_to(SPECIALS / where)
        expect_clean("manifest", ck.choose_resumable, MANIFEST_DIR)
        expect_clean("manifest", ck.load_checkpoint, MANIFEST_DIR)
        expect_clean("manifest", ck.verify_checkpoint, MANIFEST_DIR, "last")

    # ------------------------------------------------------------------ checkpoint training states
    TINY = ["--data", "synthetic", "--data-set", "n_train=32", "--data-set", "n_test=8", "--epochs", "2",
            "--batch-size", "16", "--threads", "1", "--precision", "fp32", "--no-progress"]  # fmt: skip
    RUN = WORK / "run"

    def paths(obj, prefix=()):
        yield prefix
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from paths(v, (*prefix, k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from paths(v, (*prefix, i))

    state_values = st.none() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=4) | \
        st.builds(torch.zeros, st.lists(st.integers(0, 3), max_size=3).map(tuple)) | st.just({}) | st.just([])

    def fuzz_state_setup() -> tuple[dict, list]:
        assert quiet(["train", "lenet5", *TINY, "--max-steps", "2", "--checkpoint-every", "1", "--out", str(RUN)]) == 0
        (RUN / "results.json").unlink()
        state = torch.load(RUN / "checkpoints" / "last.state.pt", weights_only=True)
        return state, [p for p in paths(state) if p]

    BASE_STATE, STATE_PATHS = fuzz_state_setup()

    @given(st.lists(st.tuples(st.sampled_from(STATE_PATHS), st.booleans(), state_values), min_size=1, max_size=3))
    @budget(15)
    def fuzz_state(edits) -> None:
        import copy

        run = WORK / "run-edit"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(RUN, run)
        state = copy.deepcopy(BASE_STATE)
        for path, delete, value in edits:
            parent = state
            try:
                for k in path[:-1]:
                    parent = parent[k]
                if delete and isinstance(parent, dict):
                    parent.pop(path[-1], None)
                else:
                    parent[path[-1]] = value
            except (KeyError, IndexError, TypeError):
                continue
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        ckpt = run / "checkpoints"
        (ckpt / "last.state.pt").write_bytes(data)
        checkpoints = ck.read_manifest(ckpt)
        checkpoints["last"]["files"]["state"].update(size=len(data), sha256=ck.sha256_hex(data))
        checkpoints.pop("last.prev", None)  # no fallback: the tampered state itself must be judged
        ck._write_manifest(ckpt, checkpoints)
        COUNT["state"] = COUNT.get("state", 0) + 1
        rc = quiet(["train", "--resume", str(run), "--no-progress", "--max-steps", "3"])
        assert rc in (0, 2), rc

    # ------------------------------------------------------------------ command lines
    parser = __import__("cnnlab.cli", fromlist=["build_parser"]).build_parser()
    SUBCOMMANDS = sorted(parser._subparsers._group_actions[0].choices)
    WEIGHTS = WORK / "w.safetensors"
    save_weights(cnnlab.create_model("lenet5"), WEIGHTS)
    (WORK / "fifo").exists() or os.mkfifo(WORK / "fifo")
    words = st.sampled_from(["lenet5", "alexnet", "nope", "--lr", "--set", "lr=1e999", "--model-set", "num_classes=3",
                             "--data-set", "n=x", "shape=3", "--epochs", "0", "-1", "inf", "nan", "--input", "3x0x9",
                             "--depth", "--batch-size", "--format", "json", "--erf", "--plot", "/", str(WORK),
                             str(WORK / "fifo"), "/dev/zero", str(WEIGHTS), "--model", "--tta", "flip", "--config",
                             "x=1", "--sha256", "00", "--no-strict", "--resume", "--out"]) | st.text(max_size=6)  # fmt: skip

    @given(st.sampled_from(SUBCOMMANDS), st.lists(words, max_size=6))
    @budget(40)
    def fuzz_cli(command: str, args: list[str]) -> None:
        argv = [command, *args]
        if command == "train":  # keep a valid command line small, fast and inside WORK
            argv += ["--max-steps", "1", "--data", "synthetic", "--data-set", "n=16", "--no-progress",
                     "--out", str(WORK / f"out-{COUNT.get('cli', 0)}")]  # fmt: skip
        elif command == "eval":
            argv += ["--data", "synthetic", "--data-set", "n=16", "--data-set", "shape=1,32,32"]
        elif command in ("experiment", "experiments", "run"):
            argv = [command, "--help"] if not args else [command, "no-such-experiment", *args]
        COUNT["cli"] = COUNT.get("cli", 0) + 1
        rc = quiet(argv)
        assert rc in (0, 1, 2), f"{argv}: exit code {rc}"  # 1: `cnnlab list PATTERN` matched no model

    # ------------------------------------------------------------------ run folders read by runs/report/eval/export/predict
    from PIL import Image

    from cnnlab.export import load_model

    DONE = WORK / "runs" / "done"
    assert quiet(["train", "lenet5", *[a if a != "2" else "1" for a in TINY], "--out", str(DONE)]) == 0  # one epoch
    DONE_CONFIG = json.loads((DONE / "config.json").read_text())
    DONE_RESULTS = json.loads((DONE / "results.json").read_text())
    DIGIT = WORK / "digit.png"
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(DIGIT)
    wild = json_values | st.integers(2**63, 2**200) | st.just(-1) | st.just(0) | st.integers(1, 3).map(lambda k: "x" * 10**(3 + k)) \
        | st.integers(1, 200).map(lambda n: json.loads("[" * n + "]" * n))  # fmt: skip

    @st.composite
    def run_documents(draw, base: dict) -> bytes:
        doc = json.loads(json.dumps(base))
        for _ in range(draw(st.integers(1, 4))):
            path = draw(st.sampled_from([p for p in paths(doc) if p]))
            parent = doc
            for k in path[:-1]:
                parent = parent[k]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)  # missing
            else:
                parent[path[-1]] = draw(wild)  # of the wrong type, huge or nested
        return json.dumps(doc).encode()

    def command(argv: list[str]) -> None:
        COUNT["runfolder"] = COUNT.get("runfolder", 0) + 1
        signal.alarm(20)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
                try:
                    rc = cli_main(argv)
                except SystemExit as exc:
                    rc = int(exc.code or 0)
        finally:
            signal.alarm(0)
        lines = err.getvalue().strip().splitlines()
        assert rc in (0, 2), f"{argv}: exit code {rc}"
        assert rc == 0 or len([ln for ln in lines if "error" in ln]) == 1, f"{argv}: {lines}"

    @given(st.one_of(run_documents(DONE_CONFIG), st.just(None)), st.one_of(run_documents(DONE_RESULTS), st.just(None)))
    @budget(15)
    def fuzz_runfolder(config: bytes | None, results: bytes | None) -> None:
        run = WORK / "runs" / "crafted"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(DONE, run)
        (run / "config.json").write_bytes(config if config is not None else b"")
        if results is not None:
            (run / "results.json").write_bytes(results)
        command(["runs", str(WORK / "runs"), "--format", "json"])
        command(["report", str(run), "--out", str(WORK / "report.html"), "--force"])
        command(["eval", str(run / "model.safetensors"), "--format", "json", "--mistakes", "0",
                 "--out", str(WORK / "eval-out"), "--force"])
        command(["predict", str(DIGIT), "--run", str(run), "--backend", "eager", "--format", "json"])
        expect_clean("runfolder", load_model, run=run)  # what `export --run` and `bench --run` build from

    # ------------------------------------------------------------------ run them, under the memory cap
    def mapped_bytes() -> int:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmSize:"))

    cap = mapped_bytes() + HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    os.chdir(WORK)
    import logging
    import time

    logging.getLogger("cnnlab.checkpoint").setLevel(logging.ERROR)  # fallbacks are expected here, by the hundred
    results = {}
    only = os.environ.get("CNNLAB_FUZZ_ONLY")  # one family, when working on it
    for family in [only] if only else FAMILIES:
        fn = globals()[f"fuzz_{family}"]
        failure = None
        t0 = time.perf_counter()
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - report, do not crash the child
            failure = "".join(traceback.format_exception(err)[-6:])[-3000:]
            if only:
                traceback.print_exception(err)
        results[family] = {"examples": COUNT.get(family, 0), "failure": failure,
                           "seconds": round(time.perf_counter() - t0, 1)}
    shutil.rmtree(WORK, ignore_errors=True)
    print(json.dumps(results))
