"""The lectures' remaining layer kinds: sigmoid as a network's activation, sum pooling, maxout and local
contrast normalisation, checked against hand-computed cases, parameter counts worked out by hand,
autograd's gradient check in float64, and one training step in the zoo nets that use them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck

from cnnlab import ConfigError, create_model
from cnnlab.models.activations import make_activation
from cnnlab.models.contrast_norm import LocalContrastNorm, gaussian_window
from cnnlab.models.pooling import Maxout, SumPool2d, make_pool


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _learns(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 5, lr: float = 0.05) -> None:
    """Every parameter gets a gradient, and a few SGD steps on one batch lower its loss."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for step in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if step == 0:
            silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not silent, f"no gradient reaches {silent}"
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


# --- sigmoid ------------------------------------------------------------------------------------------


def test_lenet5_builds_with_each_activation_and_sigmoid_squashes_into_0_1():
    for act in ("sigmoid", "tanh", "relu", "scaled_tanh"):
        create_model("lenet5", activation=act)
    model = create_model("lenet5", activation="sigmoid")
    sigmoids = [m for m in model.modules() if isinstance(m, nn.Sigmoid)]
    assert len(sigmoids) == 6  # after C1, S2, C3, S4, C5, F6 (the paper squashes after subsampling too)
    h = model.f6(model.forward_features(torch.randn(3, 1, 28, 28)))
    assert h.min() > 0 and h.max() < 1


def test_an_unknown_activation_or_pooling_names_the_field_and_the_choices():
    with pytest.raises(ConfigError, match=r"LeNetConfig\.activation .*'sigmoid'.*'softplus'"):
        create_model("lenet5", activation="softplus")
    with pytest.raises(ConfigError, match=r"LeNetConfig\.pooling .*'sum'.*'median'"):
        create_model("lenet5", pooling="median")
    with pytest.raises(ConfigError, match="activation"):
        make_activation("swish")
    with pytest.raises(ConfigError, match=r"LeNetConfig\.maxout"):
        create_model("lenet5", maxout=0)


def test_sigmoid_lenet5_trains_and_passes_gradcheck():
    torch.manual_seed(0)
    model = create_model("lenet5", activation="sigmoid")
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    _learns(model, x, y, lr=0.1)
    small = create_model("lenet5", activation="sigmoid").double()
    # fast mode: autograd's vector-Jacobian product against finite differences along random directions
    assert gradcheck(small, (torch.randn(1, 1, 32, 32, dtype=torch.float64, requires_grad=True),), fast_mode=True)


# --- sum pooling --------------------------------------------------------------------------------------


def test_sum_pooling_adds_each_window():
    x = torch.tensor([[1.0, 2.0, 5.0, 6.0], [3.0, 4.0, 7.0, 8.0]]).view(1, 1, 2, 4)
    assert SumPool2d(2)(x).flatten().tolist() == [10.0, 26.0]  # 1+2+3+4, 5+6+7+8
    assert make_pool("avg", 2)(x).flatten().tolist() == [2.5, 6.5]
    assert make_pool("max", 2)(x).flatten().tolist() == [4.0, 8.0]
    overlapping = SumPool2d(3, 2, padding=1)(torch.ones(1, 1, 4, 4))
    assert overlapping.flatten().tolist() == [4.0, 6.0, 6.0, 9.0]  # zero padding adds nothing
    cut = SumPool2d(3, 2, ceil_mode=True)(torch.ones(1, 1, 6, 6))  # the last windows hang over the edge
    assert cut[0, 0].tolist() == [[9.0, 9.0, 6.0], [9.0, 9.0, 6.0], [6.0, 6.0, 4.0]]


def test_sum_pooling_in_lenet_keeps_the_parameter_count_and_trains():
    # lenet5_relu by hand: C1 6*25+6, C3 16*6*25+16, C5 120*16*25+120, F6 120*84+84, out 84*10+10
    assert _params(create_model("lenet5_relu", pooling="sum")) == 156 + 2416 + 48120 + 10164 + 850
    model = create_model("lenet5_relu", pooling="sum")
    assert isinstance(model.s2, SumPool2d) and isinstance(model.s4, SumPool2d)
    torch.manual_seed(0)
    _learns(model, torch.randn(16, 1, 28, 28), torch.arange(16) % 10, lr=0.01)
    assert gradcheck(SumPool2d(2).double(), (torch.randn(1, 2, 4, 6, dtype=torch.float64, requires_grad=True),))


# --- maxout -------------------------------------------------------------------------------------------


def test_maxout_keeps_the_largest_of_each_group_of_consecutive_channels():
    z = torch.tensor([[1.0, 5.0, -2.0, -7.0, 0.5, 0.25]])
    assert Maxout(2)(z).tolist() == [[5.0, -2.0, 0.5]]
    assert Maxout(3)(z).tolist() == [[5.0, 0.5]]
    maps = torch.stack([torch.full((2, 2), v) for v in (1.0, 3.0, 2.0, -1.0)]).unsqueeze(0)  # 1 x 4 x 2 x 2
    assert Maxout(2)(maps)[0, :, 0, 0].tolist() == [3.0, 2.0]
    with pytest.raises(ValueError, match="multiple of 4"):
        Maxout(4)(z)


def test_maxout_lenet_has_k_times_the_weights_and_trains():
    # k = 2 doubles every layer's outputs (C1 12, C3 32, C5 240, F6 168 maps), inputs stay the same:
    # C1 12*25+12, C3 32*6*25+32, C5 240*16*25+240, F6 168*120+168, out 84*10+10
    assert _params(create_model("lenet5_relu", maxout=2)) == 312 + 4832 + 96240 + 20328 + 850
    # the paper's net: C3's 60 connections each twice (3000 + 32), plus S2/S4's 2*(6+16) coefficients
    assert _params(create_model("lenet5", maxout=2)) == 312 + 12 + 3032 + 32 + 96240 + 20328 + 850
    model = create_model("lenet5_relu", maxout=2)
    assert sum(isinstance(m, Maxout) for m in model.modules()) == 4
    torch.manual_seed(0)
    _learns(model, torch.randn(16, 1, 28, 28), torch.arange(16) % 10, lr=0.01)
    z = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck(Maxout(3), (z,))


# --- local contrast normalisation ---------------------------------------------------------------------


def test_gaussian_window_sums_to_one_with_the_given_spread():
    w = gaussian_window(7, 1.75)
    assert w.shape == (7, 7) and w.sum().item() == pytest.approx(1.0)
    # one pixel from the centre the weight falls by exp(-1 / (2 sigma^2))
    assert (w[3, 4] / w[3, 3]).item() == pytest.approx(math.exp(-1 / (2 * 1.75**2)))


def test_lcn_of_a_constant_image_is_zero_borders_included():
    for across in (True, False):
        out = LocalContrastNorm(across_channels=across)(torch.full((2, 3, 12, 9), 4.2))
        assert out.abs().max().item() == 0.0


def test_lcn_standardises_values_that_are_constant_within_each_map():
    # maps of constant 1 and 3: the local mean across maps is 2 and the local std 1, so every
    # pixel becomes -1 and +1 (Jarrett's "across feature maps")
    x = torch.stack([torch.full((8, 8), 1.0), torch.full((8, 8), 3.0)]).unsqueeze(0).double()
    out = LocalContrastNorm().double()(x)
    assert torch.allclose(out[0, 0], torch.full((8, 8), -1.0, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(out[0, 1], torch.full((8, 8), 1.0, dtype=torch.float64), atol=1e-6)


def test_lcn_output_has_local_mean_0_and_local_std_1_away_from_the_borders():
    torch.manual_seed(0)
    x = 3.0 * torch.randn(2, 4, 40, 40, dtype=torch.float64) + 5.0
    lcn = LocalContrastNorm(min_std=1e-4).double()
    y = lcn(x)
    local_mean = lcn._local_mean(y.mean(1, keepdim=True))
    local_std = lcn._local_mean(((y - local_mean) ** 2).mean(1, keepdim=True)).sqrt()
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    assert local_mean[inner].abs().mean().item() < 0.05  # the input's local mean is 5
    assert local_std[inner].mean().item() == pytest.approx(1.0, abs=0.05)  # the input's is 3
    # Jarrett's floor (the image's mean local std) can only shrink the output
    assert LocalContrastNorm().double()(x).abs().le(y.abs() + 1e-12).all()


def test_lcn_passes_gradcheck_across_and_within_maps():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    for across in (True, False):
        for floor in (None, 0.1):
            lcn = LocalContrastNorm(3, across_channels=across, min_std=floor).double()
            assert gradcheck(lcn, (x,))


def test_zfnet_and_alexnet_take_lcn_at_their_norm_rows_and_train():
    model = create_model("zfnet", norm="lcn", width=1 / 16, fc_width=32, num_classes=4)
    assert isinstance(model.features.norm1, LocalContrastNorm)
    assert isinstance(model.features.norm2, LocalContrastNorm)
    lrn = create_model("zfnet", width=1 / 16, fc_width=32, num_classes=4)
    assert _params(model) == _params(lrn)  # neither normalisation has parameters
    torch.manual_seed(0)
    model = create_model("alexnet_2012", norm="lcn", width=1 / 16, fc_width=32, num_classes=4, init="pytorch")
    _learns(model, torch.randn(4, 3, 227, 227), torch.arange(4), steps=3, lr=0.01)
    with pytest.raises(ConfigError, match="no NORM layers"):
        create_model("alexnet", norm="lcn")
    with pytest.raises(ConfigError, match="norm must be one of lrn, lcn"):
        create_model("alexnet_2012", norm="batch")


def test_alexnet_pools_by_sum_or_average_on_request():
    model = create_model("alexnet_2012", pooling="sum", width=1 / 16, fc_width=32, num_classes=4)
    assert isinstance(model.features.pool1, SumPool2d) and model.features.pool1.kernel_size == 3
    small = create_model("zfnet", pooling="avg", width=1 / 16, fc_width=32)
    assert isinstance(small.features.pool1, nn.AvgPool2d)
    with pytest.raises(ConfigError, match=r"AlexNetConfig\.pooling"):
        create_model("alexnet", pooling="l2")
