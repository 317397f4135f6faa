"""Published results, as data: every value with the table it comes from.

What the papers and torchvision report for the zoo's models, so that ``cnnlab list --format json``,
``cnnlab compare --plot`` and the experiments' reports can set cnnlab's own measurements beside them.
Nothing here is computed: each figure is copied from the cited table, and the tests check the
torchvision figures against ``Weights.meta["_metrics"]`` of the installed torchvision and the
lecture figures against the seed decks.

Conventions: ImageNet figures are accuracies in percent on the ILSVRC-2012 validation set (the
papers print errors; ``top1 = 100 - top-1 error``), ``None`` where the source gives no figure.
``protocol`` says how the paper tested (one centre crop, 10 crops, multi-scale...): figures with
different protocols are not directly comparable, which is why torchvision's (one 224 centre crop of
a 256 resize, for every model) are kept separately.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Published",
    "IMAGENET_PAPER",
    "IMAGENET_TORCHVISION",
    "ILSVRC_WINNERS",
    "ILSVRCWinner",
    "ILSVRC_RUNNERS_UP",
    "CIFAR10_RESNET",
    "CifarResult",
    "RESNET34_SHORTCUTS",
    "NO_PAPER_FIGURE",
    "QuotedFigure",
    "LECTURE_QUOTED",
    "published_for",
    "headline_top1",
]

# Citations, written once.
KRIZHEVSKY_2012 = "Krizhevsky, Sutskever & Hinton, NIPS 2012, Table 2"
ZEILER_2014 = "Zeiler & Fergus, ECCV 2014, Table 2"
SIMONYAN_2015 = "Simonyan & Zisserman, ICLR 2015, Table 3"
SZEGEDY_2015 = "Szegedy et al., CVPR 2015, Table 3"
HE_2016_T2 = "He, Zhang, Ren & Sun, CVPR 2016, Table 2"
HE_2016_T3 = "He, Zhang, Ren & Sun, CVPR 2016, Table 3 (lecture 003's table)"
HE_2016_T6 = "He, Zhang, Ren & Sun, CVPR 2016, Table 6"
XIE_2017 = "Xie, Girshick, Dollar, Tu & He, CVPR 2017, Table 3"
HU_2018 = "Hu, Shen & Sun, CVPR 2018, Table 2"
SZEGEDY_2017 = "Szegedy, Ioffe, Vanhoucke & Alemi, AAAI 2017, Table 2"
LITE_2020 = "Google's EfficientNet-Lite release (tensorflow/tpu, models/official/efficientnet/lite), README table"
TORCHVISION = "torchvision 0.29 weights table (Weights.meta['_metrics']['ImageNet-1K'])"


@dataclass(frozen=True)
class Published:
    """One published ImageNet result for one zoo model."""

    model: str  # zoo name
    top1: float | None  # top-1 accuracy, %, ILSVRC-2012 validation
    top5: float | None  # top-5 accuracy, %
    source: str  # the table it comes from
    protocol: str  # how it was tested
    note: str = ""  # how the published network differs from the zoo's, if it does


def _err(model: str, top1_err: float | None, top5_err: float | None, source: str, protocol: str,
         note: str = "") -> Published:
    """A paper's errors as accuracies (rounded to the papers' 2 decimals, no float noise)."""
    acc = lambda e: None if e is None else round(100.0 - e, 3)  # noqa: E731
    return Published(model, acc(top1_err), acc(top5_err), source, protocol, note)


# The papers' own figures for the zoo's ImageNet models (single network, no ensembles).
IMAGENET_PAPER: tuple[Published, ...] = (
    _err("alexnet_2012", 40.7, 18.2, KRIZHEVSKY_2012, "10 crops (5 patches + flips), val",
         "the lecture's '18.2% top-5 error' (lecture 000); '1 CNN' row; the 7-CNN ensemble reached 15.4%"),
    _err("zfnet", 37.5, 16.0, ZEILER_2014, "10 crops, val",
         "row '1 convnet, layers 3,4,5: 512,1024,512 maps (a)', the zoo's widths"),
    _err("vgg_a", 29.6, 10.4, SIMONYAN_2015, "one scale Q=S=256, val"),
    _err("vgg_a_lrn", 29.7, 10.5, SIMONYAN_2015, "one scale Q=S=256, val"),
    _err("vgg_b", 28.7, 9.9, SIMONYAN_2015, "one scale Q=S=256, val"),
    _err("vgg_c", 28.1, 9.4, SIMONYAN_2015, "one scale Q=S=256, val", "trained at S=256; 27.3/8.8 with scale jittering"),
    _err("vgg_d", 27.0, 8.8, SIMONYAN_2015, "one scale Q=S=256, val", "trained at S=256; 25.6/8.1 with scale jittering"),
    _err("vgg_e", 27.3, 9.0, SIMONYAN_2015, "one scale Q=S=256, val", "trained at S=256; 25.5/8.0 with scale jittering"),
    _err("vgg11", 29.6, 10.4, SIMONYAN_2015, "one scale Q=S=256, val", "configuration A"),
    _err("vgg13", 28.7, 9.9, SIMONYAN_2015, "one scale Q=S=256, val", "configuration B"),
    _err("vgg16", 27.0, 8.8, SIMONYAN_2015, "one scale Q=S=256, val", "configuration D"),
    _err("vgg19", 27.3, 9.0, SIMONYAN_2015, "one scale Q=S=256, val", "configuration E"),
    _err("googlenet_2014", None, 10.07, SZEGEDY_2015, "1 model, 1 crop, val",
         "no top-1 published; 9.15% top-5 with 10 crops (He et al.'s Table 3), 7.89% with 144 crops"),
    _err("googlenet", None, 10.07, SZEGEDY_2015, "1 model, 1 crop, val",
         "the paper's network, not torchvision's BN variant that the zoo's `googlenet` is"),
    _err("resnet18", 27.88, None, HE_2016_T2, "10 crops, val", "option-A shortcuts (the zoo's uses B)"),
    _err("plain18", 27.94, None, HE_2016_T2, "10 crops, val"),
    _err("plain34", 28.54, 10.02, HE_2016_T3, "10 crops, val"),
    _err("resnet34", 24.52, 7.46, HE_2016_T3, "10 crops, val", "ResNet-34 B, the zoo's shortcut option"),
    _err("resnet50", 22.85, 6.71, HE_2016_T3, "10 crops, val", "stride in the 1x1 (`stride_in_1x1=True`)"),
    _err("resnet101", 21.75, 6.05, HE_2016_T3, "10 crops, val", "stride in the 1x1 (`stride_in_1x1=True`)"),
    _err("resnet152", 21.43, 5.71, HE_2016_T3, "10 crops, val", "stride in the 1x1 (`stride_in_1x1=True`)"),
    _err("resnext50_32x4d", 22.2, None, XIE_2017, "1 crop 224, val"),
    _err("se_resnet50", 23.29, 6.62, HU_2018, "1 crop 224, val"),
    _err("inception_v4", 20.0, 5.0, SZEGEDY_2017, "1 crop 299, val (the non-blacklisted subset)"),
    # Tan & Le 2019 report B0-B7; the Lite variants' figures are their release's (FP32, no top-5).
    Published("efficientnet_lite0", 75.1, None, LITE_2020, "1 crop 224 of 224/256 of the shorter side, val"),
    Published("efficientnet_lite1", 76.7, None, LITE_2020, "1 crop 240 of 240/272 of the shorter side, val"),
    Published("efficientnet_lite2", 77.6, None, LITE_2020, "1 crop 260 of 260/292 of the shorter side, val"),
)

# torchvision's figures for the weights the zoo's torchvision-compatible models load (one 224 crop).
# Checked against the installed torchvision by tests/test_results.py.
IMAGENET_TORCHVISION: tuple[Published, ...] = tuple(
    Published(model, top1, top5, f"{TORCHVISION}, {weights}", "1 crop 224 of a 256 resize, val")
    for model, weights, top1, top5 in (
        ("alexnet", "AlexNet_Weights.IMAGENET1K_V1", 56.522, 79.066),
        ("googlenet", "GoogLeNet_Weights.IMAGENET1K_V1", 69.778, 89.53),
        ("resnet18", "ResNet18_Weights.IMAGENET1K_V1", 69.758, 89.078),
        ("resnet34", "ResNet34_Weights.IMAGENET1K_V1", 73.314, 91.42),
        ("resnet50", "ResNet50_Weights.IMAGENET1K_V1", 76.13, 92.862),
        ("resnet50", "ResNet50_Weights.IMAGENET1K_V2", 80.858, 95.434),
        ("resnet101", "ResNet101_Weights.IMAGENET1K_V1", 77.374, 93.546),
        ("resnet101", "ResNet101_Weights.IMAGENET1K_V2", 81.886, 95.78),
        ("resnet152", "ResNet152_Weights.IMAGENET1K_V1", 78.312, 94.046),
        ("resnet152", "ResNet152_Weights.IMAGENET1K_V2", 82.284, 96.002),
        ("resnext50_32x4d", "ResNeXt50_32X4D_Weights.IMAGENET1K_V1", 77.618, 93.698),
        ("resnext50_32x4d", "ResNeXt50_32X4D_Weights.IMAGENET1K_V2", 81.198, 95.34),
        ("vgg11", "VGG11_Weights.IMAGENET1K_V1", 69.02, 88.628),
        ("vgg11_bn", "VGG11_BN_Weights.IMAGENET1K_V1", 70.37, 89.81),
        ("vgg13", "VGG13_Weights.IMAGENET1K_V1", 69.928, 89.246),
        ("vgg13_bn", "VGG13_BN_Weights.IMAGENET1K_V1", 71.586, 90.374),
        ("vgg16", "VGG16_Weights.IMAGENET1K_V1", 71.592, 90.382),
        ("vgg16_bn", "VGG16_BN_Weights.IMAGENET1K_V1", 73.36, 91.516),
        ("vgg19", "VGG19_Weights.IMAGENET1K_V1", 72.376, 90.876),
        ("vgg19_bn", "VGG19_BN_Weights.IMAGENET1K_V1", 74.218, 91.842),
    )
)


@dataclass(frozen=True)
class ILSVRCWinner:
    """One entry of the ILSVRC classification challenge (a winner, or the runner-up the lectures show)."""

    year: int
    team: str
    network: str
    top5_error: float  # %, ILSVRC classification test set (the challenge's own metric)
    source: str
    note: str = ""
    layers: int | None = None  # weight layers of the network ("8 layers"); None for the shallow methods
    layers_source: str = ""  # where the depth is quoted


# The classification winners as the lectures show them (the "ILSVRC winners" bar chart and the
# "revolution of depth" chart of lectures 000 and 004, with the depth of each network).
ILSVRC_WINNERS: tuple[ILSVRCWinner, ...] = (
    ILSVRCWinner(2010, "NEC-UIUC", "sparse coding + SVM (not a CNN)", 28.2,
                 "Russakovsky et al., IJCV 2015 (the bar chart of lecture 002; not in the seeds' text)"),
    ILSVRCWinner(2011, "XRCE", "Fisher vectors + SVM (not a CNN)", 25.8,
                 "Russakovsky et al., IJCV 2015 (the bar chart of lecture 002; not in the seeds' text)"),
    ILSVRCWinner(2012, "SuperVision", "AlexNet, 5-CNN ensemble", 16.4, "lecture 001 ('2012: AlexNet ... Error: 16.4%'); "
                 "lecture 002 ('16.4% -> 11.7%')", "16.4% is Table 2's 5-CNN entry (test); the 7-CNN entry pre-trained on "
                 "ImageNet Fall 2011 scored 15.3% (lecture 002's '7 CNN ensemble: 18.2% -> 15.4%' is its val figure)",
                 layers=8, layers_source="lecture 000 ('AlexNet 8 layers'), lecture 002 ('8 layers (AlexNet)')"),
    ILSVRCWinner(2013, "Clarifai", "ZFNet ensemble", 11.7, "lecture 002 ('11.7% top 5 error in ILSVRC'13')",
                 layers=8, layers_source="Zeiler & Fergus, ECCV 2014, Figure 3 (AlexNet's 5 conv + 3 FC layers; "
                 "lecture 002: 'AlexNet but: CONV1 ...')"),
    ILSVRCWinner(2014, "GoogLeNet", "GoogLeNet, 7-model ensemble, 144 crops", 6.67,
                 "Szegedy et al., CVPR 2015, Table 2 (lecture 000: 'Winner of ILSVRC-2014')",
                 "VGG was second with 7.3% (lectures 000, 001, 002)",
                 layers=22, layers_source="lecture 000 ('Very deep network with 22 layers')"),
    ILSVRCWinner(2015, "MSRA", "ResNet-152 ensemble", 3.57, "lecture 002 ('3.57% top 5 error'); lecture 001 '3.6%'",
                 layers=152, layers_source="lecture 000 ('ResNet 152 layers'), lecture 002 ('152-layer model')"),
)

# The runner-up the "revolution of depth" chart shows beside the winners.
ILSVRC_RUNNERS_UP: tuple[ILSVRCWinner, ...] = (
    ILSVRCWinner(2014, "VGG", "VGG, 7-net ensemble", 7.3, "lecture 000 ('second in classification (7.3% error) "
                 "in ILSVRC 2014'); Simonyan & Zisserman, ICLR 2015, Table 7",
                 layers=19, layers_source="lecture 002 ('-> 16 - 19 layers (VGG16Net)'); "
                 "Simonyan & Zisserman, Table 1, configuration E"),
)


@dataclass(frozen=True)
class CifarResult:
    model: str  # zoo name
    params_m: float  # the table's parameter column, millions
    error: float  # CIFAR-10 test error, %
    note: str = ""


# He et al. 2016 Table 6: CIFAR-10 test error (best of 5 runs; ResNet-110 also as mean +- std).
CIFAR10_RESNET: tuple[CifarResult, ...] = (
    CifarResult("resnet20", 0.27, 8.75),
    CifarResult("resnet32", 0.46, 7.51),
    CifarResult("resnet44", 0.66, 7.17),
    CifarResult("resnet56", 0.85, 6.97),
    CifarResult("resnet110", 1.7, 6.43, "best of 5; 6.61 +- 0.16 over the 5 runs"),
    CifarResult("resnet1202", 19.4, 7.93, "worse than ResNet-110: over-fitting, says the paper"),
)
CIFAR10_SOURCE = HE_2016_T6

# He et al. 2016 Table 3 (lecture 003): ResNet-34 with shortcut options A, B and C, top-1 / top-5 error.
# A: zero-padding for increasing dimensions, identity elsewhere (parameter-free); B: projections for
# increasing dimensions, identity elsewhere; C: projections everywhere.
RESNET34_SHORTCUTS: dict[str, tuple[float, float]] = {"A": (25.03, 7.76), "B": (24.52, 7.46), "C": (24.19, 7.40)}
RESNET34_SHORTCUTS_SOURCE = HE_2016_T3


@dataclass(frozen=True)
class QuotedFigure:
    """A published error rate that a lecture quotes and that is not one zoo model's ImageNet result
    (ensembles, localisation, other papers' rows, other data sets)."""

    what: str
    error: float  # %, as published
    metric: str  # "top-5 error, val", ...
    source: str  # the table it comes from
    lecture: str  # "deck:line" where the lecture quotes it (tests/test_lecture_numbers.py checks the line)


# Figures the lectures quote beside the per-model results above (the audit of docs/lecture-numbers.md).
LECTURE_QUOTED: tuple[QuotedFigure, ...] = (
    QuotedFigure("Zeiler & Fergus's replication of Krizhevsky et al., 1 convnet", 18.1, "top-5 error, val",
                 ZEILER_2014, "000:295"),
    QuotedFigure("AlexNet, 7 CNNs (2 pre-trained on ImageNet Fall 2011)", 15.4, "top-5 error, val",
                 KRIZHEVSKY_2012 + " (15.3 on test)", "002:760"),
    QuotedFigure("VGG ILSVRC-2014 submission, 7 nets", 7.3, "top-5 error, test",
                 "Simonyan & Zisserman, ICLR 2015, Table 7", "000:468"),
    QuotedFigure("VGG ILSVRC-2014 localisation (first place)", 25.3, "localisation error, test",
                 "Simonyan & Zisserman, ICLR 2015, Table 10 / Appendix A", "000:468"),
    QuotedFigure("VGG, 1 net (multi-crop & dense)", 7.1, "top-5 error, val (7.0 on test)",
                 "Simonyan & Zisserman, ICLR 2015, Table 7", "000:469"),
    QuotedFigure("GoogLeNet, 1 net", 7.9, "top-5 error, test",
                 "Simonyan & Zisserman, ICLR 2015, Table 7 (from Szegedy et al. 2015, Table 3)", "000:469"),
    QuotedFigure("VGG-16, 10-crop testing", 28.07, "top-1 error, val", HE_2016_T3, "003:252"),
    QuotedFigure("VGG-16, 10-crop testing", 9.33, "top-5 error, val", HE_2016_T3, "003:252"),
    QuotedFigure("GoogLeNet, 10-crop testing", 9.15, "top-5 error, val", HE_2016_T3, "003:253"),
    QuotedFigure("PReLU-net, 10-crop testing", 24.27, "top-1 error, val", HE_2016_T3, "003:254"),
    QuotedFigure("PReLU-net, 10-crop testing", 7.38, "top-5 error, val", HE_2016_T3, "003:254"),
    QuotedFigure("FractalNet, CIFAR-100 with augmentation", 22.85, "test error",
                 "Larsson, Maire & Shakhnarovich, arXiv:1605.07648 (abstract, as lecture 000 quotes it)", "000:790"),
)


# ImageNet zoo models with no figure in their paper, and why (the tests require a reason for each).
NO_PAPER_FIGURE: dict[str, str] = {
    "alexnet": "Krizhevsky 2014 ('one weird trick') reports errors for its multi-GPU schemes, not for "
               "torchvision's one-tower net; see the torchvision figure",
    **{f"vgg{d}_bn": "VGG (2014) had no batch normalisation; torchvision trained these" for d in (11, 13, 16, 19)},
}


def published_for(model: str) -> dict[str, list[dict]]:
    """The published figures for ``model`` as plain dicts: ``{"paper": [...], "torchvision": [...],
    "cifar10": [...]}`` (empty lists where there are none)."""
    from dataclasses import asdict

    cifar = [dict(asdict(r), source=CIFAR10_SOURCE) for r in CIFAR10_RESNET if r.model == model]
    return {
        "paper": [asdict(p) for p in IMAGENET_PAPER if p.model == model],
        "torchvision": [asdict(p) for p in IMAGENET_TORCHVISION if p.model == model],
        "cifar10": cifar,
    }


def headline_top1(model: str) -> tuple[float | None, float | None]:
    """``(paper top-1, torchvision V1 top-1)`` for charts; None where there is none."""
    paper = next((p.top1 for p in IMAGENET_PAPER if p.model == model and p.top1 is not None), None)
    tv = next((p.top1 for p in IMAGENET_TORCHVISION if p.model == model and p.source.endswith("V1")), None)
    return paper, tv
