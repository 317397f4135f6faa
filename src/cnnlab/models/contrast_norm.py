"""Local contrast normalisation: lecture 000's "local mean = 0, local std. = 1", "local" being a 7x7
Gaussian window, "between/across feature maps".

Jarrett, Kavukcuoglu, Ranzato & LeCun, "What is the best multi-stage architecture for object
recognition?", ICCV 2009, §2 (after Pinto, Cox & DiCarlo, "Why is real-world visual object
recognition hard?", PLoS Comp. Biol. 2008):

- subtractive: ``v_ijk = x_ijk - sum_ipq w_pq x_i,j+p,k+q``, with ``w`` a Gaussian window that sums to
  1 over the window and all feature maps ``i``;
- divisive: ``y_ijk = v_ijk / max(c, sigma_jk)`` with ``sigma_jk = (sum_ipq w_pq v_i,j+p,k+q^2)^(1/2)``
  and ``c`` the mean of ``sigma_jk`` over the image (so flat, noisy regions are not blown up).

Near the border the window is cut by the image edge; there both sums are divided by the window's
weight inside the image (as Torch7's ``nn.SpatialContrastiveNormalization`` does), so a constant
image gives exactly zero everywhere, borders included.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import ConfigError

__all__ = ["LocalContrastNorm", "gaussian_window"]


def gaussian_window(size: int, sigma: float) -> Tensor:
    """A ``size`` x ``size`` Gaussian of standard deviation ``sigma`` pixels, summing to 1 (float64)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    w = torch.outer(g, g)
    return w / w.sum()


class LocalContrastNorm(nn.Module):
    """Jarrett et al. 2009's local subtractive then divisive normalisation (see the module docstring).

    ``kernel_size``: the window (7, lecture 000); ``sigma``: its standard deviation in pixels (default
    ``kernel_size / 4``, 1.75 px for 7x7, Torch7's ``image.gaussian`` default); ``across_channels``:
    one mean and std over the window and all maps (Jarrett's "across feature maps"), else per map;
    ``min_std``: the divisor's floor, None for Jarrett's ``c`` (the image's mean local std), or a
    number (a small one, 1e-4, gives the plain "local std = 1"). ``eps`` keeps ``sqrt`` differentiable
    on constant regions, where the output is 0.
    """

    def __init__(self, kernel_size: int = 7, *, sigma: float | None = None, across_channels: bool = True,
                 min_std: float | None = None, eps: float = 1e-4) -> None:
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"LocalContrastNorm kernel_size must be a positive odd integer, got {kernel_size!r}")
        sigma = kernel_size / 4 if sigma is None else sigma
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"LocalContrastNorm sigma must be a number > 0, got {sigma!r}")
        if min_std is not None and not (isinstance(min_std, (int, float)) and min_std >= 0):
            raise ConfigError(f"LocalContrastNorm min_std must be None or a number >= 0, got {min_std!r}")
        self.kernel_size, self.sigma, self.across_channels = kernel_size, float(sigma), across_channels
        self.min_std, self.eps = min_std, eps
        window = gaussian_window(kernel_size, self.sigma).float().view(1, 1, kernel_size, kernel_size)
        self.register_buffer("window", window, persistent=False)

    def _local_mean(self, t: Tensor, inside: Tensor | None = None) -> Tensor:
        """The Gaussian-weighted mean of each map of ``t`` around every pixel, over the window's part
        inside the image (``inside``: that part's weight, from :meth:`_inside`, computed if not given)."""
        c = t.shape[1]
        window = self.window.to(t.dtype)
        total = F.conv2d(t, window.expand(c, 1, -1, -1), padding=self.kernel_size // 2, groups=c)
        return total / (self._inside(t) if inside is None else inside)

    def _inside(self, t: Tensor) -> Tensor:
        """1 x 1 x H x W: the window's weight inside the image around each pixel (1 away from the border)."""
        ones = t.new_ones(1, 1, *t.shape[-2:])
        return F.conv2d(ones, self.window.to(t.dtype), padding=self.kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        # The output does not change when a constant is added to the maps (one per image across
        # maps, one per map within them). Removing one first keeps rounding errors of the local
        # mean, which the divisor's floor would amplify on flat regions, at the size of the contrast.
        x = x - (x[:, :1, :1, :1] if self.across_channels else x[:, :, :1, :1])
        inside = self._inside(x)
        if self.across_channels:
            v = x - self._local_mean(x.mean(1, keepdim=True), inside)  # N x C x H x W, local mean 0
            var = self._local_mean((v * v).mean(1, keepdim=True), inside)  # N x 1 x H x W
        else:
            v = x - self._local_mean(x, inside)
            var = self._local_mean(v * v, inside)  # N x C x H x W
        std = torch.sqrt(var + self.eps**2)
        if self.min_std is None:
            floor = std.mean(dim=(1, 2, 3), keepdim=True)  # c: the mean local std of each image
        else:
            floor = std.new_tensor(max(self.min_std, self.eps))
        return v / torch.maximum(std, floor)  # local std 1 where the contrast is above the floor

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, sigma={self.sigma:g}, across_channels={self.across_channels}, "
                f"min_std={self.min_std}")
