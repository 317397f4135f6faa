"""A first CNN in NumPy (lecture 003's lab: "implement/train your first convolutional neural network"),
trained with mini-batch SGD on scikit-learn's 8x8 digits.

    INPUT 1x8x8 -> CONV 3x3 pad 1, 16 -> RELU -> MAXPOOL 2 -> CONV 3x3 pad 1, 32 -> RELU -> MAXPOOL 2
    -> FC 128 -> 10 -> softmax cross-entropy

Every layer is a forward/backward pair from this package; the training loop is the textbook one:
forward, loss, backward through the layers in reverse, SGD with momentum. The digits are split
stratified into train / validation / test with a fixed seed; the epoch count is fixed in advance,
validation accuracy is reported per epoch, and the test split is evaluated once, at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from cnnlab.foundations.conv import conv2d_backward, conv2d_forward
from cnnlab.foundations.layers import linear_backward, linear_forward, relu_backward, relu_forward, softmax_cross_entropy
from cnnlab.foundations.pool import maxpool2d_backward, maxpool2d_forward

__all__ = ["TinyCNN", "SGDConfig", "TrainReport", "load_digits_splits", "train_digits"]


class TinyCNN:
    """Two conv-ReLU-pool stages and a linear classifier; parameters in ``self.params`` (name -> array)."""

    def __init__(self, *, channels: tuple[int, int] = (16, 32), num_classes: int = 10, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        c1, c2 = channels

        def he(shape, fan_in):  # He et al. 2015: N(0, 2 / fan_in) keeps ReLU activations' scale
            return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)

        self.params = {
            "conv1.w": he((c1, 1, 3, 3), 9), "conv1.b": np.zeros(c1),
            "conv2.w": he((c2, c1, 3, 3), 9 * c1), "conv2.b": np.zeros(c2),
            # the classifier feeds softmax, not a ReLU: LeCun's N(0, 1 / fan_in) = He's variance halved
            "fc.w": he((num_classes, c2 * 2 * 2), c2 * 4) / np.sqrt(2.0), "fc.b": np.zeros(num_classes),
        }  # fmt: skip

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        p, cache = self.params, {}
        cache["x"] = x  # N x 1 x 8 x 8
        cache["a1"] = conv2d_forward(x, p["conv1.w"], p["conv1.b"], padding=1)  # N x 16 x 8 x 8
        cache["r1"] = relu_forward(cache["a1"])
        cache["p1"] = maxpool2d_forward(cache["r1"], 2)  # N x 16 x 4 x 4
        cache["a2"] = conv2d_forward(cache["p1"], p["conv2.w"], p["conv2.b"], padding=1)  # N x 32 x 4 x 4
        cache["r2"] = relu_forward(cache["a2"])
        cache["p2"] = maxpool2d_forward(cache["r2"], 2)  # N x 32 x 2 x 2
        cache["f"] = cache["p2"].reshape(len(x), -1)  # N x 128
        return linear_forward(cache["f"], p["fc.w"], p["fc.b"]), cache  # N x 10

    def backward(self, dlogits: np.ndarray, cache: dict) -> dict[str, np.ndarray]:
        """Gradients of every parameter, from ``dL/dlogits``: the forward pass read backwards."""
        p, g = self.params, {}
        df, g["fc.w"], g["fc.b"] = linear_backward(dlogits, cache["f"], p["fc.w"])
        dp2 = df.reshape(cache["p2"].shape)
        dr2 = maxpool2d_backward(dp2, cache["r2"], 2)
        da2 = relu_backward(dr2, cache["a2"])
        dp1, g["conv2.w"], g["conv2.b"] = conv2d_backward(da2, cache["p1"], p["conv2.w"], padding=1)
        dr1 = maxpool2d_backward(dp1, cache["r1"], 2)
        da1 = relu_backward(dr1, cache["a1"])
        _, g["conv1.w"], g["conv1.b"] = conv2d_backward(da1, cache["x"], p["conv1.w"], padding=1)
        return g

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        logits, cache = self.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        return loss, self.backward(dlogits, cache)

    def predict(self, x: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
        return np.concatenate([self.forward(x[i : i + batch_size])[0].argmax(1) for i in range(0, len(x), batch_size)])


@dataclass(frozen=True)
class SGDConfig:
    epochs: int = 20  # fixed in advance; nothing is selected on the test split
    batch_size: int = 32
    lr: float = 0.05  # plain SGD step with momentum, the usual starting point for a small ReLU CNN
    momentum: float = 0.9
    weight_decay: float = 5e-4  # L2 on the weights (not the biases)
    seed: int = 0  # initialisation and batch order


@dataclass
class TrainReport:
    test_acc: float
    val_acc: list[float] = field(default_factory=list)  # per epoch
    train_loss: list[float] = field(default_factory=list)  # per epoch, mean over batches
    seconds: float = 0.0  # training time (all epochs)
    images_per_second: float = 0.0
    splits: tuple[int, int, int] = (0, 0, 0)  # train, val, test sizes


def load_digits_splits(*, seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """scikit-learn's 1,797 digits as N x 1 x 8 x 8 in [0, 1]; stratified 60/20/20 train/val/test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float64)[:, None]  # pixel values are 0..16
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=0.25, stratify=y_tr, random_state=seed)
    mean, std = x_tr.mean(), x_tr.std()  # normalised with the train split's statistics only
    return tuple(((a - mean) / std, b) for a, b in ((x_tr, y_tr), (x_va, y_va), (x_te, y_te)))


def train_digits(cfg: SGDConfig = SGDConfig(), *, progress: bool = False) -> tuple[TinyCNN, TrainReport]:
    """Train :class:`TinyCNN` on the digits with SGD + momentum; test accuracy measured once at the end."""
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = load_digits_splits(seed=cfg.seed)
    model = TinyCNN(seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    velocity = {k: np.zeros_like(v) for k, v in model.params.items()}
    report = TrainReport(test_acc=float("nan"), splits=(len(x_tr), len(x_va), len(x_te)))
    epochs = range(cfg.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="numpy cnn", unit="epoch")
    start = time.perf_counter()
    for _ in epochs:
        order, losses = rng.permutation(len(x_tr)), []
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss, grads = model.loss_and_grads(x_tr[idx], y_tr[idx])
            losses.append(loss)
            for k, g in grads.items():
                if k.endswith(".w"):
                    g = g + cfg.weight_decay * model.params[k]
                velocity[k] = cfg.momentum * velocity[k] - cfg.lr * g
                model.params[k] += velocity[k]
        report.train_loss.append(float(np.mean(losses)))
        report.val_acc.append(float((model.predict(x_va) == y_va).mean()))
    report.seconds = time.perf_counter() - start
    report.images_per_second = cfg.epochs * len(x_tr) / report.seconds
    report.test_acc = float((model.predict(x_te) == y_te).mean())  # once, after training
    return model, report
