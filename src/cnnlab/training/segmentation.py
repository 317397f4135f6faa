"""Semantic segmentation as a :class:`~cnnlab.training.tasks.Task`: per-pixel cross-entropy with an
ignore index (Long et al. 2015 §4.3: "per-pixel multinomial logistic loss"; VOC's void pixels, 255,
are not counted), the four metrics of their §5 from one confusion matrix, and joint augmentation of
images and masks.

The batch sums are ``[loss sum, counted pixels, the K x K confusion matrix flattened]``: adding them
over batches and ranks (DDP's all-reduce) and then computing the metrics gives exactly the metrics
of the whole split. The Trainer selects on the validation split's ``miou``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab import atomic
from cnnlab.data.bundle import DataBundle
from cnnlab.data.segmentation import IGNORE_INDEX, joint_augment
from cnnlab.errors import ConfigError
from cnnlab.models.base import ModelOutput
from cnnlab.training.seg_metrics import confusion_matrix, segmentation_scores
from cnnlab.training.tasks import Task, register_task

__all__ = ["SegmentationTask", "OverlayArrays", "evaluate_segmentation"]


@register_task("segmentation")
class SegmentationTask(Task):
    """Per-pixel cross-entropy; metrics ``loss``, ``pixel_acc``, ``mean_acc``, ``miou``, ``fwiou`` and
    ``iou_<class>`` for every class (NaN where a class is neither true nor predicted)."""

    name = "segmentation"
    monitor = "miou"
    mode = "max"
    metrics = (("miou", "mean IU", "%"), ("pixel_acc", "pixel accuracy", "%"))
    stat_names: tuple[str, ...] = ("loss", "pixels")

    def __init__(self, *, ignore_index: int = IGNORE_INDEX) -> None:
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ConfigError(f"ignore_index must be an integer, got {ignore_index!r}")
        self.ignore_index = ignore_index
        self.num_classes: int | None = None
        self.class_keys: tuple[str, ...] = ()

    def setup(self, data: DataBundle) -> None:
        if data.train.y.ndim != 3:
            raise ConfigError(f"segmentation needs per-pixel masks (N, H, W); {data.name} has labels of shape "
                              f"{tuple(data.train.y.shape)}")
        self.num_classes = k = data.num_classes
        self.class_keys = tuple(re.sub(r"\W+", "_", str(c)).strip("_") or str(i) for i, c in enumerate(data.class_names))
        self.stat_names = ("loss", "pixels") + tuple(f"cm_{i}_{j}" for i in range(k) for j in range(k))

    def check(self, model: nn.Module, data: DataBundle) -> None:
        out, name = self.probe(model, data)
        want = tuple(data.test.y.shape[1:])
        if out.ndim != 4 or tuple(out.shape[2:]) != want or out.shape[1] < data.num_classes:
            raise ConfigError(f"{name} gives outputs of shape {tuple(out.shape[1:])}; segmentation of {data.name} "
                              f"needs per-pixel logits (>= {data.num_classes}, {want[0]}, {want[1]})")

    def augment_batch(self, augment, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The recipe's flips, shifts (``translate`` or ``crop_padding`` pixels) and scale jitter, applied
        to each image and its mask alike (colour changes would apply to the image alone: not used)."""
        if not augment.enabled:
            return x, y
        shift = max(int(getattr(augment, "translate", 0) or 0), int(getattr(augment, "crop_padding", 0) or 0))
        scale = getattr(augment, "scale_jitter", None)
        fill = augment.fill if isinstance(augment.fill, float) else 0.0  # per-channel fills: the mean colour
        return joint_augment(x, y, generator=generator, flip=bool(augment.flip), shift=shift,
                             scale=tuple(scale) if scale else None, fill=fill, ignore_index=self.ignore_index)

    def _sums(self, logits: Tensor, y: Tensor, loss_sum: Tensor) -> Tensor:
        k = self.num_classes or logits.shape[1]
        cm = confusion_matrix(logits.argmax(1), y, num_classes=k, ignore_index=self.ignore_index)
        pixels = (y != self.ignore_index).sum()
        return torch.cat([torch.stack([loss_sum.double(), pixels.double()]), cm.flatten().double()])

    def loss(self, out: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = (out.logits if isinstance(out, ModelOutput) else out).float()
        loss = F.cross_entropy(logits, y, ignore_index=self.ignore_index)  # mean over counted pixels
        with torch.no_grad():
            pixels = (y != self.ignore_index).sum()
            sums = self._sums(logits.detach(), y, loss.detach() * pixels)
        return loss, sums

    def eval_sums(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        logits = model(x).float()
        loss = F.cross_entropy(logits, y, ignore_index=self.ignore_index, reduction="sum")
        return self._sums(logits, y, loss)

    def summarize(self, sums: Tensor) -> dict[str, float]:
        sums = sums.detach().cpu().double()
        k = self.num_classes or int(round((len(sums) - 2) ** 0.5))
        scores = segmentation_scores(sums[2:].view(k, k))
        out = {"loss": float(sums[0] / max(float(sums[1]), 1.0))}
        out.update({key: scores[key] for key in ("pixel_acc", "mean_acc", "miou", "fwiou")})
        keys = self.class_keys or tuple(str(i) for i in range(k))
        out.update({f"iou_{name}": value for name, value in zip(keys, scores["iou"])})
        return out

    def describe(self) -> dict:
        return {**super().describe(), "ignore_index": self.ignore_index}

    def run_callbacks(self, out_dir: Path) -> list:
        """The overlay's arrays, at the end of a run that has a folder."""
        return [OverlayArrays(out_dir)]


class OverlayArrays:
    """Trainer callback: at the end of a run, ``overlay.npz`` in the run folder holds the first test
    images (``images``, channels averaged), their true masks (``truth``) and the selected model's
    predictions (``prediction``), which :mod:`cnnlab.viz.run_pictures` draws as ``overlay.png``."""

    def __init__(self, out, *, examples: int = 4) -> None:
        self.out = out
        self.examples = examples

    def on_fit_end(self, trainer, result) -> None:
        data = trainer.data
        model = result.model
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        x = data.test.x[: self.examples]
        with torch.no_grad():
            pred = model.eval()(x.to(device)).argmax(1).cpu()
        atomic.write_npz(Path(self.out) / "overlay.npz", images=x.mean(1).numpy(),
                         truth=data.test.y[: self.examples].numpy(), prediction=pred.numpy())


def evaluate_segmentation(model: nn.Module, pair, *, batch_size: int = 200, device=None,
                          ignore_index: int = IGNORE_INDEX, class_names: tuple[str, ...] = ()) -> dict[str, float]:
    """The FCN metrics of ``model`` on a split (``pair.y`` masks), in eval mode, fp32."""
    task = SegmentationTask(ignore_index=ignore_index)
    k = len(class_names) if class_names else None
    dev = torch.device(device) if device is not None else next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.to(dev).eval()
    sums = None
    try:
        with torch.no_grad():
            for i in range(0, len(pair), batch_size):
                x, y = pair.x[i : i + batch_size].to(dev), pair.y[i : i + batch_size].to(dev)
                if k is None:
                    k = task.num_classes = int(model(x[:1]).shape[1])
                task.num_classes = k
                s = task.eval_sums(model, x, y).cpu()
                sums = s if sums is None else sums + s
    finally:
        model.train(was_training)
    if class_names:
        task.class_keys = tuple(re.sub(r"\W+", "_", str(c)).strip("_") or str(i) for i, c in enumerate(class_names))
    return task.summarize(sums)
