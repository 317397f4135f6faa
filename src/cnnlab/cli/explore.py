"""``cnnlab explore``: serve a page, on 127.0.0.1 only, that shows a trained network at work on what you draw."""

from __future__ import annotations

import argparse

from cnnlab.cli.options import bounded_int, threads_option
from cnnlab.errors import ConfigError

MAX_PATCH_IMAGES = 10_000  # each stage's first search passes these through the network once


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="explore a trained network in the browser (draw, upload, look inside)",
                       description="Serve a local page (127.0.0.1 only) to draw a digit or upload an image and "
                                   "watch the network respond: its top classes, each stage's feature maps, one "
                                   "unit's filter, map, receptive field and top patches in the run's data, and "
                                   "CAM / Grad-CAM / saliency / occlusion for a class. Two --run give two "
                                   "networks side by side. Ctrl-C stops it.")
    p.add_argument("--run", action="append", metavar="DIR",
                   help="a finished run folder; give it twice to compare two runs on the same input")
    p.add_argument("--model", help="a zoo model: alone (random weights) or with --weights")
    p.add_argument("--weights", metavar="FILE", help="a weights file (.safetensors or .pth) for --model, or of a run")
    p.add_argument("--port", type=bounded_int(0, 65535), default=0,
                   help="the port on 127.0.0.1 (default 0: a free one, printed)")
    p.add_argument("--patch-images", type=bounded_int(1, MAX_PATCH_IMAGES), default=1000,
                   help="images of the run's validation split searched for a unit's top patches (default 1000)")
    p.add_argument("--no-cache", action="store_true",
                   help="keep top patches in memory only (default: cached in RUN/explore-cache/)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument("--log-requests", action="store_true", help="print every request the server answers")
    threads_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.explore import load_explorers, make_server

    runs = args.run or []
    if len(runs) > 2:
        raise ConfigError(f"--run: at most two runs side by side, got {len(runs)}")
    if not runs and not args.model and not args.weights:
        raise ConfigError("say which network: --run DIR (twice to compare), or --model NAME [--weights FILE]")
    explorers = load_explorers(runs=runs, model=args.model, weights=args.weights, cache=not args.no_cache,
                               patch_images=args.patch_images, log=lambda m: print(f"cnnlab explore: {m}"))
    try:
        server = make_server(explorers, port=args.port, quiet=not args.log_requests)
    except OSError as err:
        raise ConfigError(f"--port {args.port}: cannot listen on 127.0.0.1 ({err.strerror or err})") from None
    print(f"cnnlab explore: {' vs '.join(e.label for e in explorers)} at {server.url} (Ctrl-C stops it)", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("cnnlab explore: stopped")
    finally:
        server.server_close()
    return 0
