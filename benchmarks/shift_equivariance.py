"""How much a 1-pixel shift changes each stage of a few zoo nets (Azulay & Weiss 2019), against a shift
by the stage's own stride. A measurement, not a speed test; it lives here with the other scripts that
print tables for the README.

Random-weight networks (the zoo's initialisation, eval mode, float64, seed 0) on 16 of scikit-learn's
digits enlarged to 16x16 in the middle of a blank 32x32 canvas; convolutions with padding switched
to circular padding, so that only subsampling can break equivariance.

    .venv/bin/python benchmarks/shift_equivariance.py
    .venv/bin/python benchmarks/shift_equivariance.py --models resnet20 resnet56 --images 32
"""

from __future__ import annotations

import argparse

import torch

from cnnlab import create_model
from cnnlab.analysis.shift import shift_sensitivity

MODELS = {
    "resnet20": {},
    "vgg_a": dict(width=0.25, fc_width=128, pool_size=1, batch_norm=True),  # VGG-A at a quarter width for 32x32
    "lenet5_relu": {},
}


def digits_canvas(n: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    d = torch.tensor(load_digits().images[:n] / 16.0, dtype=torch.float32)[:, None]
    x = torch.zeros(n, 1, 32, 32)
    x[:, :, 8:24, 8:24] = torch.nn.functional.interpolate(d, size=16, mode="nearest")
    return x


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--images", type=int, default=16)
    args = ap.parse_args()
    x = digits_canvas(args.images)
    print("| model | stage | stride | map | change after a 1-px shift | after a shift by the stride |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, **MODELS.get(name, {}))
        chans = next(model.parameters()).shape[1]  # the first layer's input channels
        for r in shift_sensitivity(model, x.repeat(1, chans, 1, 1)):
            shape = "x".join(map(str, r.shape))
            rpx = "-" if r.stage == "logits" else f"{100 * r.error_rpx:.1f}%"
            stride = "-" if r.stage == "logits" else r.reduction
            print(f"| {name} | {r.stage} | {stride} | {shape} | {100 * r.error_1px:.1f}% | {rpx} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
