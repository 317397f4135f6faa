"""AlexNet, ZFNet and VGG against numbers from outside the code: torchvision's models and published
parameter counts and GMACs, the lecture's per-layer tables (002), the papers' tables and sentences."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import ConfigError, create_model, list_models, model_info
from cnnlab.models.layers import local_response_norm
from cnnlab.models.zoo.vgg import CFGS

TORCHVISION_ALIASES = [
    n for n in list_models() if model_info(n).family in ("alexnet", "vgg") and model_info(n).torchvision
]


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """These tensors are tiny: a second OpenMP thread costs more in hand-offs than it saves, and
    spins when the machine is loaded. The thread count is restored for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _meta(name: str, **config) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **config)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shapes(model: nn.Module, x: Tensor, container: str) -> dict[str, tuple[int, ...]]:
    """Output shape (without the batch) of each direct child of ``model.<container>``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, child in getattr(model, container).named_children():
        child.register_forward_hook(lambda m, a, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
    model(x)
    return shapes


_PRIME = 1_000_003  # period of the pseudo-random fill of big tensors (shares no factor with any layer size)


@torch.no_grad()
def _random_torchvision(name: str, seed: int) -> nn.Module:
    """torchvision's model with seeded random weights (and BN statistics) of a sensible scale.

    Built on the meta device and materialised without init: drawing 140M fresh random numbers per
    VGG would dominate the test's time, so tensors bigger than ``_PRIME`` repeat one random block
    of prime length (every row of FC6 still differs from every other).
    """
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    for key, t in model.state_dict().items():
        if not t.is_floating_point():
            t.zero_()  # num_batches_tracked
            continue
        if t.dim() > 1:  # conv / linear weights: variance 1 / fan_in keeps activations O(1)
            low, high = -math.sqrt(3 / t[0].numel()), math.sqrt(3 / t[0].numel())
        elif key.endswith("running_var") or (key.endswith("weight") and t.dim() == 1):
            low, high = 0.5, 1.5  # BN scales and variances
        else:
            low, high = -0.1, 0.1  # biases, BN shifts and means
        flat = t.view(-1)
        block = torch.empty(min(flat.numel(), _PRIME)).uniform_(low, high, generator=gen)
        for start in range(0, flat.numel(), _PRIME):
            flat[start : start + _PRIME] = block[: flat.numel() - start]
    return model


@pytest.mark.parametrize("name", TORCHVISION_ALIASES)
def test_torchvision_state_dict_loads_strictly_and_logits_match(name: str) -> None:
    torch.manual_seed(0)
    theirs = _random_torchvision(model_info(name).torchvision, seed=0).eval()
    ours = _meta(name)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # same keys, same order
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    ours.eval()
    assert not any(t.is_meta for t in list(ours.parameters()) + list(ours.buffers()))
    # AlexNet at its 224 (the 6x6 adaptive pool is then the identity, so FC6 sees the real map
    # order); VGG at 64x64, where torchvision's 7x7 adaptive pool spreads a 2x2 map.
    side = 224 if model_info(name).family == "alexnet" else 64
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert expected.abs().max() > 1e-2  # logits big enough for atol=1e-5 to mean something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TORCHVISION_ALIASES)
def test_parameter_count_and_macs_match_torchvision(name: str) -> None:
    tv_name = model_info(name).torchvision
    ours = _meta(name)
    with torch.device("meta"):
        theirs = torchvision.models.get_model(tv_name, weights=None)
    published = torchvision.models.get_model_weights(tv_name).IMAGENET1K_V1.meta
    assert _num_params(ours) == _num_params(theirs) == published["num_params"]
    # torchvision's "_ops" is GMACs at 224 (conv + linear), rounded to 3 decimals.
    with FlopCounterMode(display=False) as counter:
        ours(torch.empty(1, 3, 224, 224, device="meta"))
    assert counter.get_total_flops() / 2e9 == pytest.approx(published["_ops"], abs=6e-3)


# Simonyan & Zisserman 2015, Table 2: "Number of parameters (in millions)".
VGG_TABLE_2 = {"vgg_a": 133, "vgg_a_lrn": 133, "vgg_b": 133, "vgg_c": 134, "vgg_d": 138, "vgg_e": 144}


@pytest.mark.parametrize("name", list(VGG_TABLE_2))
def test_vgg_paper_parameter_counts(name: str) -> None:
    assert round(_num_params(_meta(name)) / 1e6) == VGG_TABLE_2[name]


def test_vgg_paper_columns_equal_their_torchvision_aliases_in_size() -> None:
    for column, alias in (("vgg_a", "vgg11"), ("vgg_b", "vgg13"), ("vgg_d", "vgg16"), ("vgg_e", "vgg19")):
        assert _num_params(_meta(column)) == _num_params(_meta(alias))
        assert _num_params(_meta(column, batch_norm=True)) == _num_params(_meta(alias + "_bn"))


def test_vgg16_matches_lecture_per_layer_table() -> None:
    """Lecture 002's VGG16 walk-through: activation shapes and weight counts (biases not counted)."""
    model = _meta("vgg_d")
    shapes = _shapes(model, torch.empty(1, 3, 224, 224, device="meta"), "features")
    convs = [(name, m) for name, m in model.features.named_children() if isinstance(m, nn.Conv2d)]
    lecture = [  # [H x W x C], params: (3*3*C_in)*C_out
        (224, 64, 1_728), (224, 64, 36_864),
        (112, 128, 73_728), (112, 128, 147_456),
        (56, 256, 294_912), (56, 256, 589_824), (56, 256, 589_824),
        (28, 512, 1_179_648), (28, 512, 2_359_296), (28, 512, 2_359_296),
        (14, 512, 2_359_296), (14, 512, 2_359_296), (14, 512, 2_359_296),
    ]  # fmt: skip
    assert len(convs) == len(lecture)
    for (name, conv), (side, maps, weights) in zip(convs, lecture, strict=True):
        assert shapes[name] == (maps, side, side), name
        assert conv.weight.numel() == weights, name
    assert [shapes[f"pool{i}"] for i in range(1, 6)] == [(64, 112, 112), (128, 56, 56), (256, 28, 28),
                                                         (512, 14, 14), (512, 7, 7)]  # fmt: skip
    fcs = [model.classifier.fc6, model.classifier.fc7, model.classifier.fc8]
    assert [fc.weight.numel() for fc in fcs] == [102_760_448, 16_777_216, 4_096_000]
    assert _num_params(model) // 1_000_000 == 138  # "TOTAL params: 138M parameters"


def test_vgg_columns_follow_table_1() -> None:
    # Weight layers: A 11, B 13, C 16, D 16, E 19 (Table 1's header), 3 of them FC.
    depth = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
    for column, layers in CFGS.items():
        assert sum(layer.startswith("conv") for layer in layers) + 3 == depth[column]
        assert layers.count("maxpool") == 5
    c = _meta("vgg_c").features
    assert [getattr(c, f"conv{s}_3").kernel_size for s in (3, 4, 5)] == [(1, 1)] * 3  # C's conv1 layers
    assert c.conv3_3.padding == (0, 0) and c.conv3_2.padding == (1, 1)
    lrn = _meta("vgg_a_lrn").features
    names = list(dict(lrn.named_children()))
    assert names[:4] == ["conv1_1", "relu1_1", "norm1", "pool1"]
    assert isinstance(lrn.norm1, nn.LocalResponseNorm) and lrn.norm1.size == 5


def test_local_response_norm_is_the_papers_formula() -> None:
    """Krizhevsky et al. 2012 §3.3: b_i = a_i / (k + alpha * sum_{|j-i|<=n/2} a_j^2)^beta."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 7, 3, 3, generator=gen) * 40  # big enough that the denominator matters
    for k, n, alpha, beta in ((2.0, 5, 1e-4, 0.75), (1.0, 3, 1e-3, 0.5)):
        expected = torch.empty_like(a)
        for i in range(a.shape[1]):
            lo, hi = max(0, i - n // 2), min(a.shape[1] - 1, i + n // 2)
            expected[:, i] = a[:, i] / (k + alpha * (a[:, lo : hi + 1] ** 2).sum(1)) ** beta
        got = local_response_norm(size=n, alpha=alpha, beta=beta, k=k)(a)
        torch.testing.assert_close(got, expected)
        assert not torch.allclose(got, a / k**beta, rtol=1e-2)  # the sum term is not negligible


# Lecture 002, "Full (simplified) AlexNet architecture" at 227x227x3: (C, H, W) after each layer.
ALEXNET_LECTURE = {
    "conv1": (96, 55, 55), "pool1": (96, 27, 27), "norm1": (96, 27, 27),
    "conv2": (256, 27, 27), "pool2": (256, 13, 13), "norm2": (256, 13, 13),
    "conv3": (384, 13, 13), "conv4": (384, 13, 13), "conv5": (256, 13, 13),
    "pool3": (256, 6, 6),
}  # fmt: skip


def test_alexnet_2012_matches_lecture_table() -> None:
    model = _meta("alexnet_2012")
    x = torch.empty(1, 3, 227, 227, device="meta")
    shapes = _shapes(model, x, "features")
    labelled = [n for n in dict(model.features.named_children()) if n in ALEXNET_LECTURE]
    assert labelled == list(ALEXNET_LECTURE)  # the lecture's order: POOL then NORM
    assert {n: shapes[n] for n in ALEXNET_LECTURE} == ALEXNET_LECTURE
    fc = _shapes(model, x, "classifier")
    assert (fc["fc6"], fc["fc7"], fc["fc8"]) == ((4096,), (4096,), (1000,))
    assert _num_params(model.features.conv1) == 34_944  # (11*11*3)*96 + 96 biases: the lecture's "35K"
    # Paper §3.5: kernels 11x11x3 (96), 5x5x48 (256), 3x3x256 (384), 3x3x192 (384), 3x3x192 (256).
    f = model.features
    assert [tuple(getattr(f, c).weight.shape) for c in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [
        (96, 3, 11, 11), (256, 48, 5, 5), (384, 256, 3, 3), (384, 192, 3, 3), (256, 192, 3, 3),
    ]  # fmt: skip
    # "60 million parameters and 650,000 neurons" (abstract); lecture 000 rounds to 62M.
    assert 60e6 <= _num_params(model) <= 62e6
    neurons = sum(math.prod(shapes[c]) for c in ("conv1", "conv2", "conv3", "conv4", "conv5")) + 4096 + 4096 + 1000
    assert neurons == pytest.approx(650_000, rel=0.02)


def test_alexnet_2012_paper_order_option() -> None:
    model = _meta("alexnet_2012", norm_before_pool=True)
    names = list(dict(model.features.named_children()))
    assert names[:4] == ["conv1", "relu1", "norm1", "pool1"]  # §3.5: pooling follows normalisation
    shapes = _shapes(model, torch.empty(1, 3, 227, 227, device="meta"), "features")
    assert shapes["norm1"] == (96, 55, 55) and shapes["pool3"] == (256, 6, 6)
    assert [i["module"] for i in model.feature_info] == ["features.pool1", "features.pool2", "features.pool3"]


def test_alexnet_dropout_placement() -> None:
    paper = [n for n, _ in create_model("alexnet_2012", width=1 / 16).classifier.named_children()]
    assert paper == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]  # §4.2: outputs of FC6/FC7
    tv = create_model("alexnet", width=1 / 16).classifier
    assert [type(m) for m in tv] == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Linear]
    assert all(m.p == 0.5 for m in tv if isinstance(m, nn.Dropout))
    vgg = create_model("vgg_a", width=1 / 16, dropout=0.3)
    assert [m.p for m in vgg.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]


def test_alexnet_2012_two_towers() -> None:
    f = _meta("alexnet_2012").features
    assert [getattr(f, c).groups for c in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    dense = _meta("alexnet_2012", two_towers=False).features
    assert all(getattr(dense, c).groups == 1 for c in ("conv2", "conv4", "conv5"))


def test_zfnet_shapes() -> None:
    """Zeiler & Fergus 2014 Fig. 3 sizes (110, 55, 26, 13, 6) with the lecture's 512-1024-512."""
    model = _meta("zfnet")
    shapes = _shapes(model, torch.empty(1, 3, 224, 224, device="meta"), "features")
    assert {n: shapes[n] for n in shapes if not n.startswith("relu")} == {
        "conv1": (96, 110, 110), "pool1": (96, 55, 55), "norm1": (96, 55, 55),
        "conv2": (256, 26, 26), "pool2": (256, 13, 13), "norm2": (256, 13, 13),
        "conv3": (512, 13, 13), "conv4": (1024, 13, 13), "conv5": (512, 13, 13),
        "pool3": (512, 6, 6),
    }  # fmt: skip
    f = model.features
    assert (f.conv1.kernel_size, f.conv1.stride) == ((7, 7), (2, 2))  # lecture: 7x7 stride 2
    assert all(getattr(f, c).groups == 1 for c in ("conv2", "conv4", "conv5"))  # one GPU, dense connections
    assert model.classifier.fc6.in_features == 6 * 6 * 512


def test_alexnet_family_init_follows_the_papers() -> None:
    torch.manual_seed(0)
    # Krizhevsky et al. 2012 §5: N(0, 0.01) weights; biases 1 in conv2, conv4, conv5, fc6, fc7.
    # Full size: the one real build of a full-size ImageNet model in these tests (61M, ~0.5 s).
    model = create_model("alexnet_2012")
    layers = dict(model.features.named_children()) | dict(model.classifier.named_children())
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        assert layers[name].weight.std().item() == pytest.approx(0.01, rel=0.1), name
        expected = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layers[name].bias == expected), name
    # Zeiler & Fergus 2014 §3: weights 10^-2, biases 0.
    zf = create_model("zfnet", width=0.25)
    assert all(torch.all(m.bias == 0) for m in zf.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert zf.features.conv3.weight.std().item() == pytest.approx(0.01, rel=0.1)


def test_vgg_init_follows_the_paper_and_torchvision() -> None:
    torch.manual_seed(0)
    # Simonyan & Zisserman §3.1 + Glorot & Bengio 2010: U(+-sqrt(6 / (fan_in + fan_out))), biases 0.
    model = create_model("vgg_d", width=0.25)
    conv = model.features.conv3_2
    fan_in, fan_out = conv.weight[0].numel(), conv.weight.shape[0] * conv.weight[0, 0].numel()
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert conv.weight.abs().max().item() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert all(torch.all(m.bias == 0) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    # torchvision's VGG init for the aliases: Kaiming normal (fan_out) convs, N(0, 0.01) linear.
    tv = create_model("vgg16", width=0.25)
    conv = tv.features[12]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (conv.weight.shape[0] * 9)), rel=0.05)
    assert tv.classifier[3].weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_vgg_reduced_width_on_small_inputs() -> None:
    model = create_model("vgg_d", num_classes=10, width=0.25, fc_width=512, pool_size=1, batch_norm=True)
    convs = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert convs == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    assert model.classifier.fc6.in_features == 128 and model.classifier.fc6.out_features == 512
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert tuple(model.eval()(torch.randn(2, 3, 32, 32)).shape) == (2, 10)
    # The default 7x7 pool keeps torchvision's classifier at any input from 32x32 up.
    assert tuple(_meta("vgg16")(torch.empty(1, 3, 32, 32, device="meta")).shape) == (1, 1000)


@pytest.mark.parametrize(
    ("name", "config", "field"),
    [
        ("alexnet_2012", dict(dropout=1.0), "dropout"),
        ("alexnet_2012", dict(dropout=-0.1), "dropout"),
        ("alexnet_2012", dict(width=0), "width"),
        ("zfnet", dict(fc_width=0), "fc_width"),
        ("alexnet", dict(pool_size=0), "pool_size"),
        ("alexnet", dict(norm_before_pool=True), "norm_before_pool"),  # alexnet has no NORM layers
        ("alexnet_2012", dict(two_towers="yes"), "two_towers"),
        ("alexnet_2012", dict(init="he"), "init"),
        ("vgg_a", dict(dropout=1), "dropout"),
        ("vgg_a", dict(width=-0.5), "width"),
        ("vgg_b", dict(fc_width=2.5), "fc_width"),
        ("vgg_c", dict(pool_size=0), "pool_size"),
        ("vgg_d", dict(batch_norm="yes"), "batch_norm"),
        ("vgg_e", dict(init="xavier"), "init"),
        ("vgg16", dict(batch_norm=True), "batch_norm"),  # the name says it: vgg16_bn
        ("vgg11", dict(widht=0.5), "widht"),
    ],
)
def test_bad_config_names_the_field(name: str, config: dict, field: str) -> None:
    with torch.device("meta"), pytest.raises(ConfigError, match=field):
        create_model(name, **config)
