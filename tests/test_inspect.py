"""cnnlab.inspect against definitions on tiny nets: CAM, occlusion, receptive-field crops, dead units."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab import ConfigError, create_model
from cnnlab.inspect import (
    activation_stats,
    attribute,
    cam,
    cam_head,
    filters,
    non_inplace_copy,
    penultimate_features,
    top_patches,
)
from cnnlab.models.base import Classifier


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Setting backward hooks")
    yield
    torch.set_num_threads(threads)


class TinyGAP(Classifier):
    """conv 3x3 (stride 1, padding 1) -> ReLU -> global average -> linear: maps at the input's size."""

    def __init__(self, in_chans: int = 1, width: int = 4, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(width, num_classes)
        self.feature_info = [dict(module="relu", num_chs=width, reduction=1)]

    def forward_features(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean((2, 3)))


def test_cam_is_the_class_weighted_sum_of_the_last_maps():
    torch.manual_seed(0)
    model = TinyGAP().eval()
    x = torch.randn(2, 1, 6, 6)
    target = torch.tensor([2, 0])
    got = cam(model, x, target)
    w = model.fc.weight.detach().numpy()
    maps = F.relu(F.conv2d(x, model.conv.weight, model.conv.bias, padding=1)).detach().numpy()  # N x C x H x W
    for n in range(2):
        hand = sum(w[target[n], c] * maps[n, c] for c in range(maps.shape[1]))
        np.testing.assert_allclose(got[n], hand, rtol=1e-5, atol=1e-6)
        # Zhou et al.'s identity: the score of class k is the spatial mean of its CAM plus the bias.
        logit = model(x)[n, target[n]].item()
        assert got[n].mean() + model.fc.bias[target[n]].item() == pytest.approx(logit, rel=1e-5, abs=1e-6)


def test_cam_head_finds_the_fc_of_resnets_the_identity_of_nin_and_refuses_vgg():
    resnet = create_model("resnet20", widths=(4, 4, 8), num_classes=5)
    w, b = cam_head(resnet, (3, 32, 32))
    assert torch.equal(w, resnet.fc.weight) and torch.equal(b, resnet.fc.bias)
    nin = create_model("nin_cifar", num_classes=5)
    w, _ = cam_head(nin, (3, 32, 32))
    assert torch.equal(w, torch.eye(5))
    with pytest.raises(ConfigError, match="global average pooling"):
        cam_head(create_model("vgg11", width=1 / 16), (3, 64, 64))


class PatternNet(Classifier):
    """Class 0's logit is the response to a planted 3x3 pattern, summed over the image."""

    def __init__(self, pattern: Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, bias=False)
        self.conv.weight.data = pattern.view(1, 1, 3, 3).clone()
        self.relu = nn.ReLU()
        self.feature_info = [dict(module="relu", num_chs=1, reduction=1)]

    def forward_features(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x) - 4.0)  # only a (near-)perfect match of the pattern passes

    def forward_head(self, x: Tensor) -> Tensor:
        s = x.sum((2, 3))
        return torch.cat([s, -s], 1)


def test_occlusion_peaks_on_a_planted_pattern():
    pattern = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]])
    x = torch.zeros(1, 1, 24, 24)
    x[0, 0, 15:18, 5:8] = pattern
    model = PatternNet(pattern).eval()
    assert model(x)[0, 0] > 0
    heat = attribute(model, x, torch.tensor([0]), method="occlusion", window=4)[0]
    # Every occluding square that touches the pattern breaks the match: the pattern's pixels, covered
    # only by such squares, get the whole drop of the logit, the peak; far from it nothing matters.
    assert heat.max() > 0
    np.testing.assert_allclose(heat[15:18, 5:8], heat.max())
    assert heat[:12].max() == 0 and heat[:, 11:].max() == 0


def test_top_patches_are_the_closed_form_receptive_field_windows():
    # ResNet-20 (He et al.): 3x3 stem + three basic blocks of two 3x3 convs give layer1 a 15-pixel field
    # with jump 1; layer2's first conv has stride 2, so rf = 15 + 2 + 4 * 5 = 37 and jump 2, centred
    # on input pixel 2i (all convs pad 1).
    torch.manual_seed(0)
    model = create_model("resnet20", widths=(4, 4, 8), in_chans=1).eval()
    images = torch.randn(12, 1, 32, 32)
    for layer, rf, jump in (("layer1", 15, 1), ("layer2", 37, 2)):
        tp = top_patches(model, images, layer=layer, units=[0, 3], k=4)
        assert tp.rf == (rf, rf)
        for u in range(2):
            for j in range(4):
                i, (r, c) = tp.index[u, j], tp.position[u, j]
                y0, x0 = jump * r - (rf - 1) // 2, jump * c - (rf - 1) // 2  # centre jump * i + 0.5
                assert tuple(tp.boxes[u, j]) == (y0, x0, y0 + rf, x0 + rf)
                crop = tp.crops[u, j, 0]
                inside = images[i, 0, max(y0, 0) : y0 + rf, max(x0, 0) : x0 + rf].numpy()
                np.testing.assert_array_equal(crop[max(0, -y0) : max(0, -y0) + inside.shape[0],
                                                   max(0, -x0) : max(0, -x0) + inside.shape[1]], inside)
                assert np.isnan(crop).sum() == rf * rf - inside.size  # outside the image: NaN
        # the values are the units' maxima over each image, the top k over the images
        with torch.no_grad():
            acts = _layer_output(model, images, layer)[:, [0, 3]].amax((2, 3))
        np.testing.assert_allclose(tp.value, acts.T.topk(4, dim=1).values.numpy(), rtol=1e-6)


def _layer_output(model: nn.Module, x: Tensor, layer: str) -> Tensor:
    out = {}
    h = model.get_submodule(layer).register_forward_hook(lambda _m, _a, o: out.setdefault("o", o))
    model(x)
    h.remove()
    return out["o"]


class DeadNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():  # channels 1, 4 and 6 can never fire: zero weights, negative bias
            for c in (1, 4, 6):
                self.conv.weight[c] = 0.0
                self.conv.bias[c] = -1.0
            self.conv.bias[[0, 2, 3, 5, 7]] = 5.0  # the others fire on every input in [-1, 1]
            self.conv.weight.clamp_(-0.1, 0.1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


def test_dead_units_and_norms_match_a_net_with_planted_dead_relus():
    torch.manual_seed(0)
    model = DeadNet()
    x = torch.rand(16, 1, 10, 10) * 2 - 1
    y = torch.randint(0, 4, (16,))
    rows = {r.name: r for r in activation_stats(model, x, y)}
    assert rows["relu"].dead == 3 and rows["conv"].dead == 3 and rows["fc"].units == 4
    assert rows["relu"].frac_zero == pytest.approx(3 / 8)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert rows["fc"].grad_norm == pytest.approx(model.fc.weight.grad.norm().item(), rel=1e-6)
    assert rows["conv"].weight_norm == pytest.approx(model.conv.weight.norm().item(), rel=1e-6)
    assert rows["relu"].weight_norm is None


def test_filters_of_the_first_conv_and_refusal_of_a_non_conv_layer():
    model = create_model("lenet5_relu")
    w = filters(model)
    assert w.shape == (6, 1, 5, 5)
    with pytest.raises(ConfigError, match="not a Conv2d"):
        filters(model, layer="fc")
    with pytest.raises(ConfigError, match="did you mean"):
        filters(model, layer="c1.O")


def test_non_inplace_copy_frees_inplace_relus_for_guided_backprop():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    clone = non_inplace_copy(model)
    assert not clone[1].inplace and model[1].inplace
    x = torch.randn(1, 1, 6, 6)
    torch.testing.assert_close(clone(x), model(x))
    heat = attribute(model, x, torch.tensor([1]), method="guided_backprop")
    assert heat.shape == (1, 6, 6) and np.isfinite(heat).all()


def test_penultimate_features_are_the_input_of_the_last_linear():
    model = create_model("resnet20", widths=(4, 4, 8)).eval()
    x = torch.randn(3, 3, 32, 32)
    f = penultimate_features(model, x)
    with torch.no_grad():
        expected = model.forward_features(x).mean((2, 3))
    np.testing.assert_allclose(f, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_layer_cam_is_the_positive_gradient_times_the_maps_by_hand():
    """Layer-CAM (Jiang et al. 2021) from the grad-cam package on TinyGAP: the gradient of logit k
    w.r.t. map c is w[k, c] / (H W) everywhere, so the map is relu(sum_c relu(w[k, c]) A_c), min-max
    scaled to [0, 1] by the library."""
    pytest.importorskip("pytorch_grad_cam", reason="the CAM family needs the [cam] extra (grad-cam)")
    from cnnlab.inspect import attribute

    torch.manual_seed(0)
    model = TinyGAP().eval()
    x = torch.randn(2, 1, 6, 6)
    target = torch.tensor([1, 2])
    got = attribute(model, x, target, method="layercam", layer="relu")
    w = model.fc.weight.detach().numpy()
    maps = F.relu(F.conv2d(x, model.conv.weight, model.conv.bias, padding=1)).detach().numpy()
    for n in range(2):
        hand = np.maximum(sum(max(w[target[n], c], 0.0) / 36 * maps[n, c] for c in range(maps.shape[1])), 0)
        hand = (hand - hand.min()) / (hand.max() - hand.min() + 1e-7)
        np.testing.assert_allclose(got[n], hand, atol=1e-4)


@pytest.mark.parametrize("method", ["gradcam_plusplus", "scorecam", "layercam"])
def test_the_cam_family_peaks_on_the_evidence(method):
    """A net whose class-0 score is the mean brightness (identity conv, positive head): every map of
    the family peaks on the one bright square, at the input's resolution."""
    pytest.importorskip("pytorch_grad_cam", reason="the CAM family needs the [cam] extra (grad-cam)")
    from cnnlab.inspect import attribute

    model = TinyGAP(width=1, num_classes=2).eval()
    with torch.no_grad():
        model.conv.weight.zero_()
        model.conv.weight[0, 0, 1, 1] = 1.0
        model.conv.bias.zero_()
        model.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model.fc.bias.zero_()
    x = torch.zeros(1, 1, 12, 12)
    x[0, 0, 2:5, 7:10] = 1.0
    got = attribute(model, x, torch.tensor([0]), method=method)
    assert got.shape == (1, 12, 12) and got.min() >= 0
    row, col = np.unravel_index(got[0].argmax(), got[0].shape)
    assert 2 <= row < 5 and 7 <= col < 10
    assert got[0][x[0, 0].numpy() == 0].max() < 0.5 * got[0].max()


def test_the_cam_family_without_its_package_says_what_to_install(monkeypatch):
    import builtins

    from cnnlab.inspect import attribute

    real = builtins.__import__

    def no_grad_cam(name, *args, **kwargs):
        if name.startswith("pytorch_grad_cam"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_grad_cam)
    with pytest.raises(ConfigError, match=r"pip install 'cnnlab\[cam\]'"):
        attribute(TinyGAP().eval(), torch.randn(1, 1, 6, 6), torch.tensor([0]), method="scorecam")
    with pytest.raises(ConfigError, match="did you mean scorecam"):
        attribute(TinyGAP().eval(), torch.randn(1, 1, 6, 6), torch.tensor([0]), method="scorecm")


class TanhNet(Classifier):
    """conv -> tanh -> GAP -> linear, with a gain that drives tanh into saturation."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.mul_(gain)
        self.act = nn.Tanh()
        self.fc = nn.Linear(4, 3)
        self.feature_info = [dict(module="act", num_chs=4, reduction=1)]

    def forward_features(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(x.mean((2, 3)))


def test_saturated_tanh_is_measured_and_its_tied_top_patches_are_flagged():
    from cnnlab.inspect import activation_stats, top_patches

    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    calm = {r.name: r for r in activation_stats(TanhNet(0.01).eval(), x)}
    hot = {r.name: r for r in activation_stats(TanhNet(1e4).eval(), x)}
    assert calm["act"].saturated == 0.0 and calm["conv"].saturated is None  # only bounded activations
    # |tanh(z)| >= 0.96 (within 2% of the range [-1, 1] from a bound) unless |z| < 1.95: rare at gain 1e4
    assert hot["act"].saturated > 0.95
    with pytest.warns(UserWarning, match="tied at 1"):
        top_patches(TanhNet(1e4).eval(), x, layer="act", units=[0, 1], k=4)
