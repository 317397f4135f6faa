"""timm's conventions on cnnlab's zoo, checked against torchvision models given the same weights."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.models.weights import save_weights


@pytest.fixture(scope="module")
def resnet18_pair():
    torch.manual_seed(0)
    tv = torchvision.models.resnet18().eval()
    ours = cnnlab.create_model("resnet18")
    ours.load_state_dict(tv.state_dict())
    return tv, ours.eval()


def test_num_classes_0_returns_torchvisions_pooled_features(resnet18_pair, tmp_path):
    tv, ours = resnet18_pair
    path = tmp_path / "r18.safetensors"
    save_weights(ours, path)
    headless = cnnlab.create_model("resnet18", num_classes=0, pretrained=path).eval()
    tv_headless = torchvision.models.resnet18()
    tv_headless.load_state_dict(tv.state_dict())
    tv_headless.fc = nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = headless(x)
        assert feats.shape == (2, 512)
        torch.testing.assert_close(feats, tv_headless.eval()(x), atol=1e-5, rtol=1e-5)
    assert isinstance(headless.get_classifier(), nn.Identity)


def test_features_only_equals_torchvision_feature_extractor(resnet18_pair):
    tv, _ = resnet18_pair
    ours = cnnlab.create_model("resnet18", features_only=True)
    ours.model.load_state_dict(tv.state_dict())
    names = [info["module"] for info in ours.feature_info]
    extractor = create_feature_extractor(tv, return_nodes=names)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = ours.eval()(x)
        ref = extractor(x)
    assert len(maps) == len(names) >= 4
    for name, m in zip(names, maps):
        torch.testing.assert_close(m, ref[name])
    assert [m.shape[1] for m in maps] == [info["num_chs"] for info in ours.feature_info]
    picked = cnnlab.create_model("resnet18", features_only=True, out_indices=(-1,))
    assert len(picked(x)) == 1


def test_reset_and_get_classifier():
    model = cnnlab.create_model("vgg11")
    assert model.get_classifier() is model.classifier[6]
    model.reset_classifier(5)
    assert isinstance(model.get_classifier(), nn.Linear) and model.get_classifier().out_features == 5
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    model.reset_classifier(0)
    model.reset_classifier(7)  # back from Identity: the width is remembered
    assert model.get_classifier().in_features == 4096


def test_googlenet_classifier_is_fc_not_an_aux_head():
    model = cnnlab.create_model("googlenet_2014")
    assert model.get_classifier() is model.fc


def test_nin_without_classifier_gives_its_192_pooled_channels():
    model = cnnlab.create_model("nin_cifar", num_classes=0)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 192)
    model.reset_classifier(4)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_list_models_keywords():
    # natural order, as timm's list_models: 18 < 101 < 110 < 152 < 1202
    assert cnnlab.list_models(filter="resnet1*") == ["resnet18", "resnet101", "resnet110", "resnet152", "resnet1202"]
    with_weights = cnnlab.list_models(pretrained=True)
    assert "resnet50" in with_weights and "resnet20" not in with_weights
    assert all(cnnlab.models.registry.model_info(n).torchvision for n in with_weights)
    assert set(cnnlab.list_models(family="vgg")) >= {"vgg16", "vgg_a"}


def test_bad_timm_arguments_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="pretrained=True needs a file"):
        cnnlab.create_model("resnet20", pretrained=True)
    with pytest.raises(ConfigError, match="num_classes must be a non-negative"):
        cnnlab.create_model("resnet20", num_classes=-1)


def test_feature_info_has_timms_accessors():
    """timm's resnet50 feature_info: channels (64,) 256, 512, 1024, 2048 at reductions (2,) 4, 8, 16, 32."""
    import cnnlab

    info = cnnlab.create_model("resnet50").feature_info
    assert info.channels()[-4:] == [256, 512, 1024, 2048] and info.reduction()[-4:] == [4, 8, 16, 32]
    assert info.channels(-1) == 2048 and info.module_name(-1) == "layer4"
    assert cnnlab.create_model("resnet50", features_only=True).feature_info.reduction()[-1] == 32
