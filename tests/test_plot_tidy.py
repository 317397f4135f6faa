"""Experiment plots at any scale: integer epochs, visible single points, 0-100 percentages, bars from 0."""

from __future__ import annotations

from matplotlib.figure import Figure

from cnnlab.viz.experiment_plots import tidy_axes


def test_tidy_axes():
    fig = Figure()
    epochs, pct, bars, empty = fig.subplots(1, 4)
    epochs.plot([1], [50.0])
    epochs.set_xlabel("epoch")
    pct.errorbar([1, 2], [95.0, 97.0], yerr=[10.0, 8.0])
    pct.set_ylabel("test accuracy (%)")
    bars.bar([0, 1], [60.0, 70.0])
    bars.set_ylim(55, 75)
    empty.plot([1, 2], [float("nan")] * 2)
    tidy_axes(fig)
    assert list(epochs.get_xticks()) == [1] and epochs.get_lines()[0].get_marker() == "o"
    assert pct.get_ylim()[1] <= 102
    assert bars.get_ylim()[0] == 0
    assert [t.get_text() for t in empty.texts] == ["nothing measured at this scale"]
    assert not epochs.texts
