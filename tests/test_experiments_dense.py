"""The dense-prediction experiments at tiny scale (plumbing: files, formats, the analyzer's fields),
and their verdict rules on crafted numbers."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.experiments import run_experiment


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("dense")
    return {name: (run_experiment(name, scale="tiny", out_dir=out / name, progress=False), out / name)
            for name in ("fcn-skips", "dilation")}


@pytest.mark.parametrize("name", ["fcn-skips", "dilation"])
def test_tiny_run_writes_results_report_and_plots(tiny, name):
    results, out = tiny[name]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["experiment"] == name and on_disk["reproduced"] == "not measured"  # tiny: plumbing only
    assert (out / "report.md").read_text().count("mean IU") >= 1
    for plot in on_disk["plots"]:
        assert (out / plot["file"]).stat().st_size > 1000
    assert on_disk["seeds"] == [0, 1]  # tiny: 2 seeds
    for run in on_disk["runs"]:
        assert [s["seed"] for s in run["seeds"]] == [0, 1]
        assert run["test_miou"] == [s["test"]["miou"] for s in run["seeds"]]
        assert run["test"]["miou"] == pytest.approx(sum(run["test_miou"]) / 2)  # the mean over seeds
        for s in run["seeds"]:
            assert 0.0 <= s["test"]["miou"] <= 1.0 and 0.0 <= s["val"]["miou"] <= 1.0


def test_fcn_skips_trains_the_three_variants(tiny):
    results, _ = tiny["fcn-skips"]
    assert [r["variant"] for r in results["runs"]] == ["32s", "16s", "8s"]
    assert set(results["examples"]) == {"image", "truth", "32s", "16s", "8s"}
    assert set(results["comparisons"]) == {"16s_vs_32s", "8s_vs_16s", "boundary"}


def test_dilation_reports_the_papers_fields_at_equal_parameters(tiny):
    results, _ = tiny["dilation"]
    assert results["lecture_fields"] == [3, 7, 15]
    assert results["fields"]["dilated"] == [3, 5, 9, 17, 33, 65, 67]
    assert results["fields"]["plain"] == [3, 5, 7, 9, 11, 13, 15]
    dilated, plain = results["runs"]
    assert dilated["params"] == plain["params"] and dilated["receptive_field_px"] > plain["receptive_field_px"]
    assert results["dilated_vs_plain"]["a"] == dilated["test_miou"]


@pytest.mark.parametrize("seeds", [1, 0, 2.0, True])
def test_configs_refuse_fewer_than_two_seeds(seeds):
    from cnnlab.experiments.dense import DilationConfig, SkipsConfig
    from cnnlab.training.spec import TrainSpec

    spec = TrainSpec(recipe="fcn_digits")
    with pytest.raises(ConfigError, match="fcn-skips: seeds"):
        SkipsConfig(data="mnist-seg", train=spec, seeds=seeds)
    with pytest.raises(ConfigError, match="dilation: seeds"):
        DilationConfig(data="mnist-seg", train=spec, seeds=seeds)


def _variant(v, miou, boundary):
    return {"variant": v, "test_miou": miou, "test": {"miou": sum(miou) / len(miou)},
            "boundary_accs": boundary, "boundary_acc": sum(boundary) / len(boundary)}


def test_fcn_skips_verdicts_on_crafted_numbers():
    from cnnlab.experiments.dense import _skips_criteria

    runs = [_variant("32s", [0.20, 0.25, 0.22], [0.60, 0.62, 0.61]),
            _variant("16s", [0.40, 0.46, 0.43], [0.70, 0.69, 0.71]),  # +0.207 +- 0.003: met
            _variant("8s", [0.45, 0.44, 0.42], [0.55, 0.56, 0.56])]  # +0.007 +- 0.02: within noise
    criteria, comparisons = _skips_criteria(runs, band=2)
    assert [c.passed for c in criteria] == [True, False, False]
    assert [c.status for c in criteria] == ["", "within noise", ""]  # boundary: 8s below 32s on every seed
    assert comparisons["boundary"]["verdict"] == "not met"
    assert comparisons["16s_vs_32s"]["difference"] == pytest.approx(0.62 / 3)
    assert "per seed 45.0 / 44.0 / 42.0" in criteria[1].finding


def test_each_seed_trains_its_own_initialisation_on_the_segmentation_task(monkeypatch):
    from cnnlab.data import load_dataset
    from cnnlab.experiments import ExperimentContext
    from cnnlab.experiments.dense import TINY_DATA
    from cnnlab.experiments.arms import train_zoo_arm
    from cnnlab.training.spec import TrainSpec

    built = []

    def fake_train(self, label, build, data, spec, *, key=None, task=None, **_):  # records what would be trained
        built.append((self.seed, label, task, build()))
        return built[-1]

    monkeypatch.setattr(ExperimentContext, "train", fake_train)
    ctx = ExperimentContext(experiment="x", scale="tiny", seed=3, progress=False)
    data = load_dataset("mnist-seg", **dict(TINY_DATA))
    train_zoo_arm(ctx, "net", "fcn_digits", data, TrainSpec(recipe="fcn_digits"), seeds=3,
                  options={"width": 0.25, "skips": "8s"}, task="segmentation")
    assert [(s, lbl, t) for s, lbl, t, _ in built] == [(s, f"net (seed {s})", "segmentation") for s in (3, 4, 5)]
    weights = [next(m.parameters()) for *_, m in built]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    # the first seed's network is the run's own: what ctx.create_model builds
    assert torch.equal(weights[0], next(ctx.create_model("fcn_digits", data, width=0.25, skips="8s").parameters()))
