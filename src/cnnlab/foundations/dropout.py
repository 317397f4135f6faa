"""Dropout in NumPy as lecture 002's slides write it (Srivastava et al., "Dropout: a simple way to prevent
neural networks from overfitting", JMLR 2014), forward and backward.

``p`` is the probability of keeping a unit, the slide's convention ("p = 0.5 # probability of keeping
a unit active. higher = less dropout"; ``nn.Dropout(q)`` takes the probability of dropping, q = 1 - p).

- training: ``U = rand(*H.shape) < p; H *= U`` (drop);
- test time: "scale the activations", ``H * p``, since ``E[h] = p h + (1 - p) 0 = p h``;
- inverted dropout (what ``nn.Dropout`` does): divide by ``p`` while training, ``H * U / p``, and leave
  the test-time pass alone. Both keep the expected activation of training at test time.

:func:`three_layer_forward` is the slide's example network ``train_step`` / ``predict``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["dropout_forward", "dropout_backward", "three_layer_forward", "DropoutExpectation",
           "expected_activation"]


def _check_p(p: float) -> None:
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p (the probability of keeping a unit) must be in (0, 1], got {p!r}")


def dropout_forward(h: np.ndarray, p: float, *, train: bool, rng: np.random.Generator | None = None,
                    inverted: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``(output, mask)``: training multiplies by the mask ``U = rand < p`` (and divides by ``p`` when
    ``inverted``); test time multiplies by ``p`` (plain) or passes ``h`` through (inverted), mask None."""
    _check_p(p)
    if not train:
        return (h.copy() if inverted else h * p), None
    if rng is None:
        raise ValueError("training-time dropout needs rng, a numpy Generator, to draw its mask")
    mask = rng.random(h.shape) < p  # first dropout mask
    out = h * mask  # drop!
    return (out / p if inverted else out), mask


def dropout_backward(dy: np.ndarray, mask: np.ndarray, p: float, *, inverted: bool = False) -> np.ndarray:
    """``dx`` of training-time dropout: the gradient flows only through the kept units (scaled by
    ``1 / p`` in the inverted form)."""
    _check_p(p)
    dx = dy * mask
    return dx / p if inverted else dx


def three_layer_forward(x: np.ndarray, params: dict[str, np.ndarray], p: float, *, train: bool,
                        rng: np.random.Generator | None = None, inverted: bool = False) -> np.ndarray:
    """The slide's network, ``x`` a column (D,) or a batch of columns (D, N): ``H1 = max(0, W1 x + b1)``,
    dropout, ``H2 = max(0, W2 H1 + b2)``, dropout, ``out = W3 H2 + b3``. ``train=False`` is ``predict``."""
    col = (lambda b: b) if x.ndim == 1 else (lambda b: b[:, None])
    h1 = np.maximum(0, params["W1"] @ x + col(params["b1"]))
    h1, _ = dropout_forward(h1, p, train=train, rng=rng, inverted=inverted)
    h2 = np.maximum(0, params["W2"] @ h1 + col(params["b2"]))
    h2, _ = dropout_forward(h2, p, train=train, rng=rng, inverted=inverted)
    return params["W3"] @ h2 + col(params["b3"])


@dataclass(frozen=True)
class DropoutExpectation:
    """Training-time outputs averaged over ``samples`` masks against the one test-time output."""

    train_mean: np.ndarray
    test: np.ndarray
    max_abs_gap: float  # largest |train_mean - test|
    standard_error: float  # largest standard error of the training-time mean (its own noise)


def expected_activation(h: np.ndarray, p: float, *, samples: int = 10_000, seed: int = 0,
                        inverted: bool = False) -> DropoutExpectation:
    """Lecture 002's "we want to keep the same expected value": the mean of the training-time outputs of
    ``h`` over ``samples`` random masks, beside the test-time output (``p h``, or ``h`` when inverted)."""
    rng = np.random.default_rng(seed)
    draws = np.stack([dropout_forward(h, p, train=True, rng=rng, inverted=inverted)[0] for _ in range(samples)])
    test, _ = dropout_forward(h, p, train=False, inverted=inverted)
    mean = draws.mean(axis=0)
    return DropoutExpectation(train_mean=mean, test=test, max_abs_gap=float(np.abs(mean - test).max()),
                              standard_error=float(draws.std(axis=0).max() / np.sqrt(samples)))
