"""Dense prediction: fully convolutional networks, dilated convolutions, U-Net.

- ``fcn32s_vgg16``, ``fcn16s_vgg16``, ``fcn8s_vgg16``: Long, Shelhamer & Darrell, "Fully
  convolutional networks for semantic segmentation", CVPR 2015. VGG-16 "convolutionalised": FC6
  becomes a 7x7 convolution and FC7 a 1x1 one, so the classifier slides over any input and gives a
  map of scores (``score_fr``); transposed convolutions initialised as bilinear upsampling bring the
  scores back to the input's size; FCN-16s and FCN-8s fuse the 1x1 scores of pool4 and pool3
  (Fig. 3). The layer names, the padding of 100 on conv1_1, Caffe's round-up pooling and the crop
  offsets are those of the authors' released ``voc-fcn*`` nets (``CROPS``).
- ``dilated_frontend`` and :class:`ContextModule`: Yu & Koltun, "Multi-scale context aggregation by
  dilated convolutions", ICLR 2016 (lecture 001's Fig. 1): VGG-16 without pool4/pool5, conv5 dilated
  by 2 and FC6 by 4, output stride 8; the context module's dilations 1, 1, 2, 4, 8, 16, 1 grow the
  receptive field exponentially at a constant number of parameters, and its identity initialisation
  makes a fresh module pass its input through.
- ``fcn_digits`` and ``unet_small``: small nets for the embedded ``mnist-seg`` canvases (1x64x64,
  11 classes) that train on a CPU in minutes; ``unet_small`` follows Ronneberger, Fischer & Brox,
  "U-Net", MICCAI 2015.

Every model returns per-pixel logits ``(N, num_classes, H, W)`` at the input's size.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier
from cnnlab.models.layers import ConvNormAct, scale_channels
from cnnlab.models.registry import build_config, register_model

__all__ = ["bilinear_kernel", "BilinearUpsample", "FCNConfig", "FCN", "CROPS", "SKIPS", "vgg16_to_fcn",
           "ContextModule", "CONTEXT_DILATIONS", "DilatedFrontend", "FCNDigits", "UNetSmall",
           "fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16", "dilated_frontend", "fcn_digits", "unet_small",
           "DilatedDigits", "dilated_digits"]  # fmt: skip

# VGG-16 (Simonyan & Zisserman 2015, Table 1 column D) in torchvision's numbering, so that its
# state dict loads into ``features`` key for key.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

# Which pooling outputs each FCN fuses, coarsest first (Long et al. 2015, Fig. 3 and Table 2).
SKIPS = {"32s": (), "16s": ("pool4",), "8s": ("pool4", "pool3")}

# Crop offsets of the released voc-fcn{32,16,8}s nets (Caffe "Crop" layers): where each coarse map
# is cut to align with the finer one. They follow from conv1_1's padding of 100 and the layers'
# kernels (tests/test_zoo_fcn.py derives them from the analyzer's receptive-field starts).
CROPS = {
    "32s": {"score": 19},
    "16s": {"score_pool4": 5, "score": 27},
    "8s": {"score_pool4": 5, "score_pool3": 9, "score": 31},
}
PAPER_PADDING = 100  # conv1_1's padding in the released nets: every input size gives a score map

_FCN_PAPER = "Long, Shelhamer & Darrell, 2015"
_YK_PAPER = "Yu & Koltun, 2016"


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """Weight ``(channels, channels, k, k)`` of a transposed convolution that upsamples each channel
    bilinearly and mixes none (``upsample_filt`` of the FCN authors' ``surgery.py``)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = (filt1d[:, None] * filt1d[None, :]).float()
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt
    return weight


class BilinearUpsample(nn.ConvTranspose2d):
    """A learnable transposed convolution ("deconvolution") initialised as bilinear upsampling by
    ``factor``: kernel ``2 factor``, stride ``factor``, no bias (the FCNs' ``upscore`` layers).

    With ``padding=factor // 2`` the output is exactly ``factor`` times the input and equals
    ``F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)`` away from the
    border (the border differs: the transposed convolution sees zeros outside, interpolation
    repeats the edge).
    """

    def __init__(self, channels: int, factor: int, *, padding: int = 0) -> None:
        super().__init__(channels, channels, 2 * factor, stride=factor, padding=padding, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.weight.device.type != "meta":
            self.weight.copy_(bilinear_kernel(self.out_channels, self.kernel_size[0]))


def _crop(x: Tensor, offset: int, like: Tensor) -> Tensor:
    """Caffe's Crop layer: ``x[..., offset:offset + H, offset:offset + W]`` with ``like``'s H, W."""
    return x[:, :, offset : offset + like.shape[2], offset : offset + like.shape[3]]


# ---------------------------------------------------------------------------------------- FCN


def _positive_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")


@dataclass(frozen=True)
class FCNConfig:
    width: float = 1.0  # multiplies every conv's channels (and FC6/FC7 unless fc_width is given)
    fc_width: int | None = None  # FC6/FC7 channels; None: 4096 * width
    dropout: float = 0.5  # after FC6 and FC7, as VGG-16 (the released nets keep VGG's dropout)
    first_padding: int = PAPER_PADDING  # conv1_1's padding; 1 gives VGG-16's own "same" padding

    def __post_init__(self) -> None:
        _positive_number("width", self.width)
        if self.fc_width is not None and (isinstance(self.fc_width, bool) or not isinstance(self.fc_width, int)
                                          or self.fc_width < 1):
            raise ConfigError(f"fc_width must be a positive integer or None, got {self.fc_width!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.first_padding, bool) or not isinstance(self.first_padding, int) or self.first_padding < 0:
            raise ConfigError(f"first_padding must be an integer >= 0, got {self.first_padding!r}")


class FCN(Classifier):
    """FCN-32s / 16s / 8s on VGG-16 (``skips`` "32s", "16s" or "8s"), as the released Caffe nets:

    ``features`` (VGG-16's 13 convs and 5 pools, torchvision's numbering) -> ``fc6`` (7x7, no padding)
    -> ``fc7`` (1x1) -> ``score_fr`` (1x1 to K) -> ``upscore2`` x2 + ``score_pool4`` (cropped)
    -> ``upscore_pool4`` x2 + ``score_pool3`` (cropped) -> ``upscore`` x8 / x16 / x32 -> crop to the
    input. :meth:`score_map` is the convolutionalised VGG-16 alone (its classifier slid over the image).
    """

    def __init__(self, skips: str, cfg: FCNConfig, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.skips = skips
        self.crops = dict(CROPS[skips])
        # The released offsets assume conv1_1's padding of 100; another padding shifts the final crop
        # by the difference (the skip crops are relative and do not move).
        self.crops["score"] -= PAPER_PADDING - cfg.first_padding
        layers: list[nn.Module] = []
        channels, stage = in_chans, 1
        self.feature_info = []
        for v in VGG16:
            if v == "M":
                # Caffe's pooling rounds the output size up (ceil_mode): the released nets' sizes.
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                self.feature_info.append(dict(module=f"features.{len(layers) - 1}", num_chs=channels,
                                              reduction=2**stage, input_padding=cfg.first_padding - 1))
                stage += 1
            else:
                out = scale_channels(v, cfg.width)
                padding = cfg.first_padding if not layers else 1  # conv1_1: 100 in the paper (§4.1... see CROPS)
                layers += [nn.Conv2d(channels, out, 3, padding=padding), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)
        self._pool_index = {f"pool{i + 1}": int(info["module"].split(".")[1]) for i, info in enumerate(self.feature_info)}
        fc_width = cfg.fc_width or scale_channels(4096, cfg.width)
        # FC6 and FC7 of VGG-16 as convolutions: 7x7 over pool5's 512 maps, then 1x1.
        self.fc6 = nn.Conv2d(channels, fc_width, 7)
        self.relu6, self.drop6 = nn.ReLU(), nn.Dropout2d(cfg.dropout)
        self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
        self.relu7, self.drop7 = nn.ReLU(), nn.Dropout2d(cfg.dropout)
        self.score_fr = nn.Conv2d(fc_width, num_classes, 1)
        pool_chs = {f"pool{i + 1}": info["num_chs"] for i, info in enumerate(self.feature_info)}
        if skips == "32s":
            self.upscore = BilinearUpsample(num_classes, 32)
        else:
            self.upscore2 = BilinearUpsample(num_classes, 2)
            self.score_pool4 = nn.Conv2d(pool_chs["pool4"], num_classes, 1)
            if skips == "16s":
                self.upscore = BilinearUpsample(num_classes, 16)
            else:
                self.score_pool3 = nn.Conv2d(pool_chs["pool3"], num_classes, 1)
                self.upscore_pool4 = BilinearUpsample(num_classes, 2)
                self.upscore = BilinearUpsample(num_classes, 8)
        self.feature_info.append(dict(module="fc7", num_chs=fc_width, reduction=32, input_padding=cfg.first_padding - 1))
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        for name, m in self.named_modules():
            if isinstance(m, BilinearUpsample):
                m.reset_parameters()
            elif isinstance(m, nn.Conv2d) and name.startswith("score"):
                # §4.2 / surgery: the new score layers start at zero ("zero-initialized the class
                # scoring layer, finding random initialization to yield neither better performance nor
                # faster convergence"); the skips therefore start by leaving FCN-32s unchanged.
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):  # VGG-16's convs as torchvision initialises them
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def _backbone(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        pools: dict[str, Tensor] = {}
        wanted = {self._pool_index[p]: p for p in ("pool3", "pool4")}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                pools[wanted[i]] = x
        x = self.drop6(self.relu6(self.fc6(x)))
        x = self.drop7(self.relu7(self.fc7(x)))
        return x, pools

    def score_map(self, x: Tensor) -> Tensor:
        """The convolutionalised classifier's scores, ``(N, K, h, w)`` at stride 32 (``score_fr``)."""
        return self.score_fr(self._backbone(x)[0])

    def forward(self, x: Tensor) -> Tensor:
        fc7, pools = self._backbone(x)
        score = self.score_fr(fc7)  # N x K x h x w, stride 32
        if self.skips != "32s":
            score = self.upscore2(score)  # stride 16
            score = score + _crop(self.score_pool4(pools["pool4"]), self.crops["score_pool4"], score)
            if self.skips == "8s":
                score = self.upscore_pool4(score)  # stride 8
                score = score + _crop(self.score_pool3(pools["pool3"]), self.crops["score_pool3"], score)
        score = self.upscore(score)  # stride 1, larger than the input by the padding
        return _crop(score, self.crops["score"], x)  # N x K x H x W


def vgg16_to_fcn(state: dict[str, Tensor], *, classifier: bool = False) -> dict[str, Tensor]:
    """Map a ``vgg16`` state dict (cnnlab's or torchvision's) onto an FCN's backbone.

    ``features.*`` keep their keys; FC6's and FC7's matrices become 7x7 and 1x1 kernels
    (``classifier.0`` -> ``fc6``, ``classifier.3`` -> ``fc7``); with ``classifier=True`` FC8 becomes
    ``score_fr`` (1000 ImageNet classes), which makes ``score_map`` slide VGG-16's own classifier.
    Load the result with ``load_state_dict(..., strict=False)``: the score and upsampling layers are
    not in VGG-16.
    """
    out = {k: v for k, v in state.items() if k.startswith("features.")}
    fc6 = state["classifier.0.weight"]
    out["fc6.weight"] = fc6.reshape(fc6.shape[0], -1, 7, 7)  # flatten order of (C, 7, 7), as VGG's
    out["fc6.bias"] = state["classifier.0.bias"]
    out["fc7.weight"] = state["classifier.3.weight"][:, :, None, None]
    out["fc7.bias"] = state["classifier.3.bias"]
    if classifier:
        out["score_fr.weight"] = state["classifier.6.weight"][:, :, None, None]
        out["score_fr.bias"] = state["classifier.6.bias"]
    return out


def _fcn(skips: str, name: str, config: dict, num_classes: int, in_chans: int) -> FCN:
    return FCN(skips, build_config(FCNConfig, name, config), num_classes=num_classes, in_chans=in_chans)


_FCN_DEPARTURES = ("the released voc-fcn nets: conv1_1 padded by 100, Caffe's round-up pooling, the "
                   "prototxts' crop offsets; learnable bilinear-initialised upsampling (the released "
                   "nets freeze it); no pool3/pool4 rescaling of the 'at-once' FCN-8s")


@register_model(family="fcn", paper=_FCN_PAPER, input_size=(3, 224, 224), num_classes=21, recipe="fcn",
                departures=_FCN_DEPARTURES, task="segmentation")
def fcn32s_vgg16(*, num_classes: int = 21, in_chans: int = 3, **config) -> FCN:
    """FCN-32s: VGG-16's scores upsampled x32 in one step (Long et al. 2015, Table 2: 59.4 mean IU)."""
    return _fcn("32s", "fcn32s_vgg16", config, num_classes, in_chans)


@register_model(family="fcn", paper=_FCN_PAPER, input_size=(3, 224, 224), num_classes=21, recipe="fcn",
                departures=_FCN_DEPARTURES, task="segmentation")
def fcn16s_vgg16(*, num_classes: int = 21, in_chans: int = 3, **config) -> FCN:
    """FCN-16s: + pool4's scores at stride 16 (Table 2: 62.4 mean IU)."""
    return _fcn("16s", "fcn16s_vgg16", config, num_classes, in_chans)


@register_model(family="fcn", paper=_FCN_PAPER, input_size=(3, 224, 224), num_classes=21, recipe="fcn",
                departures=_FCN_DEPARTURES, task="segmentation")
def fcn8s_vgg16(*, num_classes: int = 21, in_chans: int = 3, **config) -> FCN:
    """FCN-8s: + pool3's scores at stride 8 (Table 2: 62.7 mean IU)."""
    return _fcn("8s", "fcn8s_vgg16", config, num_classes, in_chans)


# ---------------------------------------------------------------------------- dilated convolutions

# Yu & Koltun 2016, Table 1 (the basic context module): layers 1-7 are 3x3 with these dilations,
# each truncated by a ReLU; layer 8 is 1x1 without truncation. Receptive fields 3, 5, 9, 17, 33, 65, 67.
CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)


class ContextModule(nn.Module):
    """The basic context module: C -> C channels throughout, 64 C^2 + 8 C parameters whatever the
    dilations. ``dilations=(1,) * 7`` gives the same module without dilation (fields 3, 5, ..., 15).

    Identity initialisation (§3): every 3x3 kernel is ``1[a = b]`` at its centre and zero elsewhere,
    biases 0. A fresh module therefore passes any non-negative input (a ReLU's output) through
    unchanged; a negative value is cut by the first truncation, as in the paper.
    """

    def __init__(self, channels: int, dilations: tuple[int, ...] = CONTEXT_DILATIONS) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = []
        for i, d in enumerate(dilations, start=1):
            layers.append((f"ctx_conv{i}", nn.Conv2d(channels, channels, 3, padding=d, dilation=d)))
            layers.append((f"ctx_relu{i}", nn.ReLU()))
        layers.append((f"ctx_fc{len(dilations) + 1}", nn.Conv2d(channels, channels, 1)))
        self.layers = nn.Sequential(OrderedDict(layers))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for m in self.layers:
            if isinstance(m, nn.Conv2d) and m.weight.device.type != "meta":
                m.weight.zero_()
                k = m.kernel_size[0] // 2
                m.weight[range(m.out_channels), range(m.in_channels), k, k] = 1.0
                m.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


@dataclass(frozen=True)
class DilatedConfig:
    width: float = 1.0  # multiplies VGG-16's channels (and FC6/FC7 unless fc_width is given)
    fc_width: int | None = None  # FC6/FC7 channels; None: 4096 * width
    dropout: float = 0.5  # after FC6 and FC7 (§4: "dropout layers ... retained")
    context: bool = False  # append the basic context module on the class scores (§3, §5)

    def __post_init__(self) -> None:
        _positive_number("width", self.width)
        if self.fc_width is not None and (isinstance(self.fc_width, bool) or not isinstance(self.fc_width, int)
                                          or self.fc_width < 1):
            raise ConfigError(f"fc_width must be a positive integer or None, got {self.fc_width!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.context, bool):
            raise ConfigError(f"context must be True or False, got {self.context!r}")


class DilatedFrontend(Classifier):
    """Yu & Koltun's front end (§4): VGG-16 with pool4 and pool5 removed, conv5_x dilated by 2 and
    FC6 (7x7) by 4, so the scores come at stride 8 with VGG-16's receptive field; an optional context
    module; then x8 bilinear upsampling (fixed, a buffer) to the input size.

    Departure: "same" padding in every layer; the paper pads the input by reflection and uses no
    padding inside the network.
    """

    def __init__(self, cfg: DilatedConfig, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, stage, pools = in_chans, 1, 0
        self.feature_info = []
        for v in VGG16:
            if v == "M":
                stage += 1
                if pools < 3:  # pool4 and pool5 removed
                    layers.append(nn.MaxPool2d(2, 2))
                    pools += 1
                    self.feature_info.append(dict(module=f"features.{len(layers) - 1}", num_chs=channels,
                                                  reduction=2**pools))
                continue
            out = scale_channels(v, cfg.width)
            d = 2 if stage == 5 else 1  # conv5_x dilated by 2 to make up for pool4
            layers += [nn.Conv2d(channels, out, 3, padding=d, dilation=d), nn.ReLU()]
            channels = out
        self.features = nn.Sequential(*layers)
        fc_width = cfg.fc_width or scale_channels(4096, cfg.width)
        self.fc6 = nn.Conv2d(channels, fc_width, 7, padding=12, dilation=4)  # dilated by 4 for pool4 + pool5
        self.relu6, self.drop6 = nn.ReLU(), nn.Dropout2d(cfg.dropout)
        self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
        self.relu7, self.drop7 = nn.ReLU(), nn.Dropout2d(cfg.dropout)
        self.score = nn.Conv2d(fc_width, num_classes, 1)
        self.context = ContextModule(num_classes) if cfg.context else nn.Identity()
        self.register_buffer("upsample_weight", bilinear_kernel(1, 16).expand(num_classes, 1, 16, 16).clone(),
                             persistent=False)
        self.feature_info.append(dict(module="fc7", num_chs=fc_width, reduction=8))
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not isinstance(m, nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if cfg.context:
            self.context.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # N x 512 x H/8 x W/8
        x = self.drop6(self.relu6(self.fc6(x)))
        x = self.drop7(self.relu7(self.fc7(x)))
        x = self.context(self.score(x))  # N x K x H/8 x W/8
        # fixed bilinear x8 per class (a depthwise transposed convolution)
        return F.conv_transpose2d(x, self.upsample_weight, stride=8, padding=4, groups=self.upsample_weight.shape[0])


@register_model(family="dilated", paper=_YK_PAPER, input_size=(3, 224, 224), num_classes=21, recipe="fcn",
                departures="'same' padding inside the net (the paper: reflection-padded input, no inner padding); "
                "fixed bilinear x8 upsampling; context=True adds the basic context module",
                task="segmentation")
def dilated_frontend(*, num_classes: int = 21, in_chans: int = 3, **config) -> DilatedFrontend:
    """Yu & Koltun 2016's front end (output stride 8); ``context=True`` adds the context module."""
    return DilatedFrontend(build_config(DilatedConfig, "dilated_frontend", config), num_classes=num_classes,
                           in_chans=in_chans)


# ------------------------------------------------------------------------------ small nets for CPUs

# fcn_digits: one line per stage (convs of that width, then a 2x2 max pool), after VGG's pattern.
DIGITS_STAGES = ((24,), (32, 32), (64, 64), (96,), (128,))


@dataclass(frozen=True)
class DigitsConfig:
    skips: str = "8s"  # "32s", "16s" or "8s": which pool outputs are fused (as FCN-32s/16s/8s)
    width: float = 1.0  # multiplies every conv's channels

    def __post_init__(self) -> None:
        if self.skips not in SKIPS:
            raise ConfigError(f"skips must be one of {', '.join(SKIPS)}, got {self.skips!r}")
        _positive_number("width", self.width)


class FCNDigits(Classifier):
    """A small FCN for 64x64 digit canvases: five conv stages (BN, "same" padding, 2x2 pools down to
    stride 32), a 3x3 "fc6" and a 1x1 score layer, then FCN-32s/16s/8s fusion with bilinear-initialised
    transposed convolutions, exactly as :class:`FCN` but with sizes that divide (no padding of 100,
    no crops: the input side must be a multiple of 32).
    """

    def __init__(self, cfg: DigitsConfig, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.skips = cfg.skips
        stages, channels = [], in_chans
        self.feature_info = []
        for i, widths in enumerate(DIGITS_STAGES, start=1):
            layers: list[tuple[str, nn.Module]] = []
            for j, w in enumerate(widths, start=1):
                out = scale_channels(w, cfg.width)
                # departure: batch normalisation (not in FCN) makes a from-scratch CPU run converge in minutes
                layers.append((f"conv{j}", ConvNormAct(channels, out, 3)))
                channels = out
            layers.append(("pool", nn.MaxPool2d(2, 2)))
            stages.append(nn.Sequential(OrderedDict(layers)))
            self.feature_info.append(dict(module=f"stage{i}", num_chs=channels, reduction=2**i))
        self.stage1, self.stage2, self.stage3, self.stage4, self.stage5 = stages
        fc = scale_channels(128, cfg.width)
        self.fc6 = ConvNormAct(channels, fc, 3)  # FC6's role: a 3x3 window over a 2x2 map at 64x64
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(self.feature_info[3]["num_chs"], num_classes, 1)
        self.score_pool3 = nn.Conv2d(self.feature_info[2]["num_chs"], num_classes, 1)
        # Upsampling with padding factor/2: output exactly factor x input (see BilinearUpsample)
        self.upscore2 = BilinearUpsample(num_classes, 2, padding=1)
        self.upscore_pool4 = BilinearUpsample(num_classes, 2, padding=1)
        final = {"32s": 32, "16s": 16, "8s": 8}[cfg.skips]
        self.upscore = BilinearUpsample(num_classes, final, padding=final // 2)
        if cfg.skips == "32s":  # unused layers would get no gradient
            del self.score_pool4, self.upscore2
        if cfg.skips != "8s":
            del self.score_pool3, self.upscore_pool4
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d) and name.startswith("score_pool"):
                nn.init.zeros_(m.weight)  # as FCN: a new skip starts by changing nothing
                nn.init.zeros_(m.bias)
        self.feature_info.append(dict(module="fc6", num_chs=fc, reduction=32))

    def forward(self, x: Tensor) -> Tensor:
        p3 = self.stage3(self.stage2(self.stage1(x)))  # N x 64 x H/8 x W/8
        p4 = self.stage4(p3)  # N x 96 x H/16
        score = self.score_fr(self.fc6(self.stage5(p4)))  # N x K x H/32
        if self.skips != "32s":
            score = self.upscore2(score) + self.score_pool4(p4)  # N x K x H/16
            if self.skips == "8s":
                score = self.upscore_pool4(score) + self.score_pool3(p3)  # N x K x H/8
        return self.upscore(score)  # N x K x H x W


@register_model(family="fcn_small", paper=_FCN_PAPER, input_size=(1, 64, 64), num_classes=11, recipe="fcn_digits",
                departures="a small VGG-like backbone (5 stages, 24-128 maps) with batch normalisation, "
                "'same' padding without crops; skips='32s'|'16s'|'8s' (default 8s)",
                task="segmentation")
def fcn_digits(*, num_classes: int = 11, in_chans: int = 1, **config) -> FCNDigits:
    """A CPU-sized FCN-8s for ``mnist-seg`` (10 digits + background)."""
    return FCNDigits(build_config(DigitsConfig, "fcn_digits", config), num_classes=num_classes, in_chans=in_chans)


@dataclass(frozen=True)
class DilatedDigitsConfig:
    dilations: tuple[int, ...] = CONTEXT_DILATIONS  # (1,) * 7: the same net without dilation
    width: int = 32  # channels of the stem and of the context module

    def __post_init__(self) -> None:
        if not isinstance(self.dilations, (tuple, list)) or not self.dilations or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in self.dilations):
            raise ConfigError(f"dilations must be a tuple of positive integers, got {self.dilations!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ConfigError(f"width must be a positive integer, got {self.width!r}")


class DilatedDigits(Classifier):
    """The context module at work on digit canvases: a stem (two 3x3 convs, one 2x2 pool: stride 2),
    :class:`ContextModule` on ``width`` feature maps, a 1x1 score layer and x2 bilinear upsampling.
    ``dilations=(1,) * 7`` is the same network, parameter for parameter, without dilation.

    Departure: the paper's context module runs on the front end's C class scores; here it runs on
    feature maps (32 by default), and the stem has batch normalisation.
    """

    def __init__(self, cfg: DilatedDigitsConfig, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        w = cfg.width
        self.stem = nn.Sequential(OrderedDict([
            ("conv1", ConvNormAct(in_chans, w, 3)), ("conv2", ConvNormAct(w, w, 3)), ("pool", nn.MaxPool2d(2, 2)),
        ]))  # fmt: skip
        self.context = ContextModule(w, tuple(cfg.dilations))
        self.score = nn.Conv2d(w, num_classes, 1)
        self.upscore = BilinearUpsample(num_classes, 2, padding=1)
        self.feature_info = [dict(module="stem", num_chs=w, reduction=2), dict(module="context", num_chs=w, reduction=2)]

    def forward(self, x: Tensor) -> Tensor:
        x = self.context(self.stem(x))  # N x w x H/2 x W/2
        return self.upscore(self.score(x))  # N x K x H x W


@register_model(family="dilated", paper=_YK_PAPER, input_size=(1, 64, 64), num_classes=11, recipe="fcn_digits",
                departures="the basic context module on 32 feature maps (the paper: on the class scores) after a "
                "stride-2 stem with batch normalisation; dilations=(1,)*7 removes the dilation at equal parameters",
                task="segmentation")
def dilated_digits(*, num_classes: int = 11, in_chans: int = 1, **config) -> DilatedDigits:
    """Yu & Koltun's context module (dilations 1, 1, 2, 4, 8, 16, 1) on ``mnist-seg``."""
    return DilatedDigits(build_config(DilatedDigitsConfig, "dilated_digits", config), num_classes=num_classes,
                         in_chans=in_chans)


@dataclass(frozen=True)
class UNetConfig:
    widths: tuple[int, ...] = (16, 32, 64, 128)  # per level; the paper: 64, 128, 256, 512, 1024

    def __post_init__(self) -> None:
        if not isinstance(self.widths, (tuple, list)) or len(self.widths) < 2 or not all(
                isinstance(w, int) and w >= 1 for w in self.widths):
            raise ConfigError(f"widths must be at least two positive integers, got {self.widths!r}")


class UNetSmall(Classifier):
    """U-Net (Ronneberger et al. 2015, Fig. 1) at small width: two 3x3 convs per level, 2x2 max pools
    down, 2x2 stride-2 transposed convs ("up-convolution") up, each concatenated with the encoder's
    map of the same level, and a 1x1 classifier.

    Departures: "same" padding (the paper's convs are unpadded and it crops the skip maps), batch
    normalisation, widths 16-128 instead of 64-1024. The input side must be divisible by
    ``2 ** (len(widths) - 1)``.
    """

    def __init__(self, cfg: UNetConfig, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        widths = tuple(cfg.widths)
        self.down = nn.ModuleList()
        channels = in_chans
        self.feature_info = []
        for i, w in enumerate(widths):
            self.down.append(nn.Sequential(ConvNormAct(channels, w, 3), ConvNormAct(w, w, 3)))
            self.feature_info.append(dict(module=f"down.{i}", num_chs=w, reduction=2**i))
            channels = w
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(channels, w, 2, stride=2))
            self.merge.append(nn.Sequential(ConvNormAct(2 * w, w, 3), ConvNormAct(w, w, 3)))
            channels = w
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()  # the bottom of the U, N x widths[-1] x H/2^(L-1)
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))  # copy and concatenate, then two convs
        return self.classifier(x)  # N x K x H x W


@register_model(family="unet", paper="Ronneberger, Fischer & Brox, 2015", input_size=(1, 64, 64), num_classes=11,
                recipe="fcn_digits", departures="'same' padding (no crops), batch normalisation, widths 16-128 "
                "over 4 levels (the paper: 64-1024 over 5)", task="segmentation")
def unet_small(*, num_classes: int = 11, in_chans: int = 1, **config) -> UNetSmall:
    """A small U-Net for ``mnist-seg``."""
    return UNetSmall(build_config(UNetConfig, "unet_small", config), num_classes=num_classes, in_chans=in_chans)
