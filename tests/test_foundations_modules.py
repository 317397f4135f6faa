"""``gradcheck`` on cnnlab's own custom modules, the per-stage shift measurement of zoo nets, and the
NumPy CNN trained on scikit-learn's digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab import create_model
from cnnlab.analysis.shift import shift_sensitivity
from cnnlab.foundations import LocallyConnected2d, gradcheck
from cnnlab.models.blocks.fractal import FractalBlock, join
from cnnlab.models.layers import local_response_norm
from cnnlab.models.zoo.lenet import C3_TABLE, PartialConv2d, ScaledTanh, Subsampling


def _randomised(m: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    return m


@pytest.mark.parametrize(
    "name, module, shape",
    [
        ("LeNet C3 connection table", lambda: _randomised(PartialConv2d(6, C3_TABLE, 5)), (1, 6, 5, 5)),
        ("scaled tanh", ScaledTanh, (2, 3, 4, 4)),
        ("trainable subsampling", lambda: _randomised(Subsampling(3)), (2, 3, 6, 6)),
        ("LRN (Krizhevsky's constants)", local_response_norm, (2, 7, 3, 3)),
        ("locally connected", lambda: LocallyConnected2d(2, 3, 3, (5, 5), stride=2, padding=1), (1, 2, 5, 5)),
    ],
)
def test_gradcheck_passes_on_cnnlab_modules(name, module, shape):
    torch.manual_seed(0)
    result = gradcheck(module(), torch.randn(shape), max_per_tensor=12)
    assert result.ok, f"{name}: {result}"
    assert result.checked >= 12 and result.max_abs_error < 1e-6


def test_gradcheck_fractal_join_and_drop_path_at_eval():
    torch.manual_seed(0)
    block = FractalBlock(1, 2, 2, dropout=0.1).eval()  # eval: no drop-path, no dropout, BN running stats
    result = gradcheck(block, torch.randn(2, 1, 3, 3), max_per_tensor=4)
    assert result.ok, str(result)
    # training mode draws drop-path and dropout at random: gradcheck re-seeds before every evaluation
    assert gradcheck(block.train(), torch.randn(2, 1, 3, 3), max_per_tensor=4).ok
    ins = [torch.randn(2, 3, 2, 2) for _ in range(3)]
    assert gradcheck(lambda a, b, c: join([a, b, c], torch.tensor([1.0, 0.0, 1.0], dtype=a.dtype)), *ins).ok


class _WrongGrad(torch.autograd.Function):
    """x^2 with a deliberately wrong backward (2x + 0.01): gradcheck must catch it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (2 * x + 0.01)


def test_gradcheck_catches_a_wrong_backward():
    x = torch.randn(3, 4)
    assert gradcheck(lambda v: v * v, x).ok
    bad = gradcheck(_WrongGrad.apply, x)
    assert not bad.ok and bad.max_abs_error > 1e-4 and "FAILED" in str(bad)
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck(lambda v: v.float(), torch.arange(3))


def test_gradcheck_leaves_the_callers_module_alone():
    m = nn.Linear(3, 2)
    before = m.weight.detach().clone()
    assert gradcheck(m, torch.randn(4, 3)).ok
    assert m.weight.dtype == torch.float32 and torch.equal(m.weight, before)


def _digits_canvas(n: int, channels: int) -> torch.Tensor:
    """A few 8x8 digits enlarged to 16x16 in the middle of a blank 32x32 canvas (margins of 8 px)."""
    from sklearn.datasets import load_digits

    d = torch.tensor(load_digits().images[:n] / 16.0, dtype=torch.float32)[:, None]
    x = torch.zeros(n, 1, 32, 32)
    x[:, :, 8:24, 8:24] = torch.nn.functional.interpolate(d, size=16, mode="nearest")
    return x.repeat(1, channels, 1, 1)


def test_shift_sensitivity_stride_breaks_equivariance_in_zoo_nets():
    torch.manual_seed(0)
    rows = {r.stage: r for r in shift_sensitivity(create_model("resnet20", num_classes=10), _digits_canvas(3, 3))}
    assert rows["layer1"].reduction == 1 and rows["layer1"].error_1px < 1e-12  # stride 1, circular: exact
    for stage in ("layer2", "layer3"):  # stride 2 and 4
        assert rows[stage].error_rpx < 1e-12  # shifting by the stride moves the map by one sample exactly
        assert rows[stage].error_1px > 0.05  # a 1-pixel shift has no exact counterpart
    assert "logits" in rows and rows["logits"].error_1px > 0
    lenet = {r.stage: r for r in shift_sensitivity(create_model("lenet5_relu"), _digits_canvas(3, 1))}
    assert lenet["c1"].error_1px < 1e-12  # valid convolution, blank margins: exact
    # valid convolutions lose the wrap-around seam, so the 2-pixel shift is not exact at c3 either, but the
    # 1-pixel shift still changes c3 more
    assert lenet["c3"].error_1px > 1.5 * lenet["c3"].error_rpx


def test_numpy_cnn_reaches_95_percent_on_digits():
    from cnnlab.foundations import SGDConfig, train_digits

    model, report = train_digits(SGDConfig(epochs=20, seed=0))
    assert report.splits == (1077, 360, 360)
    assert report.test_acc >= 0.95, report
    assert report.train_loss[-1] < report.train_loss[0] / 10
    assert len(report.val_acc) == 20 and report.val_acc[-1] >= 0.95
    # its gradients are right: compare one batch's with PyTorch autograd on the same network
    from cnnlab.foundations import load_digits_splits

    (x, y), _, _ = load_digits_splits(seed=0)
    x, y = x[:8], y[:8]
    _, grads = model.loss_and_grads(x, y)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    F = torch.nn.functional
    h = F.max_pool2d(F.relu(F.conv2d(torch.tensor(x), p["conv1.w"], p["conv1.b"], padding=1)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2.w"], p["conv2.b"], padding=1)), 2)
    F.cross_entropy(F.linear(h.flatten(1), p["fc.w"], p["fc.b"]), torch.tensor(y)).backward()
    for k, t in p.items():
        np.testing.assert_allclose(grads[k], t.grad.numpy(), rtol=1e-8, atol=1e-10)
