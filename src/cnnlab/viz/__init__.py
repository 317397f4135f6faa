"""Plots and reports drawn from results (dicts, JSON, CSV) alone; matplotlib without pyplot.

``viz`` only reads results: it imports nothing from ``training``, ``experiments`` or ``models``.
"""

from cnnlab.viz.curves import plot_training_curves, read_metrics

__all__ = ["plot_training_curves", "read_metrics"]
