"""Render an experiment's ``report.md`` from its results dict (the content of ``results.json``).

The report reads, in order: the claim and where it comes from, the verdict, the setup, the tables,
the plots, how the verdict was computed (every criterion with its measurement), notes on departures
from the paper, and how to reproduce the run. Nothing here measures or decides anything: the
numbers, criteria and verdict are all in the results dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Plot", "render_report", "markdown_table", "format_cell", "criterion_met"]


@dataclass(frozen=True)
class Plot:
    """A PNG written into an experiment's out directory, with the caption the report shows under it."""

    file: str
    caption: str

_STATUS = {True: "reproduced", False: "not reproduced", "partly": "partly reproduced", "not measured": "not measured"}


def format_cell(value: Any) -> str:
    """A table cell: floats with 4 significant decimals, ints with thousands separators."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4f}".rstrip("0").rstrip(".")
    if value is None:
        return "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def criterion_met(criterion: Mapping[str, Any]) -> str:
    """The "met" cell of a criterion from results.json: "yes", "no", or "within noise" when a
    multi-seed comparison could not tell the arms apart (its ``status``)."""
    if criterion.get("passed"):
        return "yes"
    return str(criterion.get("status") or "no")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; numbers right-aligned."""
    numeric = [
        all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows if r[i] is not None)
        and any(r[i] is not None for r in rows)
        for i in range(len(columns))
    ]
    head = "| " + " | ".join(format_cell(c) for c in columns) + " |"
    rule = "|" + "|".join("---:" if num else "---" for num in numeric) + "|"
    body = ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def render_report(results: Mapping[str, Any]) -> str:
    """The markdown report of one experiment run."""
    r = results
    status = _STATUS[r["reproduced"]]
    lines: list[str] = [
        f"# {r['title']}",
        "",
        *(["> **Tiny scale: these numbers test the plumbing only.** They say nothing about the claim; "
           "run `--scale quick` or `full` to measure it.", ""] if r.get("scale") == "tiny" else []),
        f"Experiment `{r['experiment']}`, scale `{r['scale']}`, seed {r['seed']}, data `{r['data']}`.",
        "",
        "## The claim",
        "",
        f"> {r['claim']}",
        "",
        f"Source: {r['source']}; paper: {r['paper']}.",
        "",
        f"## Verdict: {status}",
        "",
        r["verdict"],
        "",
        "## Setup",
        "",
        *[f"- {item}" for item in r.get("setup", [])],
        f"- Wall time: {r.get('seconds', 0):.0f} s on {r.get('device', 'cpu')} (precision {r.get('precision')}).",
        "",
        "## Results",
        "",
    ]
    for table in r.get("tables", []):
        lines += [f"### {table['title']}", "", markdown_table(table["columns"], table["rows"]), ""]
    plots = r.get("plots", [])
    if plots:
        lines += ["## Plots", ""]
        for plot in plots:
            lines += [f"![{plot['caption']}]({plot['file']})", "", f"*{plot['caption']}*", ""]
    lines += [
        "## How the verdict is computed",
        "",
        "Each criterion below was fixed before the run; the claim counts as reproduced when every "
        "criterion is met, partly reproduced when some are, and not reproduced when none is.",
        "",
        markdown_table(
            ("criterion", "measured", "met"),
            [(c["description"], c["finding"], criterion_met(c)) for c in r["criteria"]],
        ),
        "",
    ]
    notes = r.get("notes", [])
    if notes:
        lines += ["## Departures from the paper and caveats", "", *[f"- {n}" for n in notes], ""]
    v = r.get("versions", {})
    lines += [
        "## Reproduce",
        "",
        f"```bash\n{r.get('command', '')}\n```",
        "",
        "Versions: "
        + ", ".join(f"{k} {v[k]}" for k in ("cnnlab", "torch", "torchvision", "python") if v.get(k))
        + (f", git {v['git_commit'][:10]}" if v.get("git_commit") else "")
        + f". Started {r.get('started', '?')}. Every number is in `results.json` next to this report.",
        "",
    ]
    return "\n".join(lines)
