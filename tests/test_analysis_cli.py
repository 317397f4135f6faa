"""``cnnlab summary`` / ``cnnlab compare``, the effective receptive field and the analysis plots."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.analysis import analyze, effective_receptive_field
from cnnlab.cli import main
from cnnlab.viz.analysis_plots import plot_complexity, plot_erf

PNG = b"\x89PNG\r\n\x1a\n"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_formats(capsys):
    code, out, _ = run(["summary", "lenet5", "--format", "json"], capsys)
    assert code == 0
    d = json.loads(out)
    assert d["model"] == "lenet5" and d["input_size"] == [1, 32, 32] and d["total"]["params"] == 60_850
    assert d["layers"][0]["receptive_field"] == [5, 5]

    code, out, _ = run(["summary", "vgg16", "--depth", "1", "--format", "markdown"], capsys)
    assert code == 0
    assert [line.split("|")[1].strip() for line in out.splitlines()[2:5]] == ["features", "avgpool", "classifier"]
    assert "138,357,544" in out and "FLOPs = 2 x MACs" in out

    code, out, _ = run(["summary", "resnet20", "--format", "csv", "--batch-size", "8", "--dtype", "bfloat16"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows[-1]["name"] == "total"
    assert int(rows[-1]["activation_bytes"]) == 2 * int(rows[-1]["activations"])
    assert rows[0]["output_shape"] == "8x16x32x32"

    code, out, _ = run(["summary", "resnet50", "--model-set", "stride_in_1x1=true", "--input", "160"], capsys)
    assert code == 0 and "input 1x3x160x160" in out


def test_compare_table_json_and_chart(capsys, tmp_path):
    chart = tmp_path / "complexity.png"
    code, out, _ = run(["compare", "lenet5", "resnet20", "nin_cifar", "--input", "32x32", "--plot", str(chart),
                        "--format", "json"], capsys)
    assert code == 0
    rows = json.loads(out)["models"]
    assert [r["model"] for r in rows] == ["lenet5", "resnet20", "nin_cifar"]
    assert [r["input_size"][0] for r in rows] == [1, 3, 3]  # HxW keeps each model's channels
    assert rows[1]["depth"] == 20 and rows[1]["params"] == 269_722
    assert chart.read_bytes()[:8] == PNG
    code, out, _ = run(["compare", "vgg16", "resnet152", "googlenet"], capsys)
    assert code == 0 and "resnet152" in out and "11.514" in out and "15.470" in out


@pytest.mark.parametrize("argv,message", [
    (["summary", "vgg61"], "unknown model 'vgg61'; did you mean"),
    (["summary", "lenet5", "--input", "1x3z"], "bad --input '1x3z'"),
    (["summary", "lenet5", "--input", "1x2x2"], "layer 'c1.0' (Conv2d) cannot run on input 1x1x2x2"),
    (["summary", "lenet5", "--depth", "0"], "--depth must be a positive integer"),
    (["summary", "lenet5", "--model-set", "nonsense"], "--model-set expects FIELD=VALUE"),
    (["summary", "lenet5", "--model-set", "pooling=median"], "pooling"),
    (["summary", "lenet5", "--config", "pooling=avg"], "a model option is given with --model-set"),
    (["summary", "torchvision:resnet05"], "did you mean torchvision:resnet50"),
    (["compare", "lenet5", "vgg61"], "unknown model 'vgg61'"),
    (["summary", "lenet5", "--format", "yaml"], "invalid choice: 'yaml'"),
])  # fmt: skip
def test_bad_arguments_give_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_summary_erf_writes_a_heat_map(capsys, tmp_path):
    image = tmp_path / "erf.png"
    code, out, _ = run(["summary", "lenet5_relu", "--erf", str(image), "--erf-samples", "4"], capsys)
    assert code == 0 and image.read_bytes()[:8] == PNG
    assert "effective receptive field of s4" in out and "of the theoretical 16x16 field" in out


def test_erf_failure_writes_nothing(capsys, tmp_path):
    image = tmp_path / "erf.png"
    code, out, err = run(["summary", "lenet5_relu", "--erf", str(image), "--erf-layer", "nope"], capsys)
    assert code == 2 and out == "" and "no module layer named 'nope'" in err
    assert not image.exists()


def test_effective_field_lies_inside_the_theoretical_field():
    torch.manual_seed(0)
    # tanh: its gradient is never exactly zero, so the measured support is the whole field
    net = nn.Sequential(*[m for _ in range(4) for m in (nn.Conv2d(2, 2, 3, padding=1), nn.Tanh())],
                        nn.Conv2d(2, 2, 3, stride=2, padding=1))
    erf = effective_receptive_field(net, (2, 33, 33), samples=8)
    (a, b), (c, d) = erf.theoretical
    assert erf.rf == (11, 11) and (b - a, d - c) == (11, 11)
    assert erf.layer == "8" and erf.unit == (8, 8)
    outside = erf.grid.copy()
    outside[a:b, c:d] = 0
    assert np.all(outside == 0)  # no gradient outside the theoretical field, ever
    assert erf.grid[a:b, c:d].min() > 0  # and some everywhere inside it
    peak = np.unravel_index(erf.grid.argmax(), erf.grid.shape)
    assert abs(peak[0] - (a + b - 1) / 2) <= 2 and abs(peak[1] - (c + d - 1) / 2) <= 2  # Luo et al.: centred
    assert 0 < erf.mass95_fraction <= 1


def test_effective_field_of_a_zoo_model_is_smaller_than_its_theoretical_field():
    erf = effective_receptive_field("lenet5_relu", samples=8)
    theory = {r.name: r for r in analyze("lenet5_relu").layers}
    assert erf.layer == "s4" and erf.feature_shape == (16, 5, 5)  # the last map with a spatial extent
    assert erf.rf == theory["s4"].receptive_field == (16, 16)
    assert erf.theoretical == ((8, 24), (8, 24))  # unit (2, 2): start 8 + 2 x jump 4, +/- 8
    assert erf.mass95_fraction < 1  # gradient concentrated in part of the field (Luo et al. 2016)


def test_plots_read_results_only(tmp_path):
    p = plot_erf(np.outer(np.hanning(20), np.hanning(20)), tmp_path / "e.png", theoretical=((2, 18), (2, 18)))
    assert p.read_bytes()[:8] == PNG
    rows = [dict(model="a", macs=1e9, params=5e6, activation_bytes=4e7),
            dict(model="b", macs=15e9, params=138e6, activation_bytes=6e7)]
    assert plot_complexity(rows, tmp_path / "c.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="lacks"):
        plot_complexity([dict(model="a", macs=1)], tmp_path / "x.png")
    with pytest.raises(ValueError, match="2-d"):
        plot_erf(np.zeros(4), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
