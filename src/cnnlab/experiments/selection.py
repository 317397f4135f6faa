"""Choosing among arms on the validation split: the arm with the highest mean validation accuracy.

The experiments that sweep a strength (a dropout rate, a weight decay) pick their setting here, from
validation accuracies only; the test split is reported for the chosen arm and never looked at to
choose it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from cnnlab.errors import ConfigError

__all__ = ["best_on_val"]

K = TypeVar("K")


def best_on_val(val_accs: Mapping[K, Sequence[float]]) -> K:
    """The key whose values (validation accuracies, one per seed) have the highest mean; on a tie the
    first in ``val_accs``' order (list the weakest regularisation first, so a tie keeps it)."""
    if not val_accs or any(len(v) == 0 for v in val_accs.values()):
        raise ConfigError("best_on_val needs at least one arm with at least one validation accuracy")
    means = {k: sum(v) / len(v) for k, v in val_accs.items()}
    best = max(means.values())
    return next(k for k, m in means.items() if m == best)
