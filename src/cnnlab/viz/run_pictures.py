"""The pictures of a run folder, drawn from the numbers training wrote there.

Training writes numbers only (``metrics.csv``, ``confusion.csv``, ``mistakes.npz``,
``generative.npz``, ``overlay.npz``); this module turns them into ``curves.png``, ``confusion.png``,
``mistakes.png``, the generative pictures and ``overlay.png``. :class:`RunPictures` is the Trainer
callback a caller passes to ``fit`` / ``train`` (``cnnlab train`` does): it draws at the end of the
run, after the numbers and before ``results.json``. :func:`draw_run_pictures` draws them again from
a finished folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunPictures", "draw_run_pictures"]


def draw_run_pictures(run_dir: str | os.PathLike, *, history: Sequence[Mapping[str, Any]] | None = None) -> list[Path]:
    """Every picture the numbers in ``run_dir`` allow, written there; returns their paths. ``history``:
    the per-epoch rows (default: read from ``metrics.csv``)."""
    from cnnlab.training.rundir import read_config
    from cnnlab.viz.confusion import draw_diagnostics
    from cnnlab.viz.curves import plot_training_curves
    from cnnlab.viz.runs import task_metrics

    run = Path(run_dir)
    config = read_config(run)
    data = config.get("data") or {}
    title = f"{config['model']['name']} on {data.get('name')}"
    drawn = [plot_training_curves(run / "metrics.csv" if history is None else history, run / "curves.png",
                                  title=title, metric=task_metrics(config)[0])]
    if (run / "confusion.csv").is_file():
        drawn += draw_diagnostics(run, title=title, mistakes=(run / "mistakes.npz").is_file())
    if (run / "generative.npz").is_file():
        from cnnlab.viz.generative import draw_generative

        with np.load(run / "generative.npz", allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        picture_title = str(arrays.pop("title", ""))
        drawn += draw_generative(arrays, run, title=picture_title, class_names=list(data.get("class_names") or ()))
    if (run / "overlay.npz").is_file():
        from cnnlab.viz.segmentation import draw_overlays

        with np.load(run / "overlay.npz", allow_pickle=False) as f:
            images, truth, prediction = f["images"], f["truth"], f["prediction"]
        drawn.append(draw_overlays(run / "overlay.png", images, truth, {"prediction": prediction},
                                   class_names=tuple(data.get("class_names") or ()),
                                   title=f"{data.get('name')}: test images, truth and prediction"))
    return drawn


class RunPictures:
    """Trainer callback: at the end of a run that has a folder, its pictures (:func:`draw_run_pictures`),
    drawn from the numbers the run's own callbacks wrote just before (rank 0 only)."""

    def on_fit_end(self, trainer, result) -> None:
        if trainer.main and trainer.out_dir is not None:
            draw_run_pictures(trainer.out_dir, history=result.history)
