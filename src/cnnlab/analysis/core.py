"""``analyze``: per-layer shapes, parameters, MACs, activation memory and receptive fields."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnlab.analysis.result import Analysis, LayerRow, Totals
from cnnlab.analysis.trace import trace_model
from cnnlab.errors import ConfigError, UnknownNameError, did_you_mean

__all__ = ["analyze", "load_model", "LoadedModel", "resolve_input_size", "DEFAULT_INPUT_SIZE"]

DEFAULT_INPUT_SIZE = (3, 224, 224)
TORCHVISION_PREFIX = "torchvision:"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


# Initialisers: in-place tensor methods, and nn.init's functions (which pass the tensor by keyword).
# On the meta device there are no values to initialise.
_INIT_METHODS = frozenset({
    "normal_", "uniform_", "fill_", "zero_", "erfinv_", "mul_", "add_", "clamp_", "copy_", "exponential_",
    "random_", "bernoulli_", "log_normal_", "geometric_", "cauchy_", "kaiming_normal_", "kaiming_uniform_",
    "xavier_normal_", "xavier_uniform_", "trunc_normal_", "orthogonal_", "constant_", "ones_", "zeros_",
    "eye_", "dirac_", "sparse_",
})  # fmt: skip


class _SkipMetaInit(TorchFunctionMode):
    """Skip weight initialisation of meta tensors while a model is built.

    Meta tensors hold no values, yet ``nn.init`` still runs its Python reference kernels on them
    (half the cost of building ResNet-152 on the meta device), and their first call imports
    ``torch._dynamo`` (seconds).
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in _INIT_METHODS:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def _building(device: str | torch.device) -> contextlib.ExitStack:
    """Context to build a model on ``device`` (skipping initialisation on the meta device)."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.device(device))
    if torch.device(device).type == "meta":
        stack.enter_context(_SkipMetaInit())
    return stack


class LoadedModel(NamedTuple):
    model: nn.Module
    label: str  # the name given, or the module's class name
    input_size: tuple[int, int, int] | None  # the zoo's input size for the model, None if unknown
    note: str | None = None  # how it was built, when that matters for the reader


def load_model(model_or_name: nn.Module | str, *, device: str | torch.device = "meta",
               config: Mapping[str, Any] | None = None) -> LoadedModel:
    """The model, a label for it, and its own input size.

    A name is a zoo model (``vgg16``) or ``torchvision:NAME`` (torchvision's builder, no weights);
    it is built on ``device`` (``meta`` by default: no memory). A builder that computes with tensors
    (torchvision's RegNets call ``.tolist()``) cannot build there and is built on the CPU instead.
    ``config`` holds family options (``stride_in_1x1=True``). A module is returned as it is.
    """
    if isinstance(model_or_name, nn.Module):
        if config:
            raise ConfigError("config options apply to a model name, not to a model that is already built")
        return LoadedModel(model_or_name, type(model_or_name).__name__, None)
    if not isinstance(model_or_name, str):
        raise ConfigError(f"model must be an nn.Module or a model name, got {type(model_or_name).__name__}")
    name, config = model_or_name, dict(config or {})
    if name.startswith(TORCHVISION_PREFIX):
        import torchvision

        tv_name = name[len(TORCHVISION_PREFIX):]
        known = torchvision.models.list_models(module=torchvision.models)
        if tv_name not in known:
            hint = did_you_mean(tv_name, known, prefix=TORCHVISION_PREFIX)
            raise UnknownNameError(f"unknown torchvision model {tv_name!r}{hint}")

        def build() -> nn.Module:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torchvision's GoogLeNet warns about its init default
                try:
                    return torchvision.models.get_model(tv_name, weights=None, **config)
                except TypeError as err:
                    raise ConfigError(f"{name}: {err}") from err

        own = None
    else:
        from cnnlab.models import create_model, model_info

        own = tuple(model_info(name).input_size)  # unknown names raise UnknownNameError with the closest

        def build() -> nn.Module:
            return create_model(name, **config)

    try:
        with _building(device):
            return LoadedModel(build(), name, own)
    except (NotImplementedError, RuntimeError) as err:
        if torch.device(device).type != "meta" or "meta" not in str(err):
            raise
    with _building("cpu"):
        return LoadedModel(build(), name, own, "built on the CPU (its builder computes with tensor values, "
                                               "which the meta device does not hold)")


def resolve_input_size(input_size: object, own: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """Check ``input_size`` (C, H, W); None means the model's own size, else 3x224x224.

    ``C`` may be None: the model's own number of channels (3 if unknown), so that
    ``(None, 64, 64)`` resizes a grey-scale and a colour model alike.
    """
    if input_size is None:
        return tuple(own or DEFAULT_INPUT_SIZE)
    if isinstance(input_size, (tuple, list)) and len(input_size) == 3 and input_size[0] is None:
        input_size = ((own or DEFAULT_INPUT_SIZE)[0], *input_size[1:])
    if (not isinstance(input_size, (tuple, list)) or len(input_size) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_size)):
        raise ConfigError(f"input_size must be three positive integers (C, H, W), got {input_size!r}")
    return tuple(input_size)


def _check_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        return _DTYPES[dtype]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def analyze(
    model_or_name: nn.Module | str,
    input_size: tuple[int, int, int] | None = None,
    *,
    batch_size: int | None = None,
    dtype: torch.dtype | str = torch.float32,
    config: Mapping[str, Any] | None = None,
    depth: int | None = None,
) -> Analysis:
    """Per-layer output shape, params, MACs, FLOPs, activations and receptive field of a model.

    ``model_or_name``: any ``nn.Module`` (left unchanged), a zoo name, or ``torchvision:NAME``.
    ``input_size``: (C, H, W), or (N, C, H, W) as torchinfo takes it (N is then the batch size);
    default the zoo model's own size, else 3x224x224 (C None: the model's own channels).
    ``depth`` folds the rows to that module depth (torchinfo's ``depth``; see :meth:`Analysis.fold`).
    Echoed in a REPL or notebook, the result shows its table. Runs once on the
    ``meta`` device: no weights and no activations are allocated, whatever the batch size.

    ``macs`` are multiply-accumulates of convolutions and matrix products (the papers' and
    torchvision's "GFLOPS"); ``flops = 2 * macs``. ``activations`` count values written to new
    tensors, batch included (in-place activations, dropout and views count 0); the total adds the
    input. Receptive field, jump and start are per image axis (H, W). See
    :mod:`cnnlab.analysis.result` for every convention.
    """
    if isinstance(input_size, (tuple, list, torch.Size)) and len(input_size) == 4:
        if batch_size is not None and batch_size != input_size[0]:
            raise ConfigError(f"input_size {tuple(input_size)} has batch {input_size[0]} but batch_size={batch_size}")
        batch_size, input_size = input_size[0], tuple(input_size[1:])
    batch_size = 1 if batch_size is None else batch_size
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    dtype = _check_dtype(dtype)
    model, label, own, note = load_model(model_or_name, config=config)
    size = resolve_input_size(input_size, own)
    trace = trace_model(model, size, batch_size=batch_size, dtype=dtype, label=label)
    idle_rows, idle_note = _idle_modules(model, trace.rows, batch_size)
    input_numel = batch_size * size[0] * size[1] * size[2]
    itemsize = torch.empty((), dtype=dtype).element_size()
    activations = input_numel + sum(r.activations for r in trace.rows)
    params = list(model.parameters())
    total = Totals(
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        weights=sum(p.numel() for p in params if p.dim() >= 2),
        macs=trace.flops // 2,
        flops=trace.flops,
        activations=activations,
        activation_bytes=activations * itemsize,
        depth=trace.depth,
        receptive_field=None if trace.final_fields is None else tuple(f.rf for f in trace.final_fields),
    )
    analysis = Analysis(model=label, input_size=size, batch_size=batch_size, dtype=str(dtype).removeprefix("torch."),
                        layers=tuple(trace.rows) + idle_rows, total=total, module_types=trace.module_types,
                        notes=tuple([note] if note else []) + tuple(trace.notes) + idle_note)
    return analysis.fold(depth) if depth is not None else analysis


def _idle_modules(model: nn.Module, rows: list[LayerRow], batch_size: int) -> tuple[tuple[LayerRow, ...], tuple[str, ...]]:
    """Rows for the modules that hold parameters but that ``forward`` does not run (GoogLeNet's
    auxiliary heads run only in training): their params are in the total, so they are listed too,
    with no output, MACs or activations."""
    ran = {r.name.split(":")[0] for r in rows}
    prefixes = {".".join(n.split(".")[:k]) for n in ran for k in range(1, n.count(".") + 2)}
    idle: list[LayerRow] = []
    for name, module in model.named_modules():
        if not name or name in prefixes or any(name.startswith(i.name + ".") for i in idle):
            continue
        params = list(module.parameters())
        if not params or any(n.startswith(name + ".") or n == name for n in ran):
            continue
        idle.append(LayerRow(name=name, type=type(module).__name__, output_shape=(batch_size,),
                             params=sum(p.numel() for p in params),
                             weights=sum(p.numel() for p in params if p.dim() >= 2), macs=0, flops=0,
                             activations=0, activation_bytes=0, receptive_field=None, jump=None, start=None,
                             depth=0, source="idle"))
    if not idle:
        return (), ()
    names = ", ".join(r.name for r in idle)
    return tuple(idle), (f"{names}: not run by forward (training only); their {sum(r.params for r in idle):,} "
                         "params are in the total, listed with no output and 0 MACs",)
