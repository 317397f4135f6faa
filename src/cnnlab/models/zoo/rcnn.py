"""Object detection: a small Fast R-CNN (Girshick, "Fast R-CNN", ICCV 2015).

One pass of a convolutional backbone over the whole image; each region proposal is pooled from the
backbone's map into a fixed grid (RoI max pooling, §2.1, ``torchvision.ops.roi_pool``); two fully
connected layers, then two sibling heads: K + 1 class scores (background first) and, for each of
the K classes, four box-regression offsets (§2.3, the parametrisation of R-CNN's appendix C).

Proposals come from a fixed sliding-window generator (``windows`` of a few sizes every
``window_stride`` pixels) instead of selective search: the digits of ``mnist-boxes`` have one height
(MNIST's 20-pixel box) and a few widths, so a handful of window shapes covers them, and the
regression head refines the windows.

``forward(x)`` returns the raw outputs for every proposal (a :class:`DetectorOutput` of fixed shape,
what training and export need); :meth:`FastRCNN.detect` turns them into boxes, scores and labels
(softmax, class-specific boxes clipped to the image, score threshold, per-class non-maximum
suppression through ``torchvision.ops.batched_nms``, §3.1's test-time procedure).

Departures from the paper: the backbone is a zoo net's first stages (``fcn_digits``' stages 1-2,
stride 4, from scratch) instead of an ImageNet VGG-16; the RoI grid is 4x4 (the paper's 7x7 fits
VGG's 14x14 conv5 at 224 pixels, here the map is 16x16) and the fc layers 128 wide (the paper:
4096). RoI max pooling snaps each RoI to the map's 4-pixel cells, the windows' own stride.
``torchvision.ops.roi_align`` (Mask R-CNN's bilinear pooling) would avoid the snapping, but its CPU
backward pass took ten times longer than RoI pooling's here.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, roi_pool

from cnnlab.errors import ConfigError
from cnnlab.models.registry import build_config, create_model, register_model

__all__ = ["DetectorOutput", "Detections", "FastRCNNConfig", "FastRCNN", "sliding_windows", "encode_boxes",
           "decode_boxes", "BOX_WEIGHTS", "fast_rcnn_digits", "truncated_backbone"]

# The regression targets are divided by 0.1 (centre) and 0.2 (size), as the authors' released code and
# torchvision's BoxCoder do, so that the four offsets have similar scales under the smooth-L1 loss.
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_LOG_MAX = 4.135  # log(1000 / 16): torchvision's clamp of the size offsets before exp


class DetectorOutput(NamedTuple):
    """Raw outputs for every proposal: class logits (N, P, K + 1), background first, class-specific
    box offsets (N, P, K, 4), and the proposals themselves (P, 4), which the offsets move."""

    logits: Tensor
    deltas: Tensor
    proposals: Tensor


class Detections(NamedTuple):
    """One image's detections: boxes (D, 4) x0, y0, x1, y1 in pixels, scores (D,), labels (D,) in 0..K-1."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def sliding_windows(size: int, windows: tuple[tuple[int, int], ...], stride: int) -> Tensor:
    """(P, 4) boxes x0, y0, x1, y1: every ``(w, h)`` of ``windows`` placed every ``stride`` pixels
    inside a ``size`` x ``size`` image, shape by shape, rows then columns."""
    boxes = []
    for w, h in windows:
        ys = torch.arange(0, size - h + 1, stride, dtype=torch.float32)
        xs = torch.arange(0, size - w + 1, stride, dtype=torch.float32)
        y0, x0 = torch.meshgrid(ys, xs, indexing="ij")
        boxes.append(torch.stack([x0, y0, x0 + w, y0 + h], -1).reshape(-1, 4))
    return torch.cat(boxes)


def encode_boxes(proposals: Tensor, boxes: Tensor) -> Tensor:
    """R-CNN's offsets (Girshick et al. 2014, appendix C) of ``boxes`` from ``proposals`` (both (..., 4)
    x0, y0, x1, y1), times :data:`BOX_WEIGHTS`."""
    pw, ph = proposals[..., 2] - proposals[..., 0], proposals[..., 3] - proposals[..., 1]
    px, py = proposals[..., 0] + pw / 2, proposals[..., 1] + ph / 2
    gw, gh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    gx, gy = boxes[..., 0] + gw / 2, boxes[..., 1] + gh / 2
    wx, wy, ww, wh = BOX_WEIGHTS
    return torch.stack([wx * (gx - px) / pw, wy * (gy - py) / ph, ww * torch.log(gw / pw), wh * torch.log(gh / ph)], -1)


def decode_boxes(proposals: Tensor, deltas: Tensor) -> Tensor:
    """The inverse of :func:`encode_boxes`: boxes x0, y0, x1, y1 from ``proposals`` moved by ``deltas``."""
    pw, ph = proposals[..., 2] - proposals[..., 0], proposals[..., 3] - proposals[..., 1]
    px, py = proposals[..., 0] + pw / 2, proposals[..., 1] + ph / 2
    wx, wy, ww, wh = BOX_WEIGHTS
    cx, cy = px + deltas[..., 0] / wx * pw, py + deltas[..., 1] / wy * ph
    w = pw * torch.exp((deltas[..., 2] / ww).clamp(max=_LOG_MAX))
    h = ph * torch.exp((deltas[..., 3] / wh).clamp(max=_LOG_MAX))
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


@dataclass(frozen=True)
class FastRCNNConfig:
    backbone: str = "fcn_digits"  # a zoo net whose feature_info stages run one after another
    backbone_width: float = 1.0  # the backbone's ``width`` option (channels multiplier)
    reduction: int = 4  # the stride of the backbone stage the RoIs are pooled from (= window_stride)
    image_size: int = 64  # side of the (square) input the windows tile
    windows: tuple[tuple[int, int], ...] = ((6, 20), (12, 20), (20, 20))  # (w, h): thin, middle, square digits
    window_stride: int = 4
    pool: int = 4  # RoI grid side (the paper: 7)
    hidden: int = 128  # fc6, fc7 width (the paper: 4096)
    score_threshold: float = 0.05  # detect(): lowest class probability kept (the authors' test setting)
    nms_iou: float = 0.3  # detect(): per-class NMS overlap (the authors' released test setting)
    max_detections: int = 10  # detect(): per image

    def __post_init__(self) -> None:
        for field in ("reduction", "image_size", "window_stride", "pool", "hidden", "max_detections"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"fast_rcnn: {field} must be a positive integer, got {value!r}")
        if not isinstance(self.windows, (tuple, list)) or not self.windows or not all(
                isinstance(w, (tuple, list)) and len(w) == 2 and all(isinstance(v, int) and 1 <= v <= self.image_size
                                                                     for v in w) for w in self.windows):
            raise ConfigError(f"fast_rcnn: windows must be (w, h) pairs of integers in 1..image_size, got {self.windows!r}")
        for field, low, high in (("score_threshold", 0.0, 1.0), ("nms_iou", 0.0, 1.0), ("backbone_width", 0.01, 16.0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(f"fast_rcnn: {field} must be a number in [{low}, {high}], got {value!r}")


def truncated_backbone(name: str, *, in_chans: int, reduction: int, width: float) -> tuple[nn.Sequential, int]:
    """The stages of zoo net ``name`` up to the one of stride ``reduction`` (its ``feature_info``), as
    an ``nn.Sequential`` under the stages' own names, and that stage's channels."""
    net = create_model(name, in_chans=in_chans, width=width)
    stages = OrderedDict()
    for info in net.feature_info:
        if "." in info["module"] or not hasattr(net, info["module"]):
            raise ConfigError(f"fast_rcnn: backbone {name!r} does not run its stages one after another")
        stages[info["module"]] = net.get_submodule(info["module"])
        if info["reduction"] == reduction:
            return nn.Sequential(stages), int(info["num_chs"])
    strides = [i["reduction"] for i in net.feature_info]
    raise ConfigError(f"fast_rcnn: backbone {name!r} has no stage of stride {reduction} (strides: {strides})")


class FastRCNN(nn.Module):
    """Fast R-CNN over fixed sliding-window proposals; see the module docstring."""

    def __init__(self, cfg: FastRCNNConfig, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.cfg, self.num_classes = cfg, num_classes
        self.backbone, channels = truncated_backbone(cfg.backbone, in_chans=in_chans, reduction=cfg.reduction,
                                                     width=cfg.backbone_width)
        self.register_buffer("proposals", sliding_windows(cfg.image_size, tuple(map(tuple, cfg.windows)),
                                                          cfg.window_stride), persistent=False)
        self.fc6 = nn.Linear(channels * cfg.pool * cfg.pool, cfg.hidden)
        self.fc7 = nn.Linear(cfg.hidden, cfg.hidden)
        self.cls_score = nn.Linear(cfg.hidden, num_classes + 1)
        self.bbox_pred = nn.Linear(cfg.hidden, 4 * num_classes)
        # §3.1 / the released code: the heads start from N(0, 0.01) and N(0, 0.001), biases 0
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.feature_info = [dict(module="backbone", num_chs=channels, reduction=cfg.reduction)]

    def forward(self, x: Tensor) -> DetectorOutput:
        n, p = x.shape[0], self.proposals.shape[0]
        if tuple(x.shape[2:]) != (self.cfg.image_size, self.cfg.image_size):
            raise ValueError(f"fast_rcnn takes {self.cfg.image_size}x{self.cfg.image_size} images, got "
                             f"{tuple(x.shape[2:])}")
        feats = self.backbone(x)  # N x C x H/r x W/r
        batch = torch.arange(n, device=x.device, dtype=torch.float32).repeat_interleave(p).unsqueeze(1)
        rois = torch.cat([batch, self.proposals.float().repeat(n, 1)], 1)  # NP x 5: image, box
        full = torch.autocast(x.device.type, enabled=False) if x.device.type in ("cpu", "cuda") else nullcontext()
        with full:  # fp32: torchvision's CPU kernel has no bf16 (the analyzer's meta device has no autocast)
            pooled = roi_pool(feats.float(), rois, output_size=self.cfg.pool,
                              spatial_scale=1.0 / self.cfg.reduction)  # NP x C x pool x pool
        h = F.relu(self.fc7(F.relu(self.fc6(pooled.flatten(1)))))  # NP x hidden
        logits = self.cls_score(h).view(n, p, self.num_classes + 1)
        deltas = self.bbox_pred(h).view(n, p, self.num_classes, 4)
        return DetectorOutput(logits, deltas, self.proposals)

    @torch.no_grad()
    def postprocess(self, out: DetectorOutput) -> list[Detections]:
        """Boxes, scores and labels per image from the raw outputs (§3.1's test procedure)."""
        cfg, k = self.cfg, self.num_classes
        probs = out.logits.float().softmax(-1)[..., 1:]  # N x P x K (background dropped)
        boxes = decode_boxes(out.proposals.unsqueeze(1), out.deltas.float()).clamp(0, cfg.image_size)  # N x P x K x 4
        result = []
        for prob, box in zip(probs, boxes):
            scores, labels = prob.flatten(), torch.arange(k, device=prob.device).repeat(prob.shape[0])
            box = box.reshape(-1, 4)
            keep = (scores > cfg.score_threshold) & (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
            box, scores, labels = box[keep], scores[keep], labels[keep]
            keep = batched_nms(box, scores, labels, cfg.nms_iou)[: cfg.max_detections]
            result.append(Detections(box[keep], scores[keep], labels[keep]))
        return result

    @torch.no_grad()
    def detect(self, x: Tensor) -> list[Detections]:
        """Detections for a batch of images (eval mode is the caller's)."""
        return self.postprocess(self(x))


@register_model(family="rcnn", paper="Girshick, 2015", input_size=(1, 64, 64), num_classes=10, recipe="fast_rcnn",
                departures="sliding-window proposals (3 shapes every 4 px) instead of selective search; backbone: "
                "fcn_digits' stages 1-2 (stride 4) from scratch (the paper: ImageNet VGG-16); RoI pooling 4x4, "
                "fc 128 (the paper: 7x7, fc 4096); every proposal scored in training, the "
                "foreground given a quarter of the class loss (the paper: 64 sampled RoIs, 25% foreground)",
                task="detection")
def fast_rcnn_digits(*, num_classes: int = 10, in_chans: int = 1, **config) -> FastRCNN:
    """A CPU-sized Fast R-CNN for ``mnist-boxes`` (10 digit classes + background)."""
    return FastRCNN(build_config(FastRCNNConfig, "fast_rcnn_digits", config), num_classes=num_classes,
                    in_chans=in_chans)
