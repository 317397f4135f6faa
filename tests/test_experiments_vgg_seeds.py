"""Multi-seed verdicts of vgg-depth, small-filters and ablation, on crafted numbers.

The rules on top of ``compare_seeds``: a per-seed quantity against a fixed margin
(``tools.against_margin``: "costs little", "does not help"), vgg-depth's per-seed depth slope and
ablation's paired per-seed costs. Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import math

import pytest

from cnnlab.errors import ConfigError
from cnnlab.experiments import get_experiment
from cnnlab.experiments.ablation import add_costs
from cnnlab.experiments.statistics import against_margin, margin_criterion
from cnnlab.experiments.vgg_depth import compare_columns


def test_a_cost_clearly_below_its_margin_is_met_and_the_finding_gives_the_cost():
    # costs 0.1, 0.2, 0.0 points: mean 0.1, sample std 0.1, SE 0.1 / sqrt(3) = 0.0577 points;
    # 2 points - 0.1 = 1.9 >> 2 SE.
    cmp = against_margin([0.001, 0.002, 0.0], 0.02, expect="less")
    assert cmp.verdict == "met"
    assert cmp.difference == pytest.approx(0.001 - 0.02)
    assert cmp.stderr == pytest.approx(0.001 / math.sqrt(3))
    c = margin_criterion("removing fc7 costs little", "cost", cmp)
    assert c.passed and c.status == ""
    assert "+0.10 +- 0.06 points" in c.finding and "against 2 points" in c.finding  # the cost, not cost - margin
    assert "below 2 points" in c.description


def test_a_cost_near_its_margin_is_within_noise_not_contrary():
    # costs 0, 4, 1 points: mean 1.667, std 2.08, SE 1.20; |1.667 - 2| = 0.33 < 2.4.
    cmp = against_margin([0.0, 0.04, 0.01], 0.02, expect="less")
    assert cmp.verdict == "within noise"
    c = margin_criterion("removing fc7 costs little", "cost", cmp)
    assert not c.passed and c.status == "within noise"


def test_a_cost_clearly_above_a_small_margin_is_not_met_and_a_large_one_is_met():
    costs = [0.05, 0.06, 0.055]  # mean 5.5 points, SE 0.29
    assert against_margin(costs, 0.02, expect="less").verdict == "not met"  # "costs less than 2 points"
    assert against_margin(costs, 0.02, expect="greater").verdict == "met"  # "costs more than 2 points"
    c = margin_criterion("costs little", "cost", against_margin(costs, 0.02, expect="less"))
    assert not c.passed and c.status == ""  # contrary to the claim, said as such


def _columns(errors: dict[str, list[float]]) -> dict[str, dict]:
    depth = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
    return {n: {"depth": depth[n], "test_error": e, "train_error": e} for n, e in errors.items()}


def test_vgg_depth_slopes_are_per_seed_and_lrn_is_judged_against_its_margin():
    # Seed 0: error 5 - 0.1 * (depth - 11) points, slope -0.1 points/layer; seed 1: slope -0.2.
    line = lambda s, d: (5 - s * (d - 11)) / 100  # noqa: E731
    errors = {n: [line(0.1, d), line(0.2, d)] for n, d in (("A", 11), ("B", 13), ("D", 16), ("E", 19))}
    errors["A-LRN"] = [errors["A"][0] + 0.001, errors["A"][1] - 0.001]  # LRN's gain -0.1 and +0.1 points
    errors["C"] = [errors["D"][0] + 0.001, errors["D"][1] + 0.030]  # C worse, but by 0.1 and 3.0 points
    found = compare_columns(_columns(errors), lrn_margin=0.005)
    assert found["depth_slopes"] == pytest.approx([-0.001, -0.002])
    assert found["depth"].verdict == "met"  # mean -0.15, SE 0.05 points per layer: 3 SE below 0
    # LRN's gains -0.1, +0.1 points: mean 0, SE 0.1; 0.5 - 0 = 0.5 > 2 SE: "does not help" is met.
    assert found["lrn_gain"].verdict == "met" and found["lrn_vs_a"].verdict == "within noise"
    # C - D: +0.1, +3.0 points, mean 1.55, SE 1.45: within noise although C is worse on both seeds.
    assert found["c_vs_d"].verdict == "within noise"


def test_vgg_depth_an_lrn_gain_beyond_the_margin_is_not_met():
    base = {n: [0.03, 0.031, 0.029] for n in ("A", "B", "C", "D", "E")}
    base["A-LRN"] = [0.02, 0.0205, 0.019]  # LRN lowers the error by 1.0, 1.05, 1.0 points
    found = compare_columns(_columns(base), lrn_margin=0.005)
    assert found["lrn_gain"].verdict == "not met"
    assert found["depth"].verdict == "within noise"  # flat: every per-seed slope is 0


def test_ablation_costs_are_paired_per_seed():
    variants = [{"params": 100, "test_acc": [0.98, 0.96]}, {"params": 40, "test_acc": [0.97, 0.97]}]
    add_costs(variants)
    assert variants[1]["drops"] == pytest.approx([0.01, -0.01])  # the same seed's full net minus the variant
    assert variants[1]["drop"] == pytest.approx(0.0) and variants[1]["params_removed"] == 60
    assert variants[0]["drops"] == [0.0, 0.0]


@pytest.mark.parametrize("name", ["vgg-depth", "small-filters", "ablation"])
def test_one_seed_is_refused_and_quick_runs_three_or_more(name):
    import dataclasses

    exp = get_experiment(name)
    assert exp.config("quick").seeds >= 3 and exp.config("tiny").seeds == 2
    with pytest.raises(ConfigError, match=name):
        dataclasses.replace(exp.config("quick"), seeds=1)
