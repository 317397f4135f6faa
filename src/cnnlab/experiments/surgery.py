"""Taking trained networks apart: lesions of residual blocks and the paths they create.

Everything here relies on the residual-block contract of the zoo
(:mod:`cnnlab.models.blocks.residual`): a block exposes ``residual(x)`` (the branch F(x)),
``shortcut(x)`` (identity, option-A zero padding or a projection), ``has_shortcut`` (False in plain
nets built from the same block classes), ``downsampling`` (input and output shapes differ) and
computes ``act(residual(x) + shortcut(x))``.

Veit, Wilber & Belongie, "Residual networks behave like ensembles of relatively shallow networks",
NIPS 2016: a residual network of n blocks unrolls into 2^n paths, one per choice of branch in each
block; the number of paths through k residual branches is C(n, k). Deleting a block at test time
removes the paths through its residual branch and keeps the others.

Two more measurements on a trained residual net:

- :func:`reorder_study`: Veit et al.'s Fig. 5b. Blocks are re-ordered at test time by swapping random
  pairs of blocks that have the same input and output shapes (the paper: "swapping k randomly
  sampled pairs of building blocks with compatible dimensions"); the degree of re-ordering is
  Kendall's tau between the new and the original order, and the error rises smoothly as tau falls.
- :func:`residual_norms`: "residual branches learn small corrections" (He et al. 2016 §4.2, Fig. 7:
  the responses of the residual functions are small): for each block, the mean over test images of
  ||F(x)|| / ||shortcut(x)||, the residual branch's output against the shortcut's.

:func:`remove_layers` takes layers out of a network for retraining (Zeiler & Fergus 2014, Table 3).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.experiments.statistics import kendall_tau

__all__ = [
    "is_block",
    "residual_blocks",
    "plain_blocks",
    "block_activation",
    "DeletedBlock",
    "delete_blocks",
    "path_length_distribution",
    "RoutedBlock",
    "gradient_by_path_length",
    "remove_layers",
    "swappable_groups",
    "reorder_study",
    "residual_norms",
]


def is_block(module: nn.Module) -> bool:
    """Whether ``module`` follows the zoo's residual-block contract."""
    return all(hasattr(module, a) for a in ("residual", "shortcut", "has_shortcut", "downsampling"))


def _blocks(model: nn.Module, *, with_shortcut: bool) -> list[tuple[str, nn.Module]]:
    return [
        (name, m) for name, m in model.named_modules()
        if name and is_block(m) and bool(m.has_shortcut) is with_shortcut
    ]  # fmt: skip


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, block)`` of the blocks with a shortcut, in the order the network runs them."""
    return _blocks(model, with_shortcut=True)


def plain_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, block)`` of the blocks without a shortcut (plain nets), in the order they run."""
    return _blocks(model, with_shortcut=False)


def block_activation(block: nn.Module) -> nn.Module:
    """The activation applied after the addition: ``block.act``, or ``block.relu`` (the zoo's
    residual blocks, whose post-addition ReLU is a module of its own, not shared with the branch)."""
    for name in ("act", "relu"):
        act = getattr(block, name, None)
        if isinstance(act, nn.Module):
            return act
    raise TypeError(f"{type(block).__name__} has no `act`/`relu` module: cannot rebuild its forward for a lesion")


class DeletedBlock(nn.Module):
    """A block whose residual branch was deleted: ``y = act(shortcut(x))``.

    This is exactly what the block computes when F(x) = 0, so identity shortcuts pass x through
    (x is the non-negative output of the previous ReLU), option-A shortcuts subsample and zero-pad,
    and projection shortcuts keep their 1x1 convolution, as in Veit et al.'s lesion study. A plain
    block (no shortcut) can only be deleted when it keeps the shape; it then becomes the identity.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.has_shortcut = bool(block.has_shortcut)
        if not self.has_shortcut and block.downsampling:
            raise ValueError("a plain block that changes the shape has no identity to fall back on")
        # The original block is kept whole (its shortcut may be a method using its own modules);
        # only its shortcut and activation are used.
        self.block = block
        self.act = block_activation(block) if self.has_shortcut else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if not self.has_shortcut:
            return x
        return self.act(self.block.shortcut(x))


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def delete_blocks(model: nn.Module, names: Iterable[str]) -> nn.Module:
    """A copy of ``model`` with the named blocks deleted (see :class:`DeletedBlock`); the model is untouched."""
    names = list(names)
    lesioned = copy.deepcopy(model)
    for name in names:
        block = lesioned.get_submodule(name)
        if not is_block(block):
            raise ValueError(f"{name!r} is not a residual/plain block of {type(model).__name__}")
        _replace(lesioned, name, DeletedBlock(block))
    return lesioned


def path_length_distribution(n: int) -> list[int]:
    """Number of paths through exactly k residual branches, k = 0..n, in a net of n blocks.

    Each block doubles the paths: one copy goes through its residual branch (length + 1), one
    through its shortcut (length unchanged). Counting block by block gives C(n, k).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    counts = [1]
    for _ in range(n):
        counts = [a + b for a, b in zip([0, *counts], [*counts, 0])]  # multiply by (1 + z)
    return counts


class RoutedBlock(nn.Module):
    """A block whose forward is unchanged but whose gradient flows through one branch only.

    ``through_residual=True``: ``act(F(x) + stop_grad(shortcut(x)))``; otherwise
    ``act(stop_grad(F(x)) + shortcut(x))``. Routing every block this way selects one path per
    backward pass: Veit et al. §5 sample paths of length k by choosing k blocks that back-propagate
    through their residual branch and n - k that back-propagate through their shortcut.
    """

    def __init__(self, block: nn.Module, *, through_residual: bool) -> None:
        super().__init__()
        self.block = block
        self.act = block_activation(block)
        self.through_residual = through_residual

    def forward(self, x: Tensor) -> Tensor:
        r = self.block.residual(x)
        s = self.block.shortcut(x)
        z = r + s.detach() if self.through_residual else r.detach() + s
        return self.act(z)


def gradient_by_path_length(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    lengths: Sequence[int] | None = None,
    draws: int = 5,
    generator: torch.Generator | None = None,
) -> list[dict[str, float]]:
    """Gradient magnitude reaching the first residual block through paths of each length.

    For each path length k and each of ``draws`` random draws of k blocks, one forward pass (the
    full, unchanged network, in eval mode) and one backward pass of the mean cross-entropy on
    ``(x, y)`` routed through the residual branches of those k blocks and the shortcuts of the
    others; the L2 norm of the gradient at the input of the first block (where all paths start)
    is recorded. Returns ``[{"k", "mean_grad_norm", "std_grad_norm", "draws"}]`` in fp32.
    """
    blocks = residual_blocks(model)
    n = len(blocks)
    if n == 0:
        raise ValueError(f"{type(model).__name__} has no residual blocks")
    lengths = list(range(n + 1)) if lengths is None else list(lengths)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    work = copy.deepcopy(model).float().eval()
    device = next((p.device for p in work.parameters()), torch.device("cpu"))
    x, y = x.float().to(device), y.to(device)
    names = [name for name, _ in residual_blocks(work)]
    routed = {name: RoutedBlock(work.get_submodule(name), through_residual=False) for name in names}
    for name, r in routed.items():
        _replace(work, name, r)
    for p in work.parameters():
        p.requires_grad_(False)  # only the gradient w.r.t. the activations is wanted

    captured: dict[str, Tensor] = {}

    def leaf_input(_module: nn.Module, args: tuple) -> tuple:
        leaf = args[0].detach().requires_grad_(True)
        captured["x"] = leaf
        return (leaf, *args[1:])

    handle = routed[names[0]].register_forward_pre_hook(leaf_input)
    rows = []
    try:
        for k in lengths:
            if not 0 <= k <= n:
                raise ValueError(f"path length {k} outside 0..{n}")
            # Only one choice exists for k = 0 and k = n; more draws would repeat it exactly.
            n_draws = 1 if k in (0, n) else min(draws, math.comb(n, k))
            norms = []
            for _ in range(n_draws):
                chosen = set(torch.randperm(n, generator=gen)[:k].tolist())
                for i, name in enumerate(names):
                    routed[name].through_residual = i in chosen
                loss = F.cross_entropy(work(x), y)
                (grad,) = torch.autograd.grad(loss, captured["x"])
                norms.append(grad.norm().item())
            t = torch.tensor(norms, dtype=torch.float64)
            rows.append(dict(
                k=k, mean_grad_norm=t.mean().item(),
                std_grad_norm=t.std(unbiased=False).item() if len(norms) > 1 else 0.0, draws=len(norms),
            ))  # fmt: skip
    finally:
        handle.remove()
    return rows


# ---------------------------------------------------------------------------------------------
# Removing layers for retraining (Zeiler & Fergus 2014, Table 3)
# ---------------------------------------------------------------------------------------------


class _ShapeMismatch(Exception):
    def __init__(self, name: str, shape: torch.Size) -> None:
        super().__init__(name)
        self.name, self.shape = name, shape


def _resized(module: nn.Module, in_dim: int) -> nn.Module:
    """A fresh layer like ``module`` but reading ``in_dim`` channels/features (default init)."""
    if isinstance(module, nn.Linear):
        return nn.Linear(in_dim, module.out_features, bias=module.bias is not None)
    groups = module.groups if in_dim % module.groups == 0 and module.out_channels % module.groups == 0 else 1
    return nn.Conv2d(
        in_dim, module.out_channels, module.kernel_size, stride=module.stride, padding=module.padding,
        dilation=module.dilation, groups=groups, bias=module.bias is not None, padding_mode=module.padding_mode,
    )  # fmt: skip


def remove_layers(model: nn.Module, names: Sequence[str], *, input_size: tuple[int, int, int]) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` without the named modules, for training from scratch.

    Each named module becomes an ``nn.Identity``; then every convolution or linear layer that now
    receives a different number of channels/features than it was built for is rebuilt to read what
    it receives (same outputs, kernel, stride, padding; PyTorch's default initialisation; groups kept
    when they still divide). Returns the copy and the names of the rebuilt layers.
    """
    work = copy.deepcopy(model)
    for name in names:
        work.get_submodule(name)  # raises AttributeError naming a missing module
        _replace(work, name, nn.Identity())
    rebuilt: list[str] = []
    x = torch.zeros(2, *input_size)
    layers = [(n, m) for n, m in work.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for _ in range(len(layers) + 1):
        handles = []
        for name, m in ((n, m) for n, m in work.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))):

            def check(mod: nn.Module, args: tuple, name: str = name) -> None:
                shape = args[0].shape
                want = mod.in_channels if isinstance(mod, nn.Conv2d) else mod.in_features
                got = shape[1] if isinstance(mod, nn.Conv2d) else shape[-1]
                if got != want:
                    raise _ShapeMismatch(name, shape)

            handles.append(m.register_forward_pre_hook(check))
        try:
            with torch.no_grad():
                work.eval()(x)
            return work.train(), rebuilt
        except _ShapeMismatch as mismatch:
            old = work.get_submodule(mismatch.name)
            in_dim = mismatch.shape[1] if isinstance(old, nn.Conv2d) else mismatch.shape[-1]
            _replace(work, mismatch.name, _resized(old, int(in_dim)))
            rebuilt.append(mismatch.name)
        finally:
            for h in handles:
                h.remove()
    raise RuntimeError(f"could not make {type(model).__name__} consistent after removing {list(names)}")


# ---------------------------------------------------------------------------------------------
# Re-ordering blocks (Veit et al. 2016, Fig. 5b) and the size of the residual branches
# (He et al. 2016, §4.2, Fig. 7)
# ---------------------------------------------------------------------------------------------


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
