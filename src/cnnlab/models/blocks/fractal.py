"""Fractal blocks: Larsson, Maire & Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without
Residuals", ICLR 2017, §2-3.

The expansion rule builds a block with C columns from a convolution ``conv`` and a join:

    f_1(z) = conv(z)
    f_{C+1}(z) = join(f_C(f_C(z)), conv(z))        join = element-wise mean

so column ``c`` (0 = shallowest) holds ``2**c`` convolutions and the deepest one ``2**(C-1)``; a block
has ``2**C - 1`` convolutions in all. As in the paper's Figure 1 and the authors' Caffe generator
(gustavla/fractalnet, ``generation/fractalnet.py``), joins that meet at the same depth are one join:
the element-wise mean of every column that ends a convolution there (a mean over 2, 3, ... C inputs),
not nested pairwise means.

Drop-path (§3) regularises co-adaptation of the columns, in training only:

- local: each input of each join is dropped with probability ``p``, but at least one survives;
- global: one column is kept for the whole network (every block), and the others are dropped.

The block runs its columns in lock-step with the deepest one (one step per deepest-column
convolution), so its forward has no data-dependent Python control flow; the random choices live in
:func:`drop_path_weights`, a ``torch.fx`` leaf, and are made once per mini-batch (the paper samples
"a new subnetwork each mini-batch"), not per sample.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import Tensor, nn

__all__ = ["FractalConv", "FractalBlock", "join", "drop_path_weights", "expansion_schedule"]


class FractalConv(nn.Module):
    """The fractal ``conv``: 3x3 conv -> dropout -> BN -> ReLU.

    The order (dropout right after the convolution) is the authors' Caffe macro (``globals.crox``:
    Convolution, Dropout, BatchNorm, ReLU). Departure: their convolution has a bias and their
    BatchNorm no learned scale/shift; here the convolution has no bias and BN is affine (the usual
    PyTorch form; +1 parameter per channel). The ReLU is not in-place, so hooks see each layer's output.
    """

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.dropout(self.conv(x))))


def expansion_schedule(num_columns: int) -> tuple[tuple[int, ...], ...]:
    """For each convolution step of the deepest column, the columns that end a convolution there.

    Column ``c`` convolves every ``2**(C-1-c)`` steps; the columns ending at the same step are joined.
    For C = 3: ((2,), (1, 2), (2,), (0, 1, 2)).
    """
    C = num_columns
    return tuple(
        tuple(c for c in range(C) if step % 2 ** (C - 1 - c) == 0) for step in range(1, 2 ** (C - 1) + 1)
    )


def join(inputs: list[Tensor], weights: Tensor | None = None) -> Tensor:
    """Element-wise mean of the join's inputs, or of the surviving ones (``weights``: 1 kept, 0 dropped)."""
    stacked = torch.stack(inputs)  # n x N x C x H x W
    if weights is None:
        return stacked.mean(0)
    return (stacked * weights.view(-1, 1, 1, 1, 1)).sum(0) / weights.sum()


@torch.fx.wrap  # a leaf for torch.fx: the random draws and their Python branches are not traced
def drop_path_weights(ref: Tensor, global_column: Tensor | None, members: tuple[int, ...], p_local: float) -> Tensor:
    """1/0 weights for the inputs of one join, coming from the columns ``members``.

    ``global_column`` is the network's choice for this mini-batch: a column index (global drop-path:
    keep that column only) or -1 / ``None`` (local drop-path: drop each input with ``p_local``, keeping
    at least one). ``ref`` (any join input) gives the device and dtype and makes ``torch.fx`` record the
    call instead of running it at trace time.
    """
    n = len(members)
    g = -1 if global_column is None else int(global_column)
    if g >= 0:
        keep = torch.tensor([c == g for c in members], device="cpu")
        if not bool(keep.any()):
            # A join off the kept column's path (only deeper columns meet here): its output feeds only
            # those deeper columns, which later joins drop, so any weights do; keep the plain mean.
            keep = torch.ones(n, dtype=torch.bool, device="cpu")
    else:
        keep = torch.rand(n, device="cpu") >= p_local  # CPU generator: reproducible under torch.manual_seed
        if not bool(keep.any()):
            keep[torch.randint(n, (), device="cpu")] = True  # "we make sure at least one survives" (§3)
    return keep.to(device=ref.device, dtype=ref.dtype)


class FractalBlock(nn.Module):
    """One fractal block of ``num_columns`` columns (no pooling; the network pools after each block).

    ``columns[c][i]`` is the ``i``-th :class:`FractalConv` of column ``c``; column 0 is the shallowest
    (one convolution), column ``num_columns - 1`` the deepest (``2**(num_columns-1)`` convolutions).
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_columns: int, *, dropout: float = 0.0, drop_path_local: float = 0.15
    ) -> None:
        super().__init__()
        self.num_columns = num_columns
        self.drop_path_local = drop_path_local
        self.columns = nn.ModuleList(
            nn.ModuleList(
                FractalConv(in_channels if i == 0 else out_channels, out_channels, dropout=dropout) for i in range(2**c)
            )
            for c in range(num_columns)
        )
        self.schedule = expansion_schedule(num_columns)

    @property
    def depth(self) -> int:
        """Convolutions on the deepest column."""
        return 2 ** (self.num_columns - 1)

    def forward(self, x: Tensor, global_column: Tensor | None = None) -> Tensor:
        """All columns joined; in training, with drop-path (local unless ``global_column`` >= 0)."""
        C = self.num_columns
        drop = self.training and (global_column is not None or self.drop_path_local > 0)
        current = [x] * C  # the input each column's next convolution reads
        for step, members in enumerate(self.schedule, start=1):
            outs = [self.columns[c][step // 2 ** (C - 1 - c) - 1](current[c]) for c in members]
            if len(outs) == 1:
                y = outs[0]  # only the deepest column convolves at odd steps: no join
            elif drop:
                y = join(outs, drop_path_weights(outs[0], global_column, members, self.drop_path_local))
            else:
                y = join(outs)
            for c in members:
                current[c] = y
        return current[-1]  # the last step joins every column

    def forward_column(self, x: Tensor, column: int) -> Tensor:
        """Column ``column`` alone: its ``2**column`` convolutions in sequence (what global drop-path keeps)."""
        for conv in self.columns[column]:
            x = conv(x)
        return x

