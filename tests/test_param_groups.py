"""Frozen parameters, per-group learning rates, no weight decay on biases and norms, and the L1 penalty,
checked against updates computed by hand (SGD without momentum: w <- w - lr * mult * grad)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.data import DataBundle, TensorPair, load_dataset
from cnnlab.errors import ConfigError
from cnnlab.training import TrainSpec, fit
from cnnlab.training.param_groups import bias_and_norm_names, l1_penalty, matches, param_groups
from cnnlab.training.recipes import Recipe, get_recipe
from cnnlab.training.trainer import make_optimizer
from cli_helpers import isolated_cwd, one_line, run_cli  # noqa: F401  (a fixture)


class TwoHeads(nn.Module):
    """logits = A x + B x: A and B get the same gradient, so their updates differ only by their rates."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3, bias=False)
        self.b = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        x = x.flatten(1)
        return self.a(x) + self.b(x)


def _bundle(n: int = 8) -> DataBundle:
    g = torch.Generator().manual_seed(3)
    pair = TensorPair(torch.randn(n, 1, 2, 2, generator=g), torch.arange(n) % 3)
    return DataBundle(name="hand", train=pair, val=pair, test=pair, num_classes=3, input_size=(1, 2, 2),
                      mean=(0.0,), std=(1.0,), class_names=("0", "1", "2"), notes=())


LR = 0.5


def _one_sgd_step(**fields):
    """A and B before and after one full-batch step of plain SGD (no momentum, no decay, constant rate)."""
    data = _bundle()
    torch.manual_seed(0)
    model = TwoHeads()
    a0, b0 = model.a.weight.detach().double().clone(), model.b.weight.detach().double().clone()
    recipe = Recipe(name="hand", source="a test", optimizer="sgd", lr=LR, momentum=0.0, batch_size=8, epochs=1,
                    **fields)
    result = fit(model, data, TrainSpec(recipe=recipe, max_steps=1, precision="fp32", device="cpu"), progress=False)
    return data, a0, b0, result.model.a.weight.detach().double(), result.model.b.weight.detach().double()


def _hand_gradient(data: DataBundle, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """d mean-cross-entropy / dA (= d/dB) of logits (A + B) x: (softmax(z) - onehot(y))^T x / N."""
    x = data.train.x.flatten(1).double().numpy()
    y = data.train.y.numpy()
    z = x @ (a + b).numpy().T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p.T @ x / len(y)


def test_an_lr_mult_of_a_tenth_makes_the_sgd_update_a_tenth_as_large():
    data, a0, b0, a1, b1 = _one_sgd_step(lr_mult={"a": 0.1})
    g = _hand_gradient(data, a0, b0)
    np.testing.assert_allclose((a1 - a0).numpy(), -LR * 0.1 * g, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose((b1 - b0).numpy(), -LR * g, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose((a1 - a0).numpy(), 0.1 * (b1 - b0).numpy(), rtol=1e-4, atol=1e-7)


def test_the_l1_penalty_adds_lambda_sign_w_to_the_gradient():
    lam = 0.01
    data, a0, b0, a1, b1 = _one_sgd_step(l1=lam)
    g = _hand_gradient(data, a0, b0)
    np.testing.assert_allclose((a1 - a0).numpy(), -LR * (g + lam * np.sign(a0.numpy())), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose((b1 - b0).numpy(), -LR * (g + lam * np.sign(b0.numpy())), rtol=1e-4, atol=1e-7)


def test_l1_penalty_value_and_gradient_by_hand():
    lin = nn.Linear(2, 2)
    norm = nn.BatchNorm1d(2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -2.0], [0.0, 3.0]]))
        lin.bias.copy_(torch.tensor([1.0, -1.0]))
    model = nn.Sequential(lin, norm)
    penalty = l1_penalty(model, 0.01)
    assert penalty.item() == pytest.approx(0.01 * (0.5 + 2.0 + 0.0 + 3.0))  # biases and BN's gamma/beta left out
    penalty.backward()
    assert torch.equal(lin.weight.grad, torch.tensor([[0.01, -0.01], [0.0, 0.01]]))
    assert lin.bias.grad is None and norm.weight.grad is None and norm.bias.grad is None


def _tiny_data():
    return load_dataset("synthetic", input_size=(1, 32, 32), shape=(1, 32, 32), n_train=64, n_test=16)


def test_a_frozen_layer_is_bitwise_unchanged_while_the_others_train():
    torch.manual_seed(0)
    model = cnnlab.create_model("lenet5")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(model, _tiny_data(), TrainSpec(recipe="lenet", epochs=1, max_steps=3, precision="fp32", overrides=dict(freeze=("c1", "s2"), batch_size=16)), progress=False)
    after = result.model.state_dict()
    frozen = [k for k in before if k.startswith(("c1.", "s2."))]
    assert frozen == ["c1.0.weight", "c1.0.bias", "s2.0.weight", "s2.0.bias"]
    assert all(torch.equal(after[k], before[k]) for k in frozen)
    assert all(not torch.equal(after[k], before[k]) for k in before if k not in frozen)
    assert not any(p.requires_grad for n, p in result.model.named_parameters() if n in frozen)


def test_frozen_parameters_are_left_out_of_the_optimizer():
    model = cnnlab.create_model("lenet5")
    opt = make_optimizer(get_recipe("lenet").replace(freeze=("f6", "fc")), model)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in held}
    assert names == {"c1.0.weight", "c1.0.bias", "s2.0.weight", "s2.0.bias", "c3.0.weight", "c3.0.bias",
                     "s4.0.weight", "s4.0.bias", "c5.0.weight", "c5.0.bias"}


def test_biases_and_norm_parameters_get_no_weight_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8, 3), nn.LayerNorm(3))
    recipe = Recipe(name="wd", source="a test", lr=0.1, momentum=0.0, weight_decay=0.5, epochs=1,
                    no_decay_bias_norm=True)
    opt = make_optimizer(recipe, model)
    names = {id(p): n for n, p in model.named_parameters()}
    by_decay = {g["weight_decay"]: sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups}
    assert by_decay == {0.5: ["0.weight", "4.weight"],
                        0.0: ["1.bias", "1.weight", "4.bias", "5.bias", "5.weight"]}
    # a step with zero loss gradient: w <- w - lr * wd * w = 0.95 w for the decayed weights, the rest unchanged
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        expected = before[n] * 0.95 if n in ("0.weight", "4.weight") else before[n]
        assert torch.allclose(p.detach(), expected, rtol=0, atol=1e-7), n


def test_only_kernels_and_matrices_count_as_weights_in_lenet5():
    # LeNet-5's S2/S4 multiply each map by one trainable coefficient (LeCun et al. 1998 §II-B): a per-map
    # gain like batch norm's gamma, not decayed. The weights: C1 6x1x5x5, C3's 60 5x5 kernels, C5
    # 120x16x5x5, F6 84x120, the output 10x84 (cnnlab summary: "weights without biases 60,570").
    model = cnnlab.create_model("lenet5")
    skip = bias_and_norm_names(model)
    assert skip == {n for n, _ in model.named_parameters() if n.endswith(".bias")} | {"s2.0.weight", "s4.0.weight"}
    weights = sum(p.numel() for n, p in model.named_parameters() if n not in skip)
    assert weights == 150 + 60 * 25 + 120 * 16 * 25 + 84 * 120 + 10 * 84 == 60_570


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("features", "features.0.weight", True), ("features.0", "features.0.weight", True),
    ("feat", "features.0.weight", False), ("features.0.weight", "features.0.weight", True),
    ("layer[12]", "layer1.0.conv1.weight", True), ("layer[12]", "layer3.0.conv1.weight", False),
    ("*.bias", "fc.bias", True), ("*.bias", "fc.weight", False), ("layer*", "layer4.1.bn2.bias", True),
])
def test_patterns_match_module_prefixes_and_globs(pattern, name, expected):
    assert matches(pattern, name) is expected


def test_a_later_lr_mult_wins_and_a_pattern_matching_nothing_names_the_closest_modules():
    model = cnnlab.create_model("lenet5")
    groups = param_groups(model, get_recipe("lenet").replace(lr_mult={"*": 0.1, "fc": 1.0}))
    names = {id(p): n for n, p in model.named_parameters()}
    by_mult = {g["lr_mult"]: {names[id(p)] for p in g["params"]} for g in groups}
    assert by_mult[1.0] == {"fc.weight", "fc.bias"} and len(by_mult[0.1]) == 12
    with pytest.raises(ConfigError, match=r"freeze pattern 'c11' matches no parameter of LeNet5; did you mean c1"):
        param_groups(model, get_recipe("lenet").replace(freeze=("c11",)))
    with pytest.raises(ConfigError, match="lr_mult pattern 'fc7'"):
        param_groups(model, get_recipe("lenet").replace(lr_mult={"fc7": 10}))
    with pytest.raises(ConfigError, match="nothing would train"):
        param_groups(model, get_recipe("lenet").replace(freeze=("*",)))


def test_without_the_new_fields_the_optimizer_has_one_group_as_before():
    model = cnnlab.create_model("lenet5")
    groups = param_groups(model, get_recipe("lenet"))
    assert len(groups) == 1 and set(groups[0]) == {"params"} and len(groups[0]["params"]) == 14


def test_the_new_recipe_fields_survive_json_and_set_strings():
    r = get_recipe("lenet").replace(freeze=["c1", "s2"], lr_mult={"fc": 10, "c3": 0.5}, no_decay_bias_norm=True,
                                    l1=1e-5)
    assert r.freeze == ("c1", "s2") and r.lr_mult == (("fc", 10.0), ("c3", 0.5))
    doc = json.loads(json.dumps(r.to_dict()))
    assert doc["lr_mult"] == {"fc": 10.0, "c3": 0.5} and Recipe.from_dict(doc) == r
    assert get_recipe("lenet").replace(freeze="c1,s2", lr_mult="fc=10,c3=0.5", no_decay_bias_norm=True,
                                       l1=1e-5) == r  # what --set freeze=c1,s2 gives
    for bad, field in (({"lr_mult": {"fc": -1}}, "lr_mult"), ({"lr_mult": {"fc": 1e4}}, "lr_mult"),
                       ({"l1": 2.0}, "l1"), ({"l1": float("nan")}, "l1"), ({"freeze": [""]}, "freeze"),
                       ({"no_decay_bias_norm": 1}, "no_decay_bias_norm"), ({"lr_mult": "fc"}, "lr_mult")):
        with pytest.raises(ConfigError, match=field):
            get_recipe("lenet").replace(**bad)


TINY = ["--data", "synthetic", "--data-set", "n_train=64", "--data-set", "n_test=16", "--epochs", "1",
        "--batch-size", "32", "--threads", "1", "--precision", "fp32", "--no-progress"]


def test_the_train_flags_are_recorded_in_config_json(isolated_cwd, capsys):
    rc, _, err = run_cli(["train", "lenet5", *TINY, "--max-steps", "1", "--freeze", "c1", "--freeze", "s[24]",
                          "--lr-mult", "fc=10", "--no-decay-bias-norm", "--l1", "1e-5", "--out", "run"], capsys)
    assert rc == 0, err
    doc = json.loads((isolated_cwd / "run" / "config.json").read_text())
    assert doc["spec"]["overrides"] == {"freeze": ["c1", "s[24]"], "lr_mult": {"fc": 10.0},
                                        "no_decay_bias_norm": True, "l1": 1e-5}
    assert {k: doc["recipe"][k] for k in ("freeze", "lr_mult", "no_decay_bias_norm", "l1")} == {
        "freeze": ["c1", "s[24]"], "lr_mult": {"fc": 10.0}, "no_decay_bias_norm": True, "l1": 1e-5}


@pytest.mark.parametrize(("flags", "needles"), [
    (["--lr-mult", "fc"], ("--lr-mult", "PATTERN=MULT")),
    (["--lr-mult", "fc=x"], ("--lr-mult", "fc=x")),
    (["--lr-mult", "fc=1000"], ("lr_mult", "100")),
    (["--l1", "5"], ("l1", "[0, 1]")),
    (["--freeze", "conv1"], ("conv1", "did you mean c1")),
])
def test_bad_flags_give_one_line_and_leave_no_run(flags, needles, isolated_cwd, capsys):
    one_line(*run_cli(["train", "lenet5", *TINY, *flags, "--out", "run"], capsys)[::2], *needles)
    assert not (isolated_cwd / "run").exists() or not any((isolated_cwd / "run").iterdir())
