"""``cnnlab report``: a self-contained HTML page of a run, an experiment, or a folder of them."""

from __future__ import annotations

import argparse

from cnnlab.cli.options import guard_outputs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="an HTML page of a run, an experiment or a folder of them",
                       description="Write a self-contained HTML report (no network needed: pictures, styles and "
                                   "scripts inline) from the files a run or experiment wrote. A folder of runs gets "
                                   "an index page with a sortable table, and a page for each.")
    p.add_argument("path", metavar="PATH", help="a run folder, an experiment folder, or a folder holding them")
    p.add_argument("--out", metavar="FILE.html",
                   help="the page to write (default PATH/report.html, or PATH/index.html for a folder of runs)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    guard_outputs(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.safeio import check_output_path
    from cnnlab.viz.html_report import write_report

    if args.out is not None:  # a folder, a path under a file, an unwritable place: refused before the work
        check_output_path(args.out, what="--out", directory=False)
    written = write_report(args.path, out=args.out)
    print(f"wrote {written[0]}" + (f" and {len(written) - 1} page(s) it links to" if len(written) > 1 else ""))
    if args.open:
        import webbrowser

        webbrowser.open(written[0].resolve().as_uri())
    return 0
