"""Which parameters train, at what rate, with what weight decay; and the L1 penalty.

A recipe names parameters by pattern (``freeze``, ``lr_mult``). A pattern matches a parameter's name
(as ``model.named_parameters()`` gives it, e.g. ``features.0.weight``) when it is

* the name, or one of the modules above it, on a dot boundary: ``features`` and ``features.0``
  match ``features.0.weight``, ``feat`` does not;
* a glob (``fnmatch``: ``*``, ``?``, ``[...]``) matching the name or one of those module names:
  ``layer[12]`` matches everything in ``layer1`` and ``layer2``, ``*.bias`` every bias.

A pattern that matches no parameter is a ConfigError naming it and the closest module names.

:func:`param_groups` turns a model and a recipe into the optimizer's parameter groups:

* ``freeze``: the parameters matched are set ``requires_grad=False`` and left out of the optimizer
  (no update, no weight decay, no momentum). Batch-norm running statistics are buffers, not
  parameters: a frozen batch-norm layer still updates them in training mode.
* ``lr_mult``: (pattern, multiplier) pairs; a parameter's rate is the schedule's rate times the
  multiplier of the last pair that matches it (1 where none does). The Trainer sets each group's
  rate as ``lr * group["lr_mult"]`` at every update.
* ``no_decay_bias_norm``: biases and normalisation parameters go in groups with ``weight_decay`` 0,
  as in He et al. 2019 ("Bag of Tricks", §3.1, "no bias decay": decay "only ... the weights in
  convolution and fully-connected layers"; Goyal et al. 2017 already left batch norm's gamma and
  beta undecayed). Not decayed: every parameter registered as ``bias``, every parameter of a
  normalisation layer (batch, instance, group, layer norm), and every other parameter of one
  dimension or none: a per-channel gain or shift such as LeNet-5's subsampling coefficients (S2, S4),
  a scale like gamma, not a kernel. Decayed: the kernels and matrices (two or more dimensions),
  which are also what ``cnnlab summary`` counts as "weights without biases".

:func:`l1_penalty` is ``l1 * sum |w|`` over the trainable weights in that sense (the parameters
``no_decay_bias_norm`` keeps decaying). Its gradient is ``l1 * sign(w)`` (0 at w = 0).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError, did_you_mean
from cnnlab.training.recipes import Recipe

__all__ = ["NORM_LAYERS", "matches", "select", "bias_and_norm_names", "apply_freeze", "param_groups", "l1_penalty"]

# Normalisation layers whose affine parameters (gamma, beta) are not decayed with no_decay_bias_norm.
# _NormBase: BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm1d/2d/3d.
NORM_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())

_GLOB = frozenset("*?[")


def _prefixes(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b", "a.b.c"]``: the modules above a parameter, and its own name."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def matches(pattern: str, name: str) -> bool:
    """Whether ``pattern`` matches the parameter ``name`` (see the module docstring)."""
    if any(c in _GLOB for c in pattern):
        return any(fnmatch.fnmatchcase(p, pattern) for p in _prefixes(name))
    return name == pattern or name.startswith(pattern + ".")


def select(model: nn.Module, pattern: str, *, field: str) -> list[str]:
    """The names of ``model``'s parameters that ``pattern`` matches; a ConfigError naming the recipe
    ``field``, the pattern and the closest module names when there is none."""
    names = [n for n, _ in model.named_parameters()]
    found = [n for n in names if matches(pattern, n)]
    if not found:
        modules = sorted({p for n in names for p in _prefixes(n)})
        hint = did_you_mean(pattern, modules, n=4)
        some = ", ".join(sorted({n.split(".")[0] for n in names})[:12])
        raise ConfigError(f"{field} pattern {pattern!r} matches no parameter of {type(model).__name__}"
                          f"{hint or f' (its top-level modules: {some})'}")
    return found


def bias_and_norm_names(model: nn.Module) -> set[str]:
    """The names of ``model``'s biases, normalisation parameters and other one-dimensional parameters
    (per-channel gains and shifts): everything but the kernels and matrices."""
    out = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if p_name == "bias" or isinstance(module, NORM_LAYERS) or p.ndim <= 1:
                out.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return out


def apply_freeze(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Set ``requires_grad=False`` on every parameter a pattern matches; their names."""
    frozen = [n for pattern in patterns for n in select(model, pattern, field="freeze")]
    params = dict(model.named_parameters())
    for n in frozen:
        params[n].requires_grad_(False)
    return list(dict.fromkeys(frozen))


def _multipliers(model: nn.Module, recipe: Recipe) -> dict[str, float]:
    mult: dict[str, float] = {}
    for pattern, m in recipe.lr_mult:  # in order: a later pair overrides an earlier one
        for n in select(model, pattern, field="lr_mult"):
            mult[n] = m
    return mult


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict]:
    """The optimizer's parameter groups for ``model`` under ``recipe``; freezes the ``freeze`` patterns.

    Without ``freeze``, ``lr_mult`` and ``no_decay_bias_norm`` this is one group of every parameter,
    as ``optimizer(model.parameters())`` (so checkpoints of such runs keep their layout). Otherwise a
    group per (multiplier, decayed or not), in the order of the parameters, each with its ``lr_mult``
    and ``weight_decay`` (and ``lr`` = recipe.lr x multiplier, the rate before any schedule).
    """
    if not (recipe.freeze or recipe.lr_mult or recipe.no_decay_bias_norm):
        return [{"params": list(model.parameters())}]
    frozen = set(apply_freeze(model, recipe.freeze))
    mult = _multipliers(model, recipe)
    no_decay = bias_and_norm_names(model) if recipe.no_decay_bias_norm else set()
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in model.named_parameters():
        if name in frozen:
            continue
        m, decay = mult.get(name, 1.0), name not in no_decay
        group = groups.setdefault((m, decay), {"params": [], "lr": recipe.lr * m, "lr_mult": m,
                                               "weight_decay": recipe.weight_decay if decay else 0.0})
        group["params"].append(p)
    if not groups:
        raise ConfigError(f"freeze {', '.join(recipe.freeze)}: every parameter of {type(model).__name__} is "
                          "frozen; nothing would train")
    return list(groups.values())


def l1_penalty(model: nn.Module, l1: float) -> Tensor:
    """``l1 * sum |w|`` over ``model``'s trainable weights (biases and normalisation parameters excluded)."""
    skip = bias_and_norm_names(model)
    weights = [p for n, p in model.named_parameters() if p.requires_grad and n not in skip]
    if not weights:
        return torch.zeros(())
    return l1 * torch.stack([w.abs().sum() for w in weights]).sum()
