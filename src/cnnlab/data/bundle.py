"""The in-memory containers every data set ends up in, and the splitting helpers.

A data set small enough for this lab lives in memory as float32 tensors (a ``TensorPair`` per split),
already adapted to the model's input size and normalised with the train split's statistics. Batching
is slicing (see :mod:`cnnlab.data.loader`), never a per-sample ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cnnlab.errors import ConfigError

__all__ = ["TensorPair", "DataBundle", "subset", "stratified_split", "stratified_folds", "with_val_split"]


@dataclass(frozen=True)
class TensorPair:
    """One split held in memory."""

    x: Tensor  # float32 (N, C, H, W), already normalised with the bundle's mean/std
    y: Tensor  # int64 (N,) class labels, (N, L) word indices (captions), (N, H, W) per-pixel labels
    # (segmentation masks) or (N, M, 5) box rows (detection)

    def __post_init__(self) -> None:
        if self.y.ndim not in (1, 2, 3) or self.x.shape[0] != self.y.shape[0]:
            raise ConfigError(
                f"TensorPair: x has {tuple(self.x.shape)} and y {tuple(self.y.shape)}; "
                "expected x (N, ...) and y (N,), (N, L) or (N, H, W) with the same N"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class DataBundle:
    """A data set ready to train on: train, val (model selection) and test (reported once), their
    shape, and how they were prepared. ``val`` None (a bundle built by hand) cannot be trained with
    ``fit``: :func:`with_val_split` carves one out of train."""

    name: str
    train: TensorPair
    test: TensorPair
    num_classes: int
    input_size: tuple[int, int, int]  # (C, H, W) of x
    mean: tuple[float, ...]  # per channel, of the train split before normalisation (pixels in [0, 1])
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    notes: tuple[str, ...]  # how the data was obtained and adapted; goes into the run's config.json
    val: TensorPair | None = None
    val_fraction: float | None = None  # the fraction of train held out as val (None: the data's own val split)
    val_seed: int | None = None  # the seed of that stratified split

    def split_sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val) if self.val is not None else 0, "test": len(self.test)}

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ConfigError(f"DataBundle: num_classes must be >= 1, got {self.num_classes}")
        if len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"DataBundle: {len(self.class_names)} class_names for num_classes={self.num_classes}"
            )


def stratified_split(labels: np.ndarray, *, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices class by class: ``round(n_c * test_fraction)`` of each class ``c`` go to test.

    The choice within a class is a permutation drawn from ``numpy.random.default_rng(seed)``, classes
    taken in increasing label order; both index arrays come back sorted (original order kept).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:  # every class keeps at least one sample on each side
            k = min(max(k, 1), len(idx) - 1)
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_folds(labels: np.ndarray, *, folds: int, seed: int) -> list[np.ndarray]:
    """``folds`` disjoint index arrays covering ``labels``, for k-fold cross-validation.

    Each class's indices are permuted by ``numpy.random.default_rng(seed)`` (classes in increasing
    label order) and dealt to the folds in turn, continuing where the previous class stopped, so every
    fold holds ``n_c // k`` or one more of each class and the fold sizes differ by at most one.
    The arrays come back sorted (original order kept).
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    if len(labels) < folds:
        raise ConfigError(f"{len(labels)} training samples cannot make {folds} folds")
    rng = np.random.default_rng(seed)
    dealt: list[list[np.ndarray]] = [[] for _ in range(folds)]
    offset = 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        turn = (np.arange(len(idx)) + offset) % folds
        for f in range(folds):
            dealt[f].append(idx[turn == f])
        offset += len(idx)
    return [np.sort(np.concatenate(parts)) for parts in dealt]


def subset(
    pair: TensorPair,
    classes: Sequence[int] | None = None,
    per_class: int | None = None,
    seed: int = 0,
    *,
    relabel: bool = True,
) -> TensorPair:
    """Keep the samples of ``classes`` (all classes when None), at most ``per_class`` of each.

    With ``relabel`` (default) the kept labels become ``0..len(classes)-1`` in the order ``classes``
    lists them, so a new head with ``len(classes)`` outputs can be trained on them (transfer
    experiments); ``relabel=False`` keeps the original labels. ``per_class`` picks a random subset of
    each class with ``numpy.random.default_rng(seed)``; a class with fewer samples is an error. The
    kept samples stay in their original order.
    """
    y = pair.y.cpu().numpy()
    if classes is None:
        classes = [int(c) for c in np.unique(y)]
    classes = [int(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ConfigError(f"subset: classes has duplicates: {classes}")
    if per_class is not None and per_class < 1:
        raise ConfigError(f"subset: per_class must be >= 1, got {per_class}")
    rng = np.random.default_rng(seed)
    keep = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        if len(idx) == 0:
            raise ConfigError(f"subset: class {c} has no samples")
        if per_class is not None:
            if len(idx) < per_class:
                raise ConfigError(f"subset: per_class={per_class} but class {c} has only {len(idx)} samples")
            idx = rng.choice(idx, size=per_class, replace=False)
        keep.append(idx)
    order = np.sort(np.concatenate(keep))
    index = torch.from_numpy(order).to(pair.x.device)
    new_y = pair.y[index]
    if relabel:
        lookup = torch.full((int(y.max()) + 1,), -1, dtype=torch.int64)
        lookup[torch.tensor(classes)] = torch.arange(len(classes))
        new_y = lookup.to(new_y.device)[new_y]
    return TensorPair(pair.x[index], new_y)


def with_val_split(data: DataBundle, *, val_fraction: float = 0.1, seed: int = 2015) -> DataBundle:
    """``data`` with ``val_fraction`` of its train split held out as ``val`` (stratified by class with
    ``seed``), for bundles built by hand; the test split and the normalisation are kept as they are."""
    import dataclasses

    y = data.train.y.cpu().numpy()
    labels = y if y.ndim == 1 else np.zeros(len(y), dtype=np.int64)  # masks: a plain random split
    train, val = stratified_split(labels, test_fraction=val_fraction, seed=seed)
    t, v = torch.from_numpy(train), torch.from_numpy(val)
    return dataclasses.replace(data, train=TensorPair(data.train.x[t], data.train.y[t]),
                               val=TensorPair(data.train.x[v], data.train.y[v]),
                               val_fraction=float(val_fraction), val_seed=int(seed))
