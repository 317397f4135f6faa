"""The lectures' numbers, audited one by one (issue 20): every figure of the five decks that cnnlab
computes and that no other test file already checks, as one table of cases.

Each case names the deck and line, the text quoted there, the lecture's figure, how cnnlab computes
it, cnnlab's exact value, and how the two are compared (the lecture's rounding). Where cnnlab's value
differs, the case says why and ``explain`` computes the lecture's figure from cnnlab's own numbers.
docs/lecture-numbers.md lists every number of the decks, including those checked elsewhere, and
``test_docs_table_cites_real_lines_and_real_tests`` keeps that document honest.

Everything runs on the meta device (no weights, no activations): about 3 s in all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab import results as R
from cnnlab.analysis import analyze
from cnnlab.experiments.surgery import path_length_distribution
from cnnlab.foundations.separable import compose_kernels
from cnnlab.models import create_model
from cnnlab.training.recipes import get_recipe

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- cnnlab's figures
@cache
def _analysis(name: str):
    return analyze(name)


def _meta(name: str, **config) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **config)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def depth(name: str) -> int:
    """Weight layers on the longest path (the analyzer's depth)."""
    return _analysis(name).total.depth


def count(name: str, layer_type: str) -> int:
    """Executed layers of one type (``Conv2d``, ``Linear``), shortcut projections included."""
    return sum(r.type == layer_type for r in _analysis(name).layers)


@cache
def alexnet_ablation(removed: str) -> tuple[int, int]:
    """(parameters dropped, depth) of ``alexnet_2012`` without the layers Zeiler & Fergus removed
    (lecture 000): "7" = FC7; "67" = FC6 and FC7, FC8 then reads pool3's 6x6x256 = 9,216 values;
    "3467" = also CONV3 and CONV4, CONV5 then reads CONV2's 256 maps (still two towers)."""
    model = _meta("alexnet_2012")
    full = _params(model)
    f, c = model.features, model.classifier
    with torch.device("meta"):
        for n in ("fc7", "relu7", "drop7") + (("fc6", "relu6", "drop6") if "6" in removed else ()):
            setattr(c, n, nn.Identity())
        if "6" in removed:
            c.fc8 = nn.Linear(256 * 6 * 6, 1000)
        if "3" in removed:
            for n in ("conv3", "relu3", "conv4", "relu4"):
                setattr(f, n, nn.Identity())
            f.conv5 = nn.Conv2d(256, 256, 3, padding=1, groups=2)
    return full - _params(model), analyze(model, (3, 227, 227)).total.depth


def vgg16_early_conv_memory_share() -> float:
    return vgg16_memory_and_params_shares()[0]


def vgg16_fc_weight_share() -> float:
    return vgg16_memory_and_params_shares()[1]


def vgg16_memory_and_params_shares() -> tuple[float, float]:
    """(share of the activations in the CONV layers at 224 and 112, share of the weights in the FCs)."""
    a = _analysis("vgg16")
    early = sum(r.activations for r in a.layers if r.type == "Conv2d" and r.output_shape[-1] >= 112)
    fc = sum(r.weights for r in a.layers if r.type == "Linear")
    return round(early / a.total.activations, 3), round(fc / a.total.weights, 3)


def vgg_gmacs(name: str, *, conv_only: bool = False) -> float:
    """Multiply-adds of a VGG net in billions, rounded to the lecture's one decimal."""
    rows = [r for r in _analysis(name).layers if r.type == "Conv2d" or not conv_only]
    return round(sum(r.macs for r in rows) / 1e9, 1)


def vgg_only_3x3_s1_p1_and_2x2_s2() -> bool:
    model = _meta("vgg16")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    return (len(convs), len(pools)) == (13, 5) and all(
        (c.kernel_size, c.stride, c.padding) == ((3, 3), (1, 1), (1, 1)) for c in convs
    ) and all((p.kernel_size, p.stride) in ((2, 2), ((2, 2), (2, 2))) for p in pools)


def vgg_conv_widths(name: str) -> tuple[int, ...]:
    """Output maps of the convolutions before each max pool (one width per stage: all of a stage's
    convolutions have it, checked here)."""
    widths, stage = [], set()
    for r in _analysis(name).layers:
        if r.type == "Conv2d":
            stage.add(r.output_shape[1])
        elif r.type == "MaxPool2d":
            assert len(stage) == 1, stage
            widths.append(stage.pop())
    return tuple(widths)


def vgg_conv_and_pool_settings() -> tuple[set, set, set]:
    """Over the six VGG columns: conv strides, conv paddings as a function of the kernel, max-pool windows
    and strides."""
    convs = [m for n in VGG_COLUMNS for m in _meta(n).modules() if isinstance(m, nn.Conv2d)]
    pools = [m for n in VGG_COLUMNS for m in _meta(n).modules() if isinstance(m, nn.MaxPool2d)]
    strides = {c.stride for c in convs}
    same = {c.padding == (c.kernel_size[0] // 2,) * 2 for c in convs}  # padding keeps the resolution
    windows = {(p.kernel_size, p.stride) for p in pools}
    return strides, same, windows


def two_3x3_against_one_5x5(c: int = 64) -> tuple:
    """(receptive field, weights) of two stacked 3x3 convolutions and of one 5x5, C channels in and out:
    the 'shallow version of B' of Simonyan & Zisserman §4.1 (lecture 000)."""
    two = analyze(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1)),
                  (c, 28, 28)).total
    one = analyze(nn.Conv2d(c, c, 5, padding=2), (c, 28, 28)).total
    return (two.receptive_field[0], two.weights // c**2), (one.receptive_field[0], one.weights // c**2)


def googlenet_2014_output(row: str) -> tuple[int, ...]:
    """Table 1's "output size" column (H x W x C, or C) for one row of googlenet_2014."""
    shape = {r.name: r.output_shape[1:] for r in _analysis("googlenet_2014").fold(1).layers}[row]
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


def dropout_rates(name: str) -> list[float]:
    return [m.p for n, m in _meta(name).named_modules() if isinstance(m, nn.Dropout) and "aux" not in n]


def residual_block_types(*names: str) -> set[str]:
    return {type(b).__name__ for n in names for _, b in _meta(n).blocks()}


def vgg_filter_sizes() -> set[int]:
    return {m.kernel_size[0] for n in ("vgg_a", "vgg_b", "vgg_c", "vgg_d", "vgg_e")
            for m in _meta(n).modules() if isinstance(m, nn.Conv2d)}


def lenet5_layer_kinds() -> tuple[str, ...]:
    """LeNet-5's weight and subsampling layers as the lecture names them; C5 is a 5x5 convolution on
    5x5 maps (a 1x1 output: fully connected in effect), so it is named FC as the lecture does."""
    kinds = []
    for r in _analysis("lenet5").layers:
        if r.type in ("Conv2d", "PartialConv2d"):
            kinds.append("FC" if r.output_shape[-2:] == (1, 1) else "CONV")
        elif r.type == "Subsampling":
            kinds.append("POOL")
        elif r.type == "Linear":
            kinds.append("FC")
    return tuple(kinds)


def lenet5_windows() -> tuple[tuple[int, int], tuple[int, int]]:
    """(window, stride) of LeNet-5's C1 and S2, read off the analyzer's receptive fields and jumps."""
    rows = {r.name: r for r in _analysis("lenet5").layers}
    c1, s2 = rows["c1.0"], rows["s2.0"]
    conv = (int(c1.receptive_field[0]), int(c1.jump[0]))  # the input's jump is 1
    pool = (int((s2.receptive_field[0] - c1.receptive_field[0]) / c1.jump[0]) + 1, int(s2.jump[0] / c1.jump[0]))
    return conv, pool


def resnet34_design() -> tuple:
    """The ResNet-34 diagram of lecture 001 (and the "full ResNet architecture" of lecture 002): stem,
    first conv of each stage (maps, stride), convs per block, and the single FC layer."""
    model = _meta("resnet34")
    stem = (model.conv1.out_channels, model.conv1.kernel_size[0], model.conv1.stride[0], model.maxpool.stride)
    stages = tuple((s[0].conv1.out_channels, s[0].conv1.stride[0]) for s in (model.layer1, model.layer2,
                                                                             model.layer3, model.layer4))
    convs_per_block = {sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in b.modules())
                       for _, b in model.blocks()}
    fcs = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    return stem, stages, convs_per_block, fcs


def resnet110_modules() -> tuple[int, int]:
    """(residual blocks, 3x3 convolutions per block) of the CIFAR ResNet-110 (Veit et al.'s net)."""
    blocks = list(_meta("resnet110").blocks())
    per_block = {sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in b.modules()) for _, b in blocks}
    return len(blocks), (per_block.pop() if len(per_block) == 1 else -1)


def conv_kernel_sizes(name: str) -> dict[int, int]:
    """How many convolutions of each kernel size a net has (shortcut projections included)."""
    sizes: dict[int, int] = {}
    for m in _meta(name).modules():
        if isinstance(m, nn.Conv2d):
            sizes[m.kernel_size[0]] = sizes.get(m.kernel_size[0], 0) + 1
    return sizes


def resnet34_stage_steps() -> set[tuple[float, float]]:
    """(spatial size ratio, filter ratio) from each stage of resnet34 to the next (analyzer outputs)."""
    rows = {r.name: r.output_shape[1:] for r in analyze("resnet34").fold(1).layers}
    stages = [rows[f"layer{i}"] for i in (1, 2, 3, 4)]
    return {(a[1] / b[1], b[0] / a[0]) for a, b in zip(stages, stages[1:])}


def deleting_a_block_removes_half_the_paths(n: int = 54) -> tuple[int, float]:
    """(paths, share of them through one given block) for n residual blocks: a path through block i
    takes its residual branch, so the share is the mean path length over n (Veit et al. Fig. 2)."""
    counts = path_length_distribution(n)
    through_one = sum(k * c for k, c in enumerate(counts)) / n
    return sum(counts), through_one / sum(counts)


def one_by_one_reduction(h: int = 28, c1: int = 192, c2: int = 16) -> tuple:
    """Lecture 004: C2 filters of 1x1xC1 map HxWxC1 to HxWxC2 (analyzer: output, weights)."""
    a = analyze(nn.Conv2d(c1, c2, 1, bias=False), (c1, h, h))
    return tuple(a.layers[0].output_shape[1:]), a.total.weights


def separable_degrees_of_freedom() -> tuple[int, int]:
    """(parameters, Jacobian rank) of the map (3x1 column, 1x3 row) -> 3x3 kernel: lecture 001's
    "9 coefficients, but only 6 degrees of freedom"."""
    rng = np.random.default_rng(3)
    v, h = rng.normal(size=(3, 1)), rng.normal(size=(1, 3))
    k = compose_kernels(v, h)
    theta = np.concatenate([v.ravel(), h.ravel()])
    jac = np.zeros((9, 6))
    for i in range(6):
        e = np.zeros(6)
        e[i] = 1e-6
        t = theta + e
        jac[:, i] = (compose_kernels(t[:3, None], t[None, 3:]) - k).ravel() / 1e-6
    return len(theta), int(np.linalg.matrix_rank(jac, tol=1e-4))


def identity_filter_bank() -> bool:
    """Lecture 004: 64 filters of 3x3x64, filter i = 1 at the centre of slice i and 0 elsewhere."""
    w = torch.zeros(64, 64, 3, 3)
    w[torch.arange(64), torch.arange(64), 1, 1] = 1.0
    x = torch.randn(2, 64, 9, 9, generator=torch.Generator().manual_seed(0))
    return torch.equal(nn.functional.conv2d(x, w, padding=1), x)


def alexnet_recipe() -> tuple:
    r = get_recipe("alexnet")
    return r.dropout, r.batch_size, r.momentum, r.lr, r.weight_decay


def resnet152_candidates() -> dict[str, int]:
    """The "about 64M parameters" attempt: every ResNet-152 count cnnlab can produce, and the nearest
    other nets."""
    out = {}
    for label, name, config in (
        ("parameters", "resnet152", {}),
        ("1001 classes (TF-slim)", "resnet152", {"num_classes": 1001}),
        ("stride in the 1x1 (paper)", "resnet152", {"stride_in_1x1": True}),
        ("option A shortcuts", "resnet152", {"shortcut": "A"}),
        ("option C shortcuts", "resnet152", {"shortcut": "C"}),
        ("ResNet-200 (3, 24, 36, 3)", "resnet152", {"layers": (3, 24, 36, 3)}),
        ("SE-ResNet-152", "resnet152", {"se_reduction": 16}),
    ):
        out[label] = _params(_meta(name, **config))
    model = _meta("resnet152")
    # the values of a Caffe model (conv + BN mean/var/factor + Scale gamma/beta) = state_dict values
    out["state_dict / Caffe blobs"] = sum(v.numel() for v in model.state_dict().values())
    out["weights"] = sum(p.numel() for p in model.parameters() if p.dim() > 1)
    return out


# ------------------------------------------------------------------------------- the table of cases
@dataclass(frozen=True)
class Case:
    deck: str  # "000" .. "004"
    line: int
    quote: str  # text on that line of the deck
    lecture: object  # the lecture's figure
    how: str  # how cnnlab computes it
    compute: Callable[[], object]
    ours: object  # cnnlab's exact value
    agree: Callable[[object, object], bool] | None = None  # (lecture, ours) -> True; None = equal
    why: str = ""  # where they differ: the explanation, and
    explain: Callable[[], object] | None = None  # computes the lecture's figure from cnnlab's numbers
    reproducible: bool = True  # False: neither reproduced nor explained (the attempt is in ``why``)

    @property
    def id(self) -> str:
        return f"{self.deck}:{self.line}:{self.quote[:28]}"


def millions(places: int = 0) -> Callable[[object, object], bool]:
    """The lecture's figure is cnnlab's count in millions, rounded to ``places`` decimals."""
    return lambda lecture, ours: round(ours / 1e6, places) == lecture


def to_nearest(step_millions: int) -> Callable[[object, object], bool]:
    """'~50 million': cnnlab's count in millions, rounded to the nearest ``step_millions``."""
    return lambda lecture, ours: round(ours / 1e6 / step_millions) * step_millions == lecture


MiB = 2**20
VGG_COLUMNS = ("vgg_a", "vgg_a_lrn", "vgg_b", "vgg_c", "vgg_d", "vgg_e")

CASES: tuple[Case, ...] = (
    # ---- lecture 000 (Cord): the big picture, AlexNet ablations, VGG, ResNet
    Case("000", 30, "AlexNet 8 layers", 8, "analyzer depth of alexnet_2012", lambda: depth("alexnet_2012"), 8),
    Case("000", 40, "VGG16** (very deep) 16 layers", 16, "analyzer depth of vgg16", lambda: depth("vgg16"), 16),
    Case("000", 70, "ResNet 152 layers", 152, "analyzer depth of resnet152 (torchvision's stride placement; "
         "tests/test_analysis.py checks the paper's)", lambda: depth("resnet152"), 152),
    Case("000", 117, "Bigger model (8 layers)", 8, "analyzer depth of alexnet_2012",
         lambda: depth("alexnet_2012"), 8),
    Case("000", 124, "7 hidden layers", 7, "analyzer depth of alexnet_2012 minus the output layer (FC8)",
         lambda: depth("alexnet_2012") - 1, 7),
    Case("000", 218, "randomly omit each hidden unit with probability 0.5", [0.5, 0.5], "dropout rates of "
         "alexnet_2012 (on FC6 and FC7)", lambda: dropout_rates("alexnet_2012"), [0.5, 0.5]),
    Case("000", 291, "8 layers total", 8, "analyzer depth of alexnet_2012", lambda: depth("alexnet_2012"), 8),
    Case("000", 304, "Drop 16 million parameters", 16, "alexnet_2012 without FC7 (FC8 reads FC6): parameters "
         "dropped", lambda: alexnet_ablation("7")[0], 16_781_312,
         agree=millions(),
         why="FC7 is 4096 x 4096 = 2^24 weights + 4,096 biases = 16.78M, which rounds to 17M: '16 million' "
             "truncates it (2^24 is also exactly 16 x 2^20)",
         explain=lambda: alexnet_ablation("7")[0] // 10**6),
    Case("000", 314, "Drop ~50 million parameters", 50, "alexnet_2012 without FC6 and FC7 (FC8 then reads "
         "pool3's 9,216 values): parameters dropped", lambda: alexnet_ablation("67")[0], 49_414_144,
         agree=to_nearest(10)),
    Case("000", 324, "Now only 4 layers", 4, "analyzer depth of alexnet_2012 without CONV3, CONV4, FC6, FC7",
         lambda: alexnet_ablation("3467")[1], 4),
    Case("000", 417, "VGG, 16/19 layers, 2014", (16, 19), "analyzer depth of vgg16 and vgg19",
         lambda: (depth("vgg16"), depth("vgg19")), (16, 19)),
    Case("000", 431, "Convolutional Layers: from 8 to 16", (8, 16), "Conv2d layers of vgg_a and vgg_e",
         lambda: (count("vgg_a", "Conv2d"), count("vgg_e", "Conv2d")), (8, 16)),
    Case("000", 432, "Fully Connected Layers: 3", 3, "Linear layers of every VGG column (all six equal)",
         lambda: {count(n, "Linear") for n in VGG_COLUMNS}.pop() if len({count(n, "Linear") for n in
                                                                          VGG_COLUMNS}) == 1 else -1, 3),
    Case("000", 433, "Stride: 1", {(1, 1)}, "strides of every convolution of the six VGG columns",
         lambda: vgg_conv_and_pool_settings()[0], {(1, 1)}),
    Case("000", 435, "Max-Pooling: 2x2 window", {(2, 2)}, "max-pool windows and strides of the six VGG columns",
         lambda: vgg_conv_and_pool_settings()[2], {(2, 2)}),
    Case("000", 436, "Padding: s/t spatial resolution is preserved", {True}, "every VGG convolution pads "
         "kernel // 2 (3x3: 1, 1x1: 0)", lambda: vgg_conv_and_pool_settings()[1], {True}),
    Case("000", 437, "Starting from 64, double after each max-pooling layer until 512", (64, 128, 256, 512, 512),
         "output maps of each stage's convolutions in vgg16", lambda: vgg_conv_widths("vgg16"),
         (64, 128, 256, 512, 512)),
    Case("000", 438, "Filter sizes: 3x3 and 1x1", {1, 3}, "kernel sizes of all convolutions of the five columns",
         vgg_filter_sizes, {1, 3}),
    Case("000", 442, "19 weight layers", (11, 11, 13, 16, 16, 19),
         "analyzer depth of vgg_a ... vgg_e (the built nets; test_zoo_classic counts the table's data)",
         lambda: tuple(depth(n) for n in VGG_COLUMNS), (11, 11, 13, 16, 16, 19)),
    Case("000", 474, "2 layers of 3x3 replaced with single 5x5", ((5, 18), (5, 25)), "analyzer receptive field "
         "and weights (in units of C^2) of two stacked 3x3 convolutions and of one 5x5", two_3x3_against_one_5x5,
         ((5, 18), (5, 25))),
    Case("000", 552, "Deeper VGG: 56 Plain Network", 56, "analyzer depth of plain56", lambda: depth("plain56"), 56),
    Case("000", 556, "Plain nets: stacking 3x3 conv layers", {3: 55}, "kernel sizes of plain56's convolutions",
         lambda: conv_kernel_sizes("plain56"), {3: 55}, agree=lambda lecture, ours: set(ours) == {3}),
    Case("000", 558, "56-layer net has higher training error and test error than 20-layers net", (56, 20),
         "analyzer depth of plain56 and plain20", lambda: (depth("plain56"), depth("plain20")), (56, 20)),
    Case("000", 582, "VGG, 16/19 layers, 2014", (16, 19), "analyzer depth of vgg16 and vgg19",
         lambda: (depth("vgg16"), depth("vgg19")), (16, 19)),
    Case("000", 656, "(for ResNet-50/101/152)", {"Bottleneck"}, "block classes of resnet50, resnet101, resnet152",
         lambda: residual_block_types("resnet50", "resnet101", "resnet152"), {"Bottleneck"}),
    Case("000", 674, "All 3x3 conv (almost)", "3x3 (almost)", "kernel sizes of resnet34's convolutions: 32 of 3x3, "
         "the 7x7 stem and three 1x1 projections", lambda: conv_kernel_sizes("resnet34"), {7: 1, 3: 32, 1: 3},
         agree=lambda lecture, ours: ours[3] / sum(ours.values()) > 0.8),  # "almost": 32 of 36
    Case("000", 676, "Spatial size/2 => #filters x2", {(2.0, 2.0)}, "resnet34 (analyzer): spatial ratio and "
         "filter ratio from each stage to the next", resnet34_stage_steps, {(2.0, 2.0)}),
    Case("000", 693, "13 weight layers", (13, 16, 16, 19),
         "analyzer depth of vgg_b, vgg_c, vgg_d, vgg_e", lambda: tuple(depth(n) for n in VGG_COLUMNS[2:]),
         (13, 16, 16, 19)),
    Case("000", 729, "(15.3/19.6 billion FLOPs)", (15.3, 19.6), "analyzer MACs of vgg16 and vgg19, in billions "
         "(the papers' FLOPs are multiply-adds)", lambda: (vgg_gmacs("vgg16"), vgg_gmacs("vgg19")), (15.5, 19.6),
         why="the two figures count differently: VGG-16's 15.3 is its convolutional layers alone (15.35G; the "
             "whole net 15.47G), VGG-19's 19.6 is the whole net (19.63G; its convolutional layers 19.51G)",
         explain=lambda: (vgg_gmacs("vgg16", conv_only=True), vgg_gmacs("vgg19"))),
    Case("000", 731, "About 64M parameters", 64, "resnet152 parameters; every variant cnnlab can build",
         lambda: _params(_meta("resnet152")), 60_192_808, agree=millions(), reproducible=False,
         why="every ResNet-152 variant is 57.4M-60.3M or 107M (option C); the nearest "
             "nets are ResNet-200 (64.7M) and SE-ResNet-152 (66.8M), which the slide does not name. "
             "cnnlab keeps 60.2M (the deck's line 70, the paper's net, torchvision); the attempt is "
             "test_resnet152_about_64m_is_no_resnet152_count"),
    # ---- lecture 001 (MIT 6.819): convolution, depth over the years
    Case("001", 479, "2012: AlexNet 5 conv. layers", 5, "Conv2d layers of alexnet_2012",
         lambda: count("alexnet_2012", "Conv2d"), 5),
    Case("001", 551, "2014: VGG 16 conv. layers", 16, "Conv2d layers of vgg16 (13) and its depth (16)",
         lambda: count("vgg16", "Conv2d"), 13,
         why="VGG-16 has 13 convolutional + 3 fully-connected layers: 16 is its weight-layer count",
         explain=lambda: depth("vgg16")),
    Case("001", 563, "2014: VGG 16 conv. layers", 16, "as line 551", lambda: count("vgg16", "Conv2d"), 13,
         why="as line 551: 13 convolutional + 3 fully-connected = 16 weight layers",
         explain=lambda: depth("vgg16")),
    Case("001", 572, "Small convolutional kernels: only 3x3", True, "every Conv2d of vgg16 is 3x3/1 pad 1 (and "
         "every max pool 2x2/2)", vgg_only_3x3_s1_p1_and_2x2_s2, True),
    Case("001", 577, "Increased depth (5 -> 16/19 layers)", (5, 16, 19), "AlexNet's Conv2d layers; VGG-16 and "
         "VGG-19 depths", lambda: (count("alexnet_2012", "Conv2d"), depth("vgg16"), depth("vgg19")), (5, 16, 19),
         why="mixes counts: AlexNet's 5 is its convolutional layers (depth 8), VGG's 16/19 its weight layers "
             "(13/16 convolutional)"),
    Case("001", 588, "9 coefficients, but only 6 degrees of freedom", (9, 6), "a 3x1 then a 1x3 filter: "
         "coefficients of the composed 3x3 kernel, parameters, and the Jacobian rank of (column, row) -> kernel",
         lambda: (9, *separable_degrees_of_freedom()), (9, 6, 5),
         agree=lambda lecture, ours: lecture == (ours[0], ours[2]),
         why="the 6 are parameters; the degrees of freedom are 5, since a scale moves from the column to the row "
             "(a*v, h/a) without changing the kernel, as the 18 parameters of two chained 3x3 kernels have rank 17 "
             "(test_foundations_lecture.py)",
         explain=lambda: (9, separable_degrees_of_freedom()[0])),
    Case("001", 609, "2016: ResNet >100 conv. layers", 100, "Conv2d layers of resnet101 and resnet152 "
         "(shortcut projections included)", lambda: (count("resnet101", "Conv2d"), count("resnet152", "Conv2d")),
         (104, 155), agree=lambda lecture, ours: min(ours) > lecture),
    Case("001", 615, "2016: ResNet > 100 conv. layers", 100, "as line 609",
         lambda: (count("resnet101", "Conv2d"), count("resnet152", "Conv2d")), (104, 155),
         agree=lambda lecture, ours: min(ours) > lecture),
    Case("001", 621, "7x7 conv, 64, /2", ((64, 7, 2, 2), ((64, 1), (128, 2), (256, 2), (512, 2)), {2},
                                         [(512, 1000)]),
         "resnet34: stem (maps, kernel, stride, pool stride), each stage's first conv (maps, stride), 3x3 convs "
         "per block, FC layers", resnet34_design,
         ((64, 7, 2, 2), ((64, 1), (128, 2), (256, 2), (512, 2)), {2}, [(512, 1000)])),
    # ---- lecture 002 (Cornell CS5670): case studies
    Case("002", 128, "How much dropout? Around $p = 0.5$", {0.5}, "dropout rates of alexnet_2012 and vgg16 "
         "(PyTorch's p is the drop probability)",
         lambda: {*dropout_rates("alexnet_2012"), *dropout_rates("vgg16")}, {0.5}),
    Case("002", 152, "p = 0.5 # probability of keeping a unit active", 0.5, "keep probability 1 - p of "
         "alexnet_2012's dropout (the slide's p keeps, PyTorch's p drops: equal at 0.5)",
         lambda: 1 - dropout_rates("alexnet_2012")[0], 0.5),
    Case("002", 520, "Conv filters were 5x5, applied at stride 1", (5, 1), "lenet5 C1's receptive field and "
         "jump (analyzer)", lambda: lenet5_windows()[0], (5, 1)),
    Case("002", 521, "Subsampling (Pooling) layers were 2x2 applied at stride 2", (2, 2), "lenet5 S2's window "
         "and stride from the analyzer's fields and jumps", lambda: lenet5_windows()[1], (2, 2)),
    Case("002", 522, "[CONV-POOL-CONV-POOL-FC-FC]", ("CONV", "POOL", "CONV", "POOL", "FC", "FC"),
         "lenet5's analyzer rows, C5 (5x5 on 5x5 maps: a 1x1 output) named FC",
         lenet5_layer_kinds, ("CONV", "POOL", "CONV", "POOL", "FC", "FC", "FC"),
         agree=lambda lecture, ours: ours[:6] == lecture,
         why="the paper's net has three fully-connected layers: C5 (a convolution in name), F6 and the output "
             "layer (RBF units in the paper, linear here); the lecture leaves the output layer out"),
    Case("002", 755, "dropout 0.5", 0.5, "the alexnet recipe", lambda: alexnet_recipe()[0], 0.5),
    Case("002", 756, "batch size 128", 128, "the alexnet recipe", lambda: alexnet_recipe()[1], 128),
    Case("002", 757, "SGD Momentum 0.9", 0.9, "the alexnet recipe", lambda: alexnet_recipe()[2], 0.9),
    Case("002", 758, "Learning rate 1e-2", 1e-2, "the alexnet recipe", lambda: alexnet_recipe()[3], 1e-2),
    Case("002", 759, "L2 weight decay 5e-4", 5e-4, "the alexnet recipe", lambda: alexnet_recipe()[4], 5e-4),
    Case("002", 804, "8 layers (AlexNet)", 8, "analyzer depth of alexnet_2012", lambda: depth("alexnet_2012"), 8),
    Case("002", 806, "-> 16 - 19 layers (VGG16Net)", (16, 19), "analyzer depth of vgg16 and vgg19",
         lambda: (depth("vgg16"), depth("vgg19")), (16, 19)),
    Case("002", 808, "Only 3x3 CONV stride 1, pad 1", True, "every Conv2d of vgg16 is 3x3/1 pad 1 and every "
         "max pool 2x2/2", vgg_only_3x3_s1_p1_and_2x2_s2, True),
    Case("002", 809, "and 2x2 MAX POOL stride 2", True, "as line 808", vgg_only_3x3_s1_p1_and_2x2_s2, True),
    Case("002", 1001, "Most memory is in early CONV", "most (> 0.5)", "vgg16 analyzer: share of the activations (input "
         "included) in the four CONV layers at 224x224 and 112x112", vgg16_early_conv_memory_share, 0.631,
         agree=lambda lecture, ours: ours > 0.5),
    Case("002", 1003, "Most params are in late FC", "most (> 0.5)", "vgg16 analyzer: share of the weights in "
         "the three FC layers", vgg16_fc_weight_share, 0.894, agree=lambda lecture, ours: ours > 0.5),
    Case("002", 1074, "VGG19 only slightly better, more memory", "VGG-19: more memory, slightly better",
         "analyzer activations (values per image) of vgg19 and vgg16; torchvision's top-1 of each (72.376 against "
         "71.592: +0.8 points)", lambda: (
             _analysis("vgg19").total.activations, _analysis("vgg16").total.activations), (16_567_272, 15_262_696),
         agree=lambda lecture, ours: ours[0] > ours[1] and 0 < R.headline_top1("vgg19")[1]
         - R.headline_top1("vgg16")[1] < 1),
    Case("002", 1092, "152-layer model for ImageNet", 152, "analyzer depth of resnet152", lambda: depth("resnet152"),
         152),
    Case("002", 1112, "56-layer model performs worse", 56, "analyzer depth of plain56",
         lambda: depth("plain56"), 56),
    Case("002", 1160, "Every residual block has two 3x3 conv layers", {2}, "3x3 convolutions per block of resnet34",
         lambda: resnet34_design()[2], {2}),
    Case("002", 1173, "double # of filters and downsample spatially using stride 2",
         ((64, 1), (128, 2), (256, 2), (512, 2)), "resnet34: maps and stride of each stage's first conv",
         lambda: resnet34_design()[1], ((64, 1), (128, 2), (256, 2), (512, 2))),
    Case("002", 1203, "No FC layers at the end (only FC 1000 to output classes)", [(512, 1000)], "Linear layers "
         "of resnet34", lambda: resnet34_design()[3], [(512, 1000)]),
    Case("002", 1214, "Total depths of 34, 50, 101, or 152 layers", (34, 50, 101, 152), "analyzer depth of "
         "resnet34/50/101/152", lambda: tuple(depth(f"resnet{d}") for d in (34, 50, 101, 152)), (34, 50, 101, 152)),
    # ---- lecture 003 (INSA Rouen): the VGG family
    Case("003", 206, "19 weight layers", (11, 11, 13, 16, 16, 19), "analyzer depth of vgg_a ... vgg_e",
         lambda: tuple(depth(n) for n in VGG_COLUMNS), (11, 11, 13, 16, 16, 19)),
    # ---- lecture 004 (SUTD 50.035): AlexNet, GoogLeNet Table 1's output sizes, ResNet, Veit et al.
    Case("004", 60, "8 layers, 650K neurons, 60M parameters", 8, "analyzer depth of alexnet_2012",
         lambda: depth("alexnet_2012"), 8),
    Case("004", 141, "112×112×64", (112, 112, 64), "googlenet_2014's conv1 output (analyzer, H x W x C)",
         lambda: googlenet_2014_output("conv1"), (112, 112, 64)),
    Case("004", 142, "56×56×64", (56, 56, 64), "googlenet_2014's maxpool1 output (analyzer, H x W x C)",
         lambda: googlenet_2014_output("maxpool1"), (56, 56, 64)),
    Case("004", 143, "56×56×192", (56, 56, 192), "googlenet_2014's conv3 output (analyzer, H x W x C)",
         lambda: googlenet_2014_output("conv3"), (56, 56, 192)),
    Case("004", 144, "28×28×192", (28, 28, 192), "googlenet_2014's maxpool2 output (analyzer, H x W x C)",
         lambda: googlenet_2014_output("maxpool2"), (28, 28, 192)),
    Case("004", 147, "14×14×480", (14, 14, 480), "googlenet_2014's maxpool3 output (analyzer, H x W x C)",
         lambda: googlenet_2014_output("maxpool3"), (14, 14, 480)),
    Case("004", 153, "7×7×832", (7, 7, 832), "googlenet_2014's maxpool4 output (analyzer, H x W x C)",
         lambda: googlenet_2014_output("maxpool4"), (7, 7, 832)),
    Case("004", 156, "1×1×1024", (1, 1, 1024), "googlenet_2014's avgpool output (analyzer, H x W x C)",
         lambda: googlenet_2014_output("avgpool"), (1, 1, 1024)),
    Case("004", 158, "1×1×1000", (1000,), "googlenet_2014's fc output (analyzer, H x W x C)",
         lambda: googlenet_2014_output("fc"), (1000,)),
    Case("004", 106, "output  $H \\times W \\times C_2$", "H x W x C2 from C2 filters of 1x1xC1", "analyzer on a "
         "1x1 convolution, 192 -> 16 maps at 28x28 (output C x H x W, weights)", one_by_one_reduction,
         ((16, 28, 28), 3072), agree=lambda lecture, ours: ours == ((16, 28, 28), 192 * 16)),
    Case("004", 157, "dropout (40%)", [0.4], "googlenet_2014's dropout before the linear layer",
         lambda: dropout_rates("googlenet_2014"), [0.4]),
    Case("004", 179, "with 20-layer and 56-layer", (20, 56), "analyzer depth of plain20 and plain56",
         lambda: (depth("plain20"), depth("plain56")), (20, 56)),
    Case("004", 228, "Most gradient of 110-layers network comes from paths that are 10-34 layers deep",
         "110 layers; paths of 10-34 layers",
         "resnet110: residual blocks and 3x3 convs per block (paths of 10-34 layers = 5-17 blocks)",
         resnet110_modules, (54, 2), agree=lambda lecture, ours: (2 * ours[0] + 2, ours[1]) == (110, 2)),
    Case("004", 312, "is equivalent to zeroing half of the paths", 0.5, "cnnlab's path counts for resnet110's 54 "
         "blocks: share of the 2^54 paths that go through one given block", deleting_a_block_removes_half_the_paths,
         (2**54, 0.5), agree=lambda lecture, ours: ours[1] == lecture),
    Case("004", 361, "Other variants: ResNet-50/101/152", (50, 101, 152), "analyzer depth of resnet50/101/152",
         lambda: tuple(depth(f"resnet{d}") for d in (50, 101, 152)), (50, 101, 152)),
    Case("004", 247, "One of the 64 filters:", True, "a 64 -> 64 convolution whose filter i is the 3x3 identity "
         "on slice i returns its input", identity_filter_bank, True),
)


# ------------------------------------------------------------------------------- the tests
def _deck_lines(deck: str) -> list[str]:
    for d in (ROOT.parents[1] / "shared" / "seeds", Path("/work/shared/seeds")):
        hits = sorted(d.glob(f"{deck}_*.txt")) if d.is_dir() else []
        if hits:
            return hits[0].read_text().splitlines()
    pytest.skip("the lecture decks (seeds) are not on this machine")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_quoted_text_is_on_the_cited_line(case: Case):
    assert case.quote in _deck_lines(case.deck)[case.line - 1], (case.deck, case.line)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cnnlab_computes_the_lectures_figure(case: Case):
    ours = case.compute()
    assert ours == case.ours, f"cnnlab computes {ours!r} ({case.how})"
    agrees = (case.agree or (lambda lecture, value: lecture == value))(case.lecture, ours)
    if not case.reproducible:
        assert not agrees and case.why
    elif case.explain is None:
        assert agrees, (case.lecture, ours, case.why)
    else:  # a different figure, explained: the explanation computes the lecture's number
        assert not agrees and case.why
        assert case.explain() == case.lecture, (case.explain(), case.lecture)


def test_resnet152_about_64m_is_no_resnet152_count():
    """Lecture 000:731. The attempt, as data: each count cnnlab can give for ResNet-152, none 64M."""
    c = resnet152_candidates()
    assert c == {
        "parameters": 60_192_808, "1001 classes (TF-slim)": 60_194_857, "stride in the 1x1 (paper)": 60_192_808,
        "option A shortcuts": 57_416_232, "option C shortcuts": 107_335_720, "ResNet-200 (3, 24, 36, 3)": 64_673_832,
        "SE-ResNet-152": 66_821_848, "state_dict / Caffe blobs": 60_344_387, "weights": 60_040_384,
    }  # fmt: skip
    resnet152_only = {k: v for k, v in c.items() if not k.startswith(("ResNet-200", "SE-"))}
    assert not any(round(v / 1e6) == 64 for v in resnet152_only.values())
    # binary units do not give it either: 60.2M parameters are 57.4 Mi; 64 Mi would be 67.1M
    assert round(c["parameters"] / MiB, 1) == 57.4 and round(64 * MiB / 1e6, 1) == 67.1
    # fp32 bytes: 240.8 MB / 229.6 MiB; no factor of 64 in sight
    assert round(c["parameters"] * 4 / 1e6, 1) == 240.8 and round(c["parameters"] * 4 / MiB, 1) == 229.6
    # a Caffe model's blobs: conv weights (no biases), BatchNorm mean/var/scale factor, Scale gamma/beta, FC
    # weight and bias: the same count as PyTorch's state_dict (num_batches_tracked stands for the factor)
    bns = [m for m in _meta("resnet152").modules() if isinstance(m, nn.BatchNorm2d)]
    caffe = c["weights"] + 1000 + 4 * sum(b.num_features for b in bns) + len(bns)
    assert caffe == c["state_dict / Caffe blobs"]
    # 64M would need about 1,600 more classes on the 2048-wide FC
    assert round((63.5e6 - c["parameters"]) / 2049, -2) == 1600


@pytest.mark.parametrize("q", R.LECTURE_QUOTED, ids=lambda q: q.lecture)
def test_quoted_published_figures_are_on_the_cited_lines(q: R.QuotedFigure):
    deck, line = q.lecture.split(":")
    text = _deck_lines(deck)[int(line) - 1]
    assert re.search(rf"(?<![\d.]){re.escape(f'{q.error:g}')}(?![\d])", text), (q, text)


def test_lecture_003_filters_equal_the_decks_matrices():
    """Lecture 003 lines 72-78: cnnlab.foundations' LECTURE_FILTERS against the deck's LaTeX matrices."""
    from cnnlab.foundations.filters import LECTURE_FILTERS

    lines = _deck_lines("003")
    names = {72: "identity", 73: "edge (diagonal)", 74: "edge (4-neighbour)", 75: "edge (8-neighbour)",
             76: "sharpen", 77: "box blur", 78: "gaussian blur"}
    for line, name in names.items():
        text = lines[line - 1]
        body = re.search(r"\\begin\{bmatrix\}(.*)\\end\{bmatrix\}", text).group(1)
        matrix = np.array([[float(v) for v in row.split("&")] for row in body.split("\\\\")])
        scale = re.search(r"\\frac\{1\}\{(\d+)\}", text)
        if scale:
            matrix = matrix / float(scale.group(1))
        np.testing.assert_array_equal(LECTURE_FILTERS[name], matrix, err_msg=name)


# ------------------------------------------------------------------------------- the document
DOC = ROOT / "docs" / "lecture-numbers.md"
ROW = re.compile(r"^\| (\d{3}):(\d+) \| `([^`]+)` \|.*\| ([^|]*) \|$")  # deck:line, `quote`, ..., checked by


def _doc_rows() -> list[tuple[str, int, str, str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            rows.append((m.group(1), int(m.group(2)), m.group(3), m.group(4).strip()))
    return rows


def test_docs_table_cites_real_lines_and_real_tests():
    rows = _doc_rows()
    assert len(rows) >= 100
    case_ids = {(c.deck, c.line) for c in CASES}
    for deck, line, quote, checked_by in rows:
        text = _deck_lines(deck)[line - 1]
        assert quote in text, (deck, line, quote, text)
        for ref in re.findall(r"(test_[a-z_0-9]+\.py)(?:::(\w+))?", checked_by):
            file, name = ref
            source = (ROOT / "tests" / file).read_text()
            assert not name or f"def {name}(" in source, (deck, line, ref)
            if file == "test_lecture_numbers.py" and not name:
                assert (deck, line) in case_ids, (deck, line)
    # every case of this file has its row
    assert case_ids <= {(d, n) for d, n, _, _ in rows}


def test_summary_notes_state_the_figures_cnnlab_computes():
    """The notes `cnnlab summary` prints for the explanations found by this audit, against the zoo."""
    from cnnlab.analysis.notes import notes_for

    alexnet = " ".join(notes_for("alexnet_2012"))
    neurons = sum(r.activations for r in _analysis("alexnet_2012").layers if r.type in ("Conv2d", "Linear"))
    assert neurons == 659_272 and "659,272" in alexnet
    assert f"{alexnet_ablation('7')[0]:,}" in alexnet and f"{alexnet_ablation('67')[0]:,}" in alexnet
    vgg16 = " ".join(notes_for("vgg16"))
    for figure in (f"{vgg_gmacs('vgg16', conv_only=True)}", "15.35G", "15.47G", "19.63G", "19.51G"):
        assert figure in vgg16
    macs = {n: sum(r.macs for r in _analysis(n).layers if r.type == "Conv2d" or not conv) / 1e9
            for n, conv in (("vgg16", True), ("vgg19", True))}
    assert (round(macs["vgg16"], 2), round(macs["vgg19"], 2)) == (15.35, 19.51)
    assert (round(_analysis("vgg16").total.macs / 1e9, 2), round(_analysis("vgg19").total.macs / 1e9, 2)) == (15.47,
                                                                                                            19.63)
    pool = sum(r.activations for r in _analysis("vgg16").layers if r.type == "AdaptiveAvgPool2d")
    assert (pool, _analysis("vgg16").total.activations - pool) == (25_088, 15_237_608)
    assert "25,088" in vgg16 and "15,237,608" in vgg16
    assert "13 convolutional + 3 fully connected" in vgg16 and count("vgg16", "Conv2d") == 13
    assert notes_for("vgg19")[0] == notes_for("vgg_e")[0] == notes_for("vgg16")[0] == notes_for("vgg_d")[0]
    assert "C5" in notes_for("lenet5")[0] and lenet5_layer_kinds()[4] == "FC"
