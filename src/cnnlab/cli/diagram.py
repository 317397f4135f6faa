"""``cnnlab diagram``: a zoo net's architecture as a block diagram, traced by
:mod:`cnnlab.analysis.graph` and drawn by :mod:`cnnlab.viz.diagram` (Graphviz)."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  cnnlab diagram googlenet_2014 --out googlenet.svg     inception modules with their four branches
  cnnlab diagram resnet50 --out resnet50.png            bottleneck blocks with their skip arrows
  cnnlab diagram vgg16 --out vgg16.dot                  the Graphviz text only (no `dot` program needed)

Rendering SVG, PNG or PDF needs Graphviz: `pip install graphviz` and its `dot` program
(`apt-get install graphviz`, `brew install graphviz`).
"""


def register(sub: argparse._SubParsersAction) -> None:
    from cnnlab.cli.options import capped_int, guard_outputs

    p = sub.add_parser(
        "diagram", help="draw a zoo net's architecture: layers, Inception branches, residual skips",
        description="Draw MODEL layer by layer as the lectures do: each layer with its kernel, stride and "
                    "channels and the analyzer's output shape; an Inception module as a box of parallel "
                    "branches, a residual block as its main path with a skip arrow.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", metavar="MODEL", help="a zoo model (`cnnlab list`)")
    p.add_argument("--out", required=True, help="the file to write: .svg, .png, .pdf, or .dot/.gv (Graphviz text)")
    p.add_argument("--size", type=capped_int("MAX_SIDE"), help="input side (default: the model's own)")
    p.add_argument("--model-set", action="append", metavar="FIELD=VALUE", help="a model config option")
    guard_outputs(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.graph import layer_graph
    from cnnlab.atomic import check_replace
    from cnnlab.cli.options import pairs
    from cnnlab.errors import ConfigError
    from cnnlab.models import model_info
    from cnnlab.safeio import check_output_path
    from cnnlab.viz.diagram import DIAGRAM_FORMATS, dot_available, render_diagram

    out = Path(args.out)
    fmt = DIAGRAM_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {out}: give a file ending in {', '.join(DIAGRAM_FORMATS)} (the format follows the suffix)")
    info = model_info(args.model)  # an unknown name fails here, with the closest names
    if fmt != "dot" and not dot_available():
        raise ConfigError("rendering a diagram needs Graphviz: the Python package (pip install graphviz) and "
                          "its dot program (apt-get install graphviz); a .dot file needs only the package")
    check_output_path(out, what="--out", directory=False)
    check_replace(out)
    size = None if args.size is None else (info.in_chans, args.size, args.size)
    graph = layer_graph(args.model, input_size=size, config=pairs(args.model_set, "--model-set"))
    out.parent.mkdir(parents=True, exist_ok=True)
    render_diagram(graph, out)
    print(f"wrote {out} ({len(graph.nodes)} nodes)")
    return 0
