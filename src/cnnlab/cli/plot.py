"""``cnnlab plot``: charts of published results, drawn by :mod:`cnnlab.viz.results_plots`."""

from __future__ import annotations

import argparse
from pathlib import Path

CHARTS = ("ilsvrc",)

EPILOG = """\
examples:
  cnnlab plot ilsvrc --out ilsvrc.png     the ILSVRC winners: top-5 error and depth per year
  cnnlab plot ilsvrc --out ilsvrc.svg
"""


def register(sub: argparse._SubParsersAction) -> None:
    from cnnlab.cli.options import guard_outputs

    p = sub.add_parser(
        "plot", help="charts of published results: the ILSVRC 'revolution of depth'",
        description="Draw a chart of the published figures cnnlab holds (cnnlab.results), with their sources.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("chart", choices=CHARTS, metavar="CHART",
                   help="ilsvrc: the ILSVRC classification winners 2010-2015, top-5 error and layers")
    p.add_argument("--out", required=True, help="the image file to write: .png or .svg")
    guard_outputs(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.atomic import check_replace
    from cnnlab.errors import ConfigError
    from cnnlab.safeio import check_output_path
    from cnnlab.viz.results_plots import FIGURE_FORMATS, plot_ilsvrc

    out = Path(args.out)
    if out.suffix.lower() not in FIGURE_FORMATS:
        raise ConfigError(f"--out {out}: give a file ending in {' or '.join(FIGURE_FORMATS)} (the format follows the suffix)")
    check_output_path(out, what="--out", directory=False)
    check_replace(out)  # a file cnnlab did not write is refused before anything is drawn
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_ilsvrc(out)
    print(f"wrote {out}")
    return 0
