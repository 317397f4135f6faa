"""Learning-rate schedules as pure functions of the optimisation step.

Every function maps a step (the number of updates already made, from 0) to a learning rate, so a
schedule can be tested at the paper's milestones without running anything and a resumed run gets
the same rate at the same step. The one schedule that depends on measurements, "divide by 10 when
the validation accuracy stops improving" (Krizhevsky et al. 2012, Simonyan & Zisserman 2015), is a
small object, :class:`Plateau`, with a ``state_dict`` so it survives a resume.

:class:`LRSchedule` combines a recipe's base schedule, its warm-up and the plateau factor, with the
recipe's milestones resolved to steps (see :func:`resolve_milestones`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cnnlab.errors import ConfigError

__all__ = [
    "constant_lr",
    "step_lr",
    "multistep_lr",
    "cosine_lr",
    "linear_warmup",
    "constant_warmup",
    "Plateau",
    "ResolvedSchedule",
    "resolve_schedule",
    "LRSchedule",
]


def constant_lr(step: int, *, base_lr: float) -> float:
    return base_lr


def step_lr(step: int, *, base_lr: float, step_size: int, gamma: float) -> float:
    """``base_lr * gamma ** (step // step_size)`` (torch's StepLR, counted in updates)."""
    return base_lr * gamma ** (step // step_size)


def multistep_lr(step: int, *, base_lr: float, milestones: Sequence[int], gamma: float) -> float:
    """``base_lr`` times ``gamma`` once for every milestone already reached (``step >= milestone``)."""
    return base_lr * gamma ** sum(step >= m for m in milestones)


def cosine_lr(step: int, *, base_lr: float, total_steps: int, min_lr: float = 0.0) -> float:
    """Half a cosine from ``base_lr`` at step 0 to ``min_lr`` at ``total_steps`` (Loshchilov & Hutter 2017, no restarts)."""
    t = min(max(step, 0), total_steps) / max(total_steps, 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))


def linear_warmup(step: int, lr: float, *, warmup_steps: int, start_lr: float = 0.0) -> float:
    """Ramp linearly from ``start_lr`` to ``lr`` over ``warmup_steps`` updates (Goyal et al. 2017), then ``lr``."""
    if step >= warmup_steps:
        return lr
    return start_lr + (lr - start_lr) * step / warmup_steps


def constant_warmup(step: int, lr: float, *, warmup_steps: int, warmup_lr: float) -> float:
    """``warmup_lr`` for the first ``warmup_steps`` updates, then ``lr`` (He et al. 2016, ResNet-110)."""
    return warmup_lr if step < warmup_steps else lr


class Plateau:
    """Multiply the rate by ``gamma`` when a metric to maximise stops improving.

    The papers divide by 10 "when the validation error rate stopped improving" without saying how
    long they waited; ``patience`` epochs without an improvement larger than ``threshold`` (absolute,
    in accuracy fraction) trigger a drop, as torch's ReduceLROnPlateau in ``max`` mode with ``abs``
    threshold.
    """

    def __init__(self, *, gamma: float = 0.1, patience: int = 5, threshold: float = 1e-3,
                 min_factor: float = 0.0) -> None:
        self.gamma, self.patience, self.threshold, self.min_factor = gamma, patience, threshold, min_factor
        self.factor = 1.0
        self.best: float | None = None
        self.bad_epochs = 0
        self.drops: list[int] = []  # epochs after which the rate was divided

    def update(self, metric: float, *, epoch: int) -> bool:
        """Record one epoch's metric; return True when the rate is divided now."""
        if self.best is None or metric > self.best + self.threshold:
            self.best, self.bad_epochs = metric, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.patience and self.factor * self.gamma >= self.min_factor:
            self.factor *= self.gamma
            self.bad_epochs = 0
            self.drops.append(epoch)
            return True
        return False

    def state_dict(self) -> dict:
        return dict(factor=self.factor, best=self.best, bad_epochs=self.bad_epochs, drops=list(self.drops))

    def load_state_dict(self, state: dict) -> None:
        self.factor, self.best = float(state["factor"]), state["best"]
        self.bad_epochs, self.drops = int(state["bad_epochs"]), [int(e) for e in state["drops"]]


@dataclass(frozen=True)
class ResolvedSchedule:
    """A recipe's schedule in steps for one run (what config.json records)."""

    total_steps: int  # updates in the whole run
    steps_per_epoch: int
    epochs: int  # epochs started (the last may stop early when the recipe counts iterations)
    milestones: tuple[int, ...]  # multistep milestones in steps
    step_size: int  # step schedule period in steps (0 when unused)
    scale: float  # factor applied to milestones given in iterations (1.0: the paper's)
    note: str  # how the milestones were obtained, for config.json


def resolve_schedule(recipe, *, steps_per_epoch: int, epochs: int | None = None) -> ResolvedSchedule:
    """Turn a recipe's length and milestones into steps.

    Recipes state their length in epochs or, following the paper, in iterations (He et al. 2016's
    64k). ``epochs`` (from ``--epochs``) shortens or lengthens a run; milestones given in iterations
    are then scaled by the same factor as the run's length, so 32k/48k of 64k stay at 1/2 and 3/4.
    """
    if steps_per_epoch < 1:
        raise ConfigError(f"recipe {recipe.name}: an epoch has no batch (steps_per_epoch={steps_per_epoch})")
    unit_iters = recipe.milestone_unit == "iteration"
    if epochs is not None:
        total = epochs * steps_per_epoch
        n_epochs = epochs
    elif recipe.iterations is not None:
        total = recipe.iterations
        n_epochs = math.ceil(total / steps_per_epoch)
    else:
        total = recipe.epochs * steps_per_epoch
        n_epochs = recipe.epochs
    if unit_iters:
        paper_total = recipe.iterations or total
        scale = total / paper_total
        milestones = tuple(int(round(m * scale)) for m in recipe.milestones)
        step_size = int(round(recipe.step_size * scale))
        note = ("milestones at the paper's iterations" if scale == 1.0 else
                f"milestones {list(recipe.milestones)} of {paper_total} iterations scaled by {scale:.6g} "
                f"to {list(milestones)} of {total} steps ({n_epochs} epochs of {steps_per_epoch})")
    else:
        scale = 1.0
        if epochs is not None and recipe.epochs and epochs != recipe.epochs:
            # Epoch milestones are kept at the same fraction of the run when --epochs changes it.
            scale = epochs / recipe.epochs
        milestones = tuple(int(round(m * scale * steps_per_epoch)) for m in recipe.milestones)
        step_size = int(round(recipe.step_size * scale * steps_per_epoch))
        note = ("milestones at the recipe's epochs" if scale == 1.0 else
                f"milestones {list(recipe.milestones)} of {recipe.epochs} epochs scaled by {scale:.6g} "
                f"to {list(milestones)} steps ({n_epochs} epochs of {steps_per_epoch})")
    if recipe.schedule == "step" and step_size < 1:
        raise ConfigError(f"recipe {recipe.name}: step_size resolves to {step_size} steps; it must be >= 1")
    return ResolvedSchedule(total_steps=total, steps_per_epoch=steps_per_epoch, epochs=n_epochs,
                            milestones=milestones, step_size=step_size, scale=scale, note=note)


class LRSchedule:
    """The learning rate of a recipe at each step: base schedule, then warm-up, times the plateau factor."""

    def __init__(self, recipe, resolved: ResolvedSchedule) -> None:
        self.recipe, self.resolved = recipe, resolved
        self.plateau = (Plateau(gamma=recipe.gamma, patience=recipe.plateau_patience,
                                threshold=recipe.plateau_threshold,
                                min_factor=recipe.min_lr / recipe.lr if recipe.lr else 0.0)
                        if recipe.schedule == "plateau" else None)

    def base(self, step: int) -> float:
        r, s = self.recipe, self.resolved
        if r.schedule == "step":
            return step_lr(step, base_lr=r.lr, step_size=s.step_size, gamma=r.gamma)
        if r.schedule == "multistep":
            return multistep_lr(step, base_lr=r.lr, milestones=s.milestones, gamma=r.gamma)
        if r.schedule == "cosine":
            return cosine_lr(step, base_lr=r.lr, total_steps=s.total_steps, min_lr=r.min_lr)
        return constant_lr(step, base_lr=r.lr)  # "constant" and "plateau" (factor applied below)

    def __call__(self, step: int) -> float:
        r = self.recipe
        lr = self.base(step)
        if self.plateau is not None:
            lr *= self.plateau.factor
        if r.warmup_steps:
            if r.warmup == "constant":
                lr = constant_warmup(step, lr, warmup_steps=r.warmup_steps, warmup_lr=r.warmup_lr)
            else:
                lr = linear_warmup(step, lr, warmup_steps=r.warmup_steps, start_lr=r.warmup_lr)
        return lr

    def end_of_epoch(self, metric: float, *, epoch: int) -> bool:
        """Feed the epoch's validation accuracy to the plateau rule; True when the rate drops."""
        return self.plateau.update(metric, epoch=epoch) if self.plateau is not None else False

    def state_dict(self) -> dict:
        return {"plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])
