"""The lectures' training experiments (relu-tanh, vanishing-gradients, identity-mapping, depth-width)
at tiny scale, and their machinery against hand derivations and published formulas."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_helpers import tiny_experiment_runs
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.experiments import get_experiment, list_experiments
from cnnlab.experiments.context import ExperimentContext
from cnnlab.experiments.depth_width import match_width
from cnnlab.experiments.identity_mapping import IdentityTask
from cnnlab.experiments.lecture_nets import ActivationNet, DeepStackNet, IdentityStack, relative_error
from cnnlab.experiments.relu_tanh import updates_to
from cnnlab.experiments.vanishing_gradients import gradient_profile

NAMES = ("relu-tanh", "vanishing-gradients", "identity-mapping", "depth-width")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    return tiny_experiment_runs(NAMES, tmp_path_factory.mktemp("lectures"))


def test_registered_with_the_required_scales():
    names = list_experiments()
    for name in NAMES:
        assert name in names
        exp = get_experiment(name)
        assert {"tiny", "quick", "full"} <= set(exp.scales)
        assert exp.config("quick").seeds >= 3 and exp.config("quick").data == "mnist-5k"
        assert exp.config("full").data == "cifar10"


@pytest.mark.parametrize("name", NAMES)
def test_tiny_run_writes_results_report_and_plots(tiny_runs, name):
    _, out = tiny_runs[name]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["experiment"] == name and on_disk["reproduced"] == "not measured"
    assert on_disk["plots"] and all((out / p["file"]).read_bytes()[:8] == PNG_MAGIC for p in on_disk["plots"])
    assert any("standard error" in c["finding"] for c in on_disk["criteria"])


def test_tiny_results_hold_what_the_criteria_read(tiny_runs):
    rt = tiny_runs["relu-tanh"][0]
    assert set(rt["activations"]) == {"relu", "tanh", "sigmoid"}
    assert rt["activations"]["relu"]["saturated_end"] == 0.0  # ReLU has no bound above: never saturated
    vg = tiny_runs["vanishing-gradients"][0]
    assert len(vg["arms"]["8"]["plain, default"]["mean_profile"]["init"]) == 8 - 1  # every conv, no classifier
    im = tiny_runs["identity-mapping"][0]
    assert set(im["arms"]) == {"plain-2", "residual-2", "plain-4", "residual-4"}
    dw = tiny_runs["depth-width"][0]["nets"]
    for family in ("plain", "residual"):
        assert abs(dw[f"{family}-wide"]["params"] / dw[f"{family}-deep"]["params"] - 1) <= 0.05
        assert dw[f"{family}-deep"]["depth"] == 6 * 2 + 2 and dw[f"{family}-wide"]["depth"] == 6 * 1 + 2


def test_updates_to_threshold_by_hand():
    curve = [(0, 0.9), (10, 0.4), (20, 0.26), (30, 0.25), (40, 0.1)]
    assert updates_to(curve, 0.25) == 30 and updates_to(curve, 0.5) == 10 and updates_to(curve, 0.05) is None


def test_inits_follow_their_published_formulas():
    torch.manual_seed(0)
    he = DeepStackNet(depth=4, width=64, init="he")
    w = he.blocks[0].conv1.weight  # fan_in 64 * 9
    assert math.isclose(float(w.detach().std()), math.sqrt(2 / (64 * 9)), rel_tol=0.03)  # He et al. 2015 eq. 10
    default = DeepStackNet(depth=4, width=64, init="default").blocks[0].conv1.weight
    assert float(default.detach().abs().max()) <= 1 / math.sqrt(64 * 9)  # Glorot & Bengio's standard U(+-1/sqrt(n))
    tanh = ActivationNet(activation="tanh", init="glorot").head.fc1.weight  # 512 -> 64, gain 5/3
    bound = 5 / 3 * math.sqrt(6 / (512 + 64))  # Glorot & Bengio eq. 16
    assert float(tanh.detach().abs().max()) <= bound and float(tanh.detach().abs().max()) > 0.95 * bound
    with pytest.raises(ConfigError, match="init"):
        DeepStackNet(depth=4, init="lecun")


def test_gradient_profile_matches_the_hand_derived_backprop():
    # The last conv of a plain net feeds relu -> global mean -> fc -> softmax cross-entropy (summed),
    # so dL/d(out) at each position is 1[out > 0] * W_fc^T (softmax - onehot) / (H W).
    torch.manual_seed(1)
    net = DeepStackNet(depth=6, width=4, init="he")
    x, y = torch.randn(5, 1, 6, 6), torch.tensor([0, 1, 2, 3, 4])
    outs = {}
    handle = net.blocks[-1].conv2.register_forward_hook(lambda m, a, o: outs.__setitem__("f", o.detach()))
    profile = gradient_profile(net, x, y)
    handle.remove()
    with torch.no_grad():
        p = F.softmax(net(x), 1) - F.one_hot(y, 10).float()
        g = (p @ net.fc.weight)[:, :, None, None] / 36 * (outs["f"] > 0)
    assert math.isclose(profile["output"][-1], float(g.norm() / math.sqrt(5)), rel_tol=1e-4)
    assert len(profile["output"]) == len(profile["weight"]) == 5


def test_residual_stack_with_zero_weights_is_the_identity_and_the_task_scores_it():
    stack = IdentityStack(layers=3, width=4, residual=True)
    for p in stack.parameters():
        torch.nn.init.zeros_(p)  # W = 0: F(x) = 0, y = x (He et al. 2016 §3.1)
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(stack(x), x) and relative_error(stack(x), x) == 0.0
    task = IdentityTask()
    assert task.summarize(task.eval_sums(stack, x, None))["rel"] == 0.0
    zero = IdentityStack(layers=3, width=4, residual=False)
    for p in zero.parameters():
        torch.nn.init.zeros_(p)
    assert math.isclose(task.summarize(task.eval_sums(zero, x, None))["rel"], 1.0)  # zero output: all the energy lost


def test_match_width_against_the_hand_count_of_a_cifar_resnet():
    class Data:
        num_classes, input_size = 10, (1, 16, 16)

    def by_hand(n: int, b: int) -> int:  # 3x3 stem + BN, n basic blocks per stage (two 3x3 convs + 2 BN), fc
        widths, total, prev = (b, 2 * b, 4 * b), 9 * b + 2 * b, b
        for w in widths:
            for _ in range(n):
                total += 9 * prev * w + 9 * w * w + 4 * w
                prev = w
        return total + 4 * b * 10 + 10

    ctx = ExperimentContext(experiment="t", scale="tiny", progress=False)
    deep = by_hand(3, 16)
    widths = match_width(ctx, Data(), blocks=1, params=deep, shortcut="A")
    assert abs(by_hand(1, widths[0]) / deep - 1) <= 0.05
    assert abs(by_hand(1, widths[0] + 1) - deep) >= abs(by_hand(1, widths[0]) - deep) <= abs(by_hand(1, widths[0] - 1) - deep)


def test_full_configs_build_at_cifar_size_and_seeds_below_two_are_refused():
    """`--scale full` is for a GPU and never runs here: its recipes must exist and its nets take CIFAR-10."""
    import dataclasses

    from cnnlab.data import list_datasets
    from cnnlab.models import create_model
    from cnnlab.training import get_recipe

    for name in NAMES:
        cfg = get_experiment(name).config("full")
        assert cfg.data == "cifar10" and cfg.data in list_datasets()
        get_recipe(cfg.train.recipe)
        with pytest.raises(ConfigError, match=f"{name}: seeds"):
            dataclasses.replace(get_experiment(name).config("quick"), seeds=1)
    x = torch.zeros(2, 3, 32, 32)
    with torch.device("meta"):
        wide = create_model("resnet20", num_classes=10, in_chans=3, layers=(2, 2, 2), widths=(24, 48, 96), shortcut="A")
        assert wide(x.to("meta")).shape == (2, 10)
    assert ActivationNet(in_chans=3, image_size=32)(x).shape == (2, 10)
    assert DeepStackNet(depth=110, width=16, in_chans=3)(x).shape == (2, 10)
    assert IdentityStack(layers=18, width=16, in_chans=3)(x).shape == x.shape
