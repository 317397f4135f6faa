"""The residual families against numbers from outside the code.

- torchvision: the same state dict keys, the same eval logits given the same weights, and the
  parameter counts and GFLOPS torchvision publishes with its weights (``weights.meta``);
- He et al. 2016: Table 1 (FLOPs of the 18..152-layer nets) and Table 6 (CIFAR parameter counts);
- Xie et al. 2017, Table 1 (ResNeXt-50 32x4d: 25.0M parameters, 4.2 GFLOPs);
- Hu et al. 2018: SE-ResNet-50 has 28.1M parameters (Table 10, r = 16), about 2.5M more than
  ResNet-50 (§4), and ``torchvision.ops.SqueezeExcitation`` as a reference SE implementation.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.fx
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import create_model, model_info
from cnnlab.errors import ConfigError
from cnnlab.models.blocks.residual import BasicBlock, Bottleneck, ZeroPadShortcut
from cnnlab.models.blocks.se import SqueezeExcitation

TORCHVISION_COMPATIBLE = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d"]

# He et al. 2016, Table 1, last row: FLOPs (multiply-adds) at 224x224, x 10^9, of the paper's nets
# (stride on the bottleneck's first 1x1). The paper gives one decimal.
PAPER_TABLE1_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}

# He et al. 2016, Table 6: parameters of the CIFAR-10 nets, as printed.
PAPER_TABLE6_PARAMS = {
    "resnet20": "0.27M", "resnet32": "0.46M", "resnet44": "0.66M",
    "resnet56": "0.85M", "resnet110": "1.7M", "resnet1202": "19.4M",
}  # fmt: skip

MY_MODELS = {
    # name: (family, paper, input_size, num_classes, recipe, torchvision)
    "resnet18": ("resnet", "He et al., 2016", (3, 224, 224), 1000, "resnet_imagenet", "resnet18"),
    "resnet34": ("resnet", "He et al., 2016", (3, 224, 224), 1000, "resnet_imagenet", "resnet34"),
    "resnet50": ("resnet", "He et al., 2016", (3, 224, 224), 1000, "resnet_imagenet", "resnet50"),
    "resnet101": ("resnet", "He et al., 2016", (3, 224, 224), 1000, "resnet_imagenet", "resnet101"),
    "resnet152": ("resnet", "He et al., 2016", (3, 224, 224), 1000, "resnet_imagenet", "resnet152"),
    "plain18": ("plain", "He et al., 2016", (3, 224, 224), 1000, "resnet_imagenet", None),
    "plain34": ("plain", "He et al., 2016", (3, 224, 224), 1000, "resnet_imagenet", None),
    "resnext50_32x4d": ("resnext", "Xie et al., 2017", (3, 224, 224), 1000, "resnet_imagenet", "resnext50_32x4d"),
    "se_resnet50": ("senet", "Hu et al., 2018", (3, 224, 224), 1000, "resnet_imagenet", None),
    "se_resnet20": ("senet", "Hu et al., 2018", (3, 32, 32), 10, "resnet_cifar", None),
    **{f"resnet{d}": ("resnet_cifar", "He et al., 2016", (3, 32, 32), 10,
                      "resnet110_cifar" if d >= 110 else "resnet_cifar", None)
       for d in (20, 32, 44, 56, 110, 1202)},
    **{f"plain{d}": ("plain", "He et al., 2016", (3, 32, 32), 10,
                     "resnet110_cifar" if d >= 110 else "resnet_cifar", None)
       for d in (20, 32, 44, 56, 110)},
}  # fmt: skip


def meta_model(name: str, **config) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **config)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=None)
def params_of(name: str, **config) -> int:
    """Parameters of a registered model, counted on the meta device (cached: resnet1202 takes ~1.5 s)."""
    return num_params(meta_model(name, **config))


@functools.lru_cache(maxsize=None)
def gmacs(name: str, **config) -> float:
    """Multiply-adds at 224x224 in billions, counted on the meta device (FlopCounterMode counts 2 per MAC)."""
    with torch.device("meta"):
        model = create_model(name, **config).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, 224, 224))
    return counter.get_total_flops() / 2e9


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (eval then matters)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.weight.uniform_(0.1, 0.5, generator=g)  # < 1 keeps 50 residual additions bounded
                m.bias.normal_(0, 0.1, generator=g)
    return model


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (BasicBlock, Bottleneck))]


# ------------------------------------------------------------------------------------- registry


def test_registry_metadata():
    for name, (family, paper, input_size, num_classes, recipe, tv) in MY_MODELS.items():
        info = model_info(name)
        assert (info.family, info.paper, info.input_size, info.num_classes, info.recipe, info.torchvision) == (
            family, paper, input_size, num_classes, recipe, tv,
        ), name  # fmt: skip
        assert info.departures, f"{name}: say how it departs from the paper (or 'none')"


# resnet1202 (resnet110's code with n = 200) is built on meta by test_cifar_params_match_he_table6.
@pytest.mark.parametrize("name", sorted(set(MY_MODELS) - {"resnet1202"}))
def test_builds_on_meta_with_in_chans_and_num_classes(name):
    model = meta_model(name, in_chans=1, num_classes=7)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 7
    assert all(p.dtype == torch.float32 and p.is_meta for p in model.parameters())
    names = dict(model.named_modules())
    assert [f["module"] for f in model.feature_info] == list(model.stage_names)
    assert all(f["module"] in names for f in model.feature_info)


# ------------------------------------------------------------------------------------- torchvision


@pytest.mark.parametrize("name", TORCHVISION_COMPATIBLE)
def test_torchvision_weights_load_strictly_and_give_the_same_logits(name):
    tv = randomize_norms(getattr(torchvision.models, name)()).eval()
    ours = meta_model(name).to_empty(device="cpu").eval()  # no init cost: every value is loaded next
    tv_state = tv.state_dict()
    assert list(ours.state_dict()) == list(tv_state)  # same keys in the same order
    ours.load_state_dict(tv_state, strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert expected.abs().max() > 0.05  # the comparison is not between two near-zero tensors
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TORCHVISION_COMPATIBLE)
def test_params_and_macs_match_torchvision_published(name):
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    assert params_of(name) == meta["num_params"]
    assert round(gmacs(name), 3) == pytest.approx(meta["_ops"], abs=1e-9)  # torchvision's GFLOPS are MACs


def test_resnext50_matches_xie_table1():
    # Xie et al. 2017, Table 1: ResNeXt-50 (32x4d) 25.0 x 10^6 params, 4.2 x 10^9 FLOPs; ResNet-50 25.5, 4.1.
    assert params_of("resnext50_32x4d") / 1e6 == pytest.approx(25.0, abs=0.05)
    assert gmacs("resnext50_32x4d") == pytest.approx(4.2, abs=0.05)
    assert gmacs("resnet50") == pytest.approx(4.1, abs=0.05)


# ------------------------------------------------------------------------------------- He et al. tables


@pytest.mark.parametrize("name", list(PAPER_TABLE1_GMACS))
def test_macs_match_he_table1_with_the_papers_stride_placement(name):
    bottleneck = name in ("resnet50", "resnet101", "resnet152")
    config = {"stride_in_1x1": True} if bottleneck else {}
    # The paper prints one decimal and is not consistent in rounding (3.86 -> 3.8, 7.57 -> 7.6).
    assert gmacs(name, **config) == pytest.approx(PAPER_TABLE1_GMACS[name], abs=0.1)
    if bottleneck:  # torchvision's stride on the 3x3 costs 0.2-0.3 GMACs more: the departure is real
        assert gmacs(name) - PAPER_TABLE1_GMACS[name] > 0.15


@pytest.mark.parametrize("name", list(PAPER_TABLE6_PARAMS))
def test_cifar_params_match_he_table6(name):
    printed = PAPER_TABLE6_PARAMS[name]
    decimals = len(printed.rstrip("M").split(".")[1])
    params = params_of(name)
    assert f"{round(params / 1e6, decimals)}M" == printed
    plain = name.replace("resnet", "plain")
    if plain != "plain1202":  # option A adds no parameters: the plain counterpart has as many
        assert params_of(plain) == params


def test_cifar_architecture_is_section_4_2():
    model = create_model("resnet20").eval()
    assert (model.conv1.kernel_size, model.conv1.out_channels, model.maxpool) == ((3, 3), 16, None)
    shapes = {}
    hooks = [getattr(model, s).register_forward_hook(lambda m, i, o, s=s: shapes.__setitem__(s, o.shape))
             for s in model.stage_names]  # fmt: skip
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    # 16/32/64 filters on 32x32, 16x16, 8x8 maps; 6n+2 weighted layers (convs + fc) with n = 3.
    assert shapes == {"layer1": (2, 16, 32, 32), "layer2": (2, 32, 16, 16), "layer3": (2, 64, 8, 8)}
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 6 * 3 + 2
    for f, s in zip(model.feature_info, ("layer1", "layer2", "layer3")):
        assert (f["num_chs"], 32 // f["reduction"]) == (shapes[s][1], shapes[s][2])


# ------------------------------------------------------------------------------------- options


def test_shortcut_options_parameter_counts():
    a, b, c = (params_of("resnet34", shortcut=o) for o in "ABC")
    assert a == params_of("plain34")  # option A is parameter-free
    assert b == torchvision.models.get_model_weights("resnet34").DEFAULT.meta["num_params"]
    assert a < b < c
    model_c = meta_model("resnet18", shortcut="C")
    assert all(isinstance(blk.downsample, nn.Sequential) for _, blk in residual_blocks(model_c))
    model_a = meta_model("resnet18", shortcut="A")
    kinds = {n: type(blk.downsample) for n, blk in residual_blocks(model_a)}
    assert {n for n, k in kinds.items() if k is ZeroPadShortcut} == {"layer2.0", "layer3.0", "layer4.0"}
    assert not any("downsample" in k for k in meta_model("plain18").state_dict())


def test_stride_in_1x1_moves_the_stride_and_keeps_the_parameters():
    v15, v1 = meta_model("resnet50"), meta_model("resnet50", stride_in_1x1=True)
    for stage in ("layer2", "layer3", "layer4"):
        assert (getattr(v15, stage)[0].conv1.stride, getattr(v15, stage)[0].conv2.stride) == ((1, 1), (2, 2))
        assert (getattr(v1, stage)[0].conv1.stride, getattr(v1, stage)[0].conv2.stride) == ((2, 2), (1, 1))
        assert getattr(v1, stage)[0].downsample[0].stride == (2, 2)
    assert num_params(v1) == num_params(v15)
    x = torch.randn(1, 3, 64, 64)
    small = create_model("resnet50", layers=(1, 1, 1, 1), stride_in_1x1=True).eval()
    assert small(x).shape == (1, 1000) and small.forward_features(x).shape == (1, 2048, 2, 2)


def test_imagenet_feature_info_matches_the_stage_outputs():
    model = create_model("resnet50", layers=(1, 1, 1, 1)).eval()
    shapes = {}
    for f in model.feature_info:
        model.get_submodule(f["module"]).register_forward_hook(
            lambda m, i, o, name=f["module"]: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    # Table 1: conv2_x .. conv5_x output 256, 512, 1024, 2048 channels at strides 4, 8, 16, 32.
    expected = {"layer1": (256, 16, 16), "layer2": (512, 8, 8), "layer3": (1024, 4, 4), "layer4": (2048, 2, 2)}
    assert shapes == expected
    assert [(f["num_chs"], 64 // f["reduction"]) for f in model.feature_info] == [e[:2] for e in expected.values()]


def test_widths_option():
    model = meta_model("resnet18", widths=(32, 64, 128, 256))
    assert model.fc.in_features == 256 and model.layer1[0].conv1.out_channels == 32
    assert [f["num_chs"] for f in model.feature_info] == [32, 64, 128, 256]


@pytest.mark.parametrize(
    "name, config, field",
    [
        ("resnet18", {"shortcut": "D"}, "shortcut"),
        ("resnet20", {"layers": (0, 3, 3)}, "layers"),
        ("resnet20", {"layers": (3, 3)}, "widths"),
        ("resnet20", {"widths": (16, 32, -64)}, "widths"),
        ("resnet18", {"stride_in_1x1": True}, "stride_in_1x1"),
        ("resnet18", {"groups": 32}, "groups"),
        ("resnet50", {"groups": 0}, "groups"),
        ("resnet50", {"width_per_group": 2.5}, "width_per_group"),
        ("resnet50", {"se_reduction": 0}, "se_reduction"),
        ("resnet50", {"block": "wide"}, "block"),
        ("resnet50", {"stem": "deep"}, "stem"),
        ("resnet50", {"zero_init_residual": "yes"}, "zero_init_residual"),
        ("resnet50", {"shortcuts": "A"}, "shortcuts"),  # a typo names the unknown field
    ],
)
def test_bad_config_raises_config_error_naming_the_field(name, config, field):
    with pytest.raises(ConfigError, match=field):
        meta_model(name, **config)


# ------------------------------------------------------------------------------------- block contract


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet20", ["layer2.0", "layer3.0"]),
        ("plain20", ["layer2.0", "layer3.0"]),
        ("resnet18", ["layer2.0", "layer3.0", "layer4.0"]),
        ("resnet50", ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]),  # 64 -> 256 channels in layer1.0
    ],
)
def test_downsampling_flags(name, expected):
    model = meta_model(name)
    blocks = residual_blocks(model)
    assert [n for n, b in blocks if b.downsampling] == expected
    assert [n for n, b in blocks] == [n for n, _ in model.blocks()]
    assert all(b.has_shortcut == (not name.startswith("plain")) for _, b in blocks)


CONTRACT_MODELS = [
    ("resnet20", {}, 32),
    ("plain20", {}, 32),
    ("se_resnet20", {}, 32),
    ("resnet18", {"layers": (1, 1, 1, 1), "shortcut": "C"}, 64),
    ("resnet50", {"layers": (1, 2, 1, 1), "stride_in_1x1": True}, 64),
    ("plain34", {"layers": (1, 2, 1, 1)}, 64),
    ("resnext50_32x4d", {"layers": (1, 1, 1, 1)}, 64),
    ("se_resnet50", {"layers": (1, 1, 1, 1)}, 64),
]


@pytest.mark.parametrize("name, config, size", CONTRACT_MODELS)
def test_block_is_relu_of_residual_plus_shortcut(name, config, size):
    model = randomize_norms(create_model(name, **config)).eval()
    seen = {}
    hooks = []
    for n, blk in residual_blocks(model):
        hooks.append(blk.register_forward_hook(lambda m, i, o, n=n: seen.setdefault(n, {}).update(x=i[0], y=o)))
        hooks.append(blk.relu.register_forward_pre_hook(lambda m, i, n=n: seen.setdefault(n, {}).update(pre=i[0])))
    with torch.no_grad():
        model(torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)))
        for n, blk in residual_blocks(model):
            x, y, pre = seen[n]["x"], seen[n]["y"], seen[n]["pre"]
            f, s = blk.residual(x), blk.shortcut(x)
            assert f.shape == s.shape == y.shape, n
            torch.testing.assert_close(f + s, pre, rtol=0, atol=0)  # the pre-activation output, exactly
            torch.testing.assert_close(torch.relu(f + s), y, rtol=0, atol=0)
            assert blk.downsampling == (x.shape != y.shape), n
            if not blk.has_shortcut:
                assert not s.any(), f"{n}: a plain block's shortcut is the zero map"
    for h in hooks:
        h.remove()


def test_option_a_shortcut_is_a_subsampled_zero_padded_identity():
    block = create_model("resnet20").layer2[0]
    x = torch.randn(2, 16, 32, 32)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 16, 16)
    torch.testing.assert_close(s[:, :16], x[:, :, 0::2, 0::2], rtol=0, atol=0)
    assert not s[:, 16:].any()
    identity = create_model("resnet20").layer2[1]
    y = torch.randn(2, 32, 16, 16)
    assert identity.shortcut(y) is y


def test_zero_init_residual_matches_torchvision():
    from torchvision.models.resnet import BasicBlock as TvBasic
    from torchvision.models.resnet import Bottleneck as TvBottleneck
    from torchvision.models.resnet import ResNet as TvResNet

    for name, tv_block in (("resnet18", TvBasic), ("resnet50", TvBottleneck)):
        tv = TvResNet(tv_block, [1, 1, 1, 1], zero_init_residual=True)
        ours = create_model(name, layers=(1, 1, 1, 1), zero_init_residual=True)
        zeros = lambda m: {k for k, v in m.state_dict().items() if k.endswith(".weight") and not v.any()}  # noqa: E731
        assert zeros(ours) == zeros(tv) and zeros(ours)
        ours.eval()
        x = ours.maxpool(ours.relu(ours.bn1(ours.conv1(torch.randn(1, 3, 64, 64)))))
        for _, blk in residual_blocks(ours):  # each block starts as relu(shortcut(x))
            assert not blk.residual(x).any()
            y = blk(x)
            torch.testing.assert_close(y, torch.relu(blk.shortcut(x)), rtol=0, atol=0)
            x = y


# ------------------------------------------------------------------------------------- SE


def test_se_resnet50_parameters_match_hu_et_al():
    se, plain = params_of("se_resnet50"), params_of("resnet50")
    assert round(se / 1e6, 1) == 28.1  # Hu et al. (TPAMI), Table 10, r = 16
    assert round((se - plain) / 1e6, 1) == 2.5  # "~2.5 million additional parameters" (§4)


def test_se_resnet20_adds_eq3_parameters_on_every_block():
    model = meta_model("se_resnet20")
    blocks = residual_blocks(model)
    assert all(isinstance(b.se, SqueezeExcitation) for _, b in blocks)
    # Eq. 3: W1 is C/r x C and W2 is C x C/r (plus their biases), r = 16, at least one hidden unit.
    expected = sum(2 * c * max(1, c // 16) + max(1, c // 16) + c for c in [16] * 3 + [32] * 3 + [64] * 3)
    assert num_params(model) - params_of("resnet20") == expected == 2373


def test_squeeze_excitation_matches_torchvision_ops():
    ours = SqueezeExcitation(64, reduction=16)
    ref = torchvision.ops.SqueezeExcitation(64, 4)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 64, 7, 7)
    torch.testing.assert_close(ours(x), ref(x))


# ------------------------------------------------------------------------------------- FX, inputs


@pytest.mark.parametrize("name", sorted(set(MY_MODELS) - {"resnet1202"}))  # 1202 is resnet110's code with n=200
def test_fx_symbolic_trace(name):
    graph = torch.fx.symbolic_trace(meta_model(name))
    assert any(node.op == "call_module" and node.target == "fc" for node in graph.graph.nodes)


@pytest.mark.parametrize("name, config, shape", [
    ("resnet20", {}, (2, 3, 32, 32)),
    ("plain20", {}, (2, 3, 32, 32)),
    ("se_resnet20", {"in_chans": 1}, (2, 1, 28, 28)),  # MNIST-sized input
    ("resnet18", {"in_chans": 1, "num_classes": 10, "shortcut": "A"}, (1, 1, 64, 64)),
])  # fmt: skip
def test_traced_model_computes_the_same(name, config, shape):
    model = randomize_norms(create_model(name, **config)).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(*shape)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(traced(x), out, rtol=0, atol=0)
    assert out.shape == (shape[0], model.fc.out_features)
