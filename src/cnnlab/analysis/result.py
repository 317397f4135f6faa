"""What :func:`cnnlab.analyze` returns: per-layer rows, totals, and their renderings.

Counting conventions (printed with every rendering, see ``CONVENTIONS``):

- ``macs``: multiply-accumulates of convolutions and matrix products, the figure the papers and
  torchvision's "GFLOPS" column give. ``flops = 2 * macs`` (one multiply and one add), the way
  ``torch.utils.flop_counter.FlopCounterMode`` counts them. Biases, normalisation, activations,
  pooling and additions are not counted, as in the papers and torchvision.
- ``params``: every parameter, biases included (what PyTorch and torchvision count); ``weights``:
  the parameters in tensors of two or more dimensions (kernels and fully-connected matrices), the
  count of the lectures' tables, which leave out biases.
- ``activations``: the number of values a layer writes to a new tensor (batch included). Element-wise
  activation functions and dropout count 0 because they can run in place (Caffe and torchvision
  apply ReLU in place; the lecture's VGG-16 table counts CONV and POOL outputs, not ReLU outputs);
  views (flatten) and in-place operations count 0; a concatenation counts its output, since
  ``torch.cat`` writes a new tensor next to its inputs. The total adds the input image, as the
  lecture does.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import asdict, dataclass, field, replace

__all__ = ["LayerRow", "Totals", "Analysis", "CONVENTIONS"]

CONVENTIONS = {
    "macs": "multiply-accumulates of convolutions and matrix products (torchvision's 'GFLOPS' column)",
    "flops": "2 x macs (a multiply and an add), as torch.utils.flop_counter counts them",
    "params": "all parameters, biases included; 'weights' leaves out biases and other 1-d tensors",
    "activations": "values written to new tensors (batch included); in-place activations, dropout "
                   "and views count 0; the total includes the input",
    "receptive_field": "per image axis (height, width), in input pixels; jump = distance between "
                       "neighbouring units; start = centre of the first unit, pixel i covering [i, i+1)",
}


@dataclass(frozen=True)
class LayerRow:
    """One executed layer: a leaf module call, or a tensor operation outside any leaf module."""

    name: str  # module name in named_modules() (":2" for a second call), or "<module>.<op>" for an op
    type: str  # module class ("Conv2d") or aten operation ("cat", "add_")
    output_shape: tuple[int, ...]  # batch included
    params: int  # counted at a module's first call
    weights: int  # params without biases (tensors of >= 2 dims), the lectures' count
    macs: int
    flops: int
    activations: int
    activation_bytes: int
    receptive_field: tuple[float, ...] | None  # per image axis (H, W); None if not image-derived
    jump: tuple[float | None, ...] | None  # None per axis once collapsed (after global pooling)
    start: tuple[float, ...] | None
    depth: int  # longest chain of conv/linear layers from the input to this output
    source: str = "module"  # "module": a leaf module's call; "op": a tensor operation outside leaf modules

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        for key in ("receptive_field", "jump", "start"):
            if d[key] is not None:
                d[key] = [_num(v) for v in d[key]]
        return d


@dataclass(frozen=True)
class Totals:
    params: int  # every parameter of the model once, including modules the forward does not run
    trainable_params: int
    weights: int
    macs: int
    flops: int
    activations: int  # input + every row's activations
    activation_bytes: int
    depth: int  # weight layers on the longest path (VGG-16: 16, ResNet-50: 50, GoogLeNet: 22)
    receptive_field: tuple[float, ...] | None  # of the last feature map before global pooling/flatten


@dataclass(frozen=True)
class Analysis:
    model: str
    input_size: tuple[int, int, int]
    batch_size: int
    dtype: str
    layers: tuple[LayerRow, ...]
    total: Totals
    module_types: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    notes: tuple[str, ...] = ()

    # ------------------------------------------------------------------ structure
    def fold(self, depth: int | None) -> Analysis:
        """Rows folded to module-name depth ``depth`` (``layer1.0.conv1`` has depth 3).

        Consecutive rows under the same depth-``depth`` module become one row named after it: sums of
        params, weights, MACs, FLOPs and activations; shape, receptive field, jump and start of its
        last row (for an Inception block that is the concatenation, for a residual block the
        activation after the addition). Totals are unchanged.
        """
        if depth is None:
            return self
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        groups: list[tuple[str, list[LayerRow]]] = []
        for row in self.layers:
            parts = row.name.split(":")[0].split(".")
            key = ".".join(parts[:depth]) if len(parts) > depth else None
            if key is not None and groups and groups[-1][0] == key:
                groups[-1][1].append(row)
            else:
                groups.append((key if key is not None else "\0" + row.name, [row]))
        seen: dict[str, int] = {}
        rows = []
        for key, members in groups:
            if key.startswith("\0"):
                rows.append(members[0])
                continue
            seen[key] = seen.get(key, 0) + 1
            last = members[-1]
            rows.append(replace(
                last,
                name=key if seen[key] == 1 else f"{key}:{seen[key]}",
                type=self.module_types.get(key, "Module"),
                source="module",
                params=sum(r.params for r in members),
                weights=sum(r.weights for r in members),
                macs=sum(r.macs for r in members),
                flops=sum(r.flops for r in members),
                activations=sum(r.activations for r in members),
                activation_bytes=sum(r.activation_bytes for r in members),
            ))
        return replace(self, layers=tuple(rows))

    # ------------------------------------------------------------------ renderings
    def to_dict(self) -> dict:
        t = self.total
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "conventions": dict(CONVENTIONS),
            "layers": [r.to_dict() for r in self.layers],
            "total": {
                "params": t.params,
                "trainable_params": t.trainable_params,
                "weights": t.weights,
                "macs": t.macs,
                "flops": t.flops,
                "activations": t.activations,
                "activation_bytes": t.activation_bytes,
                "depth": t.depth,
                "receptive_field": None if t.receptive_field is None else [_num(v) for v in t.receptive_field],
            },
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        """One line per layer, then a line named ``total``; fields as in :meth:`to_json`."""
        buf = io.StringIO()
        cols = ["name", "type", "output_shape", "params", "weights", "macs", "flops", "activations",
                "activation_bytes", "receptive_field", "jump", "start", "depth", "source"]
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.layers:
            d = r.to_dict()
            w.writerow([_csv_cell(d[c]) for c in cols])
        t = self.total
        w.writerow(["total", "", "x".join(map(str, (self.batch_size, *self.input_size))), t.params, t.weights,
                    t.macs, t.flops, t.activations, t.activation_bytes,
                    _csv_cell(None if t.receptive_field is None else [_num(v) for v in t.receptive_field]),
                    "", "", t.depth, ""])
        return buf.getvalue()

    def _cells(self) -> tuple[list[str], list[list[str]], list[str]]:
        header = ["layer", "type", "output", "params", "weights", "MACs", "activations", "RF", "jump", "start"]
        body = [[r.name, r.type, "(not run)" if r.source == "idle" else _shape(r.output_shape), f"{r.params:,}",
                 f"{r.weights:,}", _human(r.macs), _human(r.activations),
                 _axes(r.receptive_field), _axes(r.jump), _axes(r.start)] for r in self.layers]
        return header, body, [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]

    def _footer(self) -> list[str]:
        t = self.total
        size = "x".join(map(str, self.input_size))
        return [
            f"model {self.model}, input {self.batch_size}x{size} ({self.dtype})",
            f"params {t.params:,} (trainable {t.trainable_params:,}; weights without biases {t.weights:,})",
            f"MACs {t.macs:,} ({t.macs / 1e9:.3f} G); FLOPs = 2 x MACs = {t.flops:,}",
            f"activations {t.activations:,} values = {t.activation_bytes / 2**20:.1f} MiB "
            f"({t.activation_bytes / 1e6:.1f} MB) forward, input included",
            f"depth {t.depth} weight layers on the longest path; receptive field {_axes(t.receptive_field)}",
            "MACs: multiply-accumulates of conv/linear layers (torchvision's 'GFLOPS'); FLOPs = 2 x MACs; "
            "in-place activations, dropout and views add no activations",
            *self.notes,
        ]

    def table(self) -> str:
        """A plain-text table for the terminal."""
        header, body, right = self._cells()
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

        out = [line(header), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in body]
        out += ["", *self._footer()]
        return "\n".join(out)

    def to_markdown(self) -> str:
        header, body, right = self._cells()
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        out += [""] + [f"- {line}" for line in self._footer()]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:  # echoed in a REPL: the table, as torchinfo's summary shows
        return self.table()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        """A notebook's rendering: the table and the footer, every string escaped."""
        header, body, right = self._cells()
        cell = lambda tag, text, r: f'<{tag} style="text-align:{"right" if r else "left"}">{html.escape(text)}</{tag}>'  # noqa: E731
        rows = ["<tr>" + "".join(cell("th", h, r) for h, r in zip(header, right)) + "</tr>"]
        rows += ["<tr>" + "".join(cell("td", c, r) for c, r in zip(row, right)) + "</tr>" for row in body]
        footer = "".join(f"<li>{html.escape(line)}</li>" for line in self._footer())
        return f"<table>{''.join(rows)}</table><ul>{footer}</ul>"


# ---------------------------------------------------------------------- formatting helpers
def _num(v: float | None) -> float | int | None:
    if v is None:
        return None
    return int(v) if float(v).is_integer() else round(float(v), 4)


def _csv_cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        return "x".join("-" if x is None else str(x) for x in v)
    return str(v)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape[1:])) if len(shape) > 1 else "x".join(map(str, shape))


def _axes(values: tuple | None) -> str:
    if values is None:
        return "-"
    vals = ["-" if v is None else str(_num(v)) for v in values]
    return vals[0] if len(set(vals)) == 1 else "x".join(vals)


def _human(n: int) -> str:
    if n == 0:
        return "0"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)
