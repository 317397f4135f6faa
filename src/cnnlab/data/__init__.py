"""Data sets in memory, batching by slicing, and whole-batch augmentation.

    bundle = load_dataset("mnist-5k", input_size=(1, 32, 32))   # DataBundle, normalised, adapted
    loader = BatchLoader(bundle.train, 128, shuffle=True, seed=0)
    aug = augment.Augment(recipe, data=bundle)
    for x, y in loader: x = aug(x, generator) ...

Module map: ``datasets`` (names -> bundles), ``embedded`` (mnist-5k, digits, synthetic),
``torchvision_sets`` (mnist, fashion-mnist, cifar10/100, svhn), ``imagefolder``, ``readers`` (safe
file parsers), ``adapt`` (input size and normalisation), ``loader`` (BatchLoader), ``augment``.
"""

from cnnlab.data import augment
from cnnlab.data.bundle import DataBundle, TensorPair, stratified_folds, stratified_split, subset, with_val_split
from cnnlab.data.datasets import DEFAULT_DATASET, DatasetInfo, dataset_info, list_datasets, load_dataset
from cnnlab.data.loader import BatchLoader, epoch_permutation

__all__ = [
    "augment",
    "DataBundle",
    "TensorPair",
    "subset",
    "stratified_split",
    "stratified_folds",
    "with_val_split",
    "list_datasets",
    "load_dataset",
    "dataset_info",
    "DatasetInfo",
    "DEFAULT_DATASET",
    "BatchLoader",
    "epoch_permutation",
]
