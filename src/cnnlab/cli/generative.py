"""``cnnlab sample``: a new grid of images from a trained VAE's prior."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.errors import ConfigError
from cnnlab.cli.options import bounded_int, seed_int  # one parser of each kind for every command
from cnnlab.limits import MAX_SAMPLES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="draw new images from a trained VAE",
                       description="Decode draws z ~ N(0, I) with the selected weights of a `cnnlab train` run of "
                                   "vae_mlp or vae_conv, and write them as one PNG grid.")
    p.add_argument("run", help="the run folder (config.json + model.safetensors)")
    p.add_argument("--n", type=bounded_int(1, MAX_SAMPLES), default=64,
                   help=f"how many images (default 64, at most {MAX_SAMPLES:,})")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--out", help="PNG to write (default RUN/samples-seed<SEED>-n<N>.png); never overwritten")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    save_grid(images, out, title=title)
    print(f"{args.n} samples written to {out}")
    return 0
