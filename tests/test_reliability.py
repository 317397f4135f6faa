"""Issue 12: no input makes cnnlab hang, read without bound, give a wrong result or print a traceback.

One test per finding; each failed before its fix (the finding is named in the test's name or first
line). Hanging inputs (FIFOs, /dev/zero) run under a SIGALRM deadline, so a regression fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.data.readers import read_idx
from cnnlab.errors import CheckpointError, CnnlabError, ConfigError, DatasetError, WeightsError
from cnnlab.models.weights import TMP_PREFIX, load_weights, save_weights
from cnnlab.training import checkpoint as ck
from cli_helpers import one_line, run_cli, isolated_cwd  # noqa: F401  (a fixture)

TINY = ["--data", "synthetic", "--data-set", "n_train=64", "--data-set", "n_test=16", "--epochs", "2",
        "--batch-size", "32", "--threads", "1", "--precision", "fp32", "--no-progress"]


class Hang(BaseException):
    """Raised by the deadline: a BaseException, so no ``except OSError``/``except Exception`` in the
    code under test swallows it (TimeoutError is an OSError)."""


@contextlib.contextmanager
def deadline(seconds: int = 20):
    """Fail (instead of hanging the suite) if the block takes longer than ``seconds``."""

    def timeout(signum, frame):
        raise Hang(f"still running after {seconds} s: the input made cnnlab hang")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def _isolated(isolated_cwd):
    yield isolated_cwd


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "weights.pth"
    os.mkfifo(path)
    return path


# ----------------------------------------------------------------------------- non-regular files


def test_weights_fifo_is_refused_not_waited_on(fifo):
    with deadline(), pytest.raises(WeightsError, match="FIFO"):
        cnnlab.create_model("lenet5", weights=str(fifo))


@pytest.mark.parametrize("through_link", [False, True])
def test_weights_dev_zero_is_refused_not_read_until_memory_runs_out(tmp_path, through_link):
    path = Path("/dev/zero")
    if through_link:
        (tmp_path / "w.safetensors").symlink_to(path)
        path = tmp_path / "w.safetensors"
    with deadline(), pytest.raises(WeightsError, match="character device") as err:
        cnnlab.create_model("lenet5", weights=str(path))
    if through_link:
        assert "symbolic link to /dev/zero" in str(err.value)


def test_eval_names_a_fifo_and_a_directory_as_what_they_are(fifo, tmp_path, capsys):
    with deadline():
        rc, _, err = run_cli(["eval", str(fifo), "--model", "lenet5"], capsys)
    one_line(rc, err, "FIFO")
    rc, _, err = run_cli(["eval", str(tmp_path), "--model", "lenet5"], capsys)
    line = one_line(rc, err, "is a directory")
    assert "no such file" not in line


def test_train_weights_fifo_is_named(fifo, capsys):
    with deadline():
        rc, _, err = run_cli(["train", "lenet5", "--weights", str(fifo), *TINY], capsys)
    line = one_line(rc, err, str(fifo), "FIFO")
    assert "no such file" not in line


@pytest.mark.parametrize("option", ["num_classes=5", "in_chans=3", "weights=/dev/zero"])
def test_model_set_of_a_run_chosen_option_is_one_line(option, capsys):
    """TypeError "got multiple values for keyword argument" before."""
    with deadline():
        rc, _, err = run_cli(["train", "lenet5", "--model-set", option, *TINY], capsys)
    one_line(rc, err, option.split("=")[0])
    w = save_weights(cnnlab.create_model("lenet5"), "w.safetensors")
    assert w
    with deadline():
        rc, _, err = run_cli(["eval", "w.safetensors", "--model", "lenet5", "--data", "synthetic",
                              "--data-set", "n=8", "--model-set", option], capsys)
    one_line(rc, err, option.split("=")[0])


def test_config_whose_model_config_names_dev_zero_is_refused(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"spec": {"model": "lenet5", "data": "synthetic", "model_config": {"weights": "/dev/zero"}}}))
    with deadline():
        rc, _, err = run_cli(["train", "--config", str(cfg), "--no-progress"], capsys)
    one_line(rc, err, "weights")


def test_config_json_that_is_a_fifo_or_dev_zero(tmp_path, capsys):
    os.mkfifo(tmp_path / "config.json")
    with deadline():
        rc, _, err = run_cli(["train", "--config", str(tmp_path / "config.json")], capsys)
    one_line(rc, err, "FIFO")
    (tmp_path / "z.json").symlink_to("/dev/zero")
    with deadline():
        rc, _, err = run_cli(["train", "--config", str(tmp_path / "z.json")], capsys)
    one_line(rc, err, "character device")


def _save_two(directory: Path) -> None:
    model = cnnlab.create_model("lenet5")
    ck.save_checkpoint(directory, "last", model=model, train_state={"step": 1, "epoch": 0})
    ck.save_checkpoint(directory, "last", model=model, train_state={"step": 2, "epoch": 0})


def _rewrite_manifest(directory: Path, change) -> None:
    checkpoints = ck.read_manifest(directory)
    change(checkpoints)
    ck._write_manifest(directory, checkpoints)  # checksummed: only the content is wrong


@pytest.mark.parametrize("name", ["/dev/zero", "../../outside.state.pt", "/etc/passwd", "sub/last.state.pt", ""])
def test_manifest_names_must_be_plain_file_names_inside_the_folder(tmp_path, name):
    _save_two(tmp_path)

    def point_elsewhere(cps):
        cps["last"]["files"]["state"]["name"] = name
        cps["last.prev"]["files"]["state"]["name"] = name

    _rewrite_manifest(tmp_path, point_elsewhere)
    with deadline(), pytest.raises(CheckpointError, match="not a plain file name"):
        ck.load_checkpoint(tmp_path)
    with deadline(), pytest.raises(CheckpointError, match="not a plain file name"):
        ck.choose_resumable(tmp_path)


def test_checkpoint_file_that_is_a_fifo_does_not_hang_resume(tmp_path):
    _save_two(tmp_path)
    (tmp_path / "last.state.pt").unlink()
    os.mkfifo(tmp_path / "last.state.pt")  # the name the manifest lists: only its type is wrong
    with deadline():
        point = ck.choose_resumable(tmp_path)
    assert point.tag == "last.prev" and "FIFO" in point.message


def test_manifest_that_is_a_fifo_or_a_device_is_refused(tmp_path):
    os.mkfifo(tmp_path / "manifest.json")
    with deadline(), pytest.raises(CheckpointError, match="FIFO"):
        ck.read_manifest(tmp_path)
    other = tmp_path / "b"
    other.mkdir()
    (other / "manifest.json").symlink_to("/dev/zero")
    with deadline(), pytest.raises(CheckpointError, match="character device"):
        ck.find_resumable(other)


def test_resume_run_folder_whose_manifest_names_dev_zero(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"spec": {"model": "lenet5", "data": "synthetic",
                                                          "data_options": {"n": 32}}}))
    _save_two(run / "checkpoints")
    _rewrite_manifest(run / "checkpoints", lambda cps: [cps[t]["files"]["weights"].update(name="/dev/zero") for t in cps])
    with deadline():
        rc, _, err = run_cli(["train", "--resume", str(run), "--no-progress"], capsys)
    one_line(rc, err, "not a plain file name")


# ----------------------------------------------------------------------------- silent fallbacks


def test_malformed_last_entry_is_reported_when_falling_back(tmp_path):
    """A checksummed manifest whose `last` entry is malformed fell back to `last.prev` without a word."""
    _save_two(tmp_path)
    _rewrite_manifest(tmp_path, lambda cps: cps["last"].update(files={"weights": cps["last"]["files"]["weights"]}))
    point = ck.choose_resumable(tmp_path)
    assert point.tag == "last.prev"
    assert point.message and "'last'" in point.message and "malformed" in point.message and "state" in point.message


@pytest.mark.parametrize("argv", [["--lr", "inf"], ["--lr", "nan"], ["--set", "lr=1e999"], ["--set", "momentum=-1e999"]])
def test_non_finite_numbers_are_refused_at_parsing(argv, capsys):
    rc, _, err = run_cli(["train", "lenet5", *argv, *TINY], capsys)
    one_line(rc, err)
    assert not Path("runs").exists()


def test_non_finite_number_in_config_json_is_refused(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text('{"spec": {"model": "lenet5", "overrides": {"lr": Infinity}}}')
    rc, _, err = run_cli(["train", "--config", str(cfg)], capsys)
    one_line(rc, err, "lr=inf")


# ----------------------------------------------------------------------------- decompression bombs


def _idx_gz(dims: tuple[int, ...], body: bytes) -> bytes:
    header = (0x0800 | len(dims)).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return gzip.compress(header + body, compresslevel=9)


def test_idx_bomb_decompresses_only_the_declared_size(tmp_path):
    """A small gzip file that inflates to 64 MB while declaring 7,840 bytes: memory stays near the declared size."""
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(_idx_gz((10, 28, 28), bytes(64 << 20)))
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="too long"):
            read_idx(path, ndim=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak:,} bytes allocated to reject a file declaring 7,840"


def test_idx_header_declaring_gigabytes_is_refused_before_decompressing(tmp_path):
    path = tmp_path / "huge-idx3-ubyte.gz"
    path.write_bytes(_idx_gz((65536, 256, 256), bytes(100)))  # declares 4 GiB
    with pytest.raises(DatasetError, match="refusing to decompress"):
        read_idx(path, ndim=3)


def test_idx_gzip_still_reads(tmp_path):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = tmp_path / "ok-idx3-ubyte.gz"
    path.write_bytes(_idx_gz(arr.shape, arr.tobytes()))
    assert np.array_equal(read_idx(path, ndim=3), arr)


def test_tar_archive_is_bounded_by_its_members_declared_sizes(tmp_path):
    from cnnlab.data.torchvision_sets import _extract_tar

    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = 1 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(DatasetError, match="refusing to extract"):
        _extract_tar("cifar10", archive, tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out").exists()
    _extract_tar("cifar10", archive, tmp_path / "ok")
    assert (tmp_path / "ok" / "cifar-10-batches-py" / "data_batch_1").stat().st_size == 1 << 20


def test_cifar_batch_that_is_a_fifo_is_refused(tmp_path):
    from test_data_bad_files import write_cifar10

    folder = write_cifar10(tmp_path)
    (folder / "data_batch_2").unlink()
    os.mkfifo(folder / "data_batch_2")
    with deadline(), pytest.raises(DatasetError, match="FIFO") as err:
        load_dataset("cifar10", root=tmp_path)
    assert "data_batch_2" in str(err.value)


# ----------------------------------------------------------------------------- wrong results


def _images(folder: Path, classes: tuple[str, ...], per_class: int = 3) -> None:
    from test_data_bad_files import png_bytes

    for c, cls in enumerate(classes):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / cls / f"{i}.png").write_bytes(png_bytes(seed=10 * c + i))


def test_imagefolder_with_only_train_is_not_one_class_named_train(tmp_path):
    _images(tmp_path / "d" / "train", ("cat", "dog"))
    with pytest.raises(DatasetError, match=r"has train/ with class folders but no val/"):
        load_dataset(f"imagefolder:{tmp_path / 'd'}", input_size=(3, 8, 8))
    _images(tmp_path / "v" / "val", ("cat", "dog"))
    with pytest.raises(DatasetError, match=r"has val/ with class folders but no train/"):
        load_dataset(f"imagefolder:{tmp_path / 'v'}", input_size=(3, 8, 8))
    bundle = load_dataset(f"imagefolder:{tmp_path / 'd' / 'train'}", input_size=(3, 8, 8))  # as the message says
    assert bundle.class_names == ("cat", "dog")


def test_imagefolder_with_one_class_is_an_error(tmp_path):
    _images(tmp_path, ("cat",))
    with pytest.raises(DatasetError, match="only one class"):
        load_dataset(f"imagefolder:{tmp_path}", input_size=(3, 8, 8))


def test_imagefolder_empty_class_folder_is_named(tmp_path):
    _images(tmp_path, ("cat", "dog"))
    (tmp_path / "emu").mkdir()
    with pytest.raises(DatasetError, match="no images") as err:
        load_dataset(f"imagefolder:{tmp_path}", input_size=(3, 8, 8))
    assert str(tmp_path / "emu") in str(err.value)


# ----------------------------------------------------------------------------- one line, not a traceback


@pytest.mark.parametrize("options", [["n=x"], ["shape=3"], ["shape=3,100000,100000"], ["n=-1"], ["n_test=x"]])
def test_malformed_synthetic_options(options, capsys):
    argv = ["train", "lenet5", "--data", "synthetic", "--no-progress"]
    for o in options:
        argv += ["--data-set", o]
    rc, _, err = run_cli(argv, capsys)
    one_line(rc, err, "synthetic")


@pytest.mark.parametrize("field, value", [("overrides", [1, 2]), ("model_config", "big"), ("data_options", 3),
                                          ("strict", "yes"), ("data", 5)])
def test_config_json_with_a_field_of_the_wrong_type(tmp_path, capsys, field, value):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"spec": {"model": "lenet5", field: value}}))
    rc, _, err = run_cli(["train", "--config", str(cfg), "--set", "lr=0.1", "--model-set", "x=1"], capsys)
    one_line(rc, err, field)


def test_out_that_cannot_be_a_run_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    rc, _, err = run_cli(["train", "lenet5", *TINY, "--out", str(tmp_path / "file")], capsys)
    one_line(rc, err, "--out", "regular file")
    rc, _, err = run_cli(["train", "lenet5", *TINY, "--out", str(tmp_path / "file" / "run")], capsys)
    one_line(rc, err, "is a file, not a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == locked else real_access(p, mode, **k))
    rc, _, err = run_cli(["train", "lenet5", *TINY, "--out", str(locked / "run")], capsys)
    one_line(rc, err, "not writable")


def test_out_on_a_read_only_file_system(tmp_path, capsys, monkeypatch):
    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly())
    rc, _, err = run_cli(["train", "lenet5", *TINY, "--out", str(tmp_path / "run")], capsys)
    one_line(rc, err, "read-only file system")
    rc, _, err = run_cli(["summary", "lenet5", "--erf", str(tmp_path / "erf.png")], capsys)
    one_line(rc, err, "read-only file system")
    assert not list(tmp_path.iterdir())


def test_out_under_a_folder_that_fails_at_mkdir(tmp_path, capsys, monkeypatch):
    """Whatever slips past the check (a read-only mount seen only at mkdir) is still one line."""
    real_mkdir = Path.mkdir

    def refuse(self, *a, **k):
        if "ro-run" in str(self):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", refuse)
    rc, _, err = run_cli(["train", "lenet5", *TINY, "--out", str(tmp_path / "ro-run")], capsys)
    one_line(rc, err, "ro-run", "Read-only")


def test_erf_and_plot_at_a_directory_or_unwritable_path(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for argv in (["summary", "lenet5", "--erf", str(tmp_path)], ["summary", "lenet5", "--erf", "/"],
                 ["compare", "lenet5", "alexnet", "--plot", str(tmp_path)],
                 ["compare", "lenet5", "--plot", str(tmp_path / "file" / "x.png")]):
        rc, _, err = run_cli(argv, capsys)
        one_line(rc, err)
    assert not list(tmp_path.glob(".*.tmp")) and not Path("/.tmp").exists()


def test_plot_write_failure_leaves_no_tmp_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from cnnlab.viz.analysis_plots import plot_erf

    def full_disk(self, fname, *a, **k):  # a file or a buffer (atomic.save_figure renders into memory first)
        if hasattr(fname, "write"):
            fname.write(b"half a png")
        else:
            Path(fname).write_bytes(b"half a png")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))

    monkeypatch.setattr(Figure, "savefig", full_disk)
    with pytest.raises(ConfigError, match="No space left"):
        plot_erf(np.ones((9, 9)), tmp_path / "erf.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _full_disk_after(monkeypatch, calls: int) -> None:
    """os.fsync raises ENOSPC from its ``calls``-th call on (a save writes, then fsyncs)."""
    real = os.fsync
    count = [0]

    def fsync(fd):
        count[0] += 1
        if count[0] >= calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("calls", [1, 2, 3, 4])
def test_enospc_while_saving_a_checkpoint(tmp_path, monkeypatch, calls):
    _save_two(tmp_path)
    before = ck.read_manifest(tmp_path)
    _full_disk_after(monkeypatch, calls)
    with pytest.raises(CheckpointError, match="No space left on device") as err:
        ck.save_checkpoint(tmp_path, "last", model=cnnlab.create_model("lenet5"), train_state={"step": 3, "epoch": 0})
    assert "\n" not in str(err.value) and "'last'" in str(err.value)
    monkeypatch.undo()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
    point = ck.choose_resumable(tmp_path)  # the last good checkpoint is still verifiable
    assert point is not None and point.step == 2 and point.message is None
    assert ck.read_manifest(tmp_path)["last"] == before["last"]  # (step 2 of the protocol may drop last.prev)


def test_enospc_during_training_is_one_line(tmp_path, monkeypatch, capsys):
    real_save = ck.save_checkpoint
    saves = [0]

    def save(*a, **k):
        saves[0] += 1
        if saves[0] == 2:
            _full_disk_after(monkeypatch, 1)
        return real_save(*a, **k)

    monkeypatch.setattr(ck, "save_checkpoint", save)
    rc, _, err = run_cli(["train", "lenet5", *TINY, "--checkpoint-every", "1", "--out", str(tmp_path / "r")], capsys)
    monkeypatch.undo()
    one_line(rc, err, "No space left on device")
    ckpt = tmp_path / "r" / "checkpoints"
    assert not [p.name for p in ckpt.iterdir() if p.name.startswith(TMP_PREFIX)]
    assert ck.choose_resumable(ckpt).step == 1


# ----------------------------------------------------------------------------- checkpoint content


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "lenet5", *TINY, "--max-steps", "3", "--checkpoint-every", "1", "--out", str(run)]) == 0
    return run


@pytest.fixture
def unfinished_run(finished_run, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "results.json").unlink()
    return run


def _tamper_state(run: Path, change) -> None:
    ckpt = run / "checkpoints"
    for tag in ("last", "last.prev"):
        path = ckpt / f"{tag}.state.pt"
        state = torch.load(path, weights_only=True)
        change(state)
        buf = io.BytesIO()
        torch.save(state, buf)
        path.write_bytes(buf.getvalue())

    def rehash(cps):
        for tag in ("last", "last.prev"):
            data = (ckpt / f"{tag}.state.pt").read_bytes()
            cps[tag]["files"]["state"].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())

    _rewrite_manifest(ckpt, rehash)


def _set(key, value):
    return lambda s: s.__setitem__(key, value)


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda s: s.pop("optimizer"), "'optimizer'"),
        (lambda s: s.pop("rng"), "'rng'"),
        (_set("step", "three"), "'step'"),
        (_set("history", [1, 2]), "history"),
        (_set("accum", torch.zeros(7)), "accum"),
        (lambda s: s["loader"].__setitem__("position", "x"), "position"),
        (lambda s: next(iter(s["optimizer"]["state"].values())).__setitem__("momentum_buffer", torch.zeros(3)), "momentum_buffer"),
        (lambda s: s["optimizer"]["param_groups"][0].__setitem__("momentum", "fast"), "momentum"),
        (lambda s: s["optimizer"]["param_groups"][0]["params"].pop(), "parameters"),
        (lambda s: s["rng"].__setitem__("python", {"version": 3, "state": [1.5e300], "gauss_next": None}), "RNG"),
    ],
)
def test_malformed_state_with_a_matching_sha256_is_one_line(unfinished_run, capsys, change, needle):
    _tamper_state(unfinished_run, change)
    rc, _, err = run_cli(["train", "--resume", str(unfinished_run), "--no-progress"], capsys)
    one_line(rc, err, needle)


def test_weights_of_the_wrong_shape_with_a_matching_sha256(unfinished_run, capsys):
    ckpt = unfinished_run / "checkpoints"
    other = cnnlab.create_model("lenet5", num_classes=7)
    for tag in ("last", "last.prev"):
        save_weights(other, ckpt / f"{tag}.safetensors")

    def rehash(cps):
        for tag in ("last", "last.prev"):
            data = (ckpt / f"{tag}.safetensors").read_bytes()
            cps[tag]["files"]["weights"].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())

    _rewrite_manifest(ckpt, rehash)
    rc, _, err = run_cli(["train", "--resume", str(unfinished_run), "--no-progress"], capsys)
    one_line(rc, err, "shape mismatch", "last.safetensors")


def test_garbage_row_in_steps_csv_on_resume(unfinished_run, capsys):
    with open(unfinished_run / "steps.csv", "a") as f:
        f.write("garbage,,\nx,y,z,w,v,u,t,s\n")
    rc, _, err = run_cli(["train", "--resume", str(unfinished_run), "--no-progress"], capsys)
    assert rc == 0, err
    assert "garbage" not in (unfinished_run / "steps.csv").read_text()


# ----------------------------------------------------------------------------- messages


def test_refused_pickle_names_the_global_without_torchs_advice(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pth"
    torch.save({"w": Payload()}, path)
    with pytest.raises(WeightsError, match="refused to load") as err:
        cnnlab.create_model("lenet5", weights=str(path))
    message = str(err.value)
    assert "posix.system" in message or "nt.system" in message
    assert "Re-run" not in message and "weights_only=False" not in message and "\n" not in message


def test_eval_offers_no_strict_and_has_it(tmp_path, capsys):
    save_weights(cnnlab.create_model("lenet5", num_classes=7), tmp_path / "w.safetensors")
    base = ["eval", str(tmp_path / "w.safetensors"), "--model", "lenet5", "--data", "synthetic", "--data-set", "n=16",
            "--data-set", "shape=1,32,32"]
    rc, _, err = run_cli(base, capsys)
    one_line(rc, err, "--no-strict")
    rc, out, err = run_cli([*base, "--no-strict"], capsys)
    assert rc == 0, err
    assert "shape mismatch" in out and "top-1" in out


def test_eval_of_nan_weights_says_nan_not_an_accuracy(tmp_path, capsys):
    model = cnnlab.create_model("lenet5")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    save_weights(model, tmp_path / "w.safetensors")
    rc, out, err = run_cli(["eval", str(tmp_path / "w.safetensors"), "--model", "lenet5", "--data", "synthetic",
                            "--data-set", "n=16", "--data-set", "shape=1,32,32"], capsys)
    one_line(rc, err, "NaN")
    assert "top-1" not in out
    with pytest.raises(WeightsError, match="NaN"):
        load_weights(cnnlab.create_model("lenet5"), tmp_path / "w.safetensors", strict=False)


def test_every_cnnlab_error_is_a_subclass_the_cli_catches():
    for cls in (CheckpointError, ConfigError, DatasetError, WeightsError, ck.UnsafeCheckpointError):
        assert issubclass(cls, CnnlabError)


def test_runs_and_report_do_not_hang_on_a_fifo_in_a_run_folder(unfinished_run, tmp_path, capsys):
    """`cnnlab runs` and `cnnlab report` read run folders written by anyone: a FIFO there is skipped."""
    for name in ("steps.csv", "metrics.csv", "curves.png"):
        path = unfinished_run / name
        if path.exists():
            path.unlink()
        os.mkfifo(path)
    broken = tmp_path / "2026-01-01-lenet5-synthetic"
    broken.mkdir()
    os.mkfifo(broken / "config.json")
    with deadline():
        rc, out, err = run_cli(["runs", str(tmp_path)], capsys)
    assert rc in (0, 2) and "Traceback" not in err, err
    with deadline():
        rc, out, err = run_cli(["report", str(unfinished_run), "--out", str(tmp_path / "r.html")], capsys)
    assert rc == 0, err
    assert (tmp_path / "r.html").is_file()


# ----------------------------------------------------------------------------- Reliability III (issue 28)
# Hangs, unbounded reads, wrong answers reported as right, and links that run script, found by
# crafting the files of a run folder (config.json, results.json, the inference/ cache, checkpoints).


def _predict_run(root: Path, name: str = "r1", **data) -> Path:
    """A finished run folder as predict reads it: lenet5 on 10 named classes; ``data`` changes config.json."""
    run = root / name
    run.mkdir(parents=True)
    torch.manual_seed(0)
    save_weights(cnnlab.create_model("lenet5", num_classes=10), run / "model.safetensors")
    config = {"cnnlab_run": 1, "spec": {"model": "lenet5", "data": "synthetic", "model_config": {}},
              "data": {"name": "synthetic", "num_classes": 10, "input_size": [1, 32, 32], "mean": [0.1307],
                       "std": [0.3081], "class_names": [f"digit-{i}" for i in range(10)], "notes": [], **data}}
    (run / "config.json").write_text(json.dumps(config))
    return run


def _image(path: Path) -> Path:
    from PIL import Image

    arr = np.zeros((28, 28), np.uint8)
    arr[6:22, 12:16] = 255
    Image.fromarray(arr).save(path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["absolute /dev/zero", "link to /dev/zero"])
def test_save_over_a_last_entry_naming_dev_zero_does_not_copy_it_without_end(tmp_path, kind):
    """Step 3 of the save (T -> T.prev) copied whatever the `last` entry named, where a hard link failed:
    /dev/zero was copied for ever (10 GB in 45 s). Only regular files of the listed size are kept."""
    _save_two(tmp_path)
    if kind == "absolute /dev/zero":
        _rewrite_manifest(tmp_path, lambda cps: cps["last"]["files"]["weights"].update(name="/dev/zero"))
    else:
        (tmp_path / "last.safetensors").unlink()
        (tmp_path / "last.safetensors").symlink_to("/dev/zero")
    with deadline(5):
        ck.save_checkpoint(tmp_path, "last", model=cnnlab.create_model("lenet5"), train_state={"step": 3, "epoch": 0})
    assert ck.read_manifest(tmp_path)["last"]["step"] == 3
    assert "last.prev" not in ck.read_manifest(tmp_path)  # nothing trustworthy to keep
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
    ck.load_checkpoint(tmp_path, "last")


def test_save_never_deletes_a_file_a_forged_prev_entry_names(tmp_path):
    """A `best.prev` entry without a `best` was dropped at the next save of `best`, and its files
    deleted: a forged manifest could name any file of the user's."""
    _save_two(tmp_path)
    precious = tmp_path.parent / f"{tmp_path.name}-thesis.tex"
    precious.write_text("years of work")

    def forge(cps):
        entry = json.loads(json.dumps(cps["last.prev"]))
        entry["tag"] = "best.prev"
        entry["files"]["state"]["name"] = str(precious)
        cps["best.prev"] = entry

    _rewrite_manifest(tmp_path, forge)
    ck.save_checkpoint(tmp_path, "best", model=cnnlab.create_model("lenet5"), train_state={"step": 3, "epoch": 0})
    assert precious.read_text() == "years of work"


def test_predict_does_not_hang_on_a_fifo_in_the_onnx_cache(tmp_path, capsys):
    run = _predict_run(tmp_path)
    cache = run / "inference"
    cache.mkdir()
    os.mkfifo(cache / f"{_sha(run / 'model.safetensors')[:16]}.onnx")
    with deadline(120):
        rc, out, err = run_cli(["predict", str(_image(tmp_path / "one.png")), "--run", str(run),
                                "--backend", "onnxruntime", "--format", "json"], capsys)
    assert rc == 0, err
    assert len(json.loads(out)["predictions"]) == 1


@pytest.fixture(scope="module")
def crafted_onnx(tmp_path_factory) -> tuple[Path, bytes]:
    """An ONNX export of lenet5 with other weights (its class 7 bias huge) whose metadata claims the
    genuine weights' sha256, as a crafted cache file would."""
    from cnnlab.export import export_onnx, load_model

    folder = tmp_path_factory.mktemp("genuine")
    genuine = _predict_run(folder)
    im = load_model(run=genuine)
    with torch.no_grad():
        last = [m for m in im.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias[7] = 1000.0
    path = export_onnx(im.model, folder / "crafted.onnx", preprocessing=im.preprocessing,
                       extra_metadata={"weights_sha256": _sha(genuine / "model.safetensors")})
    return path, path.read_bytes()


@pytest.mark.parametrize("with_manifest", [False, True])
def test_a_crafted_onnx_in_the_cache_is_not_trusted_even_with_sha256(tmp_path, capsys, crafted_onnx, with_manifest):
    """A crafted ONNX file with the genuine metadata answered "7" for every image, also under --sha256.
    The cache is bound to its content by a manifest, and to the weights by a probe batch (a manifest
    can be forged along with the file: with_manifest)."""
    run = _predict_run(tmp_path)
    digest = _sha(run / "model.safetensors")
    cache = run / "inference"
    cache.mkdir()
    onnx_file = cache / f"{digest[:16]}.onnx"
    onnx_file.write_bytes(crafted_onnx[1])
    if with_manifest:
        (cache / f"{digest[:16]}.onnx.json").write_text(json.dumps(
            {"format": "cnnlab-onnx-cache/1", "weights_sha256": digest, "onnx_size": len(crafted_onnx[1]),
             "onnx_sha256": hashlib.sha256(crafted_onnx[1]).hexdigest()}))
    images = []
    for i, cols in enumerate([(2, 6), (12, 16), (20, 26)]):
        from PIL import Image

        arr = np.zeros((28, 28), np.uint8)
        arr[4:24, cols[0]:cols[1]] = 255
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
        images.append(str(tmp_path / f"{i}.png"))
    answers = {}
    for backend in ("eager", "onnxruntime"):
        rc, out, err = run_cli(["predict", *images, "--run", str(run), "--backend", backend, "--sha256", digest,
                                "--format", "json"], capsys)
        assert rc == 0, err
        answers[backend] = [p["top"][0]["index"] for p in json.loads(out)["predictions"]]
    assert answers["onnxruntime"] == answers["eager"] != [7, 7, 7]
    assert onnx_file.read_bytes() == crafted_onnx[1]  # left alone, not overwritten


def test_onnx_cache_written_by_predict_is_used_again(tmp_path, capsys):
    run = _predict_run(tmp_path)
    img = str(_image(tmp_path / "one.png"))
    argv = ["predict", img, "--run", str(run), "--backend", "onnxruntime"]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0, err
    manifest = json.loads(next((run / "inference").glob("*.onnx.json")).read_text())
    onnx_file = next((run / "inference").glob("*.onnx"))
    assert manifest["onnx_sha256"] == _sha(onnx_file) and manifest["weights_sha256"] == _sha(run / "model.safetensors")
    rc, out2, err = run_cli(argv, capsys)
    assert rc == 0 and out2 == out and "not this model's export" not in err, err


@pytest.mark.parametrize("data, needle", [({"mean": [float("nan")]}, "mean"), ({"std": [float("inf")]}, "std"),
                                          ({"input_size": [1, 3000, 3000]}, "2048"),
                                          ({"input_size": [1, 60000, 60000]}, "2048"),
                                          ({"num_classes": 10 ** 12}, "num_classes")],
                         ids=["nan-mean", "inf-std", "side-3000", "side-60000", "classes-1e12"])
def test_predict_refuses_unusable_numbers_in_config_json(tmp_path, capsys, data, needle):
    """A NaN mean predicted "nan% 8" with exit 0; a 60000x60000 input_size was obeyed."""
    run = _predict_run(tmp_path, **data)
    with deadline(60):
        rc, _, err = run_cli(["predict", str(_image(tmp_path / "one.png")), "--run", str(run), "--backend", "eager"],
                             capsys)
    one_line(rc, err, str(run / "config.json"), needle)


def test_class_names_reach_the_terminal_escaped(tmp_path, capsys):
    """Class names with terminal escapes were printed raw (and repainted the screen)."""
    run = _predict_run(tmp_path, class_names=[f"\x1b[2J\x1b[Hdigit-{i}" for i in range(10)])
    rc, out, err = run_cli(["predict", str(_image(tmp_path / "one.png")), "--run", str(run), "--backend", "eager",
                            "--top-k", "10"], capsys)
    assert rc == 0, err
    assert "\x1b" not in out + err and "\\x1b[2J" in out


def test_config_json_of_4_gib_is_refused_before_reading(tmp_path, capsys):
    """config.json was read whole: a 4 GiB sparse file ended in MemoryError."""
    run = _predict_run(tmp_path)
    with open(run / "config.json", "r+b") as f:
        f.truncate(4 << 30)
    with deadline(30):
        rc, _, err = run_cli(["predict", str(_image(tmp_path / "one.png")), "--run", str(run)], capsys)
    one_line(rc, err, str(run / "config.json"), "bytes")


def _deep(n: int = 100_000) -> str:
    return "[" * n + "]" * n


def test_deeply_nested_json_is_one_line_and_one_bad_run_does_not_break_the_listing(tmp_path, capsys):
    """A deeply nested config.json or results.json gave RecursionError in predict, report and runs, and one
    bad run broke the whole `cnnlab runs` listing."""
    good = _predict_run(tmp_path, "good")
    (good / "results.json").write_text(json.dumps({"model": "lenet5", "data": "synthetic", "test_acc": 0.5}))
    bad_config = _predict_run(tmp_path, "bad-config")
    (bad_config / "config.json").write_text('{"cnnlab_run": 1, "spec": ' + _deep() + "}")
    bad_results = _predict_run(tmp_path, "bad-results")
    (bad_results / "results.json").write_text('{"model": ' + _deep() + "}")
    rc, out, err = run_cli(["runs", str(tmp_path), "--format", "json"], capsys)
    assert rc == 0, err
    rows = {Path(r["path"]).name: r for r in json.loads(out)}
    assert rows["good"]["state"] == "finished" and rows["good"]["test_acc"] == 0.5
    assert rows["bad-config"]["state"] == rows["bad-results"]["state"] == "unreadable"
    assert "nested too deeply" in rows["bad-config"]["problem"]
    rc, out, err = run_cli(["runs", str(tmp_path)], capsys)
    assert rc == 0 and "good" in out and "Traceback" not in err and "nested too deeply" in err, err
    rc, _, err = run_cli(["predict", str(_image(tmp_path / "one.png")), "--run", str(bad_config)], capsys)
    one_line(rc, err, str(bad_config / "config.json"), "nested too deeply")
    rc, _, err = run_cli(["report", str(tmp_path), "--out", str(tmp_path / "index.html")], capsys)
    assert rc == 0 and "Traceback" not in err, err


@pytest.mark.parametrize("name", ["javascript:alert(document.domain)", 'a"b<c#d?e f%20', "data:text/html,x"])
def test_report_index_links_are_relative_quoted_paths_never_a_scheme(tmp_path, name):
    """A run folder named `javascript:alert(document.domain)` became <a href="javascript:...">."""
    import urllib.parse
    from html.parser import HTMLParser

    from cnnlab.viz.html_report import write_report

    root = tmp_path / "runs"
    _predict_run(root, name)
    _predict_run(root, "plain")
    index = write_report(root)[0]

    class Links(HTMLParser):
        hrefs: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.hrefs += [v for k, v in attrs if k == "href"]

    parser = Links()
    parser.hrefs = []
    parser.feed(index.read_text())
    assert len(parser.hrefs) == 2 and all(h.startswith("./") for h in parser.hrefs), parser.hrefs
    targets = {(index.parent / urllib.parse.unquote(h)).resolve() for h in parser.hrefs}
    assert targets == {(root / name / "report.html").resolve(), (root / "plain" / "report.html").resolve()}
