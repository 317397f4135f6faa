"""Finite-difference gradient check for any PyTorch module or function (lecture 001's debugging advice:
"check gradients numerically by finite differences").

The module is copied to float64 and reduced to a scalar ``L = sum(out * R)`` with a fixed random
``R`` (so every output element's gradient counts, with different weights). For every input and
parameter element (or a random sample of ``max_per_tensor`` of them) the central difference
``(L(p + eps) - L(p - eps)) / 2 eps`` is compared with autograd's ``dL/dp``. The random number
generator is reset before every evaluation, so modules that draw random numbers in training
(dropout, drop-path) are checked for the same draw each time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["GradcheckResult", "gradcheck"]


@dataclass
class GradcheckResult:
    ok: bool
    max_abs_error: float
    max_rel_error: float  # |analytic - numeric| / max(|analytic|, |numeric|, 1e-8), at the worst element
    checked: int  # elements compared
    errors: dict[str, float] = field(default_factory=dict)  # per tensor ("input0", "weight", ...): max abs error

    def __str__(self) -> str:
        worst = max(self.errors, key=self.errors.get) if self.errors else "-"
        return (f"gradcheck {'passed' if self.ok else 'FAILED'}: {self.checked} elements, max abs error "
                f"{self.max_abs_error:.2e} (worst: {worst}), max rel error {self.max_rel_error:.2e}")


def gradcheck(
    model_or_fn: nn.Module | Callable[..., Tensor], *inputs: Tensor, eps: float = 1e-6, atol: float = 1e-6,
    rtol: float = 1e-4, params: bool = True, max_per_tensor: int | None = 64, seed: int = 0,
) -> GradcheckResult:
    """Compare autograd's gradients of ``model_or_fn(*inputs)`` with central finite differences in float64.

    Floating inputs are checked (and parameters too when ``params``); ``max_per_tensor`` samples that
    many elements of each tensor (None: all). An element passes if ``|a - n| <= atol + rtol |n|``.
    The caller's module and inputs are not changed (a float64 copy is checked).
    """
    fn = copy.deepcopy(model_or_fn).double() if isinstance(model_or_fn, nn.Module) else model_or_fn
    floating = [isinstance(x, Tensor) and x.is_floating_point() for x in inputs]
    xs = [x.detach().double().clone().requires_grad_(True) if f else x for x, f in zip(inputs, floating)]
    tensors = {f"input{i}": x for i, (x, f) in enumerate(zip(xs, floating)) if f}
    if params and isinstance(fn, nn.Module):
        tensors.update({name: p for name, p in fn.named_parameters() if p.requires_grad})
    if not tensors:
        raise ValueError("gradcheck: nothing to check (no floating-point inputs or parameters)")

    def evaluate() -> Tensor:
        torch.manual_seed(seed)  # the same dropout / drop-path draw at every evaluation
        out = fn(*xs)
        out = out.logits if hasattr(out, "logits") else out
        return (out * weights).sum()

    with torch.no_grad():
        torch.manual_seed(seed)
        probe = fn(*xs)
        probe = probe.logits if hasattr(probe, "logits") else probe
    weights = torch.randn(probe.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    analytic = torch.autograd.grad(evaluate(), list(tensors.values()), allow_unused=True)

    gen = torch.Generator().manual_seed(seed)
    result = GradcheckResult(ok=True, max_abs_error=0.0, max_rel_error=0.0, checked=0)
    with torch.no_grad():
        for (name, t), a in zip(tensors.items(), analytic):
            a = torch.zeros_like(t) if a is None else a
            flat_t, flat_a = t.view(-1), a.reshape(-1)
            idx = torch.arange(flat_t.numel())
            if max_per_tensor is not None and flat_t.numel() > max_per_tensor:
                idx = torch.randperm(flat_t.numel(), generator=gen)[:max_per_tensor]
            worst = 0.0
            for i in idx.tolist():
                old = flat_t[i].item()
                flat_t[i] = old + eps
                plus = evaluate().item()
                flat_t[i] = old - eps
                minus = evaluate().item()
                flat_t[i] = old
                num, ana = (plus - minus) / (2 * eps), flat_a[i].item()
                err = abs(num - ana)
                worst = max(worst, err)
                result.max_rel_error = max(result.max_rel_error, err / max(abs(num), abs(ana), 1e-8))
                result.ok &= err <= atol + rtol * abs(num)
                result.checked += 1
            result.errors[name] = worst
            result.max_abs_error = max(result.max_abs_error, worst)
    return result
