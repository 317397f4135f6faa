"""Pictures of detections: an image enlarged, with each box drawn and labelled with its class and
score (predictions) or class alone (ground truth). Drawn with PIL from arrays; nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["draw_boxes", "detection_grid", "PREDICTED", "TRUTH"]

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
    order = range(len(boxes)) if scores is None else sorted(range(len(boxes)), key=lambda i: scores[i])
    for i in order:  # the most confident last, on top
        box, label = boxes[i], labels[i]
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=PREDICTED, width=2)
        text = label if scores is None else f"{label} {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), text)
        lift = bottom - top + 2
        y = y0 - lift if y0 >= lift else y1  # above the box, or below it at the top edge
        draw.rectangle([x0, y, x0 + right - left + 2, y + lift], fill=PREDICTED)
        draw.text((x0 + 1, y), text, fill=(255, 255, 255))
    return img


def detection_grid(pixels: Sequence[np.ndarray], predictions: Sequence[dict], truths: Sequence[Sequence], *,
                   class_names: Sequence[str], scale: int = 4, gap: int = 8):
    """Several images side by side, each drawn by :func:`draw_boxes` with its predictions
    (``{"boxes", "labels" (class indices), "scores"}``) and its true boxes."""
    from PIL import Image

    tiles = [draw_boxes(p, d["boxes"], [class_names[int(k)] for k in d["labels"]], scores=d["scores"], truth=t,
                        scale=scale) for p, d, t in zip(pixels, predictions, truths)]
    if not tiles:
        raise ValueError("detection_grid: no image")
    grid = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), max(t.height for t in tiles)),
                     (255, 255, 255))
    x = 0
    for tile in tiles:
        grid.paste(tile, (x, 0))
        x += tile.width + gap
    return grid
