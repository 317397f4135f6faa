"""``cnnlab list``: the model zoo."""

from __future__ import annotations

import argparse
import json

from cnnlab.models.registry import describe_models


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the models you can build, train and analyse",
                       description="List the registered models: name, family, paper, parameters, input size.")
    p.add_argument("pattern", nargs="?", default="*",
                   help="a part of the name ('resnet') or a shell-style pattern ('vgg1?_bn'); default: all")
    p.add_argument("--family", help="only this family (alexnet, vgg, resnet, resnet_cifar, ...)")
    p.add_argument("--macs", action="store_true",
                   help="also count each model's multiply-adds for one image at its input size (the analyzer, "
                        "on the meta device: a fraction of a second per model)")
    p.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table",
                   help="a table (default), markdown, CSV or JSON (as `cnnlab summary`)")
    p.set_defaults(func=run)


def _pattern(text: str) -> str:
    """A bare word matches anywhere in the name; a pattern with * ? [ is matched as written."""
    return text if any(c in text for c in "*?[") else f"*{text}*"


def _with_macs(rows: list[dict]) -> list[dict]:
    from cnnlab.analysis import analyze

    return [dict(r, macs=int(analyze(r["name"], (1, *r["input_size"])).total.macs)) for r in rows]


def run(args: argparse.Namespace) -> int:
    rows = describe_models(_pattern(args.pattern), family=args.family)
    if args.macs:
        rows = _with_macs(rows)
    if args.format == "json":
        from cnnlab.results import published_for

        rows = [dict(r, published=published_for(r["name"])) for r in rows]
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        from cnnlab.errors import UnknownNameError
        from cnnlab.models.registry import list_models, model_info

        known = sorted({model_info(n).family for n in list_models()})
        if args.family and args.family not in known:
            raise UnknownNameError(f"unknown family {args.family!r}; families: {', '.join(known)}")
        print(f"no model matches {args.pattern!r}" + (f" in family {args.family!r}" if args.family else ""))
        return 1
    header = ("name", "family", "paper", "params", "input") + (("MACs",) if args.macs else ())
    if args.format == "csv":
        import csv
        import sys

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows((r["name"], r["family"], r["paper"], r["params"], "x".join(map(str, r["input_size"])),
                          *((r["macs"],) if args.macs else ())) for r in rows)
        return 0
    table = [
        (r["name"], r["family"], r["paper"], f"{r['params']:,}", "x".join(map(str, r["input_size"])),
         *((f"{r['macs'] / 1e9:.3f} G",) if args.macs else ()))
        for r in rows
    ]
    if args.format == "markdown":
        print("| " + " | ".join(header) + " |\n|" + "|".join(["---"] * 3 + ["---:", "---"] + ["---:"] * args.macs) + "|")
        for line in table:
            print("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |")
        return 0
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table)]
    for i, line in enumerate([header, *table]):
        print("  ".join(str(c).ljust(w) if j not in (3, 5) else str(c).rjust(w)
                        for j, (c, w) in enumerate(zip(line, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0
