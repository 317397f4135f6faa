"""``cnnlab data``: the data sets ``--data`` accepts, their options and what each needs."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list the data sets you can train and evaluate on",
                       description="The data sets --data accepts: what each is, its --data-set options, and "
                                   "what it needs before it loads (files, --download, or nothing).")
    p.add_argument("--format", choices=("table", "json"), default="table", help="a table (default) or JSON")
    p.add_argument("--data-root", default="data", metavar="DIR",
                   help="where downloaded data sets are looked for (default: data; also $CNNLAB_DATA)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.data.datasets import NEEDS, dataset_info, dataset_location, list_datasets

    rows = []
    for name in list_datasets():
        info = dataset_info(name)
        found = None if name == "imagefolder:PATH" else dataset_location(name, args.data_root)
        rows.append({"name": name, "description": info.description, "options": list(info.options),
                     "downloads": info.downloads, "needs": NEEDS.get(name, ""), "found": found})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['description']}")
        pad = " " * (width + 2)
        if r["options"]:
            print(f"{pad}options: " + ", ".join(f"--data-set {o}=..." for o in r["options"]))
        if r["found"] is not None or r["downloads"]:
            print(f"{pad}found: {r['found'] or 'no'}")
        print(f"{pad}needs: {r['needs'] or '-'}")
    return 0
