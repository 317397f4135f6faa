"""Two more measurements on a trained residual net, for the ``lesion`` experiment.

- :func:`reorder_study`: Veit, Wilber & Belongie 2016, Fig. 5b. Blocks are re-ordered at test time by
  swapping random pairs of blocks that have the same input and output shapes (the paper: "swapping k
  randomly sampled pairs of building blocks with compatible dimensions"); the degree of re-ordering is
  Kendall's tau between the new and the original order, and the error rises smoothly as tau falls.
- :func:`residual_norms`: "residual branches learn small corrections" (He et al. 2016 §4.2, Fig. 7:
  the responses of the residual functions are small): for each block, the mean over test images of
  ||F(x)|| / ||shortcut(x)||, the residual branch's output against the shortcut's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.experiments.surgery import _replace, residual_blocks

__all__ = ["kendall_tau", "swappable_groups", "reorder_study", "residual_norms"]


def kendall_tau(order: Sequence[int]) -> float:
    """Kendall's tau between ``order`` (a permutation of 0..n-1) and the identity: (concordant -
    discordant pairs) / (n (n - 1) / 2); 1 for the original order, -1 for the reversed one."""
    n = len(order)
    if n < 2:
        return 1.0
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            s += 1 if order[i] < order[j] else -1
    return s / (n * (n - 1) / 2)


def swappable_groups(model: nn.Module) -> list[list[int]]:
    """Indices (in running order) of residual blocks that can trade places: same stage (parent
    module), not downsampling, so that their input and output shapes are equal."""
    blocks = residual_blocks(model)
    groups: dict[str, list[int]] = {}
    for i, (name, block) in enumerate(blocks):
        if not block.downsampling:
            groups.setdefault(name.rpartition(".")[0], []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _reordered(model: nn.Module, order: Sequence[int]) -> nn.Module:
    """A copy of ``model`` whose block at position i runs the original block ``order[i]``."""
    blocks = residual_blocks(model)
    out = copy.deepcopy(model)
    originals = [copy.deepcopy(b) for _, b in blocks]
    for pos, src in enumerate(order):
        if pos != src:
            _replace(out, blocks[pos][0], originals[src])
    return out


def reorder_study(
    model: nn.Module,
    evaluate: Callable[[nn.Module], float],
    *,
    max_swaps: int,
    draws: int,
    generator: torch.Generator,
) -> list[dict[str, Any]]:
    """For k = 1..max_swaps swaps, ``draws`` random re-orderings each: ``{"swaps", "tau", "acc"}``."""
    groups = swappable_groups(model)
    n = len(residual_blocks(model))
    if not groups:
        return []
    rows = []
    for k in range(1, max_swaps + 1):
        for _ in range(draws):
            order = list(range(n))
            for _ in range(k):
                g = groups[int(torch.randint(len(groups), (1,), generator=generator))]
                a, b = (g[int(i)] for i in torch.randperm(len(g), generator=generator)[:2])
                order[a], order[b] = order[b], order[a]
            rows.append(dict(swaps=k, tau=kendall_tau(order), acc=float(evaluate(_reordered(model, order))),
                             order=list(order)))  # fmt: skip
    return rows


@torch.no_grad()
def residual_norms(model: nn.Module, x: Tensor) -> list[dict[str, Any]]:
    """Per residual block: mean over images of ||F(x)|| / ||shortcut(x)|| and of ||F(x)|| / ||x||
    (L2 over each image's values), measured on the inputs each block receives in ``model`` (eval)."""
    blocks = residual_blocks(model)
    inputs: dict[str, Tensor] = {}
    hooks = [b.register_forward_pre_hook(lambda m, args, name=name: inputs.__setitem__(name, args[0].detach()))
             for name, b in blocks]  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rows = []
    for name, block in blocks:
        inp = inputs[name]
        f, s = block.residual(inp).flatten(1).norm(dim=1), block.shortcut(inp).flatten(1).norm(dim=1)
        xn = inp.flatten(1).norm(dim=1)
        rows.append(dict(block=name, downsampling=bool(block.downsampling),
                         residual_over_shortcut=float((f / s.clamp_min(1e-12)).mean()),
                         residual_over_input=float((f / xn.clamp_min(1e-12)).mean())))  # fmt: skip
    return rows


def correlation(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson's r (0 when either side is constant)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(xs, ys))
    sxx, syy = sum((a - mx) ** 2 for a in xs), sum((b - my) ** 2 for b in ys)
    return 0.0 if sxx == 0 or syy == 0 else sxy / (sxx * syy) ** 0.5
