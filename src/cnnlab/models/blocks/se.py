"""Squeeze-and-excitation: Hu, Shen & Sun, "Squeeze-and-Excitation Networks", CVPR 2018.

    z = F_sq(u) = mean over H x W of u                      (Eq. 2, "squeeze")
    s = F_ex(z) = sigmoid(W2 relu(W1 z)),  W1: C/r x C,  W2: C x C/r   (Eq. 3, "excitation")
    out = s * u  (channel-wise)                              (Eq. 4, "scale")

In SE-ResNet the block gates the residual branch F(x) before the addition with the shortcut
(Hu et al. Fig. 3); ``BasicBlock``/``Bottleneck`` take it as their ``attn_layer``.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["SqueezeExcitation"]


class SqueezeExcitation(nn.Module):
    """The SE gate with reduction ratio ``r`` (16 in all of Hu et al.'s models).

    W1 and W2 are 1x1 convolutions on the N x C x 1 x 1 squeezed tensor (the same parameters as
    fully connected layers, with no reshapes), with biases as in the authors' released Caffe models;
    the names ``fc1``/``fc2`` are those of ``torchvision.ops.SqueezeExcitation``, whose state dict
    loads into this module.
    """

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        # At least one hidden unit: a 16-channel CIFAR stage with r = 16 keeps a single one.
        hidden = max(1, channels // reduction)
        self.channels, self.reduction = channels, reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1)  # W1
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)  # W2
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        z = x.mean((2, 3), keepdim=True)  # squeeze: N x C x 1 x 1
        s = self.gate(self.fc2(self.relu(self.fc1(z))))  # excitation: N x C x 1 x 1, in (0, 1)
        return x * s  # scale: N x C x H x W
