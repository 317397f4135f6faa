"""Element-wise non-linearities, a linear layer and softmax cross-entropy in NumPy, forward and backward.

Each backward takes the upstream gradient ``dy`` and what the forward saw (its input or output),
and returns the gradient with respect to the input (and parameters), the chain rule one layer at a time.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "relu_forward",
    "relu_backward",
    "tanh_forward",
    "tanh_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "linear_forward",
    "linear_backward",
    "softmax",
    "softmax_cross_entropy",
    "numerical_gradient",
]


def relu_forward(x: np.ndarray) -> np.ndarray:
    """``max(0, x)`` (lecture 003: Output = Max(zero, Input))."""
    return np.maximum(x, 0.0)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    return dy * (x > 0)  # the gradient at exactly 0 is taken as 0, as PyTorch


def tanh_forward(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """From the output ``y = tanh(x)``: ``dtanh/dx = 1 - y^2``."""
    return dy * (1.0 - y * y)


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    # split by sign so that exp never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """From the output ``y = sigmoid(x)``: ``dsigma/dx = y (1 - y)``."""
    return dy * y * (1.0 - y)


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``y = x W^T + b`` with ``W`` of shape ``(out, in)`` as ``nn.Linear``."""
    y = x @ w.T
    return y if b is None else y + b


def linear_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dW, db) = (dy W, dy^T x, sum_n dy)``."""
    return dy @ w, dy.T @ x, dy.sum(axis=0)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)  # shift-invariant; keeps exp finite
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean ``-log softmax(z)[y]`` over the batch, and its gradient ``(softmax(z) - onehot(y)) / N``."""
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1.0
    return float(loss), grad / n


def numerical_gradient(f, x: np.ndarray, *, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences ``(f(x + eps e_i) - f(x - eps e_i)) / 2 eps`` of a scalar ``f`` (lecture 001:
    "check gradients numerically by finite differences"). ``x`` is changed in place and restored."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: x must be contiguous
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad
