"""Dense-prediction models against outside numbers: VGG-16's own logits (convolutionalisation),
``F.interpolate`` (bilinear transposed convolutions), the released FCN prototxts' crop offsets and
Table 1's parameter count (Long et al. 2015), Yu & Koltun 2016's receptive fields 3, 5, 9, ..., 67
and identity initialisation, and lecture 001's 3, 7, 15."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab import create_model
from cnnlab.analysis import analyze
from cnnlab.models.zoo.fcn import CROPS, BilinearUpsample, ContextModule, vgg16_to_fcn

CHEAP = dict(width=1 / 16)  # VGG-16 convs of 4-32 maps, FC6/FC7 of 256


@pytest.fixture(scope="module")
def vgg_and_fcn():
    torch.manual_seed(0)
    # 21 classes rather than ImageNet's 1000: FCN-32s's 64x64 upsampling kernel is K x K x 64 x 64
    vgg = create_model("vgg16", num_classes=21, **CHEAP).eval()
    # first_padding=1 is VGG-16's own padding: FCN's 100 would shift the sliding windows
    fcn = create_model("fcn32s_vgg16", num_classes=21, first_padding=1, **CHEAP).eval()
    missing, unexpected = fcn.load_state_dict(vgg16_to_fcn(vgg.state_dict(), classifier=True), strict=False)
    assert not unexpected and missing == ["upscore.weight"]
    return vgg, fcn


def test_convolutionalised_vgg16_gives_vgg16s_logits_at_224(vgg_and_fcn):
    vgg, fcn = vgg_and_fcn
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scores = fcn.score_map(x)
        logits = vgg(x)
    assert scores.shape == (2, 21, 1, 1)
    torch.testing.assert_close(scores[:, :, 0, 0], logits, rtol=1e-4, atol=1e-5)


def test_on_a_larger_input_it_is_vgg16s_classifier_slid_over_pool5(vgg_and_fcn):
    # 288 = 224 + 2 x 32: pool5 is 9x9, so the 7x7 classifier fits at 3x3 positions, 32 px apart
    vgg, fcn = vgg_and_fcn
    x = torch.randn(1, 3, 288, 320, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        scores = fcn.score_map(x)
        pool5 = vgg.features(x)
        assert scores.shape == (1, 21, 3, 4) and pool5.shape[-2:] == (9, 10)
        for i in range(3):
            for j in range(4):
                window = pool5[:, :, i : i + 7, j : j + 7].flatten(1)
                torch.testing.assert_close(scores[:, :, i, j], vgg.classifier(window), rtol=1e-4, atol=1e-5)


def test_fcn_vgg16_has_table_1s_134m_parameters():
    # Long et al. 2015 Table 1: FCN-VGG16 "134M" (VGG-16 without FC8, plus the 21-class score layer);
    # the upsampling layers are counted apart (FCN-32s's 64x64 kernels alone are 1.8M).
    with torch.device("meta"):
        model = create_model("fcn32s_vgg16")
    up = model.upscore.weight.numel()
    params = sum(p.numel() for p in model.parameters())
    assert up == 21 * 21 * 64 * 64
    assert round((params - up) / 1e6) == 134


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_transposed_conv_equals_interpolate_without_align_corners(factor):
    x = torch.randn(1, 3, 9, 11, generator=torch.Generator().manual_seed(factor))
    up = BilinearUpsample(3, factor, padding=factor // 2)
    with torch.no_grad():
        got = up(x)
    want = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    corners = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)
    assert got.shape == want.shape == (1, 3, 9 * factor, 11 * factor)
    inner = (slice(None), slice(None), slice(factor, -factor), slice(factor, -factor))  # borders: zeros vs edges
    torch.testing.assert_close(got[inner], want[inner], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[inner], corners[inner], atol=1e-3)


@pytest.mark.parametrize("name,skips", [("fcn32s_vgg16", "32s"), ("fcn16s_vgg16", "16s"), ("fcn8s_vgg16", "8s")])
def test_released_crop_offsets_align_the_maps_by_the_analyzers_coordinates(name, skips):
    # The analyzer's start (centre of a map's first unit, in input pixels) of each map that is cropped
    # and of the map it is cut to match: the prototxt's offset must bring them together.
    a = analyze(create_model(name, **CHEAP), (3, 224, 224))
    rows = {r.name: r for r in a.layers}
    final = rows["upscore"]
    assert final.jump == (1, 1)
    assert 0.5 - final.start[0] == CROPS[skips]["score"]  # input pixel 0 has its centre at 0.5
    for skip, upsampled in (("score_pool4", "upscore2"), ("score_pool3", "upscore_pool4")):
        if skip in CROPS[skips]:
            s, u = rows[skip], rows[upsampled]
            assert s.jump == u.jump
            assert (u.start[0] - s.start[0]) / s.jump[0] == CROPS[skips][skip]


@pytest.mark.parametrize("name", ["fcn8s_vgg16", "fcn16s_vgg16", "dilated_frontend"])
def test_any_input_size_gives_a_map_of_that_size(name):
    model = create_model(name, num_classes=5, **CHEAP).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 120, 200)).shape == (1, 5, 120, 200)


def test_fresh_context_module_is_the_identity():
    module = ContextModule(21)
    x = torch.rand(2, 21, 40, 36)  # non-negative: the scores after a ReLU (every layer but the last truncates)
    with torch.no_grad():
        assert torch.equal(module(x), x)
        assert torch.equal(module(x - 0.5), (x - 0.5).relu())


def test_context_module_fields_grow_exponentially_at_equal_parameters():
    # Yu & Koltun 2016 Table 1: receptive fields 3x3, 5x5, 9x9, 17x17, 33x33, 65x65, 67x67
    dilated, plain = ContextModule(8), ContextModule(8, dilations=(1,) * 7)
    fields = {}
    for key, module in (("dilated", dilated), ("plain", plain)):
        rows = [r for r in analyze(module, (8, 80, 80)).layers if r.type == "Conv2d"]
        fields[key] = [r.receptive_field[0] for r in rows]
    assert fields["dilated"] == [3, 5, 9, 17, 33, 65, 67, 67]
    assert fields["plain"] == [3, 5, 7, 9, 11, 13, 15, 15]
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(dilated) == count(plain) == 64 * 8**2 + 8 * 8  # 7 x 9 C^2 + C^2 weights, 8 C biases


def test_dilated_frontend_keeps_stride_8_and_dilated_digits_matches_its_plain_twin():
    a = analyze(create_model("dilated_frontend", **CHEAP), (3, 224, 224))
    fc7 = next(r for r in a.layers if r.name == "fc7")
    assert fc7.output_shape[-2:] == (28, 28) and fc7.jump == (8, 8)
    # VGG-16's field at fc6 is 212 + 6 x 32 = 404 px; the dilations give all of it back but the
    # 2x2 windows of the removed pool4 and pool5 (8 + 16 px)
    vgg_fc6 = analyze(create_model("fcn32s_vgg16", first_padding=1, **CHEAP), (3, 224, 224))
    assert next(r for r in vgg_fc6.layers if r.name == "fc6").receptive_field == (404, 404)
    assert fc7.receptive_field == (404 - 8 - 16, 404 - 8 - 16)
    dil = analyze(create_model("dilated_digits"), (1, 64, 64))
    flat = analyze(create_model("dilated_digits", dilations=(1,) * 7), (1, 64, 64))
    assert dil.total.params == flat.total.params
    field = lambda a: next(r for r in a.layers if r.name == "context.layers.ctx_fc8").receptive_field[0]  # noqa: E731
    assert field(flat) == 6 + 2 * 14 and field(dil) == 6 + 2 * 66  # stem 6 px, then 2 px per context unit
