"""``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100`` and ``svhn``: torchvision's file layout and
download utilities, parsed by cnnlab's own safe readers (:mod:`cnnlab.data.readers`).

torchvision's dataset classes are not used to read the files: its CIFAR class calls ``pickle.load``.
Only its URLs, checksums and ``download_url`` are. The files are looked for where torchvision puts
them under ``root`` (default ``data/``):

    mnist          root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    fashion-mnist  root/FashionMNIST/raw/  (same names)
    cifar10        root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    cifar100       root/cifar-100-python/{train,test,meta}
    svhn           root/{train,test}_32x32.mat
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.embedded import RawData
from cnnlab.data.readers import read_cifar_batch, read_cifar_meta, read_idx, read_svhn_mat
from cnnlab.errors import ConfigError, DatasetError

__all__ = ["load_mnist", "load_fashion_mnist", "load_cifar10", "load_cifar100", "load_svhn"]


def _missing(name: str, missing: list[Path], how: str) -> DatasetError:
    listed = ", ".join(str(p) for p in missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return DatasetError(f"{name}: missing {listed}; fetch them with --download (download=True) or {how}")


def _download(name: str, url: str, folder: Path, filename: str, md5: str | None) -> Path:
    from torchvision.datasets.utils import download_url

    folder.mkdir(parents=True, exist_ok=True)
    try:
        download_url(url, str(folder), filename=filename, md5=md5)
    except Exception as err:  # noqa: BLE001 - URLError, HTTPError, RuntimeError (md5), OSError ...
        raise DatasetError(f"{name}: could not download {url} into {folder} ({type(err).__name__}: {err})") from None
    path = folder / filename
    if not path.is_file():
        raise DatasetError(f"{name}: download of {url} did not produce {path} (checksum mismatch?)")
    return path


def _extract_tar(name: str, archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # filter="data" refuses absolute paths, links out of the folder and device files.
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetError(f"{archive}: cannot extract {name} archive ({err})") from None


# ----------------------------------------------------------------------------- MNIST / Fashion-MNIST

_IDX_FILES = {  # split -> (images, labels) base names
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(folder: Path, base: str) -> Path | None:
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_set(name: str, tv_class: type, root: Path, download: bool) -> RawData:
    folder = root / tv_class.__name__ / "raw"
    bases = [b for pair in _IDX_FILES.values() for b in pair]
    if download and any(_find_idx(folder, b) is None for b in bases):
        md5s = dict(tv_class.resources)
        for base in bases:
            if _find_idx(folder, base) is not None:
                continue
            errors = []
            for mirror in tv_class.mirrors:
                try:
                    _download(name, f"{mirror}{base}.gz", folder, f"{base}.gz", md5s.get(f"{base}.gz"))
                    break
                except DatasetError as err:
                    errors.append(str(err))
            else:
                raise DatasetError("; ".join(errors))
    missing = [folder / b for b in bases if _find_idx(folder, b) is None]
    if missing:
        url = tv_class.mirrors[0]
        raise _missing(name, missing, f"put the four IDX files (gzipped or not) from {url} in {folder}")
    splits = []
    for split, (img_base, lbl_base) in _IDX_FILES.items():
        img_path, lbl_path = _find_idx(folder, img_base), _find_idx(folder, lbl_base)
        images = read_idx(img_path, ndim=3)
        labels = read_idx(lbl_path, ndim=1)
        if images.shape[0] != labels.shape[0]:
            raise DatasetError(
                f"{img_path}: {images.shape[0]:,} images but {lbl_path} has {labels.shape[0]:,} labels"
            )
        if images.shape[1:] != (28, 28):
            raise DatasetError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
        if labels.size and labels.max() >= 10:
            raise DatasetError(f"{lbl_path}: label {labels.max()} out of range 0..9")
        splits.append((torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    (tx, ty), (vx, vy) = splits
    notes = (f"{name}: {len(ty):,} train / {len(vy):,} test images from {folder}",)
    return RawData(tx, ty, vx, vy, tuple(tv_class.classes), notes)


def load_mnist(*, root: Path, download: bool) -> RawData:
    """MNIST: 60,000 train / 10,000 test 28x28 digits."""
    from torchvision.datasets import MNIST

    return _load_idx_set("mnist", MNIST, root, download)


def load_fashion_mnist(*, root: Path, download: bool) -> RawData:
    """Fashion-MNIST: 60,000 train / 10,000 test 28x28 clothing images, 10 classes."""
    from torchvision.datasets import FashionMNIST

    return _load_idx_set("fashion-mnist", FashionMNIST, root, download)


# ----------------------------------------------------------------------------- CIFAR


def _load_cifar(name: str, tv_class: type, root: Path, download: bool, label_key: str, meta_key: str,
                num_classes: int) -> RawData:  # fmt: skip
    folder = root / tv_class.base_folder
    files = [f for f, _ in tv_class.train_list + tv_class.test_list] + [tv_class.meta["filename"]]
    if download and any(not (folder / f).is_file() for f in files):
        archive = _download(name, tv_class.url, root, tv_class.filename, tv_class.tgz_md5)
        _extract_tar(name, archive, root)
    missing = [folder / f for f in files if not (folder / f).is_file()]
    if missing:
        raise _missing(name, missing, f"download {tv_class.url} and extract it in {root}")
    splits = []
    for file_list in (tv_class.train_list, tv_class.test_list):
        parts = [read_cifar_batch(folder / f, label_key=label_key, num_classes=num_classes) for f, _ in file_list]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        splits.append((torch.from_numpy(x), torch.from_numpy(y)))
    class_names = read_cifar_meta(folder / tv_class.meta["filename"], key=meta_key)
    if len(class_names) != num_classes:
        raise DatasetError(f"{folder / tv_class.meta['filename']}: {len(class_names)} class names, expected {num_classes}")
    (tx, ty), (vx, vy) = splits
    notes = (f"{name}: {len(ty):,} train / {len(vy):,} test images from {folder}",)
    return RawData(tx, ty, vx, vy, class_names, notes)


def load_cifar10(*, root: Path, download: bool) -> RawData:
    """CIFAR-10: 50,000 train / 10,000 test 32x32 colour images, 10 classes."""
    from torchvision.datasets import CIFAR10

    return _load_cifar("cifar10", CIFAR10, root, download, "labels", "label_names", 10)


def load_cifar100(*, root: Path, download: bool, labels: str = "fine") -> RawData:
    """CIFAR-100: 50,000 train / 10,000 test 32x32 colour images; ``labels`` "fine" (100) or "coarse" (20)."""
    from torchvision.datasets import CIFAR100

    if labels not in ("fine", "coarse"):
        raise ConfigError(f"cifar100: labels must be 'fine' or 'coarse', got {labels!r}")
    n = 100 if labels == "fine" else 20
    return _load_cifar("cifar100", CIFAR100, root, download, f"{labels}_labels", f"{labels}_label_names", n)


# ----------------------------------------------------------------------------- SVHN


def load_svhn(*, root: Path, download: bool) -> RawData:
    """SVHN cropped digits: 73,257 train / 26,032 test 32x32 colour images (the "extra" set is not used)."""
    from torchvision.datasets import SVHN

    entries = {split: SVHN.split_list[split] for split in ("train", "test")}
    if download:
        for url, filename, md5 in entries.values():
            if not (root / filename).is_file():
                _download("svhn", url, root, filename, md5)
    missing = [root / filename for _, filename, _ in entries.values() if not (root / filename).is_file()]
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
