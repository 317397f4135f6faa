"""The NumPy foundations of lecture 002's dropout slide, sum pooling and maxout (forward against PyTorch and
hand-computed cases, backward against finite differences), and lecture 001's pixel correlation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.cli import main
from cnnlab.foundations import (
    dropout_backward,
    dropout_forward,
    expected_activation,
    fit_power_law,
    log_distances,
    maxout_backward,
    maxout_forward,
    numerical_gradient,
    pixel_correlation,
    sigmoid_backward,
    sigmoid_forward,
    sumpool2d_backward,
    sumpool2d_forward,
    three_layer_forward,
)
from cnnlab.models.pooling import Maxout


def _grad_check(forward, backward, x: np.ndarray, rng: np.random.Generator) -> float:
    """Largest |analytic - numeric| of d(sum(forward(x) * R))/dx for a fixed random R."""
    r = rng.standard_normal(forward(x).shape)
    numeric = numerical_gradient(lambda: float((forward(x) * r).sum()), x)
    return float(np.abs(backward(r, x) - numeric).max())


# --- dropout ------------------------------------------------------------------------------------------


def test_training_dropout_is_the_slide_s_mask():
    h = np.arange(1.0, 13.0).reshape(3, 4)
    out, mask = dropout_forward(h, 0.5, train=True, rng=np.random.default_rng(7))
    slide = np.random.default_rng(7).random(h.shape) < 0.5  # U1 = np.random.rand(*H1.shape) < p
    assert (mask == slide).all() and (out == h * slide).all()
    inverted, _ = dropout_forward(h, 0.5, train=True, rng=np.random.default_rng(7), inverted=True)
    assert np.allclose(inverted, h * slide / 0.5)
    assert (dropout_forward(h, 0.5, train=False)[0] == 0.5 * h).all()  # "scale the activations"
    assert (dropout_forward(h, 0.5, train=False, inverted=True)[0] == h).all()


@pytest.mark.parametrize("inverted", [False, True])
def test_the_expected_training_activation_is_the_test_activation(inverted):
    h = np.array([0.0, 0.3, 1.0, 2.5, 7.0])
    for p in (0.5, 0.8):
        e = expected_activation(h, p, samples=4000, seed=1, inverted=inverted)
        assert np.allclose(e.test, h if inverted else p * h)  # E[h] = p h + (1 - p) 0 (slide)
        assert e.max_abs_gap < 5 * e.standard_error  # the mean of the masks converges to it
    # without the test-time scaling the expectation would be off by (1 - p) h: far more than the noise
    e = expected_activation(h, 0.5, samples=4000, seed=1)
    assert np.abs(e.train_mean - h).max() > 20 * e.standard_error


def test_dropout_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6))
    for inverted in (False, True):
        mask = rng.random(x.shape) < 0.6

        def forward(v, inverted=inverted):
            return v * mask / 0.6 if inverted else v * mask

        err = _grad_check(forward, lambda dy, v, inverted=inverted: dropout_backward(dy, mask, 0.6, inverted=inverted),
                          x, rng)
        assert err < 1e-8


def test_the_slide_network_trains_with_masks_and_predicts_with_scaling():
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((8, 5)), "b1": rng.standard_normal(8), "W2": rng.standard_normal((6, 8)),
              "b2": rng.standard_normal(6), "W3": rng.standard_normal((3, 6)), "b3": rng.standard_normal(3)}
    x = rng.standard_normal(5)
    p = 0.5
    # predict(X), as on the slide
    h1 = np.maximum(0, np.dot(params["W1"], x) + params["b1"]) * p
    h2 = np.maximum(0, np.dot(params["W2"], h1) + params["b2"]) * p
    slide = np.dot(params["W3"], h2) + params["b3"]
    assert np.allclose(three_layer_forward(x, params, p, train=False), slide)
    # keeping every unit (p = 1) is the plain network in both modes
    plain = three_layer_forward(x, params, 1.0, train=True, rng=rng)
    assert np.allclose(plain, three_layer_forward(x, params, 1.0, train=False))
    batch = three_layer_forward(np.stack([x, x], axis=1), params, p, train=False)
    assert np.allclose(batch[:, 0], slide) and np.allclose(batch[:, 1], slide)


# --- sum pooling, maxout, sigmoid ---------------------------------------------------------------------


def test_sum_pooling_matches_avg_pooling_times_the_area():
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    assert sumpool2d_forward(x).item() == 10.0
    rng = np.random.default_rng(0)
    for k, s, p in ((2, None, 0), (3, 2, 1), (3, 1, 1)):
        x = rng.standard_normal((2, 3, 7, 8))
        expected = F.avg_pool2d(torch.from_numpy(x), k, s, p).numpy() * k * k
        assert np.allclose(sumpool2d_forward(x, k, s, p), expected, atol=1e-12)
        err = _grad_check(lambda v, k=k, s=s, p=p: sumpool2d_forward(v, k, s, p),
                          lambda dy, v, k=k, s=s, p=p: sumpool2d_backward(dy, v, k, s, p), x, rng)
        assert err < 1e-7


def test_maxout_matches_the_module_and_finite_differences():
    z = np.array([1.0, 5.0, -2.0, -7.0]).reshape(1, 4)
    assert maxout_forward(z, 2).tolist() == [[5.0, -2.0]]
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 6, 3, 4))
    assert np.allclose(maxout_forward(z, 3), Maxout(3)(torch.from_numpy(z)).numpy())
    err = _grad_check(lambda v: maxout_forward(v, 3), lambda dy, v: maxout_backward(dy, v, 3), z, rng)
    assert err < 1e-7
    with pytest.raises(ValueError, match="groups of 4"):
        maxout_forward(z, 4)


def test_sigmoid_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)) * 3
    err = _grad_check(sigmoid_forward, lambda dy, v: sigmoid_backward(dy, sigmoid_forward(v)), x, rng)
    assert err < 1e-8


# --- pixel correlation --------------------------------------------------------------------------------


def test_pixel_correlation_of_hand_made_images():
    checker = (np.indices((16, 16)).sum(0) % 2).astype(float)  # neighbours always differ
    assert pixel_correlation(checker, [1, 2, 3]).tolist() == pytest.approx([-1.0, 1.0, -1.0])
    noise = np.random.default_rng(0).standard_normal((200, 200))
    assert abs(pixel_correlation(noise, [1])[0]) < 0.02  # 80,000 independent pairs: sd 0.0035
    smooth = np.add.outer(np.sin(np.arange(200) / 20), np.cos(np.arange(200) / 30))
    r = pixel_correlation(smooth, [1, 4, 16])
    assert r[0] > r[1] > r[2]
    with pytest.raises(ValueError, match="flat"):
        pixel_correlation(np.ones((8, 8)), [1])
    with pytest.raises(ValueError, match="distance 8"):
        pixel_correlation(checker[:8], [8])


def test_fit_power_law_recovers_an_exact_power_law():
    d = log_distances(64)
    assert d[0] == 1 and d[-1] == 64 and (np.diff(d) > 0).all()
    fit = fit_power_law(d, 3.0 * d**-0.5)
    assert fit.a == pytest.approx(3.0) and fit.exponent == pytest.approx(-0.5) and fit.r2 == pytest.approx(1.0)
    assert fit(np.array([4.0]))[0] == pytest.approx(1.5)


def test_pixel_correlation_command_draws_and_guards_its_output(tmp_path, capsys):
    pytest.importorskip("skimage", reason="the photographs ship with scikit-image")
    out = tmp_path / "pc.png"
    argv = ["pixel-correlation", "skimage:camera", "skimage:chelsea", "--max-side", "128",
            "--max-distance", "32", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "1 - correlation ~" in text and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line.split() for line in text.splitlines() if line.split() and line.split()[0].isdigit()]
    means = [float(r[-1]) for r in rows]
    assert means[0] > 0.8 and means == sorted(means, reverse=True)  # near pixels are alike, far ones less
    before = out.read_bytes()
    assert main(argv) == 2 and out.read_bytes() == before  # refuses to replace without --force
    assert "exists" in capsys.readouterr().err
    assert main(argv[:-2] + ["--max-distance", "500", "--out", str(tmp_path / "b.png")]) == 2
    assert "--max-distance" in capsys.readouterr().err
