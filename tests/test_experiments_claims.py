"""Issue 20: multi-seed verdicts and the new experiments (vgg-filters, dropout-conv, shortcuts,
fractal-droppath) at tiny scale; their machinery against closed forms and hand computations."""

from __future__ import annotations

import math
import statistics

import pytest

from cnnlab.errors import ConfigError
from cnnlab.experiments.framework import Criterion, compare_seeds, seed_criterion, verdict_from


def test_compare_seeds_paired_standard_error_is_that_of_the_differences():
    a, b = [0.90, 0.92, 0.94], [0.80, 0.83, 0.83]
    c = compare_seeds(a, b)
    d = [x - y for x, y in zip(a, b)]
    assert math.isclose(c.difference, statistics.mean(d))
    assert math.isclose(c.stderr, statistics.stdev(d) / math.sqrt(3))
    assert c.verdict == "met"
    assert compare_seeds(b, a).verdict == "not met"
    assert compare_seeds(b, a, expect="less").verdict == "met"


def test_compare_seeds_welch_and_within_noise():
    a, b = [0.90, 0.95, 0.85], [0.89, 0.84, 0.94]
    c = compare_seeds(a, b, paired=False)
    se = math.sqrt(statistics.variance(a) / 3 + statistics.variance(b) / 3)
    assert math.isclose(c.stderr, se) and c.verdict == "within noise"
    # the same difference with no spread is decided
    assert compare_seeds([0.9, 0.9], [0.8, 0.8]).verdict == "met"
    assert compare_seeds([0.9, 0.9], [0.9, 0.9]).verdict == "within noise"


def test_compare_seeds_refuses_what_it_cannot_decide():
    with pytest.raises(ConfigError, match="at least 2 seeds"):
        compare_seeds([0.9], [0.8])
    with pytest.raises(ConfigError, match="same seeds"):
        compare_seeds([0.9, 0.8], [0.8, 0.7, 0.6])
    with pytest.raises(ConfigError, match="expect"):
        compare_seeds([0.9, 0.8], [0.8, 0.7], expect="bigger")


def test_within_noise_is_said_in_the_verdict():
    noisy = seed_criterion("a beats b", "a 90% vs b 89%", compare_seeds([0.90, 0.95, 0.85], [0.89, 0.84, 0.94]))
    clear = seed_criterion("c beats d", "c 90% vs d 80%", compare_seeds([0.90, 0.91, 0.92], [0.80, 0.80, 0.82]))
    assert not noisy.passed and noisy.status == "within noise" and clear.passed
    reproduced, sentence = verdict_from([noisy, clear], context="here")
    assert reproduced == "partly"
    assert "(within noise)" in sentence and "(as claimed)" in sentence and "contrary" not in sentence
    with pytest.raises(ConfigError):
        Criterion("x", "y", False, status="maybe")
