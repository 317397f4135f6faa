"""Architecture diagrams drawn with Graphviz from a :class:`cnnlab.analysis.graph.LayerGraph`.

The layout is Graphviz's ``dot`` (top to bottom); the Python package ``graphviz`` writes the DOT
text and runs the ``dot`` program, which renders SVG, PNG or PDF. The DOT text itself (``.dot``,
``.gv``) needs the package only. Files are written atomically.
"""

from __future__ import annotations

import html
import os
import shutil
from pathlib import Path

from cnnlab.errors import CnnlabError

__all__ = ["DIAGRAM_FORMATS", "DiagramToolMissing", "diagram_dot", "render_diagram", "dot_available"]

# suffix -> Graphviz output format ("dot": the graph description itself, no layout needed)
DIAGRAM_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

_FILL = {"input": "#ffffff", "conv": "#dbe9f6", "pool": "#fde9c8", "fc": "#d9ead3", "norm": "#eeeeee",
         "block": "#dbe9f6", "concat": "#f4cccc", "add": "#ffffff", "other": "#f3f3f3"}


class DiagramToolMissing(CnnlabError):
    """The Graphviz Python package or its ``dot`` program is not installed."""


def dot_available() -> bool:
    """Whether SVG/PNG/PDF diagrams can be rendered here (the ``graphviz`` package and ``dot``)."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def _label(title: str, shape: str) -> str:
    lines = "<BR/>".join(html.escape(t) for t in title.split("\n"))
    if shape:
        lines += f'<BR/><FONT POINT-SIZE="8" COLOR="#555555">{html.escape(shape)}</FONT>'
    return f"<{lines}>"


def diagram_dot(graph) -> str:  # noqa: ANN001  (a LayerGraph)
    """The DOT text of ``graph``: a node per layer, a cluster per branch group, dashed skip arrows."""
    try:
        import graphviz
    except ImportError:
        raise DiagramToolMissing("diagrams need the Python package graphviz: pip install graphviz "
                                 "(and the Graphviz program dot: apt-get install graphviz)") from None
    g = graphviz.Digraph(name=graph.model)
    g.attr(rankdir="TB", ranksep="0.18", nodesep="0.12", fontname="Helvetica", fontsize="10",
           label=f"{graph.model}, input {graph.input_size[1]}x{graph.input_size[2]}x{graph.input_size[0]}",
           labelloc="t")
    g.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="9", margin="0.08,0.03",
           height="0.3", color="#666666")
    g.attr("edge", arrowsize="0.5", color="#555555", fontname="Helvetica", fontsize="8")
    clusters: dict[str, object] = {}
    for node in graph.nodes:
        attrs = dict(fillcolor=_FILL.get(node.kind, "#ffffff"))
        if node.kind == "add":
            # the block's node above shows the shape; the addition keeps it
            attrs.update(shape="circle", width="0.22", height="0.22", margin="0", fixedsize="true", fontsize="10")
            label = node.title  # "+" (a residual addition) or "x" (a gate)
        elif node.kind == "concat":
            label = _label(node.title, node.shape)
        else:
            label = _label(node.title, node.shape)
        target = g
        if node.group is not None:
            if node.group not in clusters:
                clusters[node.group] = graphviz.Digraph(name=f"cluster_{len(clusters)}")
                clusters[node.group].attr(label=graph.groups.get(node.group, node.group), style="rounded",
                                          color="#999999", fontsize="9", labeljust="l")
            target = clusters[node.group]
        target.node(node.id, label=label, **attrs)
    for group, sub in clusters.items():
        _align_branches(graph, group, sub)
        g.subgraph(sub)
    for e in graph.edges:
        attrs = dict(style="dashed", label=e.label, constraint="false") if e.skip else {}
        g.edge(e.src, e.dst, **attrs)
    return g.source


def _align_branches(graph, group: str, sub) -> None:  # noqa: ANN001
    """The first layer of every branch on one row, left to right in the order the forward runs them
    (the 1x1 branch first, as the papers draw it): a same-rank row chained by invisible edges."""
    from graphviz.quoting import quote

    inside = {n.id for n in graph.nodes if n.group == group}
    heads = [n.id for n in graph.nodes if n.id in inside
             and any(e.dst == n.id and e.src not in inside for e in graph.edges)]
    if len(heads) < 2:
        return
    sub.body.append("\t{rank=same; " + " ".join(quote(h) + ";" for h in heads) + "}\n")
    for a, b in zip(heads, heads[1:]):
        sub.edge(a, b, style="invis")


def render_diagram(graph, path: str | os.PathLike) -> Path:  # noqa: ANN001
    """Write ``graph`` to ``path`` in the format its suffix names (:data:`DIAGRAM_FORMATS`), atomically."""
    from cnnlab import atomic

    path = Path(path)
    fmt = DIAGRAM_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: diagrams are written as {', '.join(DIAGRAM_FORMATS)}, by the file's suffix")
    source = diagram_dot(graph)
    if fmt == "dot":
        atomic.atomic_write(path, source.encode())
        return path
    import graphviz

    try:
        data = graphviz.Source(source).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise DiagramToolMissing("rendering a diagram needs the Graphviz program dot: apt-get install graphviz "
                                 "(or brew install graphviz); a .dot file needs no program") from None
    atomic.atomic_write(path, data)
    return path
