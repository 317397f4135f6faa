"""``cnnlab list``: the model zoo."""

from __future__ import annotations

import argparse
import json

from cnnlab.models.registry import describe_models


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the model zoo", description="List the registered models.")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern (default: all)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = describe_models(args.pattern)
    if args.format == "json":
        from cnnlab.results import published_for

        rows = [dict(r, published=published_for(r["name"])) for r in rows]
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no model matches {args.pattern!r}")
        return 1
    header = ("name", "family", "paper", "params", "input")
    table = [
        (r["name"], r["family"], r["paper"], f"{r['params']:,}", "x".join(map(str, r["input_size"])))
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table)]
    for i, line in enumerate([header, *table]):
        print("  ".join(str(c).ljust(w) if j != 3 else str(c).rjust(w) for j, (c, w) in enumerate(zip(line, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0
