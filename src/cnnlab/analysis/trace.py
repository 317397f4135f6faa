"""Run a model once on the ``meta`` device and record what every layer does.

No weight and no activation is allocated: parameters, buffers and the input are ``meta`` tensors
(shapes only), so ResNet-152 at batch 64 costs what it costs at batch 1. Two things watch the run:

- a ``TorchDispatchMode`` that sees every ATen operation with its exact arguments (the stride,
  padding and dilation of a convolution, the kernel of a pooling, the pads of ``F.pad``). It
  propagates (receptive field, jump, start) per image axis and the weight-layer depth from inputs to
  outputs, through any structure (residual additions, Inception concatenations, squeeze-excitation
  products) and through custom modules and functional code alike, without needing to know module
  classes. It counts FLOPs with PyTorch's own formulas, those of ``FlopCounterMode``
  (``torch.utils.flop_counter``: a convolution or matrix product counts 2 FLOPs per
  multiply-accumulate). Unlike ``FlopCounterMode`` we do not decompose operations that have no
  formula (it decomposes every batch norm into primitives, which tripled the time of a ResNet-152
  summary); the counts are identical (tests compare them, per module, on random stacks and models).
- forward hooks on the modules, which turn each call of a leaf module (no children) into a row and
  name operations done outside leaf modules (``inception3a.cat``, ``layer1.0.add_``).

We work at the ATen level rather than on a ``torch.fx`` graph so that custom leaf modules (LeNet's
partial-connection convolution, its trainable subsampling) and functional calls (``F.relu`` in
torchvision's GoogLeNet) need no special case: their convolutions and poolings are seen as such.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from cnnlab.analysis.receptive_field import (
    INPUT_FIELD,
    AxisField,
    adaptive_pool_field,
    collapse_field,
    conv_field,
    pad_field,
    resize_field,
    slice_field,
    transposed_conv_field,
    union_fields,
)
from cnnlab.analysis.result import LayerRow
from cnnlab.errors import ConfigError

__all__ = ["TraceResult", "trace_model", "IN_PLACE_MODULES"]

# Operations that only re-describe memory: never rows, but they carry fields along (a flatten
# collapses the spatial axes).
VIEW_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "flatten", "unflatten", "expand", "permute", "transpose", "t",
    "squeeze", "unsqueeze", "select", "alias", "detach", "as_strided", "lift_fresh", "_reshape_alias",
    "view_as", "contiguous", "unbind", "split", "split_with_sizes", "chunk", "narrow", "slice",
})  # fmt: skip
CONV_OPS = frozenset({"convolution", "_convolution", "convolution_overrideable", "mkldnn_convolution"})
POOL_OPS = frozenset({"max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
                      "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d"})
ADAPTIVE_POOL_OPS = frozenset({"_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d",
                               "adaptive_max_pool3d", "adaptive_avg_pool1d", "adaptive_max_pool1d"})
PAD_OPS = frozenset({"constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
                     "replication_pad1d", "replication_pad2d", "replication_pad3d", "_pad_circular"})
RESIZE_OPS = frozenset({"upsample_nearest2d", "upsample_bilinear2d", "upsample_bicubic2d",
                        "_upsample_nearest_exact2d", "_upsample_bilinear2d_aa"})
# Element-wise activation functions: counted as computed in place (see result.CONVENTIONS).
ACTIVATION_OPS = frozenset({
    "relu", "relu6", "gelu", "sigmoid", "tanh", "hardtanh", "silu", "elu", "leaky_relu", "hardswish",
    "hardsigmoid", "mish", "softplus", "threshold", "prelu", "_prelu_kernel", "selu", "celu", "rrelu",
    "dropout", "native_dropout", "feature_dropout",
})  # fmt: skip
IN_PLACE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Threshold,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.Flatten,
    nn.Unflatten,
)  # fmt: skip
_POSITIVE_FIELDS = ("in_channels", "out_channels", "in_features", "out_features", "num_features",
                    "kernel_size", "stride", "dilation", "groups", "num_channels", "num_groups")


@dataclass(frozen=True)
class _Info:
    """What we know about a tensor derived from the input image."""

    fields: tuple[AxisField, AxisField] | None  # (height, width); None once the spatial axes are lost
    depth: int


@dataclass
class TraceResult:
    rows: list[LayerRow]
    flops: int
    final_fields: tuple[AxisField, AxisField] | None  # last feature map before global pooling/flatten
    depth: int
    notes: list[str]
    module_types: dict[str, str]


def _tensors(x: object) -> list[Tensor]:
    """The tensors in (nested) tuples, lists and dicts of op arguments or module outputs.

    Faster than ``torch.utils._pytree.tree_leaves``, which took a third of the tracing time.
    """
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for item in x for t in _tensors(item)]
    if isinstance(x, dict):
        return [t for item in x.values() for t in _tensors(item)]
    return []


def _first_tensor(x: object) -> Tensor | None:
    found = _tensors(x)
    return found[0] if found else None


def _bind(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> dict:
    """An ATen call's arguments by schema name, defaults filled in."""
    out = {}
    for i, arg in enumerate(func._schema.arguments):
        if i < len(args):
            out[arg.name] = args[i]
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def _per_axis(values: object, n_spatial: int) -> tuple[int | None, int | None]:
    """Kernel/stride/padding lists of an op with ``n_spatial`` spatial dims, for (height, width)."""
    if isinstance(values, int):
        values = [values] * n_spatial
    values = list(values)
    if len(values) == 1:
        values = values * n_spatial
    # the image axes are the last two spatial dims; a 1-d op only acts on the width axis
    h = values[-2] if len(values) >= 2 else None
    return h, values[-1]


def _aliases(out: Tensor, inputs: Iterable[Tensor]) -> bool:
    base = out._base if out._is_view() else out
    for t in inputs:
        if out is t or base is t or (t._is_view() and base is t._base):
            return True
    return False


def _batch_norm_meta(x: Tensor, weight: object = None, bias: object = None, running_mean: object = None,
                     running_var: object = None, training: bool = False, *args: object,
                     **kwargs: object) -> tuple[Tensor, Tensor, Tensor]:
    """(output, saved mean, saved inverse std) as the CPU kernel shapes them."""
    stats = (x.shape[1],) if training is True else (0,)
    return _empty_like(x), x.new_empty(stats), x.new_empty(stats)


def _empty_like(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``torch.empty_like`` on meta without its Python reference (which imports sympy)."""
    fmt = torch.channels_last if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last) else torch.contiguous_format
    return torch.empty(x.shape, dtype=dtype or x.dtype, device="meta", memory_format=fmt)


def _on_meta(x: Tensor | list) -> bool:
    return all(t.device.type == "meta" for t in (x if isinstance(x, list) else [x]) if isinstance(t, Tensor))


def _unary_meta(x: Tensor, *args: object, **kwargs: object) -> Tensor:
    return _empty_like(x)


def _in_place_meta(x: Tensor, *args: object, **kwargs: object) -> Tensor:
    return x  # an in-place op returns its first argument itself


def _broadcast(*shapes: torch.Size) -> tuple[int, ...] | None:
    """NumPy broadcasting (``torch.broadcast_shapes`` imports sympy on its first call); None if invalid."""
    out: list[int] = []
    for dims in zip(*(((1,) * (max(map(len, shapes)) - len(s))) + tuple(s) for s in shapes)):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _binary_meta(a: object, b: object, *args: object, **kwargs: object) -> Tensor | None:
    tensors = [t for t in (a, b) if isinstance(t, Tensor)]
    shape = _broadcast(*(t.shape for t in tensors))
    if shape is None:
        return None  # the real kernel raises its error
    dtype = torch.result_type(a, b)
    like = next((t for t in tensors if tuple(t.shape) == shape), None)
    if like is not None:  # keep the memory format of the full-size input, as TensorIterator does
        return _empty_like(like, dtype)
    return torch.empty(shape, dtype=dtype, device="meta")


def _reduce_meta(x: Tensor, dim: object = None, keepdim: bool = False, *args: object, **kwargs: object) -> Tensor:
    dims = range(x.dim()) if dim is None or dim == [] else [dim] if isinstance(dim, int) else dim
    dims = {d % x.dim() for d in dims}
    shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keepdim or i not in dims]
    return x.new_empty(shape, dtype=kwargs.get("dtype") or x.dtype)


def _cat_meta(tensors: list[Tensor], dim: int = 0) -> Tensor | None:
    parts = [t for t in tensors if not (t.dim() == 1 and t.numel() == 0)]  # legacy empty inputs are skipped
    first = parts[0]
    dim %= first.dim()
    if any(t.dim() != first.dim() or t.dtype != first.dtype
           or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != dim) for t in parts):
        return None  # let the real kernel raise its error (or promote dtypes)
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in parts)
    return first.new_empty(shape)


def _stack_meta(tensors: list[Tensor], dim: int = 0) -> Tensor | None:
    first = tensors[0]
    if any(t.shape != first.shape or t.dtype != first.dtype for t in tensors):
        return None
    dim %= first.dim() + 1
    shape = list(first.shape)
    shape.insert(dim, len(tensors))
    return first.new_empty(shape)


def _mm_meta(a: Tensor, b: Tensor) -> Tensor | None:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        return None
    return a.new_empty((a.shape[0], b.shape[1]))


def _addmm_meta(bias: Tensor, a: Tensor, b: Tensor, *args: object, **kwargs: object) -> Tensor | None:
    return _mm_meta(a, b)


def _conv_meta(x: Tensor, w: Tensor, bias: object, stride: list[int], padding: list[int], dilation: list[int],
               transposed: bool, output_padding: list[int], groups: int, *rest: object) -> Tensor | None:
    """Output of ``aten.convolution`` by the documented formulas (the meta kernel's first call
    imports sympy: 2 s). Anything unusual returns None, so the real kernel checks it and raises."""
    n = w.dim() - 2
    if x.dim() != n + 2 or not (len(stride) == len(padding) == len(dilation) == n) or groups < 1:
        return None
    if transposed:
        if x.shape[1] != w.shape[0] or len(output_padding) != n:
            return None
        cout = w.shape[1] * groups
        sizes = [(x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (w.shape[2 + i] - 1)
                 + output_padding[i] + 1 for i in range(n)]
    else:
        if x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
            return None
        cout = w.shape[0]
        sizes = [(x.shape[2 + i] + 2 * padding[i] - dilation[i] * (w.shape[2 + i] - 1) - 1) // stride[i] + 1
                 for i in range(n)]
        if any(x.shape[2 + i] + 2 * padding[i] < dilation[i] * (w.shape[2 + i] - 1) + 1 for i in range(n)):
            return None  # kernel larger than the padded input: PyTorch's own error
    if min(sizes) < 1 or cout < 1 or x.dtype != w.dtype:
        return None
    return x.new_empty((x.shape[0], cout, *sizes))


def _pool_size(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p:  # the last window must start inside the input or left padding
        out -= 1
    return out


def _pool_meta(x: Tensor, kernel_size: list[int], stride: list[int] = (), padding: object = 0,
               dilation: object = 1, ceil_mode: bool = False, *rest: object, n: int = 2,
               with_indices: bool = False) -> object:
    """Output of an ``n``-d max/avg pooling by the documented formula (None: let the kernel check)."""
    if x.dim() not in (n + 1, n + 2):
        return None

    def per_dim(v: object) -> list[int]:
        v = [v] if isinstance(v, int) else list(v)
        return v * n if len(v) == 1 else v

    k, s, p, d = per_dim(kernel_size), per_dim(stride or kernel_size), per_dim(padding), per_dim(dilation)
    if not (len(k) == len(s) == len(p) == len(d) == n) or any(pi > ki // 2 for pi, ki in zip(p, k)):
        return None  # invalid padding: the real kernel raises
    size = [_pool_size(x.shape[-n + i], k[i], s[i], p[i], d[i], bool(ceil_mode)) for i in range(n)]
    if min(size) < 1:
        return None  # "output size is too small": the real kernel raises
    out = x.new_empty((*x.shape[:-n], *size))
    return (out, x.new_empty(out.shape, dtype=torch.int64)) if with_indices else out


def _adaptive_meta(x: Tensor, output_size: list[int], *args: object, with_indices: bool = False) -> object:
    out = x.new_empty((*x.shape[:-2], *output_size))
    return (out, x.new_empty(out.shape, dtype=torch.int64)) if with_indices else out


# Several meta kernels are Python reference implementations: batch norm is a decomposition (3 ms a
# call, 80% of a ResNet-152 summary), ReLU, mean, cat, pow, addmm... go through torch._refs
# wrappers whose first call imports torch._dynamo (2-10 s on these machines, longer than the whole
# summary), and the convolution's checks import sympy (2 s). For the operations of classic CNNs we
# compute the output shape directly; a function that returns None (an unusual case, or an invalid
# one) hands over to the real meta kernel, which then raises PyTorch's own error. Evaluation mode
# only: we always trace in evaluation mode.
_aten = torch.ops.aten
_META_FAST = {
    _aten.native_batch_norm: _batch_norm_meta,
    _aten._native_batch_norm_legit_no_training: _batch_norm_meta,
    **{getattr(_aten, op): _unary_meta for op in (
        "relu", "relu6", "gelu", "sigmoid", "tanh", "silu", "hardtanh", "elu", "leaky_relu", "hardswish",
        "hardsigmoid", "mish", "softplus", "neg", "exp", "sqrt", "rsqrt", "abs", "clone")},
    **{getattr(_aten, op): _in_place_meta for op in (
        "relu_", "hardtanh_", "sigmoid_", "tanh_", "silu_", "elu_", "leaky_relu_", "hardswish_",
        "hardsigmoid_", "mish_", "add_", "sub_", "mul_", "div_", "clamp_", "clamp_min_")},
    **{getattr(_aten, op): _binary_meta for op in ("add", "sub", "mul", "div")},
    _aten.pow: lambda x, e: _empty_like(x) if isinstance(x, Tensor) and isinstance(e, (int, float)) else None,
    _aten.mean: _reduce_meta,
    _aten.sum: _reduce_meta,
    _aten.amax: _reduce_meta,
    _aten.cat: _cat_meta,
    _aten.stack: _stack_meta,
    _aten.convolution: _conv_meta,
    _aten.mm: _mm_meta,
    _aten.addmm: _addmm_meta,
    _aten.max_pool2d_with_indices: lambda *a, **k: _pool_meta(*a, **k, with_indices=True),
    _aten.max_pool3d_with_indices: lambda *a, **k: _pool_meta(*a, **k, n=3, with_indices=True),
    # avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override): no dilation
    _aten.avg_pool2d: lambda x, k, s=(), p=0, ceil=False, *rest: _pool_meta(x, k, s, p, 1, ceil),
    _aten.avg_pool3d: lambda x, k, s=(), p=0, ceil=False, *rest: _pool_meta(x, k, s, p, 1, ceil, n=3),  # in LRN
    # index_put: LeNet's partial connections scatter a weight table into a dense kernel
    _aten.index_put: lambda x, *rest: _empty_like(x),
    _aten.index_put_: _in_place_meta,
    _aten._adaptive_avg_pool2d: _adaptive_meta,
    _aten.adaptive_max_pool2d: lambda *a, **k: _adaptive_meta(*a, **k, with_indices=True),
}


def _conv_flops(x: Tensor, w: Tensor, bias: object, stride: object, padding: object, dilation: object,
                transposed: bool, *rest: object, out: Tensor) -> int:
    # torch.utils.flop_counter.conv_flop_count: 2 x batch x (weights) x (output positions); for a
    # transposed convolution the positions are the input's
    positions = x.shape[2:] if transposed else out.shape[2:]
    return 2 * x.shape[0] * math.prod(w.shape) * math.prod(positions)


def _flops(func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: object) -> int:
    """FLOPs of one ATen op, as ``torch.utils.flop_counter.FlopCounterMode`` counts them.

    Convolutions and matrix products (what CNNs have) are computed here; for the rarer ops in
    PyTorch's table (attention, scaled matrix products) we use that table itself. Importing
    ``torch.utils.flop_counter`` costs 75 MB and 78 modules, and ``import cnnlab`` imports this file.
    """
    packet = func._overloadpacket
    if packet in _CONV_PACKETS:
        return _conv_flops(*args, **kwargs, out=out)
    if packet in (_aten.mm, _aten.addmm):
        a, b = args[-2:]
        return 2 * a.shape[0] * a.shape[1] * b.shape[1]
    if packet in (_aten.bmm, _aten.baddbmm):
        a, b = args[-2:]
        return 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    name = packet.__name__
    if "attention" in name or "scaled_mm" in name or "convolution" in name:
        from torch.utils.flop_counter import flop_registry

        formula = flop_registry.get(packet)
        return int(formula(*args, **kwargs, out_val=out)) if formula is not None else 0
    return 0


_CONV_PACKETS = frozenset({_aten.convolution, _aten._convolution})


class _Tracer(TorchDispatchMode):
    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # TorchDispatchMode otherwise wraps __torch_dispatch__ in torch._dynamo.disable, whose first
        # call imports torch._dynamo (2-10 s here) and which adds a frame to every op. Nothing is
        # compiled inside a trace, so the guard is not needed.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        fast = _META_FAST.get(func._overloadpacket)
        x = args[0] if args else None
        out = None
        if fast is not None and isinstance(x, (Tensor, list)) and _on_meta(x):
            out = fast(*args, **kwargs)
        if out is None:
            out = func(*args, **kwargs)
        flops = _flops(func, args, kwargs, out)
        self.run.flops += flops
        self.run.on_op(func, args, kwargs, out, flops)
        return out


class _Run:
    """State of one traced forward pass."""

    def __init__(self, dtype: torch.dtype, param_names: dict[int, str],
                 param_sizes: dict[str, tuple[int, int]]) -> None:
        self.flops = 0  # running total
        self.itemsize = torch.empty((), dtype=dtype).element_size()
        self.info: dict[int, _Info] = {}
        self.keep: list[Tensor] = []  # keeps traced tensors alive so that ids stay unique
        self.rows: list[LayerRow] = []
        self.stack: list[tuple[str, bool, int, int]] = []  # (name, is_leaf, flops before, leaf level)
        self.leaf_level = 0
        self.calls: dict[str, int] = {}
        self.param_of: dict[int, str] = dict(param_names)  # tensor id -> parameter name
        self.param_sizes = param_sizes  # name -> (numel, ndim)
        self.counted: set[str] = set()
        self.notes: list[str] = []
        self.last_spatial: tuple[AxisField, AxisField] | None = None
        self.max_depth = 0

    # -------------------------------------------------------------- tensors
    def set_info(self, t: Tensor, info: _Info) -> None:
        self.info[id(t)] = info
        self.keep.append(t)
        self.max_depth = max(self.max_depth, info.depth)
        if info.fields is not None and t.dim() >= 3 and all(f.jump is not None for f in info.fields):
            self.last_spatial = info.fields  # the last map not collapsed by global pooling or flatten

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -------------------------------------------------------------- operations
    def on_op(self, func, args: tuple, kwargs: dict, out: object, flops: int) -> None:  # noqa: ANN001
        name = func._overloadpacket.__name__
        inputs = _tensors(args) + _tensors(kwargs)
        outputs = _tensors(out)
        if name in VIEW_OPS and inputs and id(inputs[0]) in self.param_of:
            for o in outputs:  # a view of a weight (the transpose feeding addmm) is still that weight
                self.param_of[id(o)] = self.param_of[id(inputs[0])]
        traced = [t for t in inputs if id(t) in self.info]
        if traced and outputs:
            info = self.propagate(func, name, args, kwargs, traced, outputs[0], flops)
            for o in outputs:
                self.set_info(o, info)
        if self.leaf_level or not outputs:
            return
        if (traced and name not in VIEW_OPS) or flops:
            self.add_op_row(name, inputs, outputs[0], flops)

    def propagate(self, func, name: str, args: tuple, kwargs: dict, traced: list[Tensor],  # noqa: ANN001
                  out: Tensor, flops: int) -> _Info:
        depth = max(self.info[id(t)].depth for t in traced) + (1 if flops else 0)
        if any(self.info[id(t)].fields is None for t in traced):
            return _Info(None, depth)  # not tracked since an op rearranged the spatial axes
        x = args[0] if args and isinstance(args[0], Tensor) else None
        if x is not None and id(x) in self.info and out.dim() >= 3:
            fields = self.spatial_rule(func, name, args, kwargs, x, out)
            if fields is not None:
                others = [t for t in traced if t is not x]  # e.g. the bias of a convolution is not traced
                if others:
                    fields = self.merge([fields, *(self.generic(name, t, out) for t in others)])
                return _Info(fields, depth)
        return _Info(self.merge([self.generic(name, t, out) for t in traced]), depth)

    def spatial_rule(self, func, name: str, args: tuple, kwargs: dict, x: Tensor,  # noqa: ANN001
                     out: Tensor) -> tuple[AxisField, AxisField] | None:
        """Fields after an op that moves the spatial grid; None for ops handled generically."""
        f = self.info[id(x)].fields
        if name in CONV_OPS:
            a = _bind(func, args, kwargs)
            n = a["weight"].dim() - 2
            k, s, p, d = (_per_axis(v, n) for v in (list(a["weight"].shape[2:]), a["stride"], a["padding"],
                                                    a["dilation"]))
            rule = transposed_conv_field if a.get("transposed") else conv_field
            return tuple(f[i] if k[i] is None else rule(f[i], kernel=k[i], stride=s[i], padding=p[i],
                                                        dilation=d[i]) for i in range(2))
        if name in POOL_OPS:
            a = _bind(func, args, kwargs)
            n = 3 if name.endswith(("3d", "3d_with_indices")) else 1 if name.endswith("1d") else 2
            k = _per_axis(a["kernel_size"], n)
            s = _per_axis(a["stride"] or a["kernel_size"], n)
            p = _per_axis(a["padding"], n)
            d = _per_axis(a.get("dilation", 1), n)
            return tuple(f[i] if k[i] is None else conv_field(f[i], kernel=k[i], stride=s[i], padding=p[i],
                                                              dilation=d[i]) for i in range(2))
        if name in ADAPTIVE_POOL_OPS or name in RESIZE_OPS:
            rule = adaptive_pool_field if name in ADAPTIVE_POOL_OPS else resize_field
            n = 1 if name.endswith("1d") else 2
            fields = list(f)
            for i in range(2 - n, 2):
                fields[i] = rule(f[i], in_size=x.shape[i - 2], out_size=out.shape[i - 2])
            return tuple(fields)
        if name in PAD_OPS:
            a = _bind(func, args, kwargs)
            pads = list(a.get("pad", a.get("padding", [])))
            before = [pads[2 * j] if 2 * j < len(pads) else 0 for j in range(2)]  # (width, height)
            return (pad_field(f[0], before=before[1]), pad_field(f[1], before=before[0]))
        if name == "slice":
            a = _bind(func, args, kwargs)
            dim = a["dim"] % x.dim()
            axis = dim - (x.dim() - 2)
            if axis < 0:
                return None
            begin = a.get("start") or 0
            begin = begin + x.shape[dim] if begin < 0 else begin
            fields = list(f)
            fields[axis] = slice_field(f[axis], begin=begin, step=a.get("step") or 1)
            return tuple(fields)
        return None

    def generic(self, op: str, t: Tensor, out: Tensor) -> tuple[AxisField, AxisField] | None:
        """An op that keeps the spatial grid (element-wise ops, normalisation, concatenation along
        channels, products with broadcast attention weights), or collapses it (mean over H and W,
        flatten): an axis whose size becomes 1, or disappears, sees all of the input's units.

        Any other change of the last two sizes (a channels-last permute, a reshape into tokens)
        means we no longer know which axes are the image's: the fields become None ("not tracked")
        rather than numbers that would mean nothing.
        """
        f = self.info[id(t)].fields
        if t.dim() < 3:
            return f
        fields = []
        for i in range(2):
            n_in = t.shape[i - 2]
            n_out = out.shape[i - 2] if out.dim() >= 3 else 1
            if n_in == n_out or n_in == 1:
                fields.append(f[i])
            elif n_out == 1:
                fields.append(collapse_field(f[i], size=n_in))
            else:
                where = self.stack[-1][0] if self.stack else ""
                where = f"in {where!r}" if where else "in the model's own forward"
                self.note(f"receptive fields are not tracked after {op!r} {where}: it rearranges the spatial "
                          f"axes ({tuple(t.shape)} -> {tuple(out.shape)})")
                return None
        return tuple(fields)

    @staticmethod
    def merge(all_fields: list[tuple[AxisField, AxisField] | None]) -> tuple[AxisField, AxisField] | None:
        if any(fs is None for fs in all_fields):
            return None
        return tuple(union_fields([fs[i] for fs in all_fields]) for i in range(2))

    # -------------------------------------------------------------- rows
    def unique_name(self, name: str) -> str:
        self.calls[name] = self.calls.get(name, 0) + 1
        return name if self.calls[name] == 1 else f"{name}:{self.calls[name]}"

    def params_of(self, names: Iterable[str]) -> tuple[int, int]:
        params = weights = 0
        for n in names:
            if n in self.counted:
                continue
            self.counted.add(n)
            numel, ndim = self.param_sizes[n]
            params += numel
            weights += numel if ndim >= 2 else 0
        return params, weights

    def make_row(self, name: str, kind: str, out: Tensor, params: int, weights: int, flops: int,
                 activations: int, source: str) -> LayerRow:
        info = self.info.get(id(out))
        fields = None if info is None else info.fields
        return LayerRow(
            name=name, type=kind, output_shape=tuple(out.shape), params=params, weights=weights,
            macs=flops // 2, flops=flops, activations=activations,
            activation_bytes=activations * self.itemsize,
            receptive_field=None if fields is None else tuple(f.rf for f in fields),
            jump=None if fields is None else tuple(f.jump for f in fields),
            start=None if fields is None else tuple(f.start for f in fields),
            depth=0 if info is None else info.depth,
            source=source,
        )

    def add_op_row(self, op: str, inputs: list[Tensor], out: Tensor, flops: int) -> None:
        owner = self.stack[-1][0] if self.stack else ""
        name = self.unique_name(f"{owner}.{op}" if owner else op)
        used = {self.param_of[id(t)] for t in inputs if id(t) in self.param_of}
        params, weights = self.params_of(sorted(used))
        in_place = op.endswith("_") or op in ACTIVATION_OPS or _aliases(out, inputs)
        self.rows.append(self.make_row(name, op, out, params, weights, flops, 0 if in_place else out.numel(), "op"))

    # -------------------------------------------------------------- module hooks
    def pre_hook(self, name: str, leaf: bool):
        def hook(module: nn.Module, args: tuple) -> None:
            self.stack.append((name, leaf, self.flops, self.leaf_level))
            if leaf:
                self.leaf_level += 1
        return hook

    def post_hook(self, name: str, leaf: bool, own_params: list[str]):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            _, _, before, level = self.stack.pop()
            self.leaf_level = level
            if not leaf:
                return
            out = _first_tensor(output)
            if out is None:
                return
            params, weights = self.params_of(own_params)
            inputs = _tensors(args)
            in_place = isinstance(module, IN_PLACE_MODULES) or _aliases(out, inputs)
            flops = self.flops - before
            self.rows.append(self.make_row(self.unique_name(name or type(module).__name__), type(module).__name__,
                                           out, params, weights, flops, 0 if in_place else out.numel(), "module"))
        return hook


def _check_modules(model: nn.Module, label: str) -> None:
    """Refuse impossible layer configurations before running (non-positive channels, kernels...)."""
    for name, m in model.named_modules():
        for attr in _POSITIVE_FIELDS:
            v = getattr(m, attr, None)
            if v is None or isinstance(v, str):
                continue
            vals = v if isinstance(v, tuple) else (v,)
            if all(isinstance(x, int) and not isinstance(x, bool) for x in vals) and any(x <= 0 for x in vals):
                raise ConfigError(f"{label}: layer {name or '<root>'!r} ({type(m).__name__}) has {attr}={v!r}; "
                                  f"{attr} must be positive")


def trace_model(model: nn.Module, input_size: tuple[int, int, int], *, batch_size: int, dtype: torch.dtype,
                label: str) -> TraceResult:
    """Run ``model`` once on a meta input of shape ``(batch_size, *input_size)`` and record every layer."""
    _check_modules(model, label)
    named = dict(model.named_parameters())
    param_sizes = {n: (p.numel(), p.dim()) for n, p in named.items()}
    tensors = {**named, **dict(model.named_buffers())}
    on_meta = all(t.device.type == "meta" and (not t.is_floating_point() or t.dtype == dtype)
                  for t in tensors.values())
    state = None if on_meta else {
        n: torch.empty(t.shape, dtype=dtype if t.is_floating_point() else t.dtype, device="meta")
        for n, t in tensors.items()
    }
    param_names = {id(state[n] if state is not None else p): n for n, p in named.items()}
    run = _Run(dtype, param_names, param_sizes)

    modules = dict(model.named_modules())
    module_types = {n: type(m).__name__ for n, m in modules.items()}
    owned: dict[int, list[str]] = {}
    for pname in named:
        owner, _, _ = pname.rpartition(".")
        owned.setdefault(id(modules[owner]), []).append(pname)
    handles = []
    training = {m: m.training for m in modules.values()}
    x = torch.empty((batch_size, *input_size), dtype=dtype, device="meta")
    run.set_info(x, _Info((INPUT_FIELD, INPUT_FIELD), 0))
    try:
        for name, m in modules.items():
            leaf = next(m.children(), None) is None
            handles.append(m.register_forward_pre_hook(run.pre_hook(name, leaf)))
            handles.append(m.register_forward_hook(run.post_hook(name, leaf, owned.get(id(m), []))))
        model.eval()  # dropout off, batch norm on running statistics, auxiliary heads skipped
        with torch.no_grad(), warnings.catch_warnings(), _Tracer(run):
            warnings.simplefilter("ignore")
            if state is None:
                y = model(x)
            else:
                y = torch.func.functional_call(model, state, (x,))
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        where = run.stack[-1][0] if run.stack else ""
        kind = module_types.get(where, "")
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        layer = f"layer {where!r} ({kind})" if where else "the model"
        raise ConfigError(f"{label}: {layer} cannot run on input {batch_size}x"
                          f"{'x'.join(map(str, input_size))}: {first}") from err
    finally:
        for h in handles:
            h.remove()
        for m, flag in training.items():
            m.train(flag)
    for row in run.rows:
        if any(s == 0 for s in row.output_shape):
            raise ConfigError(f"{label}: layer {row.name!r} ({row.type}) produces an empty output "
                              f"{'x'.join(map(str, row.output_shape))}")
    out = _first_tensor(y)
    lost = out is not None and id(out) in run.info and run.info[id(out)].fields is None
    return TraceResult(rows=run.rows, flops=run.flops, final_fields=None if lost else run.last_spatial,
                       depth=run.max_depth, notes=run.notes, module_types=module_types)

