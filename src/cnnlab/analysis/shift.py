"""How much a 1-pixel shift changes each stage of a network (Azulay & Weiss, "Why do deep convolutional
networks generalize so poorly to small image transformations?", JMLR 2019).

A stage with total stride ``r`` is equivariant to shifts by multiples of ``r`` at best (its map moves
by one sample); a 1-pixel shift moves it by ``1/r`` of a sample, which subsampling without
low-pass filtering cannot represent. For each stage this measures

    error_1px = min_t ||f(shift_1 x) - shift_t f(x)|| / ||f(x)||,  t in {0, 1} (t = 1 only at r = 1)
    error_rpx = ||f(shift_r x) - shift_1 f(x)|| / ||f(x)||         (the shift the stride allows)

averaged over the images, with circular shifts. Convolutions with padding are switched to circular
padding (``circular=True``) so that the image lives on a torus and ``error_rpx`` is 0 up to
rounding for the layers that are equivariant. Valid (unpadded) convolutions, as in LeNet, crop the
border: a circular shift then moves content across the seam they cut, so ``error_rpx`` is exact
only for the first such layer and as long as the images have blank margins. ``logits`` compares the
output directly (invariance): ``||z(shift_1 x) - z(x)|| / ||z(x)||``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError

__all__ = ["ShiftRow", "shift_sensitivity"]


@dataclass(frozen=True)
class ShiftRow:
    stage: str  # module name, or "logits"
    reduction: int  # total stride of the stage (0 for logits)
    shape: tuple[int, ...]  # C x H x W of the stage's output
    error_1px: float
    error_rpx: float  # shift by the stage's own stride (nan for logits)


def _roll(x: Tensor, pixels: int) -> Tensor:
    return torch.roll(x, pixels, dims=-1)  # a horizontal, circular shift


def _relative(a: Tensor, b: Tensor) -> Tensor:
    """Per-image ``||a - b|| / ||b||``."""
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-30)


def shift_sensitivity(
    model: nn.Module, images: Tensor, *, stages: list[tuple[str, int]] | None = None, circular: bool = True,
) -> list[ShiftRow]:
    """Per-stage ``error_1px`` / ``error_rpx`` of ``model`` (eval mode, float64) on ``images`` (N x C x H x W).

    ``stages`` lists ``(module name, total stride)``; by default the model's ``feature_info``. The
    model is copied; the caller's is not changed.
    """
    if stages is None:
        info = getattr(model, "feature_info", None)
        if not info:
            raise ConfigError("shift_sensitivity: the model has no feature_info; pass stages=[(name, stride), ...]")
        stages = [(d["module"], int(d["reduction"])) for d in info]
    net = copy.deepcopy(model).double().eval()
    modules = dict(net.named_modules())
    missing = [name for name, _ in stages if name not in modules]
    if missing:
        raise ConfigError(f"shift_sensitivity: no module named {', '.join(missing)} in the model")
    if circular:
        for m in net.modules():
            if isinstance(m, nn.Conv2d) and any(p > 0 for p in m.padding):
                m.padding_mode = "circular"
    captured: dict[str, Tensor] = {}
    hooks = [modules[name].register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
             for name, _ in stages]  # fmt: skip

    def run(x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        captured.clear()
        logits = net(x)
        return dict(captured), logits

    x = images.double()
    try:
        with torch.no_grad():
            base, z = run(x)
            one, z1 = run(_roll(x, 1))
            by_r = {r: run(_roll(x, r))[0] for r in sorted({r for _, r in stages})}
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for name, r in stages:
        y = base[name]
        shifts = (1,) if r == 1 else (0, 1)  # 1/r of a sample lies between no shift and one sample
        err1 = torch.stack([_relative(one[name], _roll(y, t)) for t in shifts]).min(0).values
        err_r = _relative(by_r[r][name], _roll(y, 1))
        rows.append(ShiftRow(name, r, tuple(y.shape[1:]), err1.mean().item(), err_r.mean().item()))
    rows.append(ShiftRow("logits", 0, tuple(z.shape[1:]), _relative(z1, z).mean().item(), float("nan")))
    return rows
