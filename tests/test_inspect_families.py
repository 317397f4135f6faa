"""Every attribution method runs on one small model of every zoo family (small inputs, seconds each)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from cnnlab import create_model, model_info
from cnnlab.inspect import METHODS, attribute, cam_head, feature_maps, stage_names, top_patches

# One model per family, at a width and input size where a forward takes milliseconds.
FAMILIES = {
    "lenet": ("lenet5_relu", {}, 32),
    "alexnet": ("alexnet", dict(width=1 / 16), 64),
    "vgg": ("vgg11", dict(width=1 / 16), 32),
    "nin": ("nin_cifar", {}, 32),
    "googlenet": ("googlenet", {}, 32),
    "plain": ("plain20", dict(widths=(4, 4, 8)), 32),
    "resnet_cifar": ("resnet20", dict(widths=(4, 4, 8)), 32),
    "resnet": ("resnet18", dict(widths=(8, 8, 16, 16)), 32),
    "resnext": ("resnext50_32x4d", dict(widths=(32, 32, 64, 64)), 32),
    "senet": ("se_resnet20", dict(widths=(4, 8, 8)), 32),
    "fractalnet": ("fractalnet_cifar", dict(channels=(4, 4, 8, 8, 8)), 32),
    "airbench": ("airbench_mini", dict(widths=(8, 8, 16)), 28),
    "efficientnet_lite": ("efficientnet_lite0", dict(width=0.1, depth=0.1), 32),
}
GAP_FAMILIES = {"nin", "googlenet", "plain", "resnet_cifar", "resnet", "resnext", "senet", "fractalnet",
                "efficientnet_lite"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Setting backward hooks")
    yield
    torch.set_num_threads(threads)


def test_the_table_covers_every_family():
    from cnnlab import list_models

    # attributions explain a class score: every family of classifiers (segmentation and generative
    # nets have no class to explain)
    assert set(FAMILIES) == {model_info(n).family for n in list_models() if model_info(n).task == "classification"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_method_runs_on_the_family(family):
    name, config, side = FAMILIES[family]
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, **config).eval()
    c = model_info(name).in_chans
    x = torch.randn(1, c, side, side)
    target = torch.tensor([2])
    has_cam = family in GAP_FAMILIES
    try:
        cam_head(model, (c, side, side))
        found = True
    except Exception:
        found = False
    assert found == has_cam, f"{name}: CAM head {'not ' if has_cam else ''}found"
    for method in METHODS:
        if method == "cam" and not has_cam:
            continue
        heat = attribute(model, x, target, method=method, smooth_samples=2, ig_steps=2, window=side // 2)
        assert heat.shape == (1, side, side), method
        assert np.isfinite(heat).all(), method
        if method not in ("cam",):
            assert (heat >= 0).all(), method
    assert np.abs(attribute(model, x, target, method="saliency")).sum() > 0
    maps = feature_maps(model, x[0])
    assert list(maps) == stage_names(model)
    first = stage_names(model)[0]
    tp = top_patches(model, torch.randn(3, c, side, side), layer=first, units=[0], k=2)
    assert tp.crops.shape[:2] == (1, 2)


def test_guided_backprop_warns_on_a_net_without_relu() -> None:
    import cnnlab

    x = torch.randn(2, 1, 32, 32)
    target = torch.tensor([1, 2])
    with pytest.warns(UserWarning, match="has no ReLU"):
        attribute(cnnlab.create_model("lenet5").eval(), x, target, method="guided_backprop")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message="Setting backward hooks")
        attribute(cnnlab.create_model("lenet5_relu").eval(), x, target, method="guided_backprop")
