"""``cnnlab filters``, ``cnnlab convolve``, ``cnnlab pyramid`` and ``cnnlab pixel-correlation``: hand-crafted
filters applied to an image (lecture 003), its Gaussian and Laplacian pyramids (lecture 001), and the
correlation of pixels against their distance in photographs (lecture 001's quiz)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cnnlab.errors import ConfigError
from cnnlab.limits import MAX_IMAGE_SIDE

IMAGE_HELP = ("an image file (any PIL format) or skimage:NAME, one of the photographs shipped with scikit-image "
              "(skimage:chelsea, skimage:astronaut, skimage:camera, ...; a wrong NAME lists them all)")


def register(sub: argparse._SubParsersAction) -> None:
    from cnnlab.foundations.filters import BANKS

    p = sub.add_parser(
        "filters", help="apply hand-crafted filters to an image and save the responses as a grid",
        description="Filter a (grey) image with lecture 003's hand-crafted filters (identity, edge detectors, "
                    "sharpen, box and Gaussian blur), the derivative filters (Sobel, Prewitt, Laplacian, "
                    "Laplacian of Gaussian) or a Gabor bank, and save every response in one grid PNG.")
    p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP + "; read as grey")
    p.add_argument("--bank", choices=BANKS, default="lecture", help="which filters (default: lecture)")
    p.add_argument("--out", default="filters", metavar="DIR",
                   help="folder for filters_<bank>.png (default: filters), or a file name ending in .png")
    p.add_argument("--max-side", type=int, default=512, metavar="N", help="shrink larger images to N pixels (default 512)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run_filters)

    c = sub.add_parser(
        "convolve", help="convolve an image with a kernel given on the command line",
        description="Correlate each channel of IMAGE with KERNEL (zero padding, output the size of the input; "
                    "the CNN convention: the kernel is not flipped) and save the result as a PNG.")
    c.add_argument("image", metavar="IMAGE", help=IMAGE_HELP + "; each channel is convolved")
    c.add_argument("--kernel", required=True, metavar="JSON", help="rows as JSON, e.g. '[[0,-1,0],[-1,5,-1],[0,-1,0]]'")
    c.add_argument("--out", metavar="FILE.png", help="output file (default: IMAGE's name + _convolved.png, here: chelsea_convolved.png "
                        "for skimage:chelsea)")
    c.add_argument("--grey", action="store_true", help="convert to grey first")
    c.add_argument("--max-side", type=int, default=MAX_IMAGE_SIDE, metavar="N",
                   help=f"refuse images with a side longer than N pixels (default and most {MAX_IMAGE_SIDE})")
    c.add_argument("--boundary", choices=("zero", "reflect", "circular"), default="zero",
                   help="how pixels outside the image are filled (default zero)")
    c.add_argument("--force", action="store_true", help="replace an existing output file")
    c.set_defaults(func=run_convolve)

    y = sub.add_parser(
        "pyramid", help="draw an image's Gaussian and Laplacian pyramids",
        description="Build the Gaussian pyramid of IMAGE (blur with Burt & Adelson's 5-tap binomial kernel, keep "
                    "every other pixel) and its Laplacian pyramid (each level minus the expansion of the next, "
                    "the coarsest level kept), check that the Laplacian pyramid reconstructs the image, and save "
                    "both pyramids in one PNG.")
    y.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    y.add_argument("--levels", type=int, default=4, metavar="N", help="number of levels, the image included (default 4)")
    y.add_argument("--out", default="pyramid", metavar="DIR",
                   help="folder for IMAGE's name + _pyramid.png (default: pyramid), or a file name ending in .png")
    y.add_argument("--max-side", type=int, default=512, metavar="N", help="shrink larger images to N pixels (default 512)")
    y.add_argument("--grey", action="store_true", help="convert to grey first")
    y.add_argument("--force", action="store_true", help="replace an existing output file")
    y.set_defaults(func=run_pyramid)


    from cnnlab.foundations.pixel_correlation import DEFAULT_PHOTOS

    q = sub.add_parser(
        "pixel-correlation", help="correlation of pixel values against their distance in photographs",
        description="Measure the correlation of the grey values of pixel pairs d pixels apart (rows and columns) "
                    "in each IMAGE, for distances from 1 to --max-distance, fit a power law to the mean curve "
                    "and to 1 - correlation, print them and draw both in a log-log PNG (lecture 001: \"statistical "
                    "dependences between pixels decay as a power law of distance\").")
    q.add_argument("images", nargs="*", metavar="IMAGE",
                   help=IMAGE_HELP + f"; read as grey (default: {' '.join('skimage:' + n for n in DEFAULT_PHOTOS)})")
    q.add_argument("--max-distance", type=int, default=128, metavar="D",
                   help="the largest distance in pixels, below every image's shorter side (default 128)")
    q.add_argument("--out", default="pixel-correlation.png", metavar="FILE.png",
                   help="output PNG (default: pixel-correlation.png), or a folder to put it in")
    q.add_argument("--max-side", type=int, default=512, metavar="N",
                   help="shrink larger images to N pixels (default 512)")
    q.add_argument("--force", action="store_true", help="replace an existing output file")
    q.set_defaults(func=run_pixel_correlation)


def _check_new(path: Path, force: bool) -> None:
    from cnnlab.safeio import check_output_path

    if not path.exists():  # a path under a file, an unwritable folder: said now, in words
        check_output_path(path, what="--out", directory=False)
    if path.exists() and not force:
        raise ConfigError(f"output {path} exists; pass --force to replace it")
    if path.suffix.lower() != ".png":
        raise ConfigError(f"output {path} must end in .png")


def _check_max_side(max_side: int) -> None:
    if max_side < 8:
        raise ConfigError(f"--max-side must be at least 8, got {max_side}")
    if max_side > MAX_IMAGE_SIDE:  # the image is decoded and filtered in float64 at this size
        raise ConfigError(f"--max-side must be at most {MAX_IMAGE_SIDE}, got {max_side}")


def _grid_output(args: argparse.Namespace, default_name: str) -> Path:
    """The PNG that ``--out`` names (a .png file, or a folder that gets ``default_name``), checked new;
    ``--max-side`` checked."""
    _check_max_side(args.max_side)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        out = out / default_name
    _check_new(out, args.force)
    return out


def run_filters(args: argparse.Namespace) -> int:
    from cnnlab.foundations import filter_responses, kernel_rank, load_image
    from cnnlab.viz.filters import plot_filter_grid

    out = _grid_output(args, f"filters_{args.bank}.png")
    image = load_image(args.image, grey=True, max_side=args.max_side)
    kernels, responses = filter_responses(image, args.bank)
    plot_filter_grid(image, kernels, responses, out, title=f"{Path(args.image).name}: {args.bank} filters")
    print(f"{'filter':<26} {'size':>5} {'sum':>7} {'rank':>4} {'response min..max':>20}")
    for name, k in kernels.items():
        r = responses[name]
        size = f"{k.shape[0]}x{k.shape[1]}"
        print(f"{name:<26} {size:>5} {k.sum() + 0.0:7.3f} {kernel_rank(k):4d} "
              f"{r.min():10.3f}..{r.max():<8.3f}")
    print(f"rank 1 = separable (a column pass then a row pass). Grid of {len(kernels)} responses on "
          f"{image.shape[1]}x{image.shape[0]} pixels saved to {out}")
    return 0


def run_convolve(args: argparse.Namespace) -> int:
    from cnnlab.foundations import apply_kernel, image_stem, load_image, parse_kernel
    from cnnlab.viz.filters import save_image

    kernel = parse_kernel(args.kernel)
    _check_max_side(args.max_side)
    out = Path(args.out) if args.out else Path(f"{image_stem(args.image)}_convolved.png")
    _check_new(out, args.force)
    image = load_image(args.image, grey=args.grey, refuse_side=args.max_side)
    result = apply_kernel(image, kernel, boundary=args.boundary)
    save_image(result, out)
    clipped = float(((result < 0) | (result > 1)).mean())
    print(f"{kernel.shape[0]}x{kernel.shape[1]} kernel (sum {kernel.sum():g}) applied to {args.image} "
          f"({image.shape[1]}x{image.shape[0]}); values {result.min():.3f}..{result.max():.3f}, "
          f"{100 * clipped:.1f}% clipped to [0, 1]; saved to {out}")
    return 0


def run_pyramid(args: argparse.Namespace) -> int:
    from cnnlab.foundations import gaussian_pyramid, image_stem, laplacian_pyramid, load_image, reconstruct_laplacian
    from cnnlab.viz.filters import plot_pyramid

    if args.levels < 2:
        raise ConfigError(f"--levels must be at least 2 (the image and one coarser level), got {args.levels}")
    out = _grid_output(args, f"{image_stem(args.image)}_pyramid.png")
    image = load_image(args.image, grey=args.grey, max_side=args.max_side)
    gauss = gaussian_pyramid(image, args.levels)
    lap = laplacian_pyramid(image, args.levels)
    error = float(np.abs(reconstruct_laplacian(lap) - image).max())
    plot_pyramid(gauss, lap, out, title=f"{Path(args.image).name}: Gaussian pyramid (top), Laplacian pyramid (bottom)")
    print(f"{'level':<6} {'size':>9} {'Laplacian level':<28} {'mean |L|':>8}")
    for i, (g, band) in enumerate(zip(gauss, lap)):
        what = f"G{i} - up(G{i + 1})" if i < len(lap) - 1 else f"G{i} (residual)"
        print(f"{i:<6} {f'{g.shape[0]}x{g.shape[1]}':>9} {what:<28} {np.abs(band).mean():8.4f}")
    if len(gauss) < args.levels:
        print(f"stopped at {len(gauss)} levels: the last is one pixel high or wide")
    print(f"the Laplacian pyramid reconstructs the image to {error:.1e} (largest pixel error); saved to {out}")
    return 0


def run_pixel_correlation(args: argparse.Namespace) -> int:
    from cnnlab.foundations import (DEFAULT_PHOTOS, fit_power_law, image_stem, load_image, log_distances,
                                    pixel_correlation)
    from cnnlab.viz.filters import plot_pixel_correlation

    if args.max_distance < 2:
        raise ConfigError(f"--max-distance must be at least 2 (a curve needs two distances), got {args.max_distance}")
    out = _grid_output(args, "pixel-correlation.png")
    sources = args.images or [f"skimage:{n}" for n in DEFAULT_PHOTOS]
    images = {image_stem(src): load_image(src, grey=True, max_side=args.max_side) for src in sources}
    shortest = min(min(img.shape) for img in images.values())
    if not 2 <= args.max_distance < shortest:
        raise ConfigError(f"--max-distance must be in 2..{shortest - 1} (the shortest image side is {shortest} "
                          f"pixels), got {args.max_distance}")
    d = log_distances(args.max_distance)
    curves = {}
    for name, img in images.items():
        try:
            curves[name] = pixel_correlation(img, d)
        except ValueError as err:
            raise ConfigError(f"{name}: {err}") from None
    mean = np.mean(np.stack(list(curves.values())), axis=0)
    fits = (fit_power_law(d, mean), fit_power_law(d, 1.0 - mean))
    print(f"{'distance':>8} " + " ".join(f"{n[:12]:>12}" for n in curves) + f" {'mean':>8}")
    for i, dist in enumerate(d):
        print(f"{dist:>8} " + " ".join(f"{c[i]:12.3f}" for c in curves.values()) + f" {mean[i]:8.3f}")
    print(f"mean correlation ~ {fits[0].a:.3f} d^{fits[0].exponent:.3f} (R^2 {fits[0].r2:.3f}); "
          f"1 - correlation ~ {fits[1].a:.3f} d^{fits[1].exponent:.3f} (R^2 {fits[1].r2:.3f}), "
          f"d from 1 to {d[-1]} pixels")
    title = f"pixel correlation against distance, {len(curves)} photograph{'s' * (len(curves) > 1)} (grey)"
    plot_pixel_correlation(d, curves, fits, out, title=title)
    print(f"saved to {out}")
    return 0
