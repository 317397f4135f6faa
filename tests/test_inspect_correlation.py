"""Lecture 001's check of good against bad training: the correlation of hidden units and of filters,
in ``activation_stats`` and ``cnnlab viz stats``, on hand-made cases; and ``viz contrast-norm``."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.inspect import activation_stats, contrast_norm_maps
from cnnlab.inspect.stats import mean_abs_correlation
from cnnlab.models import create_model


def test_identical_or_scaled_rows_correlate_fully_and_independent_ones_hardly():
    torch.manual_seed(0)
    a = torch.randn(500)
    assert mean_abs_correlation(torch.stack([a, a])) == pytest.approx(1.0)
    assert mean_abs_correlation(torch.stack([a, -3 * a + 2])) == pytest.approx(1.0)  # |r| of a flipped copy
    # independent Gaussian rows of n values: E|r| = sqrt(2 / (pi n)) for large n (0.0126 at n = 4000)
    r = mean_abs_correlation(torch.randn(40, 4000))
    assert r == pytest.approx(math.sqrt(2 / (math.pi * 4000)), rel=0.15)
    # half copies, half independent: 1 for the one pair of copies among 3 pairs, ~0 for the others
    assert mean_abs_correlation(torch.stack([a, a, torch.randn(500)])) == pytest.approx(1 / 3, abs=0.05)


def test_rows_that_do_not_vary_are_left_out():
    a = torch.randn(100)
    assert mean_abs_correlation(torch.stack([a, torch.zeros(100), a])) == pytest.approx(1.0)
    assert mean_abs_correlation(torch.stack([a, torch.ones(100)])) is None


def _two_filter_net(same: bool) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(1), nn.LazyLinear(3))
    net(torch.zeros(1, 1, 6, 6))
    if same:
        with torch.no_grad():
            net[0].weight[1] = net[0].weight[0]
            net[0].bias[1] = net[0].bias[0]
    return net


def test_activation_stats_sees_two_identical_filters_and_their_identical_maps():
    x = torch.randn(8, 1, 6, 6)
    copies = {r.name: r for r in activation_stats(_two_filter_net(True), x)}["0"]
    assert copies.filter_corr == pytest.approx(1.0) and copies.unit_corr == pytest.approx(1.0)
    fresh = {r.name: r for r in activation_stats(_two_filter_net(False), x)}["0"]
    assert fresh.filter_corr < 0.9 and fresh.unit_corr < 0.9


def test_viz_stats_writes_the_correlations(tmp_path, capsys):
    torch.manual_seed(0)
    assert main(["viz", "stats", "--model", "lenet5_relu", "--images", "32", "--out", str(tmp_path)]) == 0
    assert "unit |r|" in capsys.readouterr().out
    with open(tmp_path / "stats.csv", newline="") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert 0 < float(rows["c3.0"]["unit_corr"]) < 1 and 0 < float(rows["c3.0"]["filter_corr"]) < 1
    assert rows["c3.1"]["filter_corr"] == ""  # a ReLU has no filters


def test_contrast_norm_maps_take_an_lcn_layer_s_own_input_and_output():
    torch.manual_seed(0)
    model = create_model("zfnet", norm="lcn", width=1 / 16, fc_width=16, num_classes=3)
    layer, before, after = contrast_norm_maps(model, torch.rand(3, 224, 224))
    assert layer == "features.norm1"
    assert before.shape == after.shape == (6, 55, 55)
    expected = model.features.norm1(torch.from_numpy(before)[None])[0].numpy()
    assert abs(after - expected).max() < 1e-5
    plain = create_model("lenet5_relu")
    layer, before, after = contrast_norm_maps(plain, torch.rand(1, 28, 28))
    assert layer == "c1" and before.shape == after.shape == (6, 28, 28)


def test_viz_contrast_norm_draws_the_slide(tmp_path, capsys):
    code = main(["viz", "contrast-norm", "--model", "lenet5", "--layer", "c3", "--out", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "contrast-norm-c3.png").stat().st_size > 1000
    assert "after contrast normalisation" in capsys.readouterr().out
