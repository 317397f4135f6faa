"""Issue 20: multi-seed verdicts and the new experiments (vgg-filters, dropout-conv, shortcuts,
fractal-droppath) at tiny scale; their machinery against closed forms and hand computations."""

from __future__ import annotations

import math
import statistics

import pytest

from cnnlab.errors import ConfigError
from cnnlab.experiments.outcome import Criterion, verdict_from
from cnnlab.experiments.statistics import compare_seeds, seed_criterion


def test_compare_seeds_paired_standard_error_is_that_of_the_differences():
    a, b = [0.90, 0.92, 0.94], [0.80, 0.83, 0.83]
    c = compare_seeds(a, b)
    d = [x - y for x, y in zip(a, b)]
    assert math.isclose(c.difference, statistics.mean(d))
    assert math.isclose(c.stderr, statistics.stdev(d) / math.sqrt(3))
    assert c.verdict == "met"
    assert compare_seeds(b, a).verdict == "not met"
    assert compare_seeds(b, a, expect="less").verdict == "met"


def test_compare_seeds_welch_and_within_noise():
    a, b = [0.90, 0.95, 0.85], [0.89, 0.84, 0.94]
    c = compare_seeds(a, b, paired=False)
    se = math.sqrt(statistics.variance(a) / 3 + statistics.variance(b) / 3)
    assert math.isclose(c.stderr, se) and c.verdict == "within noise"
    # the same difference with no spread is decided
    assert compare_seeds([0.9, 0.9], [0.8, 0.8]).verdict == "met"
    assert compare_seeds([0.9, 0.9], [0.9, 0.9]).verdict == "within noise"


def test_compare_seeds_refuses_what_it_cannot_decide():
    with pytest.raises(ConfigError, match="at least 2 seeds"):
        compare_seeds([0.9], [0.8])
    with pytest.raises(ConfigError, match="same seeds"):
        compare_seeds([0.9, 0.8], [0.8, 0.7, 0.6])
    with pytest.raises(ConfigError, match="expect"):
        compare_seeds([0.9, 0.8], [0.8, 0.7], expect="bigger")


def test_within_noise_is_said_in_the_verdict():
    noisy = seed_criterion("a beats b", "a 90% vs b 89%", compare_seeds([0.90, 0.95, 0.85], [0.89, 0.84, 0.94]))
    clear = seed_criterion("c beats d", "c 90% vs d 80%", compare_seeds([0.90, 0.91, 0.92], [0.80, 0.80, 0.82]))
    assert not noisy.passed and noisy.status == "within noise" and clear.passed
    reproduced, sentence = verdict_from([noisy, clear], context="here")
    assert reproduced == "partly"
    assert "(within noise)" in sentence and "(as claimed)" in sentence and "contrary" not in sentence
    with pytest.raises(ConfigError):
        Criterion("x", "y", False, status="maybe")


# ---------------------------------------------------------------------------------------------
# The new experiments at tiny scale (plumbing), and their machinery against outside numbers
# ---------------------------------------------------------------------------------------------

import json  # noqa: E402

import torch  # noqa: E402

from cnnlab.experiments import ModelCache, get_experiment, list_experiments, run_experiment  # noqa: E402

NEW = ("shortcuts", "fractal-droppath", "vgg-filters", "dropout-conv", "batchnorm-more")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("claims")
    cache = ModelCache()
    try:
        yield {name: (run_experiment(name, scale="tiny", out_dir=root / name, progress=False, cache=cache), root / name)
               for name in NEW}
    finally:
        torch.set_num_threads(before)


def test_new_experiments_are_registered_with_the_required_scales_and_quick_seeds():
    names = list_experiments()
    for name in NEW:
        assert name in names
        exp = get_experiment(name)
        assert {"tiny", "quick", "full"} <= set(exp.scales) <= {"tiny", "quick", "standard", "full"}
        assert exp.config("quick").seeds >= 3 and exp.config("quick").data == "mnist-5k"
        assert exp.config("full").data == "cifar10"


@pytest.mark.parametrize("name", NEW)
def test_tiny_run_writes_results_report_and_plots(tiny_runs, name):
    results, out = tiny_runs[name]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["experiment"] == name and on_disk["scale"] == "tiny"
    assert on_disk["reproduced"] == "not measured"  # tiny scale tests the plumbing only
    report = (out / "report.md").read_text()
    assert on_disk["verdict"] in report and "seeds/" in on_disk["source"]
    for plot in on_disk["plots"]:
        assert (out / plot["file"]).read_bytes()[:8] == PNG_MAGIC
    # every comparison over seeds states its standard error
    assert any("standard error" in c["finding"] for c in on_disk["criteria"])


def test_shortcut_parameters_counted_by_hand(tiny_runs):
    results, _ = tiny_runs["shortcuts"]
    p = {o: results["options"][o]["params"] for o in "ABC"}
    # resnet20 with widths (4, 8, 16): option B adds a 1x1 projection + BN where the width grows,
    # 4 -> 8 and 8 -> 16; option C adds one to each of the 7 other blocks (3 of width 4, 2 of 8, 2 of 16)
    proj = lambda cin, cout: cin * cout + 2 * cout  # noqa: E731
    assert p["A"] == results["plain_params"]
    assert p["B"] - p["A"] == proj(4, 8) + proj(8, 16)
    assert p["C"] - p["B"] == 3 * proj(4, 4) + 2 * proj(8, 8) + 2 * proj(16, 16)
    assert results["published"]["A"]["top1_error"] == 25.03 and results["published"]["C"]["top1_error"] == 24.19


def test_fractal_column_view_is_the_zoos_single_column_net():
    from cnnlab.experiments.fractal_droppath import ColumnView
    from cnnlab.models import create_model

    torch.manual_seed(0)
    cfg = dict(columns=3, blocks=2, channels=(4, 8), dropout=(0.0, 0.0), in_chans=1)
    net = create_model("fractalnet_cifar", **cfg).eval()
    torch.manual_seed(0)
    deepest = create_model("fractalnet_cifar", eval_column=-1, **cfg).eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(ColumnView(net, 2)(x), deepest(x))
        assert not torch.allclose(ColumnView(net, 0)(x), deepest(x))


def test_fractal_results_have_every_column(tiny_runs):
    results, _ = tiny_runs["fractal-droppath"]
    for arm in ("drop_path", "no_drop_path"):
        assert set(results["arms"][arm]["columns"]) == {"0", "1", "2"}
        for col in results["arms"][arm]["columns"].values():
            assert len(col["test_acc"]) == 2 and all(0 <= a <= 1 for a in col["test_acc"])


def test_rescale_center_matches_torchvision_resize_and_center_crop():
    import torchvision.transforms.functional as TF

    from cnnlab.experiments.vgg_filters import rescale_center

    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(rescale_center(x, 1.0), x)
    ref = TF.center_crop(TF.resize(x, [20, 20], antialias=False), [16, 16])
    assert torch.allclose(rescale_center(x, 1.25), ref, atol=1e-6)
    small = rescale_center(torch.ones(1, 1, 16, 16), 0.5)
    assert small.shape == (1, 1, 16, 16) and small[0, 0, 0, 0] == 0 and small[0, 0, 8, 8] == pytest.approx(1.0)


def test_vgg_filter_stages_see_5x5_and_dropout_nets_count_by_hand(tiny_runs):
    vgg, _ = tiny_runs["vgg-filters"]
    assert vgg["stage_fields"]["B (3x3 pairs)"] == vgg["stage_fields"]["shallow B (5x5)"] == [5, 5]
    # widths (4, 8), 1 input channel, BN after every conv, FC to 10 classes
    conv = lambda k, cin, cout: k * k * cin * cout + cout + 2 * cout  # noqa: E731 (conv + bias + BN)
    assert vgg["arms"]["B (3x3 pairs)"]["params"] == conv(3, 1, 4) + conv(3, 4, 4) + conv(3, 4, 8) + conv(3, 8, 8) + 8 * 10 + 10
    assert vgg["arms"]["shallow B (5x5)"]["params"] == conv(5, 1, 4) + conv(5, 4, 8) + 8 * 10 + 10
    dc, _ = tiny_runs["dropout-conv"]
    # trunk conv3 1->4, 4->8 (16 -> 4 pixels), FC head 8*4*4 -> 16 -> 16 -> 10
    trunk = 9 * 1 * 4 + 4 + 9 * 4 * 8 + 8
    assert dc["arms"]["FC head"]["params"] == trunk + (128 * 16 + 16) + (16 * 16 + 16) + (16 * 10 + 10)
    assert dc["arms"]["FC head + dropout"]["params"] == dc["arms"]["FC head"]["params"]
    gains = [d - n for d, n in zip(dc["arms"]["FC head + dropout"]["test_acc"], dc["arms"]["FC head"]["test_acc"])]
    assert dc["gain_fc"] == pytest.approx(gains)


# ---------------------------------------------------------------------------------------------
# lesion's measurements: re-ordering (Veit et al. Fig. 5b) and residual-branch norms
# ---------------------------------------------------------------------------------------------


def test_kendall_tau_against_scipy():
    import random

    from scipy.stats import kendalltau

    from cnnlab.experiments.statistics import kendall_tau

    rng = random.Random(0)
    for n in (2, 5, 9):
        order = list(range(n))
        rng.shuffle(order)
        assert kendall_tau(order) == pytest.approx(kendalltau(order, list(range(n))).statistic)
    assert kendall_tau([0, 1, 2, 3]) == 1.0 and kendall_tau([3, 2, 1, 0]) == -1.0


def test_reordered_net_runs_its_blocks_in_the_new_order():
    from cnnlab.experiments.surgery import _reordered, swappable_groups
    from cnnlab.experiments.surgery import residual_blocks
    from cnnlab.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet20", widths=(4, 8, 16), in_chans=1).eval()
    # resnet20: 3 stages of 3 blocks; the first of stages 2 and 3 downsample
    assert swappable_groups(model) == [[0, 1, 2], [4, 5], [7, 8]]
    blocks = [b for _, b in residual_blocks(model)]
    order = [2, 0, 1, 3, 5, 4, 6, 7, 8]
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        y = model(x)
        swapped = _reordered(model, order)(x)
        stem = model.relu(model.bn1(model.conv1(x)))  # the CIFAR stem, by hand
        manual = model.forward_head(torch.nn.Sequential(*[blocks[i] for i in order])(stem))
    assert torch.allclose(swapped, manual, atol=1e-5) and not torch.allclose(swapped, y)


def test_residual_norms_equal_a_direct_computation():
    from cnnlab.experiments.surgery import residual_norms
    from cnnlab.experiments.surgery import residual_blocks
    from cnnlab.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet20", widths=(4, 8, 16), in_chans=1).eval()
    x = torch.randn(3, 1, 16, 16)
    rows = residual_norms(model, x)
    first = residual_blocks(model)[0][1]
    with torch.no_grad():
        inp = model.relu(model.bn1(model.conv1(x)))  # the CIFAR stem, by hand
        f, s = first.residual(inp).flatten(1).norm(dim=1), first.shortcut(inp).flatten(1).norm(dim=1)
    assert rows[0]["residual_over_shortcut"] == pytest.approx(float((f / s).mean()), rel=1e-5)
    assert len(rows) == 9 and [r["downsampling"] for r in rows].count(True) == 2



def test_batchnorm_more_nets_and_results(tiny_runs):
    from cnnlab.experiments.nets import VGGStackConfig, VGGStackNet

    torch.manual_seed(0)
    ref = VGGStackNet(VGGStackConfig(widths=(4, 8)))
    torch.manual_seed(0)
    scaled = VGGStackNet(VGGStackConfig(widths=(4, 8), init_gain=3.0))
    assert torch.equal(scaled.features.conv1_1.weight, 3.0 * ref.features.conv1_1.weight)
    assert torch.equal(scaled.fc.weight, 3.0 * ref.fc.weight)
    assert torch.equal(scaled.features.conv1_1.bias, ref.features.conv1_1.bias)
    after = [n for n, _ in VGGStackNet(VGGStackConfig(widths=(4,), bn_after_relu=True)).features.named_children()]
    assert after == ["conv1_1", "relu1_1", "bn1_1", "conv1_2", "relu1_2", "bn1_2", "pool1"]
    results, _ = tiny_runs["batchnorm-more"]
    assert set(results["init"]["bn"]) == {"0.25", "1", "3"}
    spread = [max(r["test_acc"][0] for r in results["init"]["bn"].values())
              - min(r["test_acc"][0] for r in results["init"]["bn"].values())]
    assert results["init_spread"]["bn"][0] == pytest.approx(spread[0])
    assert set(results["dropout"]) == {"no BN", "no BN, dropout", "BN", "BN, dropout"}
