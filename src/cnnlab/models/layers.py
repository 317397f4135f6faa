"""Leaf operations shared by the zoo families: local response normalisation, conv-norm-act, width scaling.

Kept tiny on purpose: a family owns its blocks; only ops that several papers share live here. This
module imports nothing from cnnlab, so any family (or block module) can import it.
"""

from __future__ import annotations

from torch import nn

__all__ = ["local_response_norm", "ConvNormAct", "scale_channels"]


def local_response_norm(
    *, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
) -> nn.LocalResponseNorm:
    """Krizhevsky et al. 2012 §3.3 response normalisation across ``size`` adjacent maps.

    The paper's formula is ``b_i = a_i / (k + alpha * sum_{j=i-size/2}^{i+size/2} a_j^2) ** beta``
    with k = 2, n = 5, alpha = 1e-4, beta = 0.75 (the defaults here; VGG's A-LRN uses the same).
    ``nn.LocalResponseNorm`` (like Caffe) divides ``alpha`` by ``size``, so we pass ``alpha * size``
    to get the paper's formula with the paper's constants.
    """
    return nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)


class ConvNormAct(nn.Sequential):
    """``conv`` -> optional ``bn`` -> ``act`` (ReLU), with stable child names for probes and lesions.

    The convolution has no bias when batch normalisation follows it (BN's shift replaces it).
    ReLU is not in-place, so a forward hook on ``conv`` or ``bn`` sees that layer's own output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        batch_norm: bool = True,
        act: bool = True,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding  # "same" for odd kernels
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=not batch_norm
        )
        if batch_norm:
            self.bn = nn.BatchNorm2d(out_channels)
        if act:
            self.act = nn.ReLU()


def scale_channels(channels: int, width: float, *, divisor: int = 1) -> int:
    """``channels * width`` rounded to a multiple of ``divisor`` (at least ``divisor``).

    Width multipliers let the big ImageNet columns run at reduced width on a CPU; ``divisor`` keeps
    grouped convolutions (AlexNet's two towers) valid.
    """
    return max(divisor, int(round(channels * width / divisor)) * divisor)
