"""A network as the lectures draw it: a layer-by-layer block graph with its branches.

:func:`layer_graph` traces the model with ``torch.fx`` (which gives the data flow: what feeds what)
and labels every layer with the analyzer's figures (:func:`cnnlab.analysis.analyze`: the output
shape) and the layer's own settings (kernel, stride, channels). It collapses the graph to the level
the decks draw:

- batch norm, activations, dropout and flatten join the layer before them ("3x3 conv, 64");
- a module whose forward concatenates branches (an Inception module) becomes a *branch group*: its
  layers, side by side, inside one box;
- a module whose forward ends in an addition (a residual block) becomes one node listing its main
  path, an addition node, and the skip arrow labelled with the shortcut ("identity", or the
  projection's "1x1 conv, 256, /2").

The result is plain data (:class:`LayerGraph`); :mod:`cnnlab.viz.diagram` draws it with Graphviz.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError

__all__ = ["DiagramNode", "DiagramEdge", "LayerGraph", "layer_graph", "layer_label"]

# Layers drawn inside the layer before them (their effect is named by the decks' convention:
# "conv" implies its ReLU, BN is a detail of the modern variants).
_ABSORBED_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU,
                     nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Dropout2d,
                     nn.Identity, nn.Flatten, nn.Unflatten, nn.Softmax)  # fmt: skip
_MERGES = {torch.cat: "concat", torch.stack: "join", torch.add: "+", operator.add: "+", operator.iadd: "+", torch.mul: "x",
           operator.mul: "x", "add": "+", "add_": "+", "mul": "x", "mul_": "x", "cat": "concat"}


@dataclass(frozen=True)
class DiagramNode:
    id: str
    kind: str  # input, conv, pool, fc, norm, block, concat, add, other
    title: str  # "3x3 conv, 64, /2"; for a block, its main path on several lines
    shape: str  # the analyzer's output shape, "56x56x64" (H x W x C) or "1000"
    group: str | None = None  # the branch group (module name) the node is drawn in


@dataclass(frozen=True)
class DiagramEdge:
    src: str
    dst: str
    label: str = ""
    skip: bool = False  # a residual shortcut


@dataclass(frozen=True)
class LayerGraph:
    model: str
    input_size: tuple[int, int, int]
    nodes: tuple[DiagramNode, ...]
    edges: tuple[DiagramEdge, ...]
    groups: Mapping[str, str] = field(default_factory=dict)  # branch group -> its caption


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def layer_label(module: nn.Module) -> tuple[str, str]:
    """``(kind, title)`` of one layer in the decks' words: ``("conv", "3x3 conv, 64, /2")``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        (kh, kw), (sh, sw) = _pair(module.kernel_size), _pair(module.stride)
        word = "deconv" if isinstance(module, nn.ConvTranspose2d) else "conv"
        title = f"{kh}x{kw} {word}, {module.out_channels}"
        if max(sh, sw) > 1:
            title += f", {'x' if word == 'deconv' else '/'}{sh if sh == sw else f'{sh}x{sw}'}"
        if module.groups > 1:
            title += f", {module.groups} groups"
        if max(_pair(module.dilation)) > 1:
            title += f", dilation {_pair(module.dilation)[0]}"
        return "conv", title
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        (kh, kw), s = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)[0]
        word = "max" if isinstance(module, nn.MaxPool2d) else "avg"
        return "pool", f"{kh}x{kw} {word} pool" + (f", /{s}" if s > 1 else "")
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        word = "avg" if isinstance(module, nn.AdaptiveAvgPool2d) else "max"
        size = _pair(module.output_size)
        return "pool", f"global {word} pool" if size == (1, 1) else f"{word} pool to {size[0]}x{size[1]}"
    if isinstance(module, nn.Linear):
        return "fc", f"fc {module.out_features}"
    if isinstance(module, nn.LocalResponseNorm):
        return "norm", f"LRN (size {module.size})"
    name = type(module).__name__
    if isinstance(getattr(module, "kernel_size", None), (int, tuple)) and hasattr(module, "out_channels"):
        kh, kw = _pair(module.kernel_size)
        return "conv", f"{kh}x{kw} conv, {module.out_channels} ({name})"  # LeNet's partial C3, ...
    return "other", name


class _LeafTracer(torch.fx.Tracer):
    """Every module without children is one call (as the analyzer's rows are), so custom layers
    (LeNet's partially connected C3, its trainable subsampling) stay whole."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return next(m.children(), None) is None or super().is_leaf_module(m, module_qualified_name)


def _absorbed(module: nn.Module, kind: str, shape: tuple | None, before: tuple) -> bool:
    """Drawn inside the layer before: BN, activations, dropout, and any other parameter-free layer
    that keeps the map as it is (LeNet's scaled tanh)."""
    if isinstance(module, _ABSORBED_MODULES):
        return True
    return kind == "other" and next(module.parameters(), None) is None and shape is not None and shape == before


def _shape_text(shape: tuple[int, ...]) -> str:
    """Batch dropped; image maps as the decks write them, H x W x C."""
    s = tuple(shape[1:])
    if len(s) == 3:
        return f"{s[1]}x{s[2]}x{s[0]}"
    return "x".join(str(v) for v in s)


@dataclass
class _Node:
    """A traced operation on its way to a diagram node."""

    name: str
    kind: str
    title: str
    shape: tuple[int, ...]
    inputs: list[str]
    owner: str  # the innermost module whose forward runs it
    modules: tuple[str, ...]  # the module stack, outermost first
    merge: str = ""  # "concat", "+", "x" for operations that join tensors


def _owner_stack(node: torch.fx.Node) -> tuple[str, ...]:
    stack = node.meta.get("nn_module_stack") or {}
    return tuple(k for k in stack if k)


def _trace(model: nn.Module, rows: Mapping[str, tuple[int, ...]]) -> list[_Node]:
    """The fx graph as :class:`_Node`s, shapes from the analyzer's rows, absorbed layers removed."""
    try:
        graph = _LeafTracer().trace(model)
    except Exception as err:  # noqa: BLE001  (fx raises many kinds on untraceable Python)
        raise ConfigError(f"cannot trace {type(model).__name__} with torch.fx ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); a diagram needs a traceable forward") from None
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    nodes: dict[str, _Node] = {}
    alias: dict[str, str] = {}  # absorbed node -> the node that stands for it
    for n in graph.nodes:
        inputs = [alias.get(a.name, a.name) for a in n.all_input_nodes if alias.get(a.name, a.name) in nodes]
        stack = _owner_stack(n)
        if n.op == "placeholder":
            nodes[n.name] = _Node(n.name, "input", "input", rows["<input>"], [], "", ())
            continue
        if n.op == "output":
            continue
        if n.op == "call_module":
            module = modules[n.target]
            calls[n.target] = calls.get(n.target, 0) + 1
            key = n.target if calls[n.target] == 1 else f"{n.target}:{calls[n.target]}"
            shape = rows.get(key)
            kind, title = layer_label(module)
            if len(inputs) == 1 and _absorbed(module, kind, shape, nodes[inputs[0]].shape):
                _absorb(nodes, alias, n.name, inputs[0], shape)
                continue
            nodes[n.name] = _Node(n.name, kind, title, shape or (), inputs, n.target, stack or (n.target,))
            continue
        name = getattr(n.target, "__name__", str(n.target))
        merge = _MERGES.get(n.target) or (_MERGES.get(name) if n.op == "call_method" else None)
        if merge and len(inputs) >= 2:
            shape = _merged_shape(merge, [nodes[i].shape for i in inputs])
            kind = "add" if merge in ("+", "x") else "concat"  # a join (FractalNet's mean) is drawn as a concat
            nodes[n.name] = _Node(n.name, kind, merge, shape, inputs,
                                  stack[-1] if stack else "", stack, merge)
        elif len(inputs) == 1:  # flatten, views, a functional activation: part of the layer before
            _absorb(nodes, alias, n.name, inputs[0], None)
        elif inputs:  # slicing by another tensor's size is FCN's crop; its shape is not a module row's
            title = "crop" if n.target is operator.getitem else name
            nodes[n.name] = _Node(n.name, "other", title, (), inputs, stack[-1] if stack else "", stack)
    return list(nodes.values())


def _absorb(nodes: dict[str, _Node], alias: dict[str, str], name: str, into: str, shape: tuple | None) -> None:
    alias[name] = into
    if shape and len(shape) >= len(nodes[into].shape):  # BN/ReLU keep the map; flatten is not a new map
        nodes[into].shape = shape


def _merged_shape(merge: str, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    shapes = [s for s in shapes if s]
    if not shapes:
        return ()
    if merge == "concat" and all(len(s) == len(shapes[0]) for s in shapes):  # channels add up
        return (shapes[0][0], sum(s[1] for s in shapes), *shapes[0][2:])
    return max(shapes, key=len)


def _blocks(nodes: list[_Node]) -> dict[str, str]:
    """Module name -> "branches" or "residual", for the outermost modules whose forward merges tensors."""
    owners = {n.owner for n in nodes if n.merge and n.owner}
    outer = {o for o in owners if not any(o.startswith(p + ".") for p in owners if p != o)}
    kinds = {}
    for block in outer:
        last = [n for n in nodes if n.merge and n.owner == block][-1]
        kinds[block] = "residual" if last.merge == "+" else "branches"
    return kinds


def _block_of(node: _Node, blocks: Mapping[str, str]) -> str | None:
    for m in node.modules:
        if m in blocks:
            return m
    return None


def layer_graph(model: nn.Module | str, *, input_size: tuple[int, int, int] | None = None,
                config: Mapping[str, Any] | None = None) -> LayerGraph:
    """The diagram of ``model`` (a zoo name or a module) at ``input_size`` (default: its own)."""
    from cnnlab.analysis.core import analyze, load_model, resolve_input_size

    loaded = load_model(model, config=config)
    size = resolve_input_size(input_size, loaded.input_size)
    analysis = analyze(loaded.model, input_size=size)
    rows = {r.name: tuple(r.output_shape) for r in analysis.layers if r.source == "module"}
    rows["<input>"] = (1, *size)
    nodes = _trace(loaded.model.eval(), rows)
    blocks = _blocks(nodes)
    out_nodes, edges, groups = _collapse(nodes, blocks)
    return LayerGraph(loaded.label, tuple(size), tuple(out_nodes), tuple(edges), groups)


def _collapse(nodes: list[_Node], blocks: Mapping[str, str]):
    """Diagram nodes and edges: branch groups kept node by node, residual blocks collapsed."""
    by_name = {n.name: n for n in nodes}
    stand_in: dict[str, str] = {}  # traced node -> diagram node id
    out: list[DiagramNode] = []
    edges: list[DiagramEdge] = []
    groups: dict[str, str] = {}
    members: dict[str, list[_Node]] = {}
    for n in nodes:
        b = _block_of(n, blocks)
        if b is not None and blocks[b] == "residual":
            members.setdefault(b, []).append(n)
    done: set[str] = set()
    for n in nodes:
        b = _block_of(n, blocks)
        if b is not None and blocks[b] == "residual":
            if b not in done:
                done.add(b)
                _residual(b, members[b], by_name, stand_in, out, edges)
            continue
        if b is not None:
            last = [m for m in nodes if _block_of(m, blocks) == b][-1]
            groups[b] = f"{b}: {_shape_text(last.shape)}"
        stand_in[n.name] = n.name
        out.append(DiagramNode(n.name, n.kind, n.title, _shape_text(n.shape) if n.shape else "", b))
        for i in n.inputs:
            edges.append(DiagramEdge(stand_in[i], n.name))
    return out, _dedupe(edges), groups


def _residual(block: str, members: list[_Node], by_name: Mapping[str, _Node], stand_in: dict[str, str],
              out: list[DiagramNode], edges: list[DiagramEdge]) -> None:
    """One node for the main path, one for the addition, the skip arrow from the block's input."""
    inside = {m.name for m in members}
    add = [m for m in members if m.merge == "+"][-1]

    def ancestors(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            cur = todo.pop()
            if cur in inside and cur not in seen:
                seen.add(cur)
                todo.extend(by_name[cur].inputs)
        return seen

    paths = sorted((ancestors(i) for i in add.inputs), key=len)
    shortcut = paths[0] if len(paths) > 1 else set()
    main = [m for m in members if m.name not in shortcut and m.name != add.name and m.name in ancestors(add.name)]
    entries = sorted({i for m in members for i in m.inputs if i not in inside}, key=list(by_name).index)
    short_titles = [by_name[s].title for s in sorted(shortcut, key=list(by_name).index)
                    if by_name[s].kind in ("conv", "pool")]
    main_id, add_id = f"{block}.main", f"{block}.add"
    out.append(DiagramNode(main_id, "block", "\n".join(_path_lines(block, members, main)) or block,
                           _shape_text(main[-1].shape) if main else "", None))
    out.append(DiagramNode(add_id, "add", "+", _shape_text(add.shape), None))
    for e in entries:
        edges.append(DiagramEdge(stand_in[e], main_id))
        edges.append(DiagramEdge(stand_in[e], add_id, ", ".join(short_titles) or "identity", skip=True))
    edges.append(DiagramEdge(main_id, add_id))
    for m in members:
        stand_in[m.name] = add_id


def _path_lines(block: str, members: list[_Node], main: list[_Node]) -> list[str]:
    """A line per layer of the main path; a gate inside it (squeeze-excitation) on one line, named."""
    inner = {m.owner for m in members if m.merge and m.owner != block}
    lines: list[str] = []
    current, parts = None, []
    for m in main:
        key = next((mod for mod in m.modules if mod in inner), None)
        if key != current and parts:
            lines.append(f"{current.rsplit('.', 1)[-1]}: {', '.join(parts)}")
            parts = []
        current = key
        if key is None:
            lines.append(m.title)
        elif not m.merge:
            parts.append(m.title)
    if parts:
        lines.append(f"{current.rsplit('.', 1)[-1]}: {', '.join(parts)}")
    return lines


def _dedupe(edges: list[DiagramEdge]) -> list[DiagramEdge]:
    seen, out = set(), []
    for e in edges:
        if (e.src, e.dst, e.skip) not in seen and e.src != e.dst:
            seen.add((e.src, e.dst, e.skip))
            out.append(e)
    return out
