"""Segmentation data: mnist-seg's canvases and labels, VOC's layout and bad files, joint augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.data import embedded
from cnnlab.data.bundle import stratified_split
from cnnlab.data.datasets import load_dataset
from cnnlab.data.segmentation import (IGNORE_INDEX, MNIST_SEG_SEEDS, VAL_FRACTION, _canvases, joint_augment,
                                      load_mnist_seg, load_voc2012)
from cnnlab.errors import ConfigError, DatasetError

SMALL = dict(n_train=40, n_val=10, n_test=10)


def test_canvases_are_deterministic_and_labelled_by_intensity():
    raw = embedded.load_mnist_5k()
    digits, labels = raw.train_x[::80].numpy(), raw.train_y[::80].numpy()  # the file is sorted by class
    x1, y1 = _canvases(digits, labels, n=20, size=64, seed=7)
    x2, y2 = _canvases(digits, labels, n=20, size=64, seed=7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (20, 1, 64, 64) and y1.shape == (20, 64, 64) and y1.dtype == torch.int64
    x = x1[:, 0]
    assert (x[y1 == 0] == 0).all()  # background is empty canvas
    assert (x[(y1 >= 1) & (y1 <= 10)] >= 128).all()  # a digit's body is bright
    assert set(y1.unique().tolist()) <= set(range(11)) | {IGNORE_INDEX}
    per_canvas = [len(set(c.unique().tolist()) - {0, IGNORE_INDEX}) for c in y1]
    assert max(per_canvas) >= 2  # several digits per image


def test_labels_come_from_the_source_digits_given():
    raw = embedded.load_mnist_5k()
    threes = raw.train_x[raw.train_y == 3][:30].numpy()
    _, y = _canvases(threes, np.full(30, 3), n=10, size=64, seed=0)
    assert set(y.unique().tolist()) == {0, 4, IGNORE_INDEX}  # digit 3 is class 1 + 3


def test_splits_come_from_disjoint_source_digits():
    raw = embedded.load_mnist_5k()
    train_idx, val_idx = stratified_split(raw.train_y.numpy(), test_fraction=VAL_FRACTION, seed=MNIST_SEG_SEEDS["split"])
    assert not set(train_idx) & set(val_idx) and len(train_idx) + len(val_idx) == len(raw.train_y)
    data = load_mnist_seg(**SMALL)
    assert data.train[0].shape == (40, 1, 64, 64) and data.val[0].shape == (10, 1, 64, 64)
    assert not torch.equal(data.val[0], data.test[0][:10])


def test_registered_and_adapted_to_the_model():
    b = load_dataset("mnist-seg", input_size=(3, 64, 64), **SMALL)
    assert b.num_classes == 11 and b.class_names[0] == "background"
    assert b.train.x.shape == (40, 3, 64, 64) and b.train.y.shape == (40, 64, 64)
    assert abs(float(b.train.x[:, 0].mean())) < 1e-4  # normalised with the train split's statistics
    assert b.val.y.shape == (10, 64, 64)
    with pytest.raises(ConfigError, match="n_train"):
        load_dataset("mnist-seg", n_train=0)


def test_voc2012_missing_files_name_where_they_go(tmp_path):
    with pytest.raises(DatasetError, match=r"VOCdevkit/VOC2012.*--download"):
        load_dataset("voc2012", root=tmp_path)


def _fake_voc(root, names, *, bad=None):
    from PIL import Image

    folder = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(folder / "JPEGImages" / f"{n}.jpg")
        mask = Image.fromarray(np.where(rng.random((30, 40)) < 0.1, 255, rng.integers(0, 21, (30, 40))).astype(np.uint8),
                               mode="L").convert("P")
        mask.save(folder / "SegmentationClass" / f"{n}.png")
    if bad:
        (folder / "SegmentationClass" / f"{bad}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    lists = folder / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("\n".join(names[:-2]) + "\n")
    (lists / "val.txt").write_text("\n".join(names[-2:]) + "\n")


def test_voc2012_reads_torchvisions_layout(tmp_path):
    names = [f"2007_00000{i}" for i in range(7)]
    _fake_voc(tmp_path, names)
    data = load_voc2012(root=tmp_path, size=(32, 32))
    assert data.train[0].shape == (4, 3, 32, 32) and data.val[0].shape[0] == 1 and data.test[0].shape[0] == 2
    labels = set(torch.cat([data.train[1].flatten(), data.test[1].flatten()]).unique().tolist())
    assert labels <= set(range(21)) | {255} and 255 in labels
    assert len(data.class_names) == 21


def test_voc2012_bad_mask_is_named_or_skipped(tmp_path):
    names = [f"2007_00000{i}" for i in range(7)]
    _fake_voc(tmp_path, names, bad=names[0])
    with pytest.raises(DatasetError, match=f"{names[0]}.png"):
        load_voc2012(root=tmp_path, size=(32, 32))
    data = load_voc2012(root=tmp_path, size=(32, 32), bad_files="skip")
    assert any(names[0] in note for note in data.notes)


def test_joint_augment_identity_flip_and_fill():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 16, 12)
    y = torch.randint(0, 5, (6, 16, 12))
    xa, ya = joint_augment(x, y, generator=g)
    torch.testing.assert_close(xa, x, atol=1e-5, rtol=0)
    assert torch.equal(ya, y)
    xf, yf = joint_augment(x, y, generator=g, flip=True)
    flipped = [torch.allclose(xf[i], x[i].flip(-1), atol=1e-5) for i in range(6)]
    kept = [torch.allclose(xf[i], x[i], atol=1e-5) for i in range(6)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    for i in range(6):  # the mask takes the same mirror as its image
        assert torch.equal(yf[i], y[i].flip(-1) if flipped[i] else y[i])
    xs, ys = joint_augment(x, y, generator=g, scale=(0.5, 0.6), fill=-3.0)
    assert (ys[:, 0, :] == IGNORE_INDEX).all() and torch.allclose(xs[:, :, 0, :], torch.tensor(-3.0))
    assert set(ys.unique().tolist()) <= set(range(5)) | {IGNORE_INDEX}
