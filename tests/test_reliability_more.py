"""Bounded on every input, one line for every refusal: numeric flags, output targets, huge images, a full disk.

- every numeric flag of every command, given 0, a negative, a huge, a non-finite or a non-number
  value, is refused at parsing in one line that names the flag, or accepted within a cap of
  ``cnnlab.limits`` (a hypothesis property over the parser, so a flag added later is covered);
- every writer's output target that cannot be written as asked (a folder, a FIFO, a symbolic link to
  a user's file, a path under a file, a read-only folder) is refused in one line, and nothing there
  changes;
- an image declaring more pixels than ``cnnlab.limits.MAX_IMAGE_PIXELS`` is refused in one line
  naming the file by every command that opens images (no DecompressionBombWarning, no traceback);
- ``export --format pt2`` onto a disk that refuses the write ends in one line and leaves no file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab import limits
from cnnlab.cli import build_parser
from cnnlab.models.weights import save_weights
from cli_helpers import isolated_cwd, one_line, run_cli  # noqa: F401  (a fixture)

hypothesis = pytest.importorskip("hypothesis", reason="the property tests need hypothesis (the test extra)")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

FUZZ = settings(max_examples=150, deadline=2000, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True)
def _isolated(isolated_cwd):
    yield isolated_cwd


def _run_folder(root: Path, name: str = "r1") -> Path:
    """A finished run as `predict`, `export`, `eval` and `runs` read it: lenet5 on 10 classes, one epoch."""
    run = root / name
    run.mkdir(parents=True)
    torch.manual_seed(0)
    save_weights(cnnlab.create_model("lenet5", num_classes=10), run / "model.safetensors")
    (run / "config.json").write_text(json.dumps({
        "cnnlab_run": 1, "spec": {"model": "lenet5", "data": "synthetic", "model_config": {}},
        "data": {"name": "synthetic", "num_classes": 10, "input_size": [1, 32, 32], "mean": [0.1307],
                 "std": [0.3081], "class_names": [f"digit-{i}" for i in range(10)], "notes": []}}))
    (run / "results.json").write_text(json.dumps({"model": "lenet5", "data": "synthetic", "test_acc": 0.5}))
    (run / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc\n1,2.3,0.1,2.3,0.12\n")
    return run


def _digit(path: Path) -> Path:
    from PIL import Image

    arr = np.zeros((28, 28), np.uint8)
    arr[6:22, 12:16] = 255
    Image.fromarray(arr).save(path)
    return path


# ----------------------------------------------------------------------------- numeric flags


def _numeric_flags() -> list[tuple[str, str, argparse.Action]]:
    """(command, flag, action) for every option of every command whose value is parsed as a number."""
    found = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                seen = set()
                for name, sub in action.choices.items():
                    if id(sub) not in seen:
                        seen.add(id(sub))
                        walk(sub, f"{prefix} {name}".strip())
            elif action.option_strings and action.type not in (None, str) and not action.choices:
                found.append((prefix, action.option_strings[-1], action))

    walk(build_parser(), "")
    return found


NUMERIC_FLAGS = _numeric_flags()
# Flags whose range the command checks after parsing (with a message of its own): a finite value the
# parser takes is tried on the command itself in the tests below. The recipe fields (lr, l1) are checked
# by the recipe, whichever way they were given (flag, --set, config.json).
CHECKED_BY_THE_COMMAND = {("train", "--lr"), ("train", "--l1"), ("train", "--val-fraction"), ("summary", "--depth"), ("filters", "--max-side"), ("convolve", "--max-side"),
                          ("pyramid", "--max-side"), ("pyramid", "--levels"), ("pixel-correlation", "--max-side"),
                          ("pixel-correlation", "--max-distance")}
LARGEST_CAP = max(v for k, v in vars(limits).items() if k.startswith("MAX_") and isinstance(v, int))
EDGES = ["0", "-1", "1" + "0" * 30, str(2**63), str(limits.MAX_BATCH_SIZE + 1), "nan", "inf", "-inf", "1e999",
         "-0", "1.5", "x", "", " 7", "0x10", "1_000", "\x1b[2J"]


def test_the_walk_finds_the_numeric_flags_of_every_kind_of_command():
    names = {(c, f) for c, f, _ in NUMERIC_FLAGS}
    for expected in [("train", "--batch-size"), ("eval", "--batch-size"), ("summary", "--batch-size"),
                     ("bench", "--batch-size"), ("sweep", "--batch-size"), ("viz", "--images"), ("sample", "--n"),
                     ("train", "--l1"), ("train", "--val-fraction"), ("train", "--seed"), ("predict", "--threads")]:
        assert expected in names, expected
    assert CHECKED_BY_THE_COMMAND <= names  # the exceptions below are still plain-int flags


@given(st.sampled_from(NUMERIC_FLAGS),
       st.sampled_from(EDGES) | st.integers(-(2**80), 2**80).map(str) | st.floats().map(repr) | st.text(max_size=4))
@FUZZ
def test_every_numeric_flag_refuses_a_bad_value_at_parsing_naming_the_flag(flag, text):
    command, option, action = flag
    try:
        value = action.type(text)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
        # argparse prints "cnnlab CMD: error: argument FLAG: <this>": one line naming the flag
        assert "\n" not in str(err) and "Traceback" not in str(err), (command, option, text, err)
        return
    assert isinstance(value, (int, float)) and not isinstance(value, bool), (command, option, text, value)
    assert math.isfinite(value), (command, option, text, value)
    if (command, option) not in CHECKED_BY_THE_COMMAND:
        assert abs(value) <= LARGEST_CAP, (command, option, text, value)


def test_a_bad_numeric_value_reaches_the_user_as_one_line_naming_the_flag(capsys):
    for command, option, _ in NUMERIC_FLAGS:
        rc, out, err = run_cli([*command.split(), option, "1e999"], capsys)
        line = one_line(rc, err, option)
        assert "argument " in line and "1e999" in line, line


@pytest.mark.parametrize("argv, needle", [
    (["train", "lenet5", "--lr", "1" + "0" * 30], "lr must be a finite number in [0, 1000]"),
    (["train", "lenet5", "--l1", "-1"], "l1 must be a finite number in [0, 1]"),
    (["train", "lenet5", "--val-fraction", "1" + "0" * 30], "val-fraction must be in (0, 1)"),
    (["summary", "lenet5", "--depth", "0"], "--depth"),
    (["filters", "img.png", "--max-side", "1" + "0" * 30], "--max-side"),
    (["convolve", "img.png", "--kernel", "[[1]]", "--max-side", "-1"], "--max-side"),
    (["pyramid", "img.png", "--max-side", "99999999999"], "--max-side"),
    (["pyramid", "img.png", "--levels", "1"], "--levels"),
    (["pixel-correlation", "img.png", "--max-side", "0"], "--max-side"),
    (["pixel-correlation", "img.png", "--max-distance", "1" + "0" * 30], "--max-distance"),
])  # fmt: skip
def test_plain_int_flags_are_checked_by_their_command_in_one_line(argv, needle, capsys):
    _digit(Path("img.png"))
    rc, _, err = run_cli(argv, capsys)
    one_line(rc, err, needle)
    assert [str(p) for p in Path(".").rglob("*") if p.is_file()] == ["img.png"]  # nothing written


@pytest.mark.parametrize("argv", [["summary", "lenet5", "--depth", "1" + "0" * 30],
                                  ["pyramid", "img.png", "--levels", "1" + "0" * 30, "--out", "p.png"]])
def test_a_huge_depth_or_level_count_means_all_of_them(argv, capsys):
    """Folding to a depth below the deepest module, or a pyramid down to one pixel, is what was asked."""
    _digit(Path("img.png"))
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0 and "Traceback" not in err, err


BATCH_FLAGS = [(c, f) for c, f, _ in NUMERIC_FLAGS if f == "--batch-size"]


def test_every_batch_size_flag_is_capped_by_the_one_limit():
    assert {c for c, _ in BATCH_FLAGS} >= {"summary", "compare", "train", "eval", "sweep", "bench"}
    for command, option, action in NUMERIC_FLAGS:
        if option == "--batch-size":
            assert action.type(str(limits.MAX_BATCH_SIZE)) == limits.MAX_BATCH_SIZE
            with pytest.raises(argparse.ArgumentTypeError, match="MAX_BATCH_SIZE"):
                action.type(str(limits.MAX_BATCH_SIZE + 1))


def test_evaluate_refuses_a_batch_above_the_cap_before_loading_anything(tmp_path, capsys):
    run = _run_folder(tmp_path)
    rc, _, err = run_cli(["eval", str(run / "model.safetensors"), "--batch-size", "100000000"], capsys)
    one_line(rc, err, "--batch-size", f"{limits.MAX_BATCH_SIZE:,}")


@pytest.mark.parametrize("text, needle", [("100000000x1x32x32", "batch"), ("1x99999999999999999999x1", "at most")])
def test_summary_input_sizes_are_capped(text, needle, capsys):
    rc, _, err = run_cli(["summary", "lenet5", "--input", text], capsys)
    one_line(rc, err, "--input", needle)


# ----------------------------------------------------------------------------- writers' output targets

USER_TEXT = "years of work"


def _writers(root: Path, run: Path, img: str) -> dict[str, tuple[list[str], str, str]]:
    """name: (argv up to the target, what the target names: a "file", a "dir" or "either", its suffix)."""
    return {
        "report": (["report", str(run.parent), "--out"], "file", ".html"),
        "summary --erf": (["summary", "lenet5_relu", "--erf-samples", "1", "--erf"], "file", ".png"),
        "compare --plot": (["compare", "lenet5", "lenet5_relu", "--plot"], "file", ".png"),
        "runs compare --plot": (["runs", "compare", str(run), str(run), "--plot"], "file", ".png"),
        "export": (["export", "--run", str(run), "--out"], "file", ".onnx"),
        "convolve": (["convolve", img, "--kernel", "[[1]]", "--out"], "file", ".png"),
        "filters": (["filters", img, "--out"], "either", ".png"),
        "pyramid": (["pyramid", img, "--out"], "either", ".png"),
        "pixel-correlation": (["pixel-correlation", img, "--max-distance", "4", "--out"], "either", ".png"),
        "diagram": (["diagram", "lenet5", "--out"], "file", ".dot"),
        "viz": (["viz", "filters", "--model", "lenet5", "--out"], "dir", ""),
        "eval": (["eval", str(run / "model.safetensors"), "--data-set", "n=16", "--out"], "dir", ""),
        "train": (["train", "lenet5", "--data", "synthetic", "--data-set", "n=16", "--max-steps", "1",
                   "--no-progress", "--out"], "dir", ""),
    }


TARGETS = ("a folder", "a FIFO", "a symlink to a user's file", "a path under a file", "a user's file",
           "a read-only folder")
WRITERS = ("report", "summary --erf", "compare --plot", "runs compare --plot", "export", "convolve", "filters",
           "pyramid", "pixel-correlation", "diagram", "viz", "eval", "train")


def _snapshot(root: Path) -> dict[str, object]:
    """What is in ``root`` (recursively): names, kinds and file contents."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = ("link", os.readlink(p))
        elif p.is_fifo():
            out[key] = "fifo"
        elif p.is_dir():
            out[key] = "dir"
        else:
            out[key] = p.read_bytes()
    return out


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("writer", WRITERS)
def test_a_writer_refuses_an_output_target_it_cannot_write_as_asked(tmp_path, capsys, writer, target):
    run = _run_folder(tmp_path / "runs")
    img = str(_digit(tmp_path / "img.png"))
    argv, kind, suffix = _writers(tmp_path, run, img)[writer]
    user = tmp_path / "mine" / "thesis.txt"
    user.parent.mkdir()
    user.write_text(USER_TEXT)
    if target == "a folder":
        if kind != "file":
            pytest.skip("the writer takes a folder")
        path = tmp_path / "mine" / f"folder{suffix}"
        path.mkdir()
    elif target == "a FIFO":
        path = tmp_path / "mine" / f"fifo{suffix}"
        os.mkfifo(path)
    elif target == "a symlink to a user's file":
        path = tmp_path / "mine" / f"link{suffix}"
        path.symlink_to(user)
    elif target == "a path under a file":
        path = user / f"out{suffix}"
    elif target == "a user's file":
        path = tmp_path / "mine" / f"notes{suffix}"
        path.write_text(USER_TEXT)
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        path = tmp_path / "mine" / "locked" / f"out{suffix}"
        path.parent.mkdir()
        path.parent.chmod(0o500)
    before = _snapshot(tmp_path / "mine")
    try:
        rc, out, err = run_cli([*argv, str(path)], capsys)
    finally:
        if target == "a read-only folder":
            path.parent.chmod(0o700)
    line = one_line(rc, err)
    assert _snapshot(tmp_path / "mine") == before, (writer, target, err)
    assert "File exists" not in line, line  # a path under a file was once reported so


@pytest.mark.parametrize("name", ["report.md", "results.json", "degradation_plain.png"])
def test_experiment_refuses_a_users_file_in_its_folder_before_training(tmp_path, capsys, name):
    """The experiment's files are drawn in a temporary folder and renamed into --out: that rename replaced
    a user's report.md without asking."""
    out = tmp_path / "exp"
    out.mkdir()
    (out / name).write_text(USER_TEXT)
    rc, stdout, err = run_cli(["experiment", "degradation", "--scale", "tiny", "--out", str(out)], capsys)
    one_line(rc, err, str(out / name), "--force")
    assert (out / name).read_text() == USER_TEXT and sorted(p.name for p in out.iterdir()) == [name]
    assert "training" not in stdout + err


@pytest.mark.parametrize("kind, needle", [("dir", "is a directory"), ("fifo", "FIFO"), ("missing", "does not exist")])
def test_viz_image_names_a_non_file_for_what_it_is(tmp_path, capsys, kind, needle):
    path = tmp_path / "x.png"
    if kind == "dir":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    rc, _, err = run_cli(["viz", "feature-maps", "--model", "lenet5", "--image", str(path), "--out", str(tmp_path / "v")],
                         capsys)
    assert "no such file" not in one_line(rc, err, str(path), needle)


# ----------------------------------------------------------------------------- images over PIL's pixel limit


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG of a few hundred bytes whose header declares ``width`` x ``height`` grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1024)))
                     + chunk(b"IEND", b""))
    return path


# 10,000^2 is above PIL's limit (a DecompressionBombWarning, then a decode of 100 M pixels); 20,000^2
# is above twice it (PIL's DecompressionBombError).
BOMBS = {"warning": (10_000, 10_000), "error": (20_000, 20_000)}


@pytest.mark.parametrize("size", sorted(BOMBS))
@pytest.mark.parametrize("command", ["predict", "viz --image", "filters", "convolve", "pyramid", "pixel-correlation"])
def test_an_image_over_the_pixel_limit_is_refused_in_one_line_naming_it(tmp_path, capsys, recwarn, command, size):
    bomb = str(_png_header(tmp_path / "bomb.png", *BOMBS[size]))
    run = _run_folder(tmp_path / "runs")
    argv = {"predict": ["predict", bomb, "--run", str(run), "--backend", "eager"],
            "viz --image": ["viz", "feature-maps", "--run", str(run), "--image", bomb, "--out", str(tmp_path / "v")],
            "filters": ["filters", bomb], "convolve": ["convolve", bomb, "--kernel", "[[1]]"],
            "pyramid": ["pyramid", bomb], "pixel-correlation": ["pixel-correlation", bomb]}[command]
    rc, out, err = run_cli(argv, capsys)
    one_line(rc, err, bomb, "MAX_IMAGE_PIXELS")
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


def test_an_image_folder_holding_a_bomb_names_the_file(tmp_path):
    from cnnlab.data import load_dataset
    from cnnlab.errors import DatasetError

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir(parents=True)
        for i in range(3):
            _digit(tmp_path / cls / f"{i}.png")
    bomb = _png_header(tmp_path / "b" / "huge.png", *BOMBS["error"])
    with pytest.raises(DatasetError, match="huge.png.*MAX_IMAGE_PIXELS"):
        load_dataset(f"imagefolder:{tmp_path}")
    bomb.unlink()
    _png_header(bomb, *BOMBS["warning"])
    with pytest.raises(DatasetError, match="huge.png.*MAX_IMAGE_PIXELS"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_a_segmentation_mask_over_the_pixel_limit_is_refused(tmp_path):
    from cnnlab.data.segmentation import read_voc_mask
    from cnnlab.errors import DatasetError

    bomb = _png_header(tmp_path / "mask.png", *BOMBS["warning"])
    with pytest.raises(DatasetError, match="mask.png.*MAX_IMAGE_PIXELS"):
        read_voc_mask(bomb, size=(32, 32))


def test_the_pixel_limit_is_pils_and_an_image_at_it_is_read():
    from PIL import Image

    assert limits.MAX_IMAGE_PIXELS == Image.MAX_IMAGE_PIXELS  # the outside number: PIL's documented default
    from cnnlab.safeio import open_pil_image
    from cnnlab.errors import DatasetError

    path = _digit(Path("small.png"))
    with open_pil_image(path, name=path, error=DatasetError) as img:
        assert img.size == (28, 28)


# ----------------------------------------------------------------------------- a full disk


def test_export_pt2_onto_a_disk_that_refuses_the_write_is_one_line_and_leaves_no_file(tmp_path, capsys):
    """torch's zip writer aborted the process (exit 134) when a write failed. Here the size of any file
    the process writes is capped (RLIMIT_FSIZE, SIGXFSZ ignored), so the write fails for real, in the
    kernel, as on a full disk (EFBIG instead of ENOSPC)."""
    import resource
    import signal

    weights = tmp_path / "w.safetensors"
    save_weights(cnnlab.create_model("lenet5"), weights)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "m.pt2"
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, old_limit[1]))  # lenet5's program is ~300 kB
    try:
        rc, out_text, err = run_cli(["export", "--weights", str(weights), "--model", "lenet5", "--format", "pt2",
                                     "--out", str(target)], capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    one_line(rc, err, str(target), "File too large")
    assert list(out.iterdir()) == []
