"""FractalNet: Larsson, Maire & Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without
Residuals", ICLR 2017 (arXiv:1605.07648).

B fractal blocks of C columns (see :mod:`cnnlab.models.blocks.fractal`), each followed by a 2x2
max-pool; on CIFAR (§4) B = 5, so 32x32 inputs end as 1x1 maps, read by one linear layer. Filter
channels start at 64 and double after each block up to 512: (64, 128, 256, 512, 512); dropout per
block (0, 0.1, 0.2, 0.3, 0.4); local drop-path rate 0.15 at every join, and half of the mini-batches
use global drop-path instead (one column for the whole network).

The deepest column has ``B * 2**(C-1)`` convolutions: C = 3 is the paper's 20-layer CIFAR network
(Table 1's "FractalNet, 20 layers", the 22.85% CIFAR-100++ error quoted in lecture 000), the default
here; C = 4 is its 40-layer network. ``eval_column`` evaluates one column alone, as the paper's
"deepest column alone" rows do.

Parameters: C = 3 gives 33,724,618 (33.7M) for 10 classes, where Table 1 prints 38.6M. The authors'
generator (gustavla/fractalnet) builds the same layer list, and an independent PyTorch reproduction
(khanrc/pt.fractalnet, exp-note) also counts 33.7M and reports the same mismatch with the paper; we
found no layer list that gives 38.6M. C = 4 with these widths has 76.1M.

Batch norm under drop-path: a join averages its surviving inputs, and a mean of fewer columns varies
more, so the running statistics collected in training (one column alone on half of the batches) are
larger than the variance of the all-column joins evaluated at test time (1.3-2x at the layers reading
a join in ``tests/test_zoo_fractal.py`` and on mnist-5k), and a net trained briefly with drop-path
evaluates far below its training accuracy. The model follows the paper and the authors' Caffe code
here; re-estimate the statistics with the evaluated forward before testing
(:func:`cnnlab.training.recalibrate_batchnorm`), as the ``fractal-droppath`` experiment does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.fx
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.models.base import Classifier
from cnnlab.models.blocks.fractal import FractalBlock
from cnnlab.models.registry import build_config, register_model

__all__ = ["FractalNetConfig", "FractalNet", "fractalnet_cifar", "sample_global_column", "paper_channels", "paper_dropout"]


def paper_channels(blocks: int) -> tuple[int, ...]:
    """§4: filter channels start at 64 and double after each block (each pooling), capped at 512."""
    return tuple(min(64 * 2**b, 512) for b in range(blocks))


def paper_dropout(blocks: int) -> tuple[float, ...]:
    """§4: "we fix drop rate per block at (0%, 10%, 20%, 30%, 40%)"; 10% more for any further block."""
    return tuple(round(0.1 * b, 10) for b in range(blocks))


@dataclass(frozen=True)
class FractalNetConfig:
    columns: int = 3  # C; the deepest column of a block has 2**(C-1) convolutions
    blocks: int = 5  # B; each block is followed by a 2x2 max-pool (32x32 -> 1x1 for B = 5)
    channels: tuple[int, ...] | None = None  # per block; None: paper_channels(blocks)
    dropout: tuple[float, ...] | None = None  # per block; None: paper_dropout(blocks)
    drop_path_local: float = 0.15  # probability that a join drops each input (§4: "15% drop rate")
    global_drop_ratio: float = 0.5  # fraction of mini-batches using global drop-path (§3: an even mix)
    eval_column: int | None = None  # in eval mode, run this column alone (0 shallowest, -1 deepest)

    def __post_init__(self) -> None:
        for field, low, high in (("columns", 1, 8), ("blocks", 1, 8)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise ConfigError(f"{field} must be an integer in [{low}, {high}], got {v!r}")
        if self.channels is not None:
            ok = isinstance(self.channels, (tuple, list)) and all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in self.channels
            )
            if not ok or len(self.channels) != self.blocks:
                raise ConfigError(f"channels must be {self.blocks} positive integers (one per block), got {self.channels!r}")
            object.__setattr__(self, "channels", tuple(self.channels))
        if self.dropout is not None:
            ok = isinstance(self.dropout, (tuple, list)) and all(
                isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p < 1.0 for p in self.dropout
            )
            if not ok or len(self.dropout) != self.blocks:
                raise ConfigError(f"dropout must be {self.blocks} probabilities in [0, 1) (one per block), got {self.dropout!r}")
            object.__setattr__(self, "dropout", tuple(float(p) for p in self.dropout))
        for field in ("drop_path_local", "global_drop_ratio"):
            p = getattr(self, field)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ConfigError(f"{field} must be a probability in [0, 1], got {p!r}")
        c = self.eval_column
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or not -self.columns <= c < self.columns):
            raise ConfigError(f"eval_column must be None or a column index in [{-self.columns}, {self.columns - 1}], got {c!r}")


@torch.fx.wrap  # a leaf for torch.fx: one random draw per mini-batch, not traced
def sample_global_column(ref: Tensor, num_columns: int, global_ratio: float) -> Tensor:
    """The column kept for this whole mini-batch (global drop-path), or -1 for a local drop-path batch.

    ``ref`` (the input batch) only makes ``torch.fx`` record the call rather than run it once at trace time.
    """
    if float(torch.rand((), device="cpu")) < global_ratio:  # CPU generator: reproducible under torch.manual_seed
        return torch.randint(num_columns, (), device="cpu")
    return torch.tensor(-1, device="cpu")


class FractalNet(Classifier):
    def __init__(self, cfg: FractalNetConfig, *, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        channels = cfg.channels or paper_channels(cfg.blocks)
        dropout = cfg.dropout or paper_dropout(cfg.blocks)
        self.blocks = nn.ModuleList()
        self.pools = nn.ModuleList()
        in_ch = in_chans
        for b in range(cfg.blocks):
            self.blocks.append(
                FractalBlock(in_ch, channels[b], cfg.columns, dropout=dropout[b], drop_path_local=cfg.drop_path_local)
            )
            self.pools.append(nn.MaxPool2d(2))
            in_ch = channels[b]
        # With B = 5 on 32x32 the last pool leaves 1x1 maps and this is the identity (the authors' FC
        # reads the 1x1x512 map); it keeps fewer blocks or larger inputs working.
        self.global_pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self.feature_info = [
            dict(module=f"blocks.{b}", num_chs=channels[b], reduction=2**b) for b in range(cfg.blocks)
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        # The authors' Caffe model (gustavla/fractalnet, generation/globals.crox): Caffe's "xavier"
        # filler, uniform in +-sqrt(3 / fan_in), for convolutions and the classifier; biases 0.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = math.sqrt(3.0 / m.weight[0].numel())
                nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_columns(self) -> int:
        return self.cfg.columns

    def forward_features(self, x: Tensor) -> Tensor:
        if not self.training and self.cfg.eval_column is not None:
            return self.column_features(x, self.cfg.eval_column)
        plan = None  # None: local drop-path only (in training)
        if self.training and self.cfg.global_drop_ratio > 0:
            plan = sample_global_column(x, self.cfg.columns, self.cfg.global_drop_ratio)
        # N x 3 x 32 x 32 -> blocks of (64, 128, 256, 512, 512) channels at 32, 16, 8, 4, 2 pixels
        for block, pool in zip(self.blocks, self.pools):
            x = pool(block(x, plan))  # N x channels[b] x H/2 x W/2
        return x  # N x 512 x 1 x 1 for the paper's B = 5 on 32x32

    def column_features(self, x: Tensor, column: int) -> Tensor:
        """The feature map computed by column ``column`` alone in every block (no joins, no drop-path)."""
        for block, pool in zip(self.blocks, self.pools):
            x = pool(block.forward_column(x, column))
        return x

    def forward_column(self, x: Tensor, column: int) -> Tensor:
        """Logits of the single-column subnetwork ``column`` (0 shallowest, -1 deepest), in any mode."""
        return self.forward_head(self.column_features(x, column))

    def forward_head(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.global_pool(x), 1))  # N x num_classes


@register_model(
    family="fractalnet",
    paper="Larsson et al., 2017",
    input_size=(3, 32, 32),
    num_classes=10,
    recipe="fractalnet",
    departures=(
        "20-layer CIFAR network (C=3, B=5): 33.7M parameters where the paper's Table 1 prints 38.6M; "
        "join then pool (the authors' code pools each column before the last join); bias-free conv + "
        "affine BN instead of conv bias + scale-free BN; drop-path sampled per mini-batch"
    ),
)
def fractalnet_cifar(*, num_classes: int = 10, in_chans: int = 3, **config) -> FractalNet:
    """FractalNet for CIFAR: C=3 columns, B=5 blocks, drop-path; ``columns=4`` for the 40-layer net."""
    return FractalNet(build_config(FractalNetConfig, "fractalnet_cifar", config), num_classes=num_classes, in_chans=in_chans)
