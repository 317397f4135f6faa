"""Statistics of the verdicts: a criterion decided inside the seed-to-seed spread is a coin toss.

- :func:`compare_seeds`: two arms' per-seed values (paired when they share seeds), their mean
  difference and its standard error, and whether the difference exceeds the threshold;
  :func:`seed_criterion` turns the comparison into a :class:`~cnnlab.experiments.outcome.Criterion`.
- :func:`against_margin` / :func:`margin_criterion`: one quantity's per-seed values against a fixed
  margin, for claims with a size ("costs little", "does not help").
- :func:`require_seeds`, :func:`require_per_class`: config checks of the multi-seed experiments.
- :func:`mean_std`, :func:`correlation`, :func:`kendall_tau`: small summaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.experiments.outcome import Criterion

__all__ = [
    "SeedComparison",
    "compare_seeds",
    "seed_criterion",
    "against_margin",
    "margin_criterion",
    "require_seeds",
    "require_per_class",
    "mean_std",
    "correlation",
    "kendall_tau",
]


@dataclass(frozen=True)
class SeedComparison:
    """Arm ``a`` against arm ``b`` over seeds: the mean difference ``a - b``, its standard error and
    the verdict on the claim that the difference has the sign ``expect`` ("greater": a > b)."""

    a: tuple[float, ...]
    b: tuple[float, ...]
    difference: float
    stderr: float
    paired: bool
    expect: str
    threshold: float  # standard errors the difference must exceed
    verdict: str  # "met", "not met" or "within noise"

    def describe(self, *, scale: float = 100.0, unit: str = " points", verdict: bool = True) -> str:
        """``"+0.45 +- 0.12 points (SE, 3 paired seeds): met"``, values times ``scale``."""
        kind = "paired seeds" if self.paired else f"seeds ({len(self.a)} and {len(self.b)})"
        n = f"{len(self.a)} " if self.paired else ""
        return (f"{scale * self.difference:+.2f} +- {scale * self.stderr:.2f}{unit} (standard error, {n}{kind}; "
                f"decided at {self.threshold:g} SE)" + (f": {self.verdict}" if verdict else ""))


def require_seeds(experiment: str, seeds: Any, *, what: str = "seeds") -> None:
    """A ConfigError naming ``experiment`` unless ``seeds`` is an integer >= 2 (a verdict over seeds
    needs a standard error, so at least two)."""
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 2:
        raise ConfigError(f"{experiment}: {what} must be an integer >= 2 (the verdicts compare seeds), got {seeds!r}")


def require_per_class(experiment: str, per_class: Any) -> None:
    """A ConfigError naming ``experiment`` unless ``per_class`` (a config's ``train_per_class``) is
    None (the whole training split) or a positive integer."""
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ConfigError(f"{experiment}: train_per_class must be a positive integer or None, got {per_class!r}")


def compare_seeds(
    a: Sequence[float], b: Sequence[float], *, expect: str = "greater", paired: bool = True, threshold: float = 2.0,
) -> SeedComparison:
    """Compare per-seed values of two arms; the claim is met only if the difference exceeds
    ``threshold`` standard errors in the ``expect`` direction, "not met" if it does in the other
    one, "within noise" otherwise.

    ``paired``: the arms were run with the same seeds (same data order and initialisation stream),
    so the standard error is that of the per-seed differences, std(a_i - b_i) / sqrt(n); else
    Welch's sqrt(var_a / n_a + var_b / n_b). Sample variances (n - 1); at least 2 seeds per arm.
    """
    a, b = tuple(float(v) for v in a), tuple(float(v) for v in b)
    if expect not in ("greater", "less"):
        raise ConfigError(f"compare_seeds: expect must be 'greater' or 'less', got {expect!r}")
    if len(a) < 2 or len(b) < 2:
        raise ConfigError(f"compare_seeds needs at least 2 seeds per arm, got {len(a)} and {len(b)}")
    if paired and len(a) != len(b):
        raise ConfigError(f"compare_seeds: paired arms need the same seeds, got {len(a)} and {len(b)} values")

    def var(xs: Sequence[float]) -> float:
        m = sum(xs) / len(xs)
        return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)

    if paired:
        d = [x - y for x, y in zip(a, b)]
        diff, se = sum(d) / len(d), math.sqrt(var(d) / len(d))
    else:
        diff = sum(a) / len(a) - sum(b) / len(b)
        se = math.sqrt(var(a) / len(a) + var(b) / len(b))
    signed = diff if expect == "greater" else -diff
    if abs(diff) <= threshold * se or diff == 0:
        verdict = "within noise"
    else:
        verdict = "met" if signed > 0 else "not met"
    return SeedComparison(a=a, b=b, difference=diff, stderr=se, paired=paired, expect=expect,
                          threshold=threshold, verdict=verdict)  # fmt: skip


def seed_criterion(description: str, finding: str, comparison: SeedComparison, *,
                   scale: float = 100.0, unit: str = " points") -> Criterion:
    """A :class:`Criterion` decided by ``comparison``: passed when "met"; "within noise" is said so
    in the verdict rather than counted as contrary to the claim (it still does not pass)."""
    return Criterion(
        description=f"{description} (by more than {comparison.threshold:g} standard errors over seeds)",
        finding=f"{finding}: difference {comparison.describe(scale=scale, unit=unit, verdict=False)}",
        passed=comparison.verdict == "met",
        status="within noise" if comparison.verdict == "within noise" else "",
    )


def against_margin(values: Sequence[float], margin: float, *, expect: str) -> SeedComparison:
    """Per-seed values of one quantity (a lesion's cost, an arm's gain) against a fixed ``margin``:
    :func:`compare_seeds` with a constant second arm, so the difference is ``mean - margin`` and its
    standard error that of the values. "met" only if the mean lies beyond the margin on the
    ``expect`` side ("less": below it) by more than 2 standard errors, "not met" if it lies beyond it
    on the other side by as much, "within noise" otherwise. For claims with a size ("costs little",
    "does not help"), where a plain comparison with 0 would call any real but small effect contrary."""
    return compare_seeds(values, [float(margin)] * len(values), expect=expect)


def margin_criterion(description: str, finding: str, comparison: SeedComparison, *,
                     scale: float = 100.0, unit: str = " points") -> Criterion:
    """A :class:`Criterion` decided by ``comparison`` from :func:`against_margin`; the finding gives
    the quantity's mean and standard error and the margin (not their difference)."""
    margin = comparison.b[0]
    mean = comparison.difference + margin
    n = len(comparison.a)
    side = "below" if comparison.expect == "less" else "above"
    return Criterion(
        description=f"{description} ({side} {scale * margin:g}{unit} by more than {comparison.threshold:g} "
        "standard errors over seeds)",
        finding=f"{finding}: {scale * mean:+.2f} +- {scale * comparison.stderr:.2f}{unit} (standard error, {n} "
        f"seeds) against {scale * margin:g}{unit}",
        passed=comparison.verdict == "met",
        status="within noise" if comparison.verdict == "within noise" else "",
    )


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = [float(v) for v in values]
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def correlation(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson's r (0 when either side is constant)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(xs, ys))
    sxx, syy = sum((a - mx) ** 2 for a in xs), sum((b - my) ** 2 for b in ys)
    return 0.0 if sxx == 0 or syy == 0 else sxy / (sxx * syy) ** 0.5


def kendall_tau(order: Sequence[int]) -> float:
    """Kendall's tau between ``order`` (a permutation of 0..n-1) and the identity: (concordant -
    discordant pairs) / (n (n - 1) / 2); 1 for the original order, -1 for the reversed one."""
    n = len(order)
    if n < 2:
        return 1.0
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            s += 1 if order[i] < order[j] else -1
    return s / (n * (n - 1) / 2)
