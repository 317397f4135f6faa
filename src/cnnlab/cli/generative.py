"""``cnnlab sample``: a new grid of images from a trained VAE's prior or a trained GAN, and for a GAN
a latent interpolation."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.errors import ConfigError
from cnnlab.cli.options import bounded_int, seed_int  # one parser of each kind for every command
from cnnlab.limits import MAX_SAMPLES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="draw new images from a trained VAE or GAN",
                       description="Decode draws z ~ N(0, I) with the selected weights of a `cnnlab train` run of "
                                   "vae_mlp, vae_conv, dcgan or cdcgan, and write them as one PNG grid; for a GAN "
                                   "also a second grid, OUT-interpolation.png: rows of images generated along "
                                   "lines between two draws of z.")
    p.add_argument("run", help="the run folder (config.json + model.safetensors)")
    p.add_argument("--n", type=bounded_int(1, MAX_SAMPLES), default=64,
                   help=f"how many images (default 64, at most {MAX_SAMPLES:,})")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--out", help="PNG to write (default RUN/samples-seed<SEED>-n<N>.png); never overwritten")
    p.add_argument("--rows", type=bounded_int(1, 64), default=8, help="GAN: rows of the interpolation (default 8)")
    p.add_argument("--steps", type=bounded_int(2, 64), default=10, help="GAN: images per row (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.training.gan import interpolate_run
    from cnnlab.training.generative import sample_run
    from cnnlab.viz.generative import save_grid

    out = Path(args.out) if args.out else Path(args.run) / f"samples-seed{args.seed}-n{args.n}.png"
    if out.exists():
        raise ConfigError(f"{out} exists; choose another --out (or --seed)")
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: the grid is written as PNG; give a .png name")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: no folder {out.parent}")
    images, title = sample_run(args.run, n=args.n, seed=args.seed)
    walk = interpolate_run(args.run, rows=args.rows, steps=args.steps, seed=args.seed)  # None: not a GAN
    walk_out = out.with_name(f"{out.stem}-interpolation.png")
    if walk is not None and walk_out.exists():
        raise ConfigError(f"{walk_out} exists; choose another --out (or --seed)")
    save_grid(images, out, title=title)
    print(f"{args.n} samples written to {out}")
    if walk is not None:
        save_grid(walk[0], walk_out, title=walk[1], ncol=args.steps)
        print(f"an interpolation of {args.rows} rows of {args.steps} written to {walk_out}")
    return 0
