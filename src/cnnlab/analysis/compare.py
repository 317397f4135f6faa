"""Several models side by side: params, MACs, activation memory, depth, receptive field.

In the spirit of Canziani, Paszke & Culurciello, "An Analysis of Deep Neural Network Models for
Practical Applications" (2017), which the lectures show ("Comparing complexity...").
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.analysis.core import analyze
from cnnlab.analysis.result import CONVENTIONS, _axes, _num
from cnnlab.errors import ConfigError

__all__ = ["Comparison", "compare"]

_COLUMNS = ("model", "input_size", "params", "macs", "flops", "activations", "activation_bytes", "depth",
            "receptive_field")


@dataclass(frozen=True)
class Comparison:
    """One row per model (dicts with the keys of ``_COLUMNS``), in the order given."""

    rows: tuple[dict, ...]
    batch_size: int

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps({"batch_size": self.batch_size, "conventions": dict(CONVENTIONS),
                           "models": list(self.rows)}, indent=indent)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(_COLUMNS)
        for r in self.rows:
            w.writerow(["x".join(map(str, r[c])) if isinstance(r[c], list) else r[c] for c in _COLUMNS])
        return buf.getvalue()

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        header = ["model", "input", "params (M)", "GMACs", "activations (M)", "act. memory (MB)", "depth", "RF"]
        body = [[r["model"], "x".join(map(str, r["input_size"])), f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e9:.3f}",
                 f"{r['activations'] / 1e6:.2f}", f"{r['activation_bytes'] / 1e6:.1f}", str(r["depth"]),
                 _axes(r["receptive_field"])] for r in self.rows]
        return header, body

    def table(self) -> str:
        header, body = self._cells()
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                 for row in [header, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += ["", f"batch {self.batch_size}; MACs = multiply-accumulates (torchvision's 'GFLOPS'), "
                      "FLOPs = 2 x MACs; activation memory = forward values incl. the input; "
                      "depth = weight layers on the longest path; "
                      "RF = receptive field of the last feature map before global pooling"]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        header, body = self._cells()
        out = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        out += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def compare(
    models: Sequence[nn.Module | str],
    input_size: tuple[int, int, int] | None = None,
    *,
    batch_size: int = 1,
    dtype: torch.dtype | str = torch.float32,
) -> Comparison:
    """Analyze each model (see :func:`cnnlab.analyze`) and keep its totals, one row per model."""
    if isinstance(models, (str, nn.Module)) or len(models) == 0:
        raise ConfigError("compare needs a list of one or more models")
    rows = []
    for m in models:
        a = analyze(m, input_size, batch_size=batch_size, dtype=dtype)
        t = a.total
        rows.append(dict(
            model=a.model, input_size=list(a.input_size), params=t.params, macs=t.macs, flops=t.flops,
            activations=t.activations, activation_bytes=t.activation_bytes, depth=t.depth,
            receptive_field=None if t.receptive_field is None else [_num(v) for v in t.receptive_field],
        ))
    return Comparison(rows=tuple(rows), batch_size=batch_size)
