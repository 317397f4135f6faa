"""GoogLeNet (torchvision-compatible and 2014), Inception blocks and Network in Network.

Expectations come from outside the code: torchvision's GoogLeNet (same weights, same logits; its
published parameter count), Szegedy et al. 2015 Table 1 (params and ops columns), the lecture's
28x28x192 naive-vs-reduced example (120M vs 12.4M multiply-adds for the 5x5 branch, as in Ng's
deeplearning.ai course), and the layer list of the released NIN-CIFAR10 Caffe model.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import ConfigError, create_model
from cnnlab.models.blocks.inception import Inception, NaiveInception
from cnnlab.models.zoo.googlenet import TABLE1, TABLE1_OPS_M, TABLE1_PARAMS_K

K = 1024  # Table 1 counts parameters in units of 1024 weights
SIDE = {"3": 28, "4": 14, "5": 7}  # resolution of each inception stage at 224x224


def _torchvision_googlenet(**kwargs) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.googlenet(weights=None, init_weights=False, **kwargs)


def _randomize(model: nn.Module, seed: int = 0) -> None:
    """Weights with O(1) activations everywhere, so that a 1e-5 tolerance on the logits means something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def _macs(module: nn.Module, shape: tuple[int, ...]) -> float:
    """Multiply-adds of one forward, counted by torch's FlopCounterMode (2 FLOPs per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        module(torch.empty(*shape, device="meta"))
    return counter.get_total_flops() / 2


def _weights(module: nn.Module) -> int:
    """Weights only (no biases, no BN), as Table 1 counts them."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


# --- googlenet: torchvision-compatible ---------------------------------------------------------


@pytest.mark.parametrize("aux_logits, transform_input", [(False, False), (True, True)])
def test_googlenet_matches_torchvision(aux_logits: bool, transform_input: bool) -> None:
    tv = _torchvision_googlenet(aux_logits=aux_logits, transform_input=transform_input)
    _randomize(tv)
    ours = create_model("googlenet", aux_logits=aux_logits, transform_input=transform_input)
    assert list(ours.state_dict()) == list(tv.state_dict())  # identical keys, in the same order
    ours.load_state_dict(tv.state_dict(), strict=True)

    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = tv.eval()(x)
        got = ours.eval()(x)
    assert expected.std() > 0.1  # logits of order 1, so the tolerance below is tight
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    if aux_logits:
        # Training mode: torchvision returns (logits, aux2, aux1); ours forward_train gives
        # (logits, (aux1, aux2), (0.3, 0.3)). Dropout off so both are deterministic; BN uses batch stats.
        for model in (tv, ours):
            model.train()
            for m in model.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
        x2 = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            tv_out = tv(x2)
            out = ours.forward_train(x2)
            plain = ours(x2)
        assert out.aux_weights == (0.3, 0.3)
        torch.testing.assert_close(out.logits, tv_out.logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.aux_logits[0], tv_out.aux_logits1, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.aux_logits[1], tv_out.aux_logits2, atol=1e-5, rtol=1e-5)
        assert type(plain) is torch.Tensor  # forward: logits only, even in training (unlike torchvision)
        torch.testing.assert_close(plain, tv_out.logits, atol=1e-5, rtol=1e-5)


def test_googlenet_parameter_counts_match_torchvision() -> None:
    with torch.device("meta"):
        ours = create_model("googlenet")
        ours_aux = create_model("googlenet", aux_logits=True)
        tv_aux = _torchvision_googlenet(aux_logits=True)
    published = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["num_params"]
    assert published == 6_624_904
    assert ours.num_params() == published
    assert ours_aux.num_params() == sum(p.numel() for p in tv_aux.parameters()) == 13_004_888
    assert ours.aux1 is None and ours.aux2 is None
    # torchvision publishes 1.498 "GFLOPS" (multiply-adds) for its GoogLeNet at 224x224
    published_ops = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["_ops"]
    assert round(_macs(ours.eval(), (1, 3, 224, 224)) / 1e9, 3) == published_ops == 1.498
    # the paper's network: "a computational budget of 1.5 billion multiply-adds at inference time"
    with torch.device("meta"):
        paper = create_model("googlenet_2014").eval()
    assert abs(_macs(paper, (1, 3, 224, 224)) / 1e9 - 1.5) < 0.1  # 1.583G: true 5x5s, 3x3 last pool


def test_googlenet_keeps_torchvision_departures() -> None:
    with torch.device("meta"):
        tv_style = create_model("googlenet")
        paper = create_model("googlenet_2014")
    for name in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        assert getattr(tv_style, f"inception{name}").branch3[1].conv.kernel_size == (3, 3)  # "5x5" is 3x3
        assert getattr(paper, f"inception{name}").branch3[1].conv.kernel_size == (5, 5)
    assert tv_style.maxpool4.kernel_size == 2 and paper.maxpool4.kernel_size == 3
    assert any(isinstance(m, nn.BatchNorm2d) for m in tv_style.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in paper.modules()) == 2
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in tv_style.modules())
    assert tv_style.dropout.p == 0.2 and paper.dropout.p == 0.4
    assert paper.aux1.dropout.p == paper.aux2.dropout.p == 0.7
    assert isinstance(paper.aux1.pool, nn.AvgPool2d) and paper.aux1.pool.kernel_size == 5 and paper.aux1.pool.stride == 3


# --- googlenet_2014: Table 1 ----------------------------------------------------------------------

PARAMS_AGREE = ("3a", "3b", "4b")  # printed params within rounding of the widths; the others are errata


def test_googlenet_2014_table1_rows() -> None:
    with torch.device("meta"):
        model = create_model("googlenet_2014")
    for row, (in_channels, widths) in TABLE1.items():
        block = getattr(model, f"inception{row}")
        assert block.in_channels == in_channels and block.out_channels == widths.out_channels
        side = SIDE[row[0]]
        # ops column: multiply-adds at the row's resolution, in millions (1M rounding either way)
        ops = _macs(block, (1, in_channels, side, side)) / 1e6
        if row != "5a":  # 5a's printed 54M (and 1072K) do not follow from its widths: 51.1M
            assert abs(ops - TABLE1_OPS_M[row]) < 1.0, (row, ops)
        # params column, K = 1024 weights
        params_k = _weights(block) / K
        if row in PARAMS_AGREE:
            assert abs(params_k - TABLE1_PARAMS_K[row]) <= 1.0, (row, params_k)
        # every row's count is the one its widths imply with true 5x5 kernels (the table's errata
        # aside): 1x1 + reduce + 3x3 + reduce + 5x5 + pool proj weights
        w = widths
        expected = in_channels * (w.n1x1 + w.n3x3_reduce + w.n5x5_reduce + w.pool_proj)
        expected += 9 * w.n3x3_reduce * w.n3x3 + 25 * w.n5x5_reduce * w.n5x5
        assert _weights(block) == expected
    # "convolution 3x3/1" row: 112K = the 1x1 reduce (64x64) plus the 3x3 (64x192x9), exactly
    assert (_weights(model.conv2) + _weights(model.conv3)) / K == TABLE1_PARAMS_K["conv2"] == 112
    assert _weights(model.fc) / K == TABLE1_PARAMS_K["fc"] == 1000
    # conv1: 7x7x3x64 = 9,408 weights, not Table 1's 2.7K (the table's erratum)
    assert _weights(model.conv1) == 9408 and abs(9408 / K - TABLE1_PARAMS_K["conv1"]) > 6
    # The whole network without the auxiliary heads: about 7M parameters (lecture 000: "7M parameters")
    trunk = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux"))
    assert trunk == 6_998_552


def test_googlenet_2014_forward_and_auxiliary_classifiers() -> None:
    torch.manual_seed(0)
    model = create_model("googlenet_2014", num_classes=10)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        model.train()
        out = model.forward_train(x)
        assert out.logits.shape == (1, 10)
        assert [a.shape for a in out.aux_logits] == [(1, 10), (1, 10)]
        assert out.aux_weights == (0.3, 0.3)
        model.eval()
        features = model.forward_features(x)
        eval_out = model.forward_train(x)
    assert eval_out.aux_logits == () and eval_out.aux_weights == ()  # auxiliary heads: training only
    assert features.shape == (1, 1024, 7, 7)
    assert eval_out.logits.shape == (1, 10) and torch.isfinite(eval_out.logits).all()
    torch.testing.assert_close(eval_out.logits, model.forward_head(features))


def test_googlenet_2014_without_aux_and_bad_config() -> None:
    with torch.device("meta"):
        model = create_model("googlenet_2014", aux_logits=False)
    assert model.aux1 is None and model.num_params() == 6_998_552
    with torch.device("meta"):
        with_aux = create_model("googlenet_2014").train()
    with pytest.raises(ConfigError, match="224x224"):  # the paper's aux pooling fits 14x14 maps only
        with_aux.forward_train(torch.empty(2, 3, 96, 96, device="meta"))
    with pytest.raises(ConfigError, match="dropout"):
        create_model("googlenet", dropout=1.5)
    with pytest.raises(ConfigError, match="aux_logit"):
        create_model("googlenet", aux_logit=True)
    with pytest.raises(ConfigError, match="transform_input"):
        create_model("googlenet", in_chans=1, transform_input=True)


# --- Inception blocks: what the 1x1 reductions save --------------------------------------------


def test_naive_vs_reduced_inception_cost_at_28x28x192() -> None:
    with torch.device("meta"):
        naive = NaiveInception(192, 64, 128, 32)  # inception 3a's #1x1, #3x3, #5x5 without reductions
        reduced = Inception(192, TABLE1["3a"][1])
    shape = (1, 192, 28, 28)
    # The lecture's example: a 5x5 convolution with 32 filters over 28x28x192 costs
    # 28*28*32 * 5*5*192 = 120.4M multiply-adds; a 16-filter 1x1 reduction first brings it to 12.4M.
    assert round(_macs(naive.branch3, shape) / 1e6, 1) == 120.4
    assert round(_macs(reduced.branch3, shape) / 1e6, 1) == 12.4
    # Whole modules: the reduced one is Table 1's 3a (128M ops, 159K params); the naive one 2.4x dearer
    assert round(_macs(reduced, shape) / 1e6) == TABLE1_OPS_M["3a"] == 128
    assert round(_macs(naive, shape) / 1e6, 1) == 303.5
    assert _weights(naive) == 387_072 and _weights(reduced) == 163_328
    # ... and the naive output keeps all 192 pooled channels: 416 maps instead of 256
    x = torch.empty(shape, device="meta")
    assert naive(x).shape == (1, 416, 28, 28) and reduced(x).shape == (1, 256, 28, 28)


# --- Network in Network ---------------------------------------------------------------------------


def test_nin_cifar_shapes_and_parameters() -> None:
    torch.manual_seed(0)
    model = create_model("nin_cifar").eval()
    sizes = {}
    for name in ("pool1", "pool2", "mlpconv3"):
        getattr(model, name).register_forward_hook(lambda m, a, out, name=name: sizes.__setitem__(name, out.shape))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    # Caffe's rounded-up pooling: 32 -> 16 -> 8, and one 8x8 map per class before the global average
    assert sizes == {"pool1": (2, 96, 16, 16), "pool2": (2, 192, 8, 8), "mlpconv3": (2, 10, 8, 8)}
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # no fully connected layer
    # The released NIN-CIFAR10 layer list: conv1 5x5 3->192, cccp1 192->160, cccp2 160->96,
    # conv2 5x5 96->192, cccp3/cccp4 192->192, conv3 3x3 192->192, cccp5 192->192, cccp6 192->10.
    layers = [(5, 3, 192), (1, 192, 160), (1, 160, 96), (5, 96, 192), (1, 192, 192), (1, 192, 192),
              (3, 192, 192), (1, 192, 192), (1, 192, 10)]  # fmt: skip
    assert model.num_params() == sum(k * k * cin * cout + cout for k, cin, cout in layers) == 966_986
    # Init of the released model: N(0, 0.05^2) weights, zero biases
    w = model.mlpconv2.conv.weight
    assert abs(w.std().item() - 0.05) < 0.001 and w.mean().abs().item() < 0.001
    assert model.mlpconv2.conv.bias.abs().max().item() == 0.0
    assert create_model("nin_cifar", num_classes=100).forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 100, 8, 8)
