"""Object detection as a :class:`~cnnlab.training.tasks.Task`: Fast R-CNN's multi-task loss and the
mean average precision at IoU 0.5 (mAP@0.5) of the validation split as the selection metric.

Targets are the (N, M, 5) box rows of ``mnist-boxes`` (``label, x0, y0, x1, y1``; rows of -1 pad).
The model returns a :class:`~cnnlab.models.zoo.rcnn.DetectorOutput`: scores and offsets for each of its
proposals, and the proposals; its ``postprocess`` turns that into detections.

Loss (Girshick 2015, §2.3): each proposal takes the label of the ground-truth box it overlaps most
when their IoU is at least 0.5 (foreground), else background; every ground-truth box's best
proposal is foreground too, so no digit goes unmatched. ``L = L_cls + lambda * L_loc`` with
``lambda = 1``: cross-entropy over the proposals and smooth-L1 (beta 1) between the foreground
proposals' offsets for their true class and the encoded true box. Departure: the paper samples 64
RoIs per image with 25% foreground; here every proposal is scored (they are fixed windows) and the
cross-entropy weights each image's foreground proposals so that together they carry a quarter of
the class loss (``fg_fraction``), the background three quarters.

mAP@0.5 is computed by pycocotools' ``COCOeval`` (the COCO evaluation: 101-point interpolated
precision, detections ranked over the whole split, at most 100 per image) at the single IoU
threshold 0.5 (the ``detection`` extra: ``pip install 'cnnlab[detection]'``). It needs every detection of the split
at once, so :meth:`DetectionTask.split_sums` collects them (one process); under DDP each rank scores
its shard and the split's value is the image-weighted mean of the ranks' mAPs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou

from cnnlab.data.bundle import DataBundle
from cnnlab.errors import ConfigError
from cnnlab.training.tasks import Task, register_task

__all__ = ["DetectionTask", "mean_average_precision", "match_proposals", "detection_targets"]


def _coco_eval():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as err:
        raise ConfigError(f"detection's mAP needs pycocotools ({err}); pip install 'cnnlab[detection]'") from None
    return COCO, COCOeval


def _xywh(box) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def mean_average_precision(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], *,
                           iou: float = 0.5) -> float:
    """mAP at IoU ``iou``: pycocotools' COCOeval (101-point interpolated precision, at most 100
    detections per image, all areas), averaged over the classes that have a true box; 0 for no
    detection at all, -1 when no image has a true box.

    ``detections``: per image ``{"boxes": (D, 4) x0 y0 x1 y1, "scores": (D,), "labels": (D,)}``;
    ``targets``: per image ``{"boxes": (G, 4), "labels": (G,)}``."""
    import contextlib
    import io

    import numpy as np

    COCO, COCOeval = _coco_eval()
    annotations = []
    for i, t in enumerate(targets):
        for b, c in zip(t["boxes"].tolist(), t["labels"].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(c), "bbox": _xywh(b),
                                "iscrowd": 0, "area": float((b[2] - b[0]) * (b[3] - b[1]))})
    if not annotations:
        return -1.0
    results = [{"image_id": i, "category_id": int(c), "bbox": _xywh(b), "score": float(s)}
               for i, d in enumerate(detections)
               for b, c, s in zip(d["boxes"].tolist(), d["labels"].tolist(), d["scores"].tolist())]
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = {"images": [{"id": i} for i in range(len(targets))], "annotations": annotations,
                         "categories": [{"id": c} for c in sorted({a["category_id"] for a in annotations})]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.params.iouThrs = np.array([float(iou)])
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][0, :, :, 0, -1]  # recall points x classes; all areas, 100 dets
    per_class = [precision[:, k].mean() for k in range(precision.shape[1]) if (precision[:, k] > -1).any()]
    return float(np.mean(per_class)) if per_class else -1.0


def detection_targets(rows: Tensor) -> list[dict[str, Tensor]]:
    """(N, M, 5) box rows as :func:`mean_average_precision`'s targets (padding rows dropped)."""
    return [{"boxes": r[r[:, 0] >= 0, 1:].float(), "labels": r[r[:, 0] >= 0, 0].long()} for r in rows]


def match_proposals(proposals: Tensor, rows: Tensor, *, fg_iou: float = 0.5) -> tuple[Tensor, Tensor]:
    """For every image and proposal: the class target (0 background, 1 + digit) and the matched
    true box (N, P, 4); see the module docstring for the rule."""
    valid = rows[..., 0] >= 0  # N x M
    n, m = valid.shape
    boxes = rows[..., 1:].float()
    iou = box_iou(proposals, boxes.reshape(-1, 4)).view(-1, n, m).permute(1, 0, 2)  # N x P x M
    iou = iou.masked_fill(~valid.unsqueeze(1), -1.0)
    best, which = iou.max(2)  # N x P: each proposal's best true box
    fg = best >= fg_iou
    # every true box's best proposal is foreground (ties: the first)
    top = iou.argmax(1)  # N x M
    img = torch.arange(n, device=rows.device).unsqueeze(1).expand(n, m)
    fg[img[valid], top[valid]] = True
    which[img[valid], top[valid]] = torch.arange(m, device=rows.device).unsqueeze(0).expand(n, m)[valid]
    labels = rows[..., 0].gather(1, which) + 1  # N x P
    matched = boxes.gather(1, which.unsqueeze(-1).expand(-1, -1, 4))  # N x P x 4
    return torch.where(fg, labels, torch.zeros_like(labels)), matched


@register_task("detection")
class DetectionTask(Task):
    """Fast R-CNN's loss; metrics ``loss``, ``cls_loss``, ``box_loss`` and, on val and test, ``map50``."""

    name = "detection"
    monitor = "map50"
    mode = "max"
    stat_names = ("loss", "cls_loss", "box_loss", "images", "map50", "map_images")

    def __init__(self, *, fg_iou: float = 0.5, fg_fraction: float = 0.25, box_weight: float = 1.0) -> None:
        for field, value, low, high in (("fg_iou", fg_iou, 0.0, 1.0), ("fg_fraction", fg_fraction, 0.0, 1.0),
                                        ("box_weight", box_weight, 0.0, 100.0)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
                raise ConfigError(f"detection: {field} must be a number in ({low}, {high}], got {value!r}")
        self.fg_iou, self.fg_fraction, self.box_weight = float(fg_iou), float(fg_fraction), float(box_weight)

    def setup(self, data: DataBundle) -> None:
        _coco_eval()  # the metric's package, checked before any training
        y = data.train.y
        if y.ndim != 3 or y.shape[2] != 5:
            raise ConfigError(f"detection needs (N, M, 5) box rows as targets (mnist-boxes); {data.name} has "
                              f"targets of shape {tuple(y.shape)}")

    def check(self, model: nn.Module, data: DataBundle) -> None:
        out, name = self.probe(model, data)
        if not (hasattr(out, "logits") and hasattr(out, "deltas") and callable(getattr(model, "postprocess", None))):
            raise ConfigError(f"{name} is not a detector (its output has no logits and deltas per proposal)")
        if out.logits.shape[-1] != data.num_classes + 1:
            raise ConfigError(f"{name} scores {out.logits.shape[-1] - 1} classes but {data.name} has {data.num_classes}")

    def _losses(self, out: Any, rows: Tensor) -> tuple[Tensor, Tensor]:
        from cnnlab.models.zoo.rcnn import encode_boxes

        proposals = out.proposals.float()
        target, matched = match_proposals(proposals, rows, fg_iou=self.fg_iou)
        fg = target > 0  # N x P
        n_fg = fg.sum(1, keepdim=True).clamp_min(1)
        n_bg = (~fg).sum(1, keepdim=True).clamp_min(1)
        weight = torch.where(fg, self.fg_fraction / n_fg, (1 - self.fg_fraction) / n_bg)  # each image sums to 1
        ce = F.cross_entropy(out.logits.float().flatten(0, 1), target.flatten(), reduction="none").view_as(weight)
        cls_loss = (ce * weight).sum() / len(rows)
        idx = fg.nonzero(as_tuple=True)
        pred = out.deltas.float()[idx[0], idx[1], target[idx] - 1]  # F x 4: the true class's offsets
        goal = encode_boxes(proposals[idx[1]], matched[idx])
        box_loss = F.smooth_l1_loss(pred, goal, beta=1.0, reduction="sum") / max(len(idx[0]), 1)
        return cls_loss, box_loss

    def loss(self, out: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        cls_loss, box_loss = self._losses(out, y)
        loss = cls_loss + self.box_weight * box_loss
        return loss, self._sums(cls_loss, box_loss, len(y), y.device)

    def _sums(self, cls_loss: Tensor, box_loss: Tensor, n: int, device) -> Tensor:
        loss = cls_loss + self.box_weight * box_loss
        return torch.stack([loss.detach().double() * n, cls_loss.detach().double() * n,
                            box_loss.detach().double() * n, torch.tensor(float(n), dtype=torch.float64, device=device),
                            torch.zeros((), dtype=torch.float64, device=device),
                            torch.zeros((), dtype=torch.float64, device=device)])

    def eval_sums(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        cls_loss, box_loss = self._losses(model(x), y)
        return self._sums(cls_loss, box_loss, len(y), y.device)

    @torch.no_grad()
    def split_sums(self, model: nn.Module, x_all: Tensor, y_all: Tensor, *, batch_size: int, device: torch.device,
                   autocast_dtype: torch.dtype | None, memory_format: torch.memory_format) -> Tensor:
        """The losses summed over the split, and its mAP@0.5 (times its images) from all its detections."""
        sums, detections = self.zeros(device), []
        for start in range(0, len(y_all), batch_size):
            x = x_all[start : start + batch_size].to(device).contiguous(memory_format=memory_format)
            y = y_all[start : start + batch_size].to(device)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                out = model(x)
            cls_loss, box_loss = self._losses(out, y)
            sums += self._sums(cls_loss, box_loss, len(y), device)
            detections += [d._asdict() for d in model.postprocess(out)]
        if len(y_all):
            value = mean_average_precision(detections, detection_targets(y_all.cpu()))
            sums[4] += max(value, 0.0) * len(y_all)
            sums[5] += len(y_all)
        return sums

    def summarize(self, sums: Tensor) -> dict[str, float]:
        loss, cls_loss, box_loss, n, map_sum, map_n = (float(v) for v in sums.detach().cpu())
        n = max(n, 1.0)
        out = {"loss": loss / n, "cls_loss": cls_loss / n, "box_loss": box_loss / n}
        if map_n > 0:  # val and test; the train sums have no detections
            out["map50"] = map_sum / map_n
        return out

    def describe(self) -> dict:
        return {**super().describe(), "fg_iou": self.fg_iou, "fg_fraction": self.fg_fraction,
                "box_weight": self.box_weight}
