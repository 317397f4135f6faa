"""What a ``.pt2`` file may hold for :func:`cnnlab.export.load_pt2` to hand it to ``torch.export.load``.

``torch.export.load`` is documented as unsafe for untrusted files. Reading torch 2.14's
``torch/export/pt2_archive/_package.py``, ``torch/_export/serde/serialize.py``, ``torch/fx/graph.py``
and ``torch/utils/_pytree.py`` shows where a file can make it run code:

* pickles: weights and constants flagged ``use_pickle`` (unpickled with every global allowed), custom
  and opaque objects (``pickle.loads``), sample inputs (``weights_only=True`` with a fallback to
  ``False``), legacy ``.pt`` payloads; an AOTInductor package loads compiled shared libraries;
* ``SymExpr.expr_str`` goes to ``sympy.sympify``, which evaluates Python;
* ``guards_code`` is a list of Python expressions run when the loaded module is called;
* names become Python source: FX generates the module's ``forward`` from node names, placeholder
  names, ``forward_arg_names`` and attribute paths (``getattr(self, "<part>")``), then ``exec``-s it;
* a node's ``target`` (and an ``as_operator`` argument) is looked up by dotted name in ``torch``,
  ``operator`` and ``math`` and called: ``torch.load`` or ``operator.call`` would do, and the ATen
  operator ``from_file`` reads any file; ``source_fn_stack`` metadata is resolved the same way;
* a tree spec's context goes through ``json.loads(object_hook=enum_object_hook)``, which imports
  any module an ``{"__enum__": ...}`` object names;
* ``as_graph`` (sub-graphs of higher-order operators) and custom objects (TorchBind classes by name).

So the archive is read here first, from the same bytes torch then reads, and checked against torch's
own schema dataclasses (``torch._export.serde.schema``): every field must be one the schema has, of
its type, and every text field has a rule for what it may hold (an identifier, a dotted module path,
an integer expression in shape symbols, an ATen operator without file or storage arguments, plain
printable text). A text field without a rule, or a rule broken, refuses the file with one line naming
the field. Sizes are bounded: the archive, each record, the graph's JSON and its depth, the tensors a
payload declares. Every program that ``export_pt2`` writes for the zoo's models (46 checked: 23 models,
static and dynamic batch) passes; a newer torch that writes a field without a rule here is refused
until the rule is added, never let through.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import io
import keyword
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import WeightsError
from cnnlab.export.export import PT2_EXTRA
from cnnlab.safeio import MAX_JSON_BYTES, GiB, MiB, parse_json

__all__ = ["check_pt2", "MAX_PT2_BYTES", "MAX_GRAPH_JSON_BYTES"]

MAX_PT2_BYTES = 4 * GiB  # VGG-19, the zoo's largest model, is 0.55 GB
MAX_GRAPH_JSON_BYTES = 64 * MiB  # ResNet-152's graph is a few MB, most of it stack traces
MAX_GRAPH_DEPTH = 32  # the graph JSON of an exported zoo model is 10-12 deep (no sub-graphs)
MAX_EXPR_CHARS = 1024  # "Mul(Integer(2048), Symbol('s77', positive=True, integer=True))": short

_ROOT_FILES = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_DIRS = ("data/weights/", "data/constants/", "data/sample_inputs/", "models/", "extra/")
_MODEL = "model"  # torch.export.save writes one program, named "model"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}(\.[A-Za-z0-9_]{1,200}){0,63}")  # "layer1.0.conv1.weight"
_SYMBOL = re.compile(r"(s|u|zf|zuf)[0-9]{1,9}")  # torch.utils._sympy.symbol.prefix_str: sizes, unbacked ints/floats
_ASSUMPTIONS = {"positive", "integer", "nonnegative", "real", "finite", "negative", "nonpositive", "zero"}
_SYMPY_ARITHMETIC = {"Add", "Mul", "FloorDiv", "Mod", "PythonMod", "CleanDiv", "CeilDiv", "Max", "Min"}
_PAYLOAD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_VERIFIERS = {"", "ATEN", "TRAINING"}  # torch._export.verifier's dialects
_DEVICES = {"cpu", "cuda", "meta"}
# What torch.export writes. Not "source_fn_stack", whose targets torch resolves by name in torch's namespace.
_METADATA_KEYS = {"stack_trace", "nn_module_stack", "torch_fn"}

# Pure Python operators that FX graphs call on shape values (operator.call, attrgetter, ... are not).
_OPERATOR_FUNCS = {"getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pos", "abs",
                   "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "xor", "not_", "invert"}
_MATH_FUNCS = {"ceil", "floor", "trunc", "sqrt"}
# ATen operators with a string argument that is a mode, not a file, a message or a Python value.
_ATEN_STRING_OPS = {"conv1d", "conv2d", "conv3d", "_convolution_mode", "gelu", "gelu_", "div", "div_", "divide",
                    "divide_", "pad", "einsum", "scatter", "scatter_", "scatter_reduce", "scatter_reduce_",
                    "index_reduce", "index_reduce_", "searchsorted", "meshgrid", "_assert_scalar", "_assert_async",
                    "_functional_assert_async", "_functional_assert_scalar"}

# The union members and fields that carry code or objects; a cnnlab export never has them.
_REFUSED = {
    ("Argument", "as_graph"): "a sub-graph (higher-order operator)",
    ("Argument", "as_custom_obj"): "a custom (TorchBind) object",
    ("Argument", "as_operator"): "an operator passed as a value",
    ("InputSpec", "custom_obj"): "a custom (TorchBind) object input",
}


class _Refused(Exception):
    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field, self.why = field, why


def _raise(field: str, why: str) -> None:
    raise _Refused(field, why)


# ------------------------------------------------------------------------------ text rules


def _identifier(text: str, field: str) -> None:
    if not _IDENT.fullmatch(text) or keyword.iskeyword(text):
        raise _Refused(field, f"{text[:60]!r} is not a plain identifier (it would become Python source)")


def _dotted(text: str, field: str) -> None:
    if text and not _DOTTED.fullmatch(text):
        raise _Refused(field, f"{text[:60]!r} is not a dotted module path (it would become Python source)")


def _plain_text(text: str, field: str, *, newlines: bool = False, limit: int = 1 << 16) -> None:
    bad = next((c for c in text if not (c.isprintable() or (newlines and c == "\n"))), None)
    if bad is not None:
        raise _Refused(field, f"contains the control character {bad!r}")
    if len(text) > limit:
        raise _Refused(field, f"is {len(text):,} characters long (at most {limit:,})")


def _sym_expr(text: str, field: str) -> None:
    """A shape expression: ``sympy.sympify`` evaluates it as Python, so only integer arithmetic in shape
    symbols passes, in either form torch writes: infix (``2*s77 + 1``) or sympy's ``srepr``
    (``Mul(Integer(2), Symbol('s77', positive=True, integer=True))``). The text is parsed by
    :mod:`ast` (which runs nothing) and every node checked."""
    if len(text) > MAX_EXPR_CHARS:
        raise _Refused(field, f"a {len(text):,}-character shape expression (at most {MAX_EXPR_CHARS})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    problem = "not an expression" if tree is None else _expr_problem(tree.body)
    if problem:
        raise _Refused(field, f"{text[:80]!r} is not integer arithmetic in shape symbols ({problem}); "
                              "sympy.sympify would evaluate it")


def _expr_problem(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant):
        ok = type(node.value) is int and abs(node.value) < 1 << 63
        return None if ok else f"the constant {str(node.value)[:20]!r}"
    if isinstance(node, ast.Name):
        return None if _SYMBOL.fullmatch(node.id) else f"the name {node.id[:20]!r}"
    if isinstance(node, ast.UnaryOp):
        return _expr_problem(node.operand) if isinstance(node.op, (ast.USub, ast.UAdd)) else "an operator"
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod)):
            return f"the operator {type(node.op).__name__}"
        return _expr_problem(node.left) or _expr_problem(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name, args, kwargs = node.func.id, node.args, node.keywords
        if name == "Symbol":
            sym_ok = len(args) == 1 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str) \
                and _SYMBOL.fullmatch(args[0].value)
            kw_ok = all(k.arg in _ASSUMPTIONS and isinstance(k.value, ast.Constant) and type(k.value.value) is bool
                        for k in kwargs)
            return None if sym_ok and kw_ok else "a Symbol that is not a shape symbol"
        if name == "Integer":
            return _expr_problem(args[0]) if len(args) == 1 and not kwargs else "an Integer call"
        if name in _SYMPY_ARITHMETIC and args and not kwargs:
            return next((p for a in args if (p := _expr_problem(a))), None)
        return f"a call of {name[:20]!r}"
    return f"a {type(node).__name__}"


def _symbol(text: str, field: str) -> None:
    if not _SYMBOL.fullmatch(text):
        raise _Refused(field, f"{text[:60]!r} is not a shape symbol")


@functools.lru_cache(maxsize=None)
def _aten_problem(op: str, overload: str) -> str | None:
    packet = getattr(torch.ops.aten, op, None) if _IDENT.fullmatch(op) else None
    try:
        schema = getattr(packet, overload)._schema if packet is not None else None
    except (AttributeError, RuntimeError):
        schema = None
    if schema is None:
        return "is not an ATen operator of this torch"
    types = [str(a.type) for a in schema.arguments]
    if any("Storage" in t for t in types):
        return "takes a storage (raw memory)"
    if any(re.search(r"\bstr\b", t) for t in types) and op not in _ATEN_STRING_OPS:
        return "takes a string argument (a file name, a message or a Python value)"
    return None


def _operator(text: str, field: str) -> None:
    """A node's target: an ATen operator, or a pure Python operator on shapes."""
    parts = text.split(".")
    if len(parts) == 5 and parts[:3] == ["torch", "ops", "aten"]:
        problem = _aten_problem(parts[3], parts[4])
    elif len(parts) == 2 and parts[0] == "_operator":
        problem = None if parts[1] in _OPERATOR_FUNCS else "is not a pure operator on numbers"
    elif len(parts) == 2 and parts[0] == "math":
        problem = None if parts[1] in _MATH_FUNCS else "is not a pure math function"
    elif len(parts) == 2 and parts[0] == "torch" and parts[1] in {"sym_int", "sym_float", "sym_max", "sym_min",
                                                                   "sym_not", "sym_sqrt", "sym_ite"}:
        problem = None
    else:
        problem = "is not an ATen operator (torch.ops.aten.NAME.OVERLOAD)"
    if problem:
        raise _Refused(field, f"{text[:80]!r} {problem}")


def _tree_spec(text: str, field: str) -> None:
    """A pytree spec in JSON: tuples, lists, dicts of leaves. Its context is parsed by torch with an
    ``object_hook`` that imports the module an ``{"__enum__": ...}`` object names."""
    if len(text) > 1 << 16:
        raise _Refused(field, "a tree spec longer than 64 KiB")
    try:
        protocol, spec = parse_json(text, where=field, error=WeightsError, max_depth=MAX_GRAPH_DEPTH)
    except (WeightsError, TypeError, ValueError):
        raise _Refused(field, "not a JSON tree spec [protocol, spec]") from None
    if protocol != 1:
        raise _Refused(field, f"tree spec protocol {protocol!r} (torch writes 1)")
    stack = [spec]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or set(node) != {"type", "context", "children_spec"}:
            raise _Refused(field, "a tree spec node is not {type, context, children_spec}")
        kind, context, children = node["type"], node["context"], node["children_spec"]
        if kind not in (None, "builtins.tuple", "builtins.list", "builtins.dict", "collections.OrderedDict"):
            raise _Refused(field, f"tree spec type {str(kind)[:60]!r} (cnnlab exports tuples, lists and dicts)")
        if context is not None:
            if not isinstance(context, str) or "__enum__" in context:
                raise _Refused(field, "a tree spec context that names a Python class")
            value = parse_json(context, where=field, error=WeightsError, max_depth=2)
            if value is not None and not (isinstance(value, list) and
                                          all(isinstance(v, (str, int)) for v in value)):
                raise _Refused(field, "a tree spec context that is not a list of keys")
        if not isinstance(children, list):
            raise _Refused(field, "tree spec children are not a list")
        stack.extend(children)


def _metadata(doc: dict[str, Any], field: str) -> None:
    for key, value in doc.items():
        if key not in _METADATA_KEYS:
            raise _Refused(f"{field}.{key[:40]}", f"unknown node metadata (torch.export writes {sorted(_METADATA_KEYS)})")
        if not isinstance(value, str):
            raise _Refused(f"{field}.{key}", "is not text")
        _plain_text(value, f"{field}.{key}", newlines=True, limit=1 << 20)


def _empty(value: Any, field: str, why: str) -> None:
    if value:
        raise _Refused(field, why)


_Rule = Callable[[Any, str], None]
# (dataclass, field) -> the rule for its text; fields of type str absent here are refused.
_TEXT_RULES: dict[tuple[str, str], _Rule] = {
    ("SymExpr", "expr_str"): _sym_expr,
    ("SymIntArgument", "as_name"): _identifier,
    ("SymFloatArgument", "as_name"): _identifier,
    ("SymBoolArgument", "as_name"): _identifier,
    ("TensorArgument", "name"): _identifier,
    ("TokenArgument", "name"): _identifier,
    ("NamedArgument", "name"): _identifier,
    ("Node", "name"): _identifier,
    ("Node", "target"): _operator,
    ("InputToConstantInputSpec", "name"): _identifier,
    ("InputToParameterSpec", "parameter_name"): _dotted,
    ("InputToBufferSpec", "buffer_name"): _dotted,
    ("InputToTensorConstantSpec", "tensor_constant_name"): _dotted,
    ("BufferMutationSpec", "buffer_name"): _dotted,
    ("ParameterMutationSpec", "parameter_name"): _dotted,
    ("GradientToParameterSpec", "parameter_name"): _dotted,
    ("GradientToUserInputSpec", "user_input_name"): _identifier,
    ("UserInputMutationSpec", "user_input_name"): _identifier,
    ("ModuleCallEntry", "fqn"): _dotted,
    ("ModuleCallSignature", "in_spec"): _tree_spec,
    ("ModuleCallSignature", "out_spec"): _tree_spec,
    ("ModuleCallSignature", "forward_arg_names"): _identifier,
    ("Device", "type"): lambda t, f: None if t in _DEVICES else _raise(f, f"device {t[:20]!r}"),
    ("Argument", "as_string"): _plain_text,
    ("Argument", "as_strings"): _plain_text,
    ("ConstantValue", "as_string"): _plain_text,
    ("ExportedProgram", "torch_version"): lambda t, f: _plain_text(t, f, limit=100),
    ("ExportedProgram", "verifiers"): lambda t, f: None if t in _VERIFIERS else _raise(f, f"verifier {t[:20]!r}"),
    ("PayloadMeta", "path_name"): lambda t, f: None if _PAYLOAD_NAME.fullmatch(t) and ".." not in t
    else _raise(f, f"{t[:60]!r} is not a plain record name"),
}
# (dataclass, field) -> the rule for the keys of a dict field.
_KEY_RULES: dict[tuple[str, str], _Rule] = {
    ("Graph", "tensor_values"): _identifier,
    ("Graph", "sym_int_values"): _identifier,
    ("Graph", "sym_bool_values"): _identifier,
    ("Graph", "sym_float_values"): _identifier,
    ("ExportedProgram", "opset_version"): _identifier,
    ("ExportedProgram", "range_constraints"): _symbol,
    ("Argument", "as_string_to_argument"): _identifier,
    ("PayloadConfig", "config"): _dotted,
}
# (dataclass, field) -> a check of the whole field, instead of the generic walk.
_FIELD_RULES: dict[tuple[str, str], _Rule] = {
    ("ExportedProgram", "guards_code"): lambda v, f: _empty(v, f, "Python guards, run when the module is called"),
    ("Graph", "custom_obj_values"): lambda v, f: _empty(v, f, "custom (TorchBind) objects"),
    ("GraphModule", "treespec_namedtuple_fields"): lambda v, f: _empty(v, f, "named tuples to create"),
    ("Node", "metadata"): lambda v, f: _metadata(v, f) if isinstance(v, dict) else _raise(f, "is not a mapping"),
    ("GraphModule", "metadata"): lambda v, f: _metadata(v, f) if isinstance(v, dict) else _raise(f, "is not a mapping"),
}


# ------------------------------------------------------------------------------ the schema walk


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _walk(value: Any, tp: Any, field: str, owner: tuple[str, str] | None) -> None:
    """Check ``value`` against the schema type ``tp``; ``owner`` is the (dataclass, field) it sits in."""
    from torch._export.serde.union import _Union

    tp = _strip(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise _Refused(field, "an ambiguous field")
        return _walk(value, rest[0], field, owner)
    if tp is str:
        if not isinstance(value, str):
            raise _Refused(field, f"is a {type(value).__name__}, not text")
        rule = _TEXT_RULES.get(owner) if owner else None
        if rule is None:
            raise _Refused(field, "a text field cnnlab has no rule for (it could carry code)")
        return rule(value, field)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Refused(field, f"is a {type(value).__name__}, not a boolean")
        return
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Refused(field, f"is a {type(value).__name__}, not an integer")
        return
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _Refused(field, f"is a {type(value).__name__}, not a number")
        return
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if value not in {m.value for m in tp}:
            raise _Refused(field, f"{str(value)[:20]!r} is not a {tp.__name__}")
        return
    if origin is list:
        if not isinstance(value, list):
            raise _Refused(field, "is not a list")
        for i, item in enumerate(value):
            _walk(item, args[0], f"{field}[{i}]", owner)
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise _Refused(field, "is not a mapping")
        key_rule = _KEY_RULES.get(owner) if owner else None
        for key, item in value.items():
            if key_rule is None:
                raise _Refused(field, "a mapping cnnlab has no rule for the keys of")
            key_rule(key, f"{field} key")
            _walk(item, args[1], f"{field}[{key!r}]", owner)
        return
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Refused(field, f"is not a {tp.__name__} mapping")
        hints = _fields(tp)
        unknown = [k for k in value if k not in hints]
        if unknown:
            raise _Refused(f"{field}.{str(unknown[0])[:40]}", f"not a field of torch's {tp.__name__}")
        if issubclass(tp, _Union) and len(value) != 1:
            raise _Refused(field, f"a {tp.__name__} must have exactly one member, has {len(value)}")
        for name, item in value.items():
            where = f"{field}.{name}" if field else name
            key = (tp.__name__, name)
            if key in _REFUSED and item is not None:
                raise _Refused(where, _REFUSED[key])
            if key in _FIELD_RULES:
                _FIELD_RULES[key](item, where)
                continue
            _walk(item, hints[name], where, key)
        return
    raise _Refused(field, f"an unexpected schema type {tp!r}")


# ------------------------------------------------------------------------------ the archive


def _numel(sizes: list[dict]) -> int:
    n = 1
    for s in sizes:
        v = s.get("as_int") if isinstance(s, dict) else None
        if not isinstance(v, int) or v < 0:
            raise _Refused("tensor_meta.sizes", "a stored tensor's size is not a non-negative integer")
        n *= v
    return n


def _check_payloads(reader: Any, name: str, doc: dict) -> None:
    """A weights/constants config: plain tensors stored raw, each within its record."""
    from torch._export.serde import schema
    from torch.export.pt2_archive.constants import TENSOR_CONSTANT_FILENAME_PREFIX

    _walk(doc, schema.PayloadConfig, name, None)
    base = name.rsplit("/", 1)[0] + "/"
    for fqn, meta in doc["config"].items():
        where = f"{name}: {fqn!r}"
        if meta.get("use_pickle"):
            raise _Refused(where, "is pickled (torch would unpickle it with every global allowed, which runs code)")
        if name.startswith("data/constants/") and not meta["path_name"].startswith(TENSOR_CONSTANT_FILENAME_PREFIX):
            raise _Refused(where, "is a custom object (unpickled by torch)")
        tmeta = meta.get("tensor_meta")
        if not isinstance(tmeta, dict):
            raise _Refused(where, "has no tensor metadata")
        record = base + meta["path_name"]
        if not reader.has_record(record):
            raise _Refused(where, f"names the missing record {meta['path_name']!r}")
        numel = _numel(tmeta["sizes"])
        if reader.get_record_size(record) == 0 and numel:  # torch.zeros(sizes): memory the file does not pay for
            raise _Refused(where, f"declares {numel:,} elements with no data")


def check_pt2(data: bytes, path: Path) -> None:
    """Refuse (WeightsError, one line naming ``path`` and the field) a .pt2 archive that torch would
    unpickle from, run code from, or allocate without bound for."""
    from torch._export.serde import schema
    from torch.export.pt2_archive._package import PT2ArchiveReader

    def refuse(why: str) -> WeightsError:
        return WeightsError(f"{path}: refused to load this .pt2: {why}; cnnlab loads only plain ATen programs")

    try:
        reader = PT2ArchiveReader(io.BytesIO(data))
    except Exception as err:
        raise WeightsError(f"{path}: not a .pt2 archive ({type(err).__name__})") from None
    archive = reader.archive_file
    names = archive.get_all_records()
    total = 0
    for name in names:
        if name not in _ROOT_FILES and not name.startswith(_DIRS):
            raise refuse(f"unexpected entry {name[:80]!r}, e.g. a compiled AOTInductor package")
        if name.startswith(("data/weights/", "data/constants/")) and name.endswith(".pt"):
            raise refuse(f"legacy pickled entry {name!r}")
        total += archive.get_record_size(name)
    if total > len(data):  # stored records only: no entry may decompress to more than the file holds
        raise refuse(f"its entries unpack to {total:,} bytes from a {len(data):,}-byte file (compressed entries)")
    programs = [n for n in names if n.startswith("models/")]
    if programs != [f"models/{_MODEL}.json"]:
        raise refuse(f"programs {programs[:3]} (torch.export.save writes one, models/{_MODEL}.json)")
    extras = [n for n in names if n.startswith("extra/")]
    if any(n != f"extra/{PT2_EXTRA}" for n in extras):
        raise refuse(f"unexpected extra file {next(n for n in extras if n != f'extra/{PT2_EXTRA}')!r}")
    if extras and archive.get_record_size(extras[0]) > MAX_JSON_BYTES:
        raise refuse(f"{extras[0]} is more than {MAX_JSON_BYTES:,} bytes")
    try:
        graph_name = programs[0]
        if archive.get_record_size(graph_name) > MAX_GRAPH_JSON_BYTES:
            raise _Refused(graph_name, f"a graph of more than {MAX_GRAPH_JSON_BYTES:,} bytes")
        graph = parse_json(reader.read_bytes(graph_name), where=f"{path}: {graph_name}", error=WeightsError,
                           max_depth=MAX_GRAPH_DEPTH)
        _walk(graph, schema.ExportedProgram, "", None)
        for name in names:
            if name.startswith(("data/weights/", "data/constants/")) and name.endswith("_config.json"):
                if archive.get_record_size(name) > MAX_GRAPH_JSON_BYTES:
                    raise _Refused(name, f"a payload config of more than {MAX_GRAPH_JSON_BYTES:,} bytes")
                doc = parse_json(reader.read_bytes(name), where=f"{path}: {name}", error=WeightsError,
                                 max_depth=MAX_GRAPH_DEPTH)
                _check_payloads(archive, name, doc)
            elif name.startswith("data/sample_inputs/"):
                try:
                    torch.load(io.BytesIO(reader.read_bytes(name)), weights_only=True)
                except Exception:
                    raise _Refused(name, "does not load with weights_only=True (torch would fall back to "
                                         "weights_only=False)") from None
    except _Refused as err:
        raise refuse(f"{err.field or 'the graph'}: {err.why}") from None
