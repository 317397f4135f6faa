"""VGG: Simonyan & Zisserman, "Very deep convolutional networks for large-scale image recognition",
ICLR 2015.

``CFGS`` holds Table 1's six columns in the paper's own words (``conv3-64``, ``maxpool``, ``LRN``,
C's ``conv1-256``). Every conv has stride 1 and "same" padding, every hidden layer a ReLU, then
FC-4096, FC-4096, FC-1000. Table 2's parameter counts (millions): A, A-LRN 133; B 133; C 134;
D 138; E 144.

Two name sets share one class:

- ``vgg_a``, ``vgg_a_lrn``, ``vgg_b``, ``vgg_c``, ``vgg_d``, ``vgg_e``: the paper's columns, with
  the layer names of the authors' released Caffe models (``features.conv1_1``, ``features.relu1_1``,
  ``features.pool1``, ..., ``features.conv5_3``, ``classifier.fc6``, ``classifier.fc7``,
  ``classifier.fc8``) and Glorot initialisation.
- ``vgg11``, ``vgg13``, ``vgg16``, ``vgg19`` and their ``_bn`` variants: torchvision's layout
  (``features.0``, ``classifier.6``, ...) and initialisation, so torchvision state dicts load with
  ``strict=True``. They are columns A, B, D, E.

Batch normalisation (not in the paper) after every conv: ``create_model("vgg_d", batch_norm=True)``
for a paper column, or the ``vgg*_bn`` names. There are no ``vgg_a_bn``-style names: the option is
the one way to ask for it.

Small inputs: an adaptive average pool to ``pool_size`` x ``pool_size`` (7, as in torchvision) sits
in front of FC6. At 224x224 the maps are already 7x7, so it does nothing; at 32x32 it repeats the
1x1 map. For CIFAR-sized runs on a CPU, e.g. ``create_model("vgg_d", num_classes=10, width=0.25,
fc_width=512, pool_size=1, batch_norm=True)``: ``width`` scales every conv (and the FC width unless
``fc_width`` is given) and ``pool_size=1`` makes FC6 read the 1x1x512*width map directly.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier
from cnnlab.models.layers import local_response_norm, scale_channels
from cnnlab.models.registry import build_config, register_model

__all__ = ["CFGS", "VGGConfig", "VGG", "vgg_a", "vgg_a_lrn", "vgg_b", "vgg_c", "vgg_d", "vgg_e",
           "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]  # fmt: skip

# Simonyan & Zisserman 2015, Table 1 ("ConvNet configuration"), one line per stage. convK-N: N maps
# of KxK; LRN: Krizhevsky's local response normalisation; maxpool: 2x2, stride 2.
CFGS: dict[str, tuple[str, ...]] = {
    "A": (
        "conv3-64", "maxpool",
        "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ),
    "A-LRN": (
        "conv3-64", "LRN", "maxpool",
        "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ),
    "B": (
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "maxpool",
    ),
    "C": (
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv1-256", "maxpool",
        "conv3-512", "conv3-512", "conv1-512", "maxpool",
        "conv3-512", "conv3-512", "conv1-512", "maxpool",
    ),
    "D": (
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "maxpool",
    ),
    "E": (
        "conv3-64", "conv3-64", "maxpool",
        "conv3-128", "conv3-128", "maxpool",
        "conv3-256", "conv3-256", "conv3-256", "conv3-256", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool",
        "conv3-512", "conv3-512", "conv3-512", "conv3-512", "maxpool",
    ),
}  # fmt: skip

FC_WIDTH = 4096  # FC-4096, FC-4096 (Table 1)

INITS = ("glorot", "normal", "torchvision")


@dataclass(frozen=True)
class VGGConfig:
    batch_norm: bool = False  # BN after every conv (Ioffe & Szegedy 2015; torchvision's vgg*_bn)
    width: float = 1.0  # multiplies every conv's channels (and the FC width unless fc_width is given)
    fc_width: int | None = None  # FC6/FC7 neurons; None: 4096 * width
    dropout: float = 0.5  # after FC6 and FC7 (§3.1: "dropout ratio set to 0.5")
    pool_size: int = 7  # adaptive average pool in front of FC6 (identity at 224); 1 for 32x32 inputs
    init: str = "glorot"  # see VGG._init_weights

    def __post_init__(self) -> None:
        if not isinstance(self.batch_norm, bool):
            raise ConfigError(f"batch_norm must be True or False, got {self.batch_norm!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not self.width > 0:
            raise ConfigError(f"width must be a number > 0, got {self.width!r}")
        if self.fc_width is not None and (
            isinstance(self.fc_width, bool) or not isinstance(self.fc_width, int) or self.fc_width < 1
        ):
            raise ConfigError(f"fc_width must be a positive integer or None, got {self.fc_width!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.pool_size, bool) or not isinstance(self.pool_size, int) or self.pool_size < 1:
            raise ConfigError(f"pool_size must be a positive integer, got {self.pool_size!r}")
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")


class VGG(Classifier):
    """One VGG column: ``features`` (convs, ReLUs, pools), ``avgpool``, ``classifier`` (FC6-FC8).

    ``torchvision_layout=True`` numbers the layers (``features.0``, ...) as torchvision does;
    otherwise they carry the Caffe names of the authors' release (``conv{stage}_{i}``, ``pool{stage}``).
    """

    def __init__(
        self,
        column: str,
        cfg: VGGConfig,
        *,
        num_classes: int,
        in_chans: int,
        torchvision_layout: bool = False,
    ) -> None:
        super().__init__()
        features: list[tuple[str, nn.Module]] = []
        feature_info: list[dict] = []
        channels, stage, i = in_chans, 1, 1
        for layer in CFGS[column]:
            if layer == "maxpool":
                features.append((f"pool{stage}", nn.MaxPool2d(2, 2)))
                feature_info.append(dict(module=f"pool{stage}", num_chs=channels, reduction=2**stage))
                stage, i = stage + 1, 1
            elif layer == "LRN":
                # §2.1: "the parameters for the LRN layer are those of (Krizhevsky et al., 2012)".
                features.append((f"norm{stage}", local_response_norm()))
            else:
                kernel, maps = (int(v) for v in layer.removeprefix("conv").split("-"))
                out = scale_channels(maps, cfg.width)
                # 3x3 with padding 1, 1x1 with padding 0: "the spatial resolution is preserved".
                features.append((f"conv{stage}_{i}", nn.Conv2d(channels, out, kernel, padding=kernel // 2)))
                if cfg.batch_norm:  # departure: not in the paper (2014, before batch normalisation)
                    features.append((f"bn{stage}_{i}", nn.BatchNorm2d(out)))
                # Not in-place (torchvision's is): a forward hook on a conv must see the conv's output.
                features.append((f"relu{stage}_{i}", nn.ReLU()))
                channels, i = out, i + 1

        fc_width = cfg.fc_width or scale_channels(FC_WIDTH, cfg.width)
        classifier = [
            ("fc6", nn.Linear(channels * cfg.pool_size**2, fc_width)), ("relu6", nn.ReLU()),
            ("drop6", nn.Dropout(cfg.dropout)),
            ("fc7", nn.Linear(fc_width, fc_width)), ("relu7", nn.ReLU()),
            ("drop7", nn.Dropout(cfg.dropout)),
            ("fc8", nn.Linear(fc_width, num_classes)),
        ]  # fmt: skip
        if torchvision_layout:
            index = {name: str(k) for k, (name, _) in enumerate(features)}
            for info in feature_info:
                info["module"] = index[info["module"]]
            self.features = nn.Sequential(*(m for _, m in features))
            classifier_module = nn.Sequential(*(m for _, m in classifier))
        else:
            self.features = nn.Sequential(OrderedDict(features))
            classifier_module = nn.Sequential(OrderedDict(classifier))
        # Departure: the paper has no pooling before FC6 (224 inputs give 7x7 maps). torchvision's
        # adaptive pool keeps 224 unchanged and lets any input of at least 32x32 through.
        self.avgpool = nn.AdaptiveAvgPool2d(cfg.pool_size)
        self.classifier = classifier_module
        self.feature_info = [dict(info, module="features." + info["module"]) for info in feature_info]
        self._init_weights(cfg.init)

    @torch.no_grad()
    def _init_weights(self, scheme: str) -> None:
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                if scheme == "glorot":
                    # §3.1: "it is possible to initialise the weights without pre-training by using
                    # the random initialisation procedure of Glorot & Bengio (2010)": uniform in
                    # +-sqrt(6 / (fan_in + fan_out)), biases 0.
                    nn.init.xavier_uniform_(m.weight)
                elif scheme == "normal":
                    # §3.1's first procedure: "zero mean and 10^-2 variance", which trained net A
                    # only; the deeper columns were initialised from A's trained layers.
                    nn.init.normal_(m.weight, 0.0, 0.1)
                elif isinstance(m, nn.Conv2d):  # torchvision's VGG init
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # N x 512 x 7 x 7 at 224 (N x 512 x 1 x 1 at 32), times width

    def forward_head(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # N x 25088 at pool_size 7
        return self.classifier(x)  # N x num_classes


_PAPER = "Simonyan & Zisserman, 2015"
_SIZE = (3, 224, 224)
_DEPARTURES = "adaptive 7x7 average pool before FC6 (identity at 224; lets 32x32 inputs work)"


def _paper_column(column: str, name: str, config: dict, num_classes: int, in_chans: int) -> VGG:
    cfg = build_config(VGGConfig, name, config)
    return VGG(column, cfg, num_classes=num_classes, in_chans=in_chans)


def _torchvision(column: str, name: str, batch_norm: bool, config: dict, num_classes: int, in_chans: int) -> VGG:
    if "batch_norm" in config:
        # The name says whether there is batch normalisation, as in torchvision.
        raise ConfigError(f"{name}: batch_norm is fixed by the name (vgg16 or vgg16_bn), got {config['batch_norm']!r}")
    cfg = build_config(VGGConfig, name, config, batch_norm=batch_norm, init="torchvision")
    return VGG(column, cfg, num_classes=num_classes, in_chans=in_chans, torchvision_layout=True)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                departures=_DEPARTURES + "; Glorot init (the paper's alternative to pre-training)")
def vgg_a(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """Column A: 11 weight layers (133M params)."""
    return _paper_column("A", "vgg_a", config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                departures=_DEPARTURES + "; Glorot init (the paper's alternative to pre-training)")
def vgg_a_lrn(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """Column A-LRN: A with Krizhevsky's LRN after the first conv (133M params)."""
    return _paper_column("A-LRN", "vgg_a_lrn", config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                departures=_DEPARTURES + "; Glorot init (the paper's alternative to pre-training)")
def vgg_b(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """Column B: 13 weight layers (133M params)."""
    return _paper_column("B", "vgg_b", config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                departures=_DEPARTURES + "; Glorot init (the paper's alternative to pre-training)")
def vgg_c(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """Column C: 16 weight layers, the last conv of stages 3-5 is 1x1 (134M params)."""
    return _paper_column("C", "vgg_c", config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                departures=_DEPARTURES + "; Glorot init (the paper's alternative to pre-training)")
def vgg_d(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """Column D ("VGG-16"): 16 weight layers (138M params)."""
    return _paper_column("D", "vgg_d", config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                departures=_DEPARTURES + "; Glorot init (the paper's alternative to pre-training)")
def vgg_e(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """Column E ("VGG-19"): 19 weight layers (144M params)."""
    return _paper_column("E", "vgg_e", config, num_classes, in_chans)


_TV_DEPARTURES = "torchvision's layout and init (Kaiming normal convs, N(0, 0.01) FC); " + _DEPARTURES
_TV_BN_DEPARTURES = "batch normalisation after every conv; " + _TV_DEPARTURES


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                torchvision="vgg11", departures=_TV_DEPARTURES)
def vgg11(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """torchvision's vgg11 (column A): same state_dict keys, same logits."""
    return _torchvision("A", "vgg11", False, config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                torchvision="vgg11_bn", departures=_TV_BN_DEPARTURES)
def vgg11_bn(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """torchvision's vgg11_bn (column A with batch normalisation)."""
    return _torchvision("A", "vgg11_bn", True, config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                torchvision="vgg13", departures=_TV_DEPARTURES)
def vgg13(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """torchvision's vgg13 (column B)."""
    return _torchvision("B", "vgg13", False, config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                torchvision="vgg13_bn", departures=_TV_BN_DEPARTURES)
def vgg13_bn(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """torchvision's vgg13_bn (column B with batch normalisation)."""
    return _torchvision("B", "vgg13_bn", True, config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                torchvision="vgg16", departures=_TV_DEPARTURES)
def vgg16(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """torchvision's vgg16 (column D)."""
    return _torchvision("D", "vgg16", False, config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                torchvision="vgg16_bn", departures=_TV_BN_DEPARTURES)
def vgg16_bn(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """torchvision's vgg16_bn (column D with batch normalisation)."""
    return _torchvision("D", "vgg16_bn", True, config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                torchvision="vgg19", departures=_TV_DEPARTURES)
def vgg19(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """torchvision's vgg19 (column E)."""
    return _torchvision("E", "vgg19", False, config, num_classes, in_chans)


@register_model(family="vgg", paper=_PAPER, input_size=_SIZE, num_classes=1000, recipe="vgg",
                torchvision="vgg19_bn", departures=_TV_BN_DEPARTURES)
def vgg19_bn(*, num_classes: int = 1000, in_chans: int = 3, **config) -> VGG:
    """torchvision's vgg19_bn (column E with batch normalisation)."""
    return _torchvision("E", "vgg19_bn", True, config, num_classes, in_chans)
