"""The dense-prediction experiments at tiny scale (plumbing: files, formats, the analyzer's fields)."""

from __future__ import annotations

import json

import pytest

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
    for run in on_disk["runs"]:
        assert 0.0 <= run["test"]["miou"] <= 1.0 and 0.0 <= run["val"]["miou"] <= 1.0


def test_fcn_skips_trains_the_three_variants(tiny):
    results, _ = tiny["fcn-skips"]
    assert [r["variant"] for r in results["runs"]] == ["32s", "16s", "8s"]
    assert set(results["examples"]) == {"image", "truth", "32s", "16s", "8s"}


def test_dilation_reports_the_papers_fields_at_equal_parameters(tiny):
    results, _ = tiny["dilation"]
    assert results["lecture_fields"] == [3, 7, 15]
    assert results["fields"]["dilated"] == [3, 5, 9, 17, 33, 65, 67]
    assert results["fields"]["plain"] == [3, 5, 7, 9, 11, 13, 15]
    dilated, plain = results["runs"]
    assert dilated["params"] == plain["params"] and dilated["receptive_field_px"] > plain["receptive_field_px"]
