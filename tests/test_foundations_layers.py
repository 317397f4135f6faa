"""The NumPy reference layers agree with PyTorch autograd in float64 (1e-8) and with finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.foundations import (
    avgpool2d_backward,
    avgpool2d_forward,
    conv2d_backward,
    conv2d_backward_loop,
    conv2d_forward,
    conv2d_forward_loop,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    linear_backward,
    linear_forward,
    maxpool2d_backward,
    maxpool2d_forward,
    numerical_gradient,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_cross_entropy,
    tanh_backward,
    tanh_forward,
)

TOL = dict(rtol=1e-8, atol=1e-8)
FAST = settings(max_examples=20, deadline=None)


def _torch_grads(fn, *arrays, dy_seed=0):
    """Output of ``fn`` on float64 tensors, a random upstream gradient, and autograd's input gradients."""
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ts)
    dy = np.random.default_rng(dy_seed).normal(size=tuple(y.shape))
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), dy, [t.grad.numpy() for t in ts]


@st.composite
def conv_cases(draw, max_size=9):
    groups = draw(st.sampled_from([1, 2, 3]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    h = draw(st.integers(max(1, span_h - 2 * padding[0]), max(span_h - 2 * padding[0], 1) + max_size))
    w = draw(st.integers(max(1, span_w - 2 * padding[1]), max(span_w - 2 * padding[1], 1) + max_size))
    n = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x, wt, b = rng.normal(size=(n, cin, h, w)), rng.normal(size=(cout, cin // groups, kh, kw)), rng.normal(size=cout)
    return x, wt, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@FAST
@given(conv_cases())
def test_conv2d_im2col_matches_pytorch_forward_and_backward(case):
    x, w, b, kw = case
    y_t, dy, (dx_t, dw_t, db_t) = _torch_grads(lambda x, w, b: F.conv2d(x, w, b, **kw), x, w, b)
    np.testing.assert_allclose(conv2d_forward(x, w, b, **kw), y_t, **TOL)
    dx, dw, db = conv2d_backward(dy, x, w, **kw)
    np.testing.assert_allclose(dx, dx_t, **TOL)
    np.testing.assert_allclose(dw, dw_t, **TOL)
    np.testing.assert_allclose(db, db_t, **TOL)


@settings(max_examples=10, deadline=None)
@given(conv_cases(max_size=4))
def test_conv2d_loop_version_matches_pytorch(case):
    x, w, b, kw = case
    y_t, dy, (dx_t, dw_t, db_t) = _torch_grads(lambda x, w, b: F.conv2d(x, w, b, **kw), x, w, b)
    np.testing.assert_allclose(conv2d_forward_loop(x, w, b, **kw), y_t, **TOL)
    for got, want in zip(conv2d_backward_loop(dy, x, w, **kw), (dx_t, dw_t, db_t)):
        np.testing.assert_allclose(got, want, **TOL)


@FAST
@given(
    groups=st.sampled_from([1, 2]), k=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 2),
    dilation=st.integers(1, 2), extra=st.integers(0, 2), h=st.integers(1, 6), w=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_conv_transpose2d_matches_pytorch(groups, k, stride, padding, dilation, extra, h, w, seed):
    output_padding = min(extra, max(stride, dilation) - 1)  # PyTorch: smaller than stride or dilation
    out_h = (h - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
    out_w = (w - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1
    if min(out_h, out_w) < 1:
        return
    rng = np.random.default_rng(seed)
    x, wt, b = rng.normal(size=(2, 2 * groups, h, w)), rng.normal(size=(2 * groups, 3, k, k)), rng.normal(size=3 * groups)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    y_t, dy, grads_t = _torch_grads(lambda x, w, b: F.conv_transpose2d(x, w, b, **kw), x, wt, b)
    np.testing.assert_allclose(conv_transpose2d_forward(x, wt, b, **kw), y_t, **TOL)
    for got, want in zip(conv_transpose2d_backward(dy, x, wt, **kw), grads_t):
        np.testing.assert_allclose(got, want, **TOL)


@FAST
@given(
    k=st.integers(1, 4), stride=st.one_of(st.none(), st.integers(1, 3)), pad=st.integers(0, 2),
    h=st.integers(4, 9), w=st.integers(4, 9), seed=st.integers(0, 2**16),
)
def test_pooling_matches_pytorch(k, stride, pad, h, w, seed):
    pad = min(pad, k // 2)
    x = np.random.default_rng(seed).normal(size=(2, 3, h, w))
    for ours_f, ours_b, theirs in (
        (maxpool2d_forward, maxpool2d_backward, F.max_pool2d),
        (avgpool2d_forward, avgpool2d_backward, F.avg_pool2d),
    ):
        y_t, dy, (dx_t,) = _torch_grads(lambda x: theirs(x, k, stride, pad), x)
        np.testing.assert_allclose(ours_f(x, k, stride, pad), y_t, **TOL)
        np.testing.assert_allclose(ours_b(dy, x, k, stride, pad), dx_t, **TOL)


@FAST
@given(n=st.integers(1, 5), d_in=st.integers(1, 6), d_out=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_activations_linear_and_softmax_ce_match_pytorch(n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in)) * 3
    for ours_f, ours_b, theirs, from_output in (
        (relu_forward, relu_backward, torch.relu, False),
        (tanh_forward, tanh_backward, torch.tanh, True),
        (sigmoid_forward, sigmoid_backward, torch.sigmoid, True),
    ):
        y_t, dy, (dx_t,) = _torch_grads(theirs, x)
        y = ours_f(x)
        np.testing.assert_allclose(y, y_t, **TOL)
        np.testing.assert_allclose(ours_b(dy, y if from_output else x), dx_t, **TOL)
    w, b = rng.normal(size=(d_out, d_in)), rng.normal(size=d_out)
    y_t, dy, (dx_t, dw_t, db_t) = _torch_grads(F.linear, x, w, b)
    np.testing.assert_allclose(linear_forward(x, w, b), y_t, **TOL)
    for got, want in zip(linear_backward(dy, x, w), (dx_t, dw_t, db_t)):
        np.testing.assert_allclose(got, want, **TOL)
    labels = rng.integers(0, d_out, size=n)
    logits_t = torch.tensor(y_t, requires_grad=True)
    loss_t = F.cross_entropy(logits_t, torch.tensor(labels))
    loss_t.backward()
    loss, grad = softmax_cross_entropy(y_t, labels)
    assert loss == pytest.approx(loss_t.item(), rel=1e-10)
    np.testing.assert_allclose(grad, logits_t.grad.numpy(), **TOL)


def test_sigmoid_does_not_overflow():
    y = sigmoid_forward(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


def test_backward_passes_match_finite_differences():
    """Independent of PyTorch: every gradient of a conv -> relu -> maxpool -> linear -> CE chain."""
    rng = np.random.default_rng(7)
    x, w, b = rng.normal(size=(2, 2, 6, 6)), rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4)
    fc = rng.normal(size=(3, 4 * 2 * 2))
    labels = np.array([0, 2])
    kw = dict(stride=1, padding=1, dilation=1, groups=2)

    def loss():
        a = conv2d_forward(x, w, b, **kw)
        p = maxpool2d_forward(relu_forward(a), 3, 3)
        return softmax_cross_entropy(linear_forward(p.reshape(2, -1), fc), labels)[0]

    a = conv2d_forward(x, w, b, **kw)
    r = relu_forward(a)
    p = maxpool2d_forward(r, 3, 3)
    _, dz = softmax_cross_entropy(linear_forward(p.reshape(2, -1), fc), labels)
    dp, dfc, _ = linear_backward(dz, p.reshape(2, -1), fc)
    da = relu_backward(maxpool2d_backward(dp.reshape(p.shape), r, 3, 3), a)
    dx, dw, db = conv2d_backward(da, x, w, **kw)
    for analytic, param in ((dx, x), (dw, w), (db, b), (dfc, fc)):
        np.testing.assert_allclose(analytic, numerical_gradient(loss, param), rtol=1e-5, atol=1e-7)


def test_transposed_conv_is_the_adjoint_of_conv():
    """<conv(u), v> = <u, conv_transpose(v)>: the transposed convolution is the transpose of the matrix."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 2, 3, 3))
    u = rng.normal(size=(1, 2, 9, 8))
    v = rng.normal(size=conv2d_forward(u, w, stride=2, padding=1).shape)
    lhs = np.sum(conv2d_forward(u, w, stride=2, padding=1) * v)
    rhs = np.sum(u * conv_transpose2d_forward(v, w, stride=2, padding=1, output_padding=(0, 1)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match="groups"):
        conv2d_forward(np.zeros((1, 3, 5, 5)), np.zeros((4, 2, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)))
