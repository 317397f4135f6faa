"""Pictures of detections: an image enlarged, with each box drawn and labelled with its class and
score (predictions) or class alone (ground truth). Drawn with PIL from arrays; nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["draw_boxes", "PREDICTED", "TRUTH"]

PREDICTED = (255, 64, 64)  # red: the model's boxes
TRUTH = (64, 200, 64)  # green: the true boxes


def draw_boxes(pixels: np.ndarray, boxes: Sequence[Sequence[float]], labels: Sequence[str], *,
               scores: Sequence[float] | None = None, truth: Sequence[Sequence[float]] = (),
               scale: int = 4):
    """``pixels`` ((H, W) or (H, W, 3) uint8) enlarged ``scale`` times, with the true boxes (``truth``,
    green) and the predicted ``boxes`` (x0, y0, x1, y1 in pixels, red) labelled ``label score``.
    Returns a PIL RGB image."""
    from PIL import Image, ImageDraw

    a = np.asarray(pixels, dtype=np.uint8)
    img = Image.fromarray(np.stack([a] * 3, -1) if a.ndim == 2 else a, mode="RGB")
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(img)
    for box in truth:
        draw.rectangle([v * scale for v in box], outline=TRUTH, width=1)
    for i, (box, label) in enumerate(zip(boxes, labels)):
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=PREDICTED, width=2)
        text = label if scores is None else f"{label} {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), text)
        lift = bottom - top + 2
        y = y0 - lift if y0 >= lift else y1  # above the box, or below it at the top edge
        draw.rectangle([x0, y, x0 + right - left + 2, y + lift], fill=PREDICTED)
        draw.text((x0 + 1, y), text, fill=(255, 255, 255))
    return img
