"""The analyzer against numbers from outside the code: torchvision's published GFLOPS and parameter
counts, the lectures' AlexNet and VGG-16 walk-throughs (seed 002), GoogLeNet's Table 1 (seed 004),
ResNet-152 against VGG (seed 000), stacked and dilated 3x3 convolutions (seeds 001, 002), and
``torch.utils.flop_counter.FlopCounterMode``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnlab
from cnnlab.analysis import analyze, compare
from cnnlab.errors import ConfigError, UnknownNameError

# torchvision's model documentation: (GFLOPS = multiply-adds, params) of each classification model.
TORCHVISION_PUBLISHED = {
    "alexnet": (0.714, 61_100_840),
    "vgg16": (15.47, 138_357_544),
    "vgg19": (19.632, 143_667_240),
    "googlenet": (1.498, 6_624_904),
    "resnet18": (1.814, 11_689_512),
    "resnet50": (4.089, 25_557_032),
    "resnet152": (11.514, 60_192_808),
    "resnext50_32x4d": (4.23, 25_028_904),
}


@pytest.fixture(scope="module")
def zoo_vgg16():
    return analyze("vgg16")


@pytest.fixture(scope="module")
def zoo_googlenet_2014():
    return analyze("googlenet_2014")


# ---------------------------------------------------------------- torchvision's published numbers
@pytest.mark.parametrize("name", sorted(TORCHVISION_PUBLISHED))
def test_zoo_models_match_torchvision_published_gflops_and_params(name):
    gflops, params = TORCHVISION_PUBLISHED[name]
    a = analyze(name)  # the cnnlab zoo model of the same name, at 3x224x224
    assert a.input_size == (3, 224, 224)
    assert a.total.macs / 1e9 == pytest.approx(gflops, rel=0.005)
    assert a.total.params == params
    assert a.total.flops == 2 * a.total.macs


@pytest.mark.parametrize("name", ["alexnet", "googlenet", "resnext50_32x4d", "mobilenet_v2", "shufflenet_v2_x1_0",
                                  "regnet_y_400mf"])
def test_torchvision_builders_match_their_published_numbers(name):
    # the figures torchvision publishes with its weights (the model documentation's table)
    from torchvision.models import get_model_weights

    meta = get_model_weights(name).DEFAULT.meta
    config = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    a = analyze(f"torchvision:{name}", config=config)
    assert a.total.macs / 1e9 == pytest.approx(meta["_ops"], rel=0.005)
    assert a.total.params == meta["num_params"]
    if name in TORCHVISION_PUBLISHED:
        assert (meta["_ops"], meta["num_params"]) == TORCHVISION_PUBLISHED[name]
    if name == "regnet_y_400mf":  # its builder calls .tolist() on tensors: built on the CPU instead
        assert "built on the CPU" in a.notes[0]


class _ChannelsLastBlock(nn.Module):
    """ConvNeXt-style: a layer norm over channels done by permuting to (N, H, W, C) and back."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Conv2d(8, 4, 3)

    def forward(self, x):
        x = self.conv(x)
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(x)


def test_fields_are_not_tracked_past_an_axis_permutation():
    a = analyze(_ChannelsLastBlock(), (3, 16, 16))
    rows = {r.name: r for r in a.layers}
    assert rows["conv"].receptive_field == (3, 3)
    assert rows["norm"].receptive_field is None and rows["head"].receptive_field is None
    assert a.total.receptive_field is None
    assert len(a.notes) == 1 and "not tracked after 'permute' in the model's own forward" in a.notes[0]
    assert a.total.macs == 8 * 14 * 14 * 27 + 4 * 12 * 12 * 8 * 9  # costs are still counted
    assert "-" in a.table().splitlines()[3]


def test_per_layer_macs_equal_flopcountermode_per_module(zoo_googlenet_2014):
    # FlopCounterMode's own per-module breakdown of a forward pass (meta device), Inception blocks included
    with torch.device("meta"):
        model = cnnlab.create_model("googlenet_2014").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.empty(1, 3, 224, 224, device="meta"))
    counts = {k.partition(".")[2]: sum(v.values()) for k, v in fc.get_flop_counts().items()}
    a = zoo_googlenet_2014
    assert a.total.flops == fc.get_total_flops()
    convs = [r for r in a.layers if r.type in ("Conv2d", "Linear")]
    assert len(convs) > 57
    for r in convs:
        assert r.flops == counts[r.name], r.name
    for r in a.fold(1).layers:
        assert r.flops == counts.get(r.name, 0), r.name


@pytest.mark.parametrize("name,size", [("lenet5", (1, 28, 28)), ("alexnet_2012", (3, 227, 227)),
                                       ("se_resnet20", (3, 32, 32)), ("googlenet_2014", (3, 64, 64)),
                                       ("nin_cifar", (3, 32, 32))])
def test_meta_trace_matches_a_real_cpu_forward(name, size):
    # every row's shape and FLOPs against the real kernels (LRN, concatenation, squeeze-excitation,
    # padding of 28x28 digits, ceil-mode pooling), since the trace computes some shapes itself
    torch.manual_seed(0)
    model = cnnlab.create_model(name).eval()
    a = analyze(model, size)
    shapes, calls = {}, {}
    leaves = {n: m for n, m in model.named_modules() if next(m.children(), None) is None}

    def hook(name):
        def record(module, args, out):
            calls[name] = calls.get(name, 0) + 1
            shapes[name if calls[name] == 1 else f"{name}:{calls[name]}"] = tuple(out.shape)
        return record

    for n, m in leaves.items():
        m.register_forward_hook(hook(n))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.randn(1, *a.input_size))
    module_rows = [r for r in a.layers if r.source == "module"]
    assert all(r.type[:1].islower() for r in a.layers if r.source == "op")
    assert {r.name for r in module_rows} == set(shapes)
    for r in module_rows:
        assert r.output_shape == shapes[r.name], r.name
    assert a.total.flops == fc.get_total_flops()


# ---------------------------------------------------------------- lecture 002: AlexNet walk-through
# [output volume as H x W x C], name; params of CONV1 and POOL1 as the slide computes them.
ALEXNET_LECTURE = [
    ("CONV1", (55, 55, 96)), ("MAX POOL1", (27, 27, 96)), ("NORM1", (27, 27, 96)),
    ("CONV2", (27, 27, 256)), ("MAX POOL2", (13, 13, 256)), ("NORM2", (13, 13, 256)),
    ("CONV3", (13, 13, 384)), ("CONV4", (13, 13, 384)), ("CONV5", (13, 13, 256)),
    ("MAX POOL3", (6, 6, 256)), ("FC6", (4096,)), ("FC7", (4096,)), ("FC8", (1000,)),
]  # fmt: skip
# Krizhevsky et al. 2012, §3.5: kernels of CONV2, CONV4, CONV5 see only the 48/192/192 maps on their
# own GPU; CONV3 and the FC layers see everything. (The lecture's "simplified" list ignores the split.)
ALEXNET_2012_WEIGHTS = {
    "CONV1": 11 * 11 * 3 * 96, "CONV2": 5 * 5 * 48 * 256, "CONV3": 3 * 3 * 256 * 384,
    "CONV4": 3 * 3 * 192 * 384, "CONV5": 3 * 3 * 192 * 256, "FC6": 6 * 6 * 256 * 4096,
    "FC7": 4096 * 4096, "FC8": 4096 * 1000,
}  # fmt: skip


def test_alexnet_2012_matches_the_lecture_walkthrough_at_227():
    a = analyze("alexnet_2012")
    assert a.input_size == (3, 227, 227)
    kinds = {"CONV": "Conv2d", "MAX": "MaxPool2d", "NORM": "LocalResponseNorm", "FC": "Linear"}
    rows = [r for r in a.layers if r.type in kinds.values()]
    assert len(rows) == len(ALEXNET_LECTURE)
    for row, (label, volume) in zip(rows, ALEXNET_LECTURE):
        assert row.type == kinds[label.split()[0].rstrip("0123456789")], label
        shape = row.output_shape[1:]
        hwc = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
        assert hwc == volume, label
        if label.startswith(("MAX", "NORM")):
            assert row.params == 0, label  # "Parameters: 0!"
        else:
            assert row.weights == ALEXNET_2012_WEIGHTS[label], label
    conv1 = rows[0]
    assert conv1.weights == (11 * 11 * 3) * 96 == 34_848  # the slide's "(11*11*3)*96 = 35K"
    assert round(conv1.weights, -3) == 35_000
    assert conv1.receptive_field == (11, 11) and conv1.jump == (4, 4)


# ---------------------------------------------------------------- lecture 002: VGG-16 walk-through
# (name, [H x W x C], "memory" as the slide's product, params as the slide's product, biases not counted)
VGG16_LECTURE = [
    ("CONV3-64", (224, 224, 64), 224 * 224 * 64, (3 * 3 * 3) * 64),
    ("CONV3-64", (224, 224, 64), 224 * 224 * 64, (3 * 3 * 64) * 64),
    ("POOL2", (112, 112, 64), 112 * 112 * 64, 0),
    ("CONV3-128", (112, 112, 128), 112 * 112 * 128, (3 * 3 * 64) * 128),
    ("CONV3-128", (112, 112, 128), 112 * 112 * 128, (3 * 3 * 128) * 128),
    ("POOL2", (56, 56, 128), 56 * 56 * 128, 0),
    ("CONV3-256", (56, 56, 256), 56 * 56 * 256, (3 * 3 * 128) * 256),
    ("CONV3-256", (56, 56, 256), 56 * 56 * 256, (3 * 3 * 256) * 256),
    ("CONV3-256", (56, 56, 256), 56 * 56 * 256, (3 * 3 * 256) * 256),
    ("POOL2", (28, 28, 256), 28 * 28 * 256, 0),
    ("CONV3-512", (28, 28, 512), 28 * 28 * 512, (3 * 3 * 256) * 512),
    ("CONV3-512", (28, 28, 512), 28 * 28 * 512, (3 * 3 * 512) * 512),
    ("CONV3-512", (28, 28, 512), 28 * 28 * 512, (3 * 3 * 512) * 512),
    ("POOL2", (14, 14, 512), 14 * 14 * 512, 0),
    ("CONV3-512", (14, 14, 512), 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("CONV3-512", (14, 14, 512), 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("CONV3-512", (14, 14, 512), 14 * 14 * 512, (3 * 3 * 512) * 512),
    ("POOL2", (7, 7, 512), 7 * 7 * 512, 0),
    ("FC", (4096,), 4096, 7 * 7 * 512 * 4096),
    ("FC", (4096,), 4096, 4096 * 4096),
    ("FC", (1000,), 1000, 4096 * 1000),
]  # fmt: skip
VGG16_LECTURE_INPUT = 224 * 224 * 3  # "INPUT: [224x224x3] memory: 224*224*3=150K"


def test_vgg16_matches_every_row_of_the_lecture_walkthrough(zoo_vgg16):
    rows = [r for r in zoo_vgg16.layers if r.type in ("Conv2d", "MaxPool2d", "Linear")]
    assert len(rows) == len(VGG16_LECTURE)
    for row, (label, volume, memory, params) in zip(rows, VGG16_LECTURE):
        shape = row.output_shape[1:]
        hwc = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
        assert hwc == volume, label
        assert row.activations == memory, label
        assert row.weights == params, label  # the lecture leaves out biases
        assert row.params == params + (volume[-1] if params else 0), label  # biases: one per output map
    assert rows[0].activations == 3_211_264 and rows[0].weights == 1_728  # "3.2M", "1,728"
    assert rows[-3].weights == 102_760_448
    assert round(zoo_vgg16.total.weights / 1e6) == 138  # "TOTAL params: 138M parameters"


def test_vgg16_total_memory_is_15_2m_values_not_the_slides_24m(zoo_vgg16):
    lecture_sum = VGG16_LECTURE_INPUT + sum(memory for _, _, memory, _ in VGG16_LECTURE)
    assert lecture_sum == 15_237_608  # the slide's rows add up to 15.2M values = 61 MB, not "24M ~ 96MB"
    assert lecture_sum * 4 / 1e6 == pytest.approx(60.95, abs=0.01)
    # cnnlab's total adds one tensor the lecture's list does not have: the 7x7 adaptive average
    # pool that torchvision's VGG (and the zoo's, state-dict compatible) runs before the classifier.
    extra = [r for r in zoo_vgg16.layers if r.type not in ("Conv2d", "MaxPool2d", "Linear") and r.activations]
    assert [(r.type, r.activations) for r in extra] == [("AdaptiveAvgPool2d", 7 * 7 * 512)]
    assert zoo_vgg16.total.activations == lecture_sum + 7 * 7 * 512
    assert zoo_vgg16.total.activation_bytes == 4 * zoo_vgg16.total.activations
    assert zoo_vgg16.total.activations < 0.64 * 24e6


# ---------------------------------------------------------------- lecture 004: GoogLeNet Table 1
# Szegedy et al. 2015, Table 1 as the lecture prints it: params (weights only, K = 1024), ops (MACs, M),
# and the columns #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj with the input size.
GOOGLENET_TABLE1 = {
    "3a": (28, 192, (64, 96, 128, 16, 32, 32), 159, 128),
    "3b": (28, 256, (128, 128, 192, 32, 96, 64), 380, 304),
    "4a": (14, 480, (192, 96, 208, 16, 48, 64), 364, 73),
    "4b": (14, 512, (160, 112, 224, 24, 64, 64), 437, 88),
    "4c": (14, 512, (128, 128, 256, 24, 64, 64), 463, 100),
    "4d": (14, 512, (112, 144, 288, 32, 64, 64), 580, 119),
    "4e": (14, 528, (256, 160, 320, 32, 128, 128), 840, 170),
    "5a": (7, 832, (256, 160, 320, 32, 128, 128), 1072, 54),
    "5b": (7, 832, (384, 192, 384, 48, 128, 128), 1388, 71),
}


def _inception_weights(cin: int, w: tuple[int, ...]) -> int:
    n1, r3, n3, r5, n5, pp = w
    return cin * n1 + cin * r3 + 9 * r3 * n3 + cin * r5 + 25 * r5 * n5 + cin * pp


def test_googlenet_2014_table1_ops_per_row(zoo_googlenet_2014):
    rows = {r.name: r for r in zoo_googlenet_2014.fold(1).layers}
    for key, (hw, cin, widths, _, ops) in GOOGLENET_TABLE1.items():
        row = rows[f"inception{key}"]
        assert row.output_shape[1:] == (sum(widths[i] for i in (0, 2, 4, 5)), hw, hw), key
        if key == "5a":
            continue  # the table's 5a row disagrees with its own columns, checked below
        assert abs(row.macs / 1e6 - ops) < 1.0, key  # ops rounded to whole millions
    # the stem: conv 1x1 64 + conv 3x3 192 at 56x56 (Table 1's "112K, 360M"), and the linear layer
    assert abs((rows["conv2"].macs + rows["conv3"].macs) / 1e6 - 360) < 1.0
    assert abs((rows["conv2"].weights + rows["conv3"].weights) / 1024 - 112) < 1.0
    assert rows["fc"].weights / 1024 == 1000 and round(rows["fc"].macs / 1e6) == 1


def test_googlenet_2014_table1_params_where_the_table_is_self_consistent(zoo_googlenet_2014):
    rows = {r.name: r for r in zoo_googlenet_2014.fold(1).layers}
    for key, (hw, cin, widths, params_k, ops) in GOOGLENET_TABLE1.items():
        row = rows[f"inception{key}"]
        assert row.weights == _inception_weights(cin, widths), key  # the table's own columns
        assert row.macs == row.weights * hw * hw, key  # every convolution of a module runs at hw x hw
        if key in ("3a", "3b", "4a", "4b"):
            assert abs(row.weights / 1024 - params_k) < 3.0, key
    # Where Table 1's params column disagrees with its ops column (ops = params x H x W inside a
    # module), the network follows the columns and the ops: 4c's 100M ops imply 498K, not 463K.
    for key in ("4c", "4d", "4e", "5b"):
        hw, _, _, params_k, ops = GOOGLENET_TABLE1[key]
        implied_k = ops * 1e6 / (hw * hw) / 1024
        assert abs(implied_k - params_k) > 6, key  # the table's inconsistency itself
        assert abs(rows[f"inception{key}"].weights / 1024 - implied_k) < 0.6e6 / (hw * hw) / 1024 + 1, key
    # 5a: 1072K / 54M in the table; its columns give 1,042,432 weights = 1018K and 51.1M MACs
    assert rows["inception5a"].weights == 1_042_432 and round(rows["inception5a"].macs / 1e6, 1) == 51.1
    # conv1: Table 1 says 2.7K / 34M; a 7x7x3 -> 64 convolution at 112x112 has 9,408 weights, 118M MACs
    assert rows["conv1"].weights == 7 * 7 * 3 * 64 and round(rows["conv1"].macs / 1e6) == 118
    assert zoo_googlenet_2014.total.depth == 22  # "22 layers deep when counting only layers with parameters"


def test_googlenet_inception_field_is_its_largest_branch(zoo_googlenet_2014):
    rows = {r.name: r for r in zoo_googlenet_2014.layers}
    before = rows["maxpool2"]
    after = rows["inception3a.cat"]
    # the 5x5 branch (1x1 then 5x5) is the widest: rf grows by 4 jumps
    assert after.receptive_field[0] == before.receptive_field[0] + 4 * before.jump[0]
    assert rows["inception3a.branch3.1.conv"].receptive_field == after.receptive_field
    assert rows["inception3a.branch2.1.conv"].receptive_field[0] < after.receptive_field[0]


# ---------------------------------------------------------------- lecture 000: ResNet-152 vs VGG
def test_resnet152_with_the_papers_strides_is_cheaper_than_vgg():
    paper = analyze("resnet152", config={"stride_in_1x1": True})
    assert paper.total.macs / 1e9 == pytest.approx(11.3, rel=0.005)  # "11.3 billion FLOPs"
    assert paper.total.depth == 152
    vgg16, vgg19 = analyze("vgg16"), analyze("vgg19")
    # "lower complexity than VGG-16/19 nets (15.3/19.6 billion FLOPs)": conv layers 15.35 / 19.51 G,
    # with the classifier 15.47 / 19.63 G
    assert vgg16.total.macs / 1e9 == pytest.approx(15.3, rel=0.012)
    assert vgg19.total.macs / 1e9 == pytest.approx(19.6, rel=0.012)
    assert paper.total.macs < vgg16.total.macs < vgg19.total.macs
    assert round(paper.total.params / 1e6) == 60  # the paper's ~60M ("about 64M" on the slide)


# ---------------------------------------------------------------- lectures 001/002: 3x3 stacks
def test_three_3x3_convolutions_see_7x7_with_27_c2_weights_against_49_c2():
    c = 64
    stack = nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1, bias=False) for _ in range(3)])
    single = nn.Conv2d(c, c, 7, padding=3, bias=False)
    a, b = analyze(stack, (c, 32, 32)), analyze(single, (c, 32, 32))
    assert [r.receptive_field for r in a.layers] == [(3, 3), (5, 5), (7, 7)]
    assert b.layers[0].receptive_field == (7, 7)
    assert a.total.params == 3 * (3**2 * c**2) == 27 * c**2
    assert b.total.params == 7**2 * c**2 == 49 * c**2
    assert a.total.depth == 3 and b.total.depth == 1
    assert a.total.macs * 49 == b.total.macs * 27  # same 32x32 output: cost in proportion


def test_dilated_3x3_stack_fields_grow_3_7_15_with_equal_params():
    # Yu & Koltun 2016, Fig. 1 (lecture 001): dilations 1, 2, 4
    stack = nn.Sequential(*[nn.Conv2d(8, 8, 3, padding=d, dilation=d) for d in (1, 2, 4)])
    a = analyze(stack, (8, 40, 40))
    assert [r.receptive_field for r in a.layers] == [(3, 3), (7, 7), (15, 15)]
    assert len({r.params for r in a.layers}) == 1
    assert all(r.output_shape == (1, 8, 40, 40) for r in a.layers)


# ---------------------------------------------------------------- lecture 004: naive vs reduced Inception
class _Inception(nn.Module):
    """Inception 3a's branches on a 28x28x192 input: naive (no 1x1 reductions) or with them."""

    def __init__(self, reduced: bool, cin: int = 192) -> None:
        super().__init__()
        n1, r3, n3, r5, n5, pp = GOOGLENET_TABLE1["3a"][2]

        def conv(i: int, o: int, k: int) -> nn.Module:
            return nn.Conv2d(i, o, k, padding=k // 2, bias=False)

        self.b1 = conv(cin, n1, 1)
        self.b3 = nn.Sequential(conv(cin, r3, 1), conv(r3, n3, 3)) if reduced else conv(cin, n3, 3)
        self.b5 = nn.Sequential(conv(cin, r5, 1), conv(r5, n5, 5)) if reduced else conv(cin, n5, 5)
        pool = nn.MaxPool2d(3, 1, 1)
        self.bp = nn.Sequential(pool, conv(cin, pp, 1)) if reduced else pool

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


def test_naive_against_reduced_inception_at_28x28x192():
    naive = analyze(_Inception(False), (192, 28, 28))
    reduced = analyze(_Inception(True), (192, 28, 28))
    hw = 28 * 28
    assert naive.total.macs == hw * 192 * (64 + 9 * 128 + 25 * 32) == 303_464_448  # 303M
    assert reduced.total.macs == hw * _inception_weights(192, GOOGLENET_TABLE1["3a"][2])  # 128M
    assert round(reduced.total.macs / 1e6) == 128  # Table 1, inception (3a)
    assert naive.layers[-1].output_shape == (1, 64 + 128 + 32 + 192, 28, 28)  # pool passes all 192 maps
    assert reduced.layers[-1].output_shape == (1, 256, 28, 28)
    five = {a: sum(r.macs for r in x.layers if ".b5" in f".{r.name}" or r.name.startswith("b5"))
            for a, x in (("naive", naive), ("reduced", reduced))}
    assert five["naive"] == hw * 192 * 25 * 32  # 120M for the 5x5 branch alone
    assert five["reduced"] == hw * (192 * 16 + 16 * 25 * 32)  # 12.4M: a 1x1 to 16 maps first
    assert five["naive"] > 9 * five["reduced"]
    # the concatenation writes a new tensor: its output counts as activations (see CONVENTIONS)
    assert naive.layers[-1].type == "cat" and naive.layers[-1].activations == 416 * hw


# ---------------------------------------------------------------- structure, totals, conventions
def test_residual_block_field_is_the_union_of_branch_and_shortcut():
    a = analyze("resnet18")
    rows = {r.name: r for r in a.layers}
    first = rows["maxpool"]
    out = [r for r in a.layers if r.name.startswith("layer1.0.")][-1]
    assert out.receptive_field[0] == first.receptive_field[0] + 2 * 2 * first.jump[0]  # two 3x3 convs
    assert a.total.depth == 18  # shortcuts are shorter paths
    assert len([r for r in a.layers if r.type == "Conv2d"]) == 20  # 17 + 3 projection shortcuts


def test_fold_keeps_totals_and_takes_the_last_rows_field(zoo_googlenet_2014):
    a = zoo_googlenet_2014
    for depth in (1, 2):
        f = a.fold(depth)
        for key in ("params", "weights", "macs", "flops", "activations"):
            assert sum(getattr(r, key) for r in f.layers) == sum(getattr(r, key) for r in a.layers)
        assert len(f.layers) < len(a.layers)
    f1 = {r.name: r for r in a.fold(1).layers}
    assert f1["inception4e"].type == "Inception"
    assert f1["inception4e"].receptive_field == {r.name: r for r in a.layers}["inception4e.cat"].receptive_field
    with pytest.raises(ValueError, match="depth"):
        a.fold(0)


def test_totals_batch_and_dtype():
    one = analyze("resnet20")
    many = analyze("resnet20", batch_size=64, dtype=torch.bfloat16)
    model = cnnlab.create_model("resnet20")
    assert one.total.params == sum(p.numel() for p in model.parameters())
    assert one.total.activations == 3 * 32 * 32 + sum(r.activations for r in one.layers)
    assert many.total.params == one.total.params
    assert many.total.macs == 64 * one.total.macs
    assert many.total.activations == 64 * one.total.activations
    assert many.total.activation_bytes == 2 * many.total.activations  # bfloat16
    assert one.total.activation_bytes == 4 * one.total.activations


def test_in_place_relu_and_dropout_add_no_activations():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.ReLU(inplace=True), nn.Dropout(),
                        nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    rows = analyze(net, (3, 8, 8)).layers
    assert [r.activations for r in rows] == [144, 0, 0, 0, 144, 0, 5]


def test_a_real_cpu_model_is_left_as_it_was_and_gets_no_real_forward():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = analyze(model, (3, 16, 16), batch_size=4)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.device.type == "cpu" for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running statistics untouched: nothing ran on real data
    assert a.layers[0].output_shape == (4, 8, 14, 14)


def test_renderings_carry_every_field_and_the_convention():
    a = analyze("lenet5")
    d = json.loads(a.to_json())
    assert set(d) >= {"model", "input_size", "layers", "total", "conventions"}
    assert set(d["layers"][0]) >= {"name", "type", "output_shape", "params", "macs", "flops", "activations",
                                   "activation_bytes", "receptive_field", "jump", "start"}
    assert set(d["total"]) >= {"params", "trainable_params", "macs", "flops", "activations", "activation_bytes"}
    assert "multiply-accumulates" in d["conventions"]["macs"]
    assert d["total"]["params"] == 60_850
    csv_lines = a.to_csv().strip().splitlines()
    assert len(csv_lines) == len(a.layers) + 2 and csv_lines[-1].startswith("total,")
    md = a.to_markdown()
    assert md.count("\n|") == len(a.layers) + 1 and "FLOPs = 2 x MACs" in md
    assert "FLOPs = 2 x MACs" in a.table()


def test_compare_rows():
    c = compare(["lenet5", "resnet20", nn.Conv2d(3, 4, 3)], (None, 32, 32))
    assert [r["model"] for r in c.rows] == ["lenet5", "resnet20", "Conv2d"]
    assert [r["input_size"] for r in c.rows] == [[1, 32, 32], [3, 32, 32], [3, 32, 32]]
    assert c.rows[1]["depth"] == 20 and c.rows[0]["params"] == 60_850
    assert len(c.table().splitlines()) == 5 + 2
    with pytest.raises(ConfigError):
        compare([])


# ---------------------------------------------------------------- bad input
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_impossible_configurations_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match=r"layer '1' \(Conv2d\).*Kernel size"):
        analyze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 7)), (3, 8, 8))
    with pytest.raises(ValueError, match=r"layer '0' \(Conv2d\) has out_channels=0"):
        analyze(nn.Sequential(nn.Conv2d(3, 0, 3)), (3, 8, 8))
    with pytest.raises(ValueError, match=r"in_channels=0"):
        analyze(nn.Conv2d(0, 4, 3), (3, 8, 8))
    with pytest.raises(ValueError, match=r"layer '0' \(MaxPool2d\)"):
        analyze(nn.Sequential(nn.MaxPool2d(5)), (3, 4, 4))
    with pytest.raises(ValueError, match="input_size"):
        analyze("lenet5", (1, 0, 32))
    with pytest.raises(ValueError, match="input_size"):
        analyze("lenet5", (32, 32))
    with pytest.raises(ValueError, match="batch_size"):
        analyze("lenet5", batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        analyze("lenet5", dtype=torch.int64)
    with pytest.raises(UnknownNameError, match="vgg16"):
        analyze("vgg61")
    with pytest.raises(UnknownNameError, match="torchvision:resnet50"):
        analyze("torchvision:resnet05")
