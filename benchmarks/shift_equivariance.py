"""How much a 1-pixel shift changes each stage of a few zoo nets (Azulay & Weiss 2019), against a shift
by the stage's own stride. A measurement, not a speed test; it lives here with the other scripts that
print tables for the docs (docs/foundations.md).

Random-weight networks (the zoo's initialisation, eval mode, float64, seed 0); convolutions with
padding switched to circular padding, so that only subsampling can break equivariance. The images are
16 of scikit-learn's digits enlarged to 16x16 in the middle of a blank 32x32 canvas, or, with
``--image``, 32x32 crops of a photograph (a file, or ``skimage:NAME`` for one of scikit-image's).

With ``--image`` it first measures the from-scratch NumPy operations of ``cnnlab.foundations`` on the
whole photograph: a circular convolution, a strided one, 2x2 max pooling, plain subsampling and one
step of the Gaussian pyramid (blur, then subsample), each after a 1-pixel shift and after a shift by
its stride.

    .venv/bin/python benchmarks/shift_equivariance.py
    .venv/bin/python benchmarks/shift_equivariance.py --image skimage:chelsea
    .venv/bin/python benchmarks/shift_equivariance.py --models resnet20 resnet56 --images 32
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from cnnlab import create_model
from cnnlab.analysis.shift import shift_sensitivity
from cnnlab.errors import CnnlabError
from cnnlab.foundations import CLASSIC_FILTERS, circular_conv2d, equivariance_error, load_image, maxpool2d_forward
from cnnlab.foundations.filters import pyr_down

MODELS = {
    "resnet20": {},
    "vgg_a": dict(width=0.25, fc_width=128, pool_size=1, batch_norm=True),  # VGG-A at a quarter width for 32x32
    "lenet5_relu": {},
}

CROP = 32  # the zoo's CIFAR/MNIST-sized nets take 32x32 inputs
PHOTO_SIDE = 160  # the photograph shrunk to 160 pixels on its longer side: up to 5 crops across

_SOBEL = CLASSIC_FILTERS["sobel x"][None, None]  # 1 x 1 x 3 x 3 (NCHW weights)

# (operation, its stride, the function on a 1 x 1 x H x W image): the NumPy foundations' layers
OPERATIONS = [
    ("3x3 Sobel, circular padding", 1, lambda x: circular_conv2d(x, _SOBEL)),
    ("3x3 Sobel, circular padding, stride 2", 2, lambda x: circular_conv2d(x, _SOBEL, stride=2)),
    ("2x2 max pooling, stride 2", 2, lambda x: maxpool2d_forward(x, 2, 2)),
    ("every other pixel kept", 2, lambda x: x[..., ::2, ::2]),
    ("Gaussian pyramid step: 5-tap blur, then every other pixel", 2,
     lambda x: pyr_down(x[0, 0], boundary="circular")[None, None]),
]


def digits_canvas(n: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    d = torch.tensor(load_digits().images[:n] / 16.0, dtype=torch.float32)[:, None]
    x = torch.zeros(n, 1, 32, 32)
    x[:, :, 8:24, 8:24] = torch.nn.functional.interpolate(d, size=16, mode="nearest")
    return x


def photo_crops(source: str, n: int) -> torch.Tensor:
    """Up to ``n`` non-overlapping 32x32 colour crops (N x 3 x 32 x 32), row by row."""
    photo = load_image(source, grey=False, max_side=PHOTO_SIDE)
    rows, cols = photo.shape[0] // CROP, photo.shape[1] // CROP
    if rows * cols == 0:
        raise SystemExit(f"shift_equivariance: error: --image {source} is smaller than {CROP}x{CROP} pixels")
    crops = [photo[r * CROP:(r + 1) * CROP, c * CROP:(c + 1) * CROP] for r in range(rows) for c in range(cols)]
    return torch.tensor(np.stack(crops[:n]), dtype=torch.float32).permute(0, 3, 1, 2)


def with_channels(x: torch.Tensor, chans: int) -> torch.Tensor:
    """Grey images repeated to ``chans`` channels; colour images averaged to one for a grey net."""
    if x.shape[1] == chans:
        return x
    return x.mean(1, keepdim=True) if chans == 1 else x[:, :1].repeat(1, chans, 1, 1)


def foundations_table(source: str) -> None:
    image = load_image(source, grey=True)
    h, w = image.shape
    image = image[: h - h % 2, : w - w % 2]  # even sides: on the torus a stride-2 grid must close up
    x = image[None, None]
    print(f"{source}, grey, {image.shape[0]}x{image.shape[1]}, circular shifts; "
          f"relative change, best-aligned (cnnlab.foundations.equivariance_error):\n")
    print("| operation | stride | after a 1-px shift | after a shift by the stride |")
    print("|---|---|---|---|")
    for name, stride, f in OPERATIONS:
        one = equivariance_error(f, x, pixels=1, reduction=stride)
        by_stride = equivariance_error(f, x, pixels=stride, reduction=stride)
        print(f"| {name} | {stride} | {100 * one:.1f}% | {100 * by_stride:.1f}% |", flush=True)
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--image", metavar="IMAGE", help="a photograph (a file or skimage:NAME) instead of the digits")
    args = ap.parse_args()
    try:
        if args.image:
            foundations_table(args.image)
            x = photo_crops(args.image, args.images)
            print(f"{len(x)} {CROP}x{CROP} crops of {args.image} (shrunk to {PHOTO_SIDE} pixels on its longer side):\n")
        else:
            x = digits_canvas(args.images)
    except CnnlabError as err:
        print(f"shift_equivariance: error: {err}", file=sys.stderr)
        return 2
    print("| model | stage | stride | map | change after a 1-px shift | after a shift by the stride |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, **MODELS.get(name, {}))
        chans = next(model.parameters()).shape[1]  # the first layer's input channels
        for r in shift_sensitivity(model, with_channels(x, chans)):
            shape = "x".join(map(str, r.shape))
            rpx = "-" if r.stage == "logits" else f"{100 * r.error_rpx:.1f}%"
            stride = "-" if r.stage == "logits" else r.reduction
            print(f"| {name} | {r.stage} | {stride} | {shape} | {100 * r.error_1px:.1f}% | {rpx} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
