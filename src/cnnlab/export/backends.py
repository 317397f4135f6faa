"""CPU inference backends: one model, several ways to run it, each a function from an fp32 NCHW batch to fp32 logits.

    eager          the model as built: fp32, NCHW
    channels_last  fp32 with the NHWC layout oneDNN's convolutions prefer
    bf16           channels_last + bf16 autocast; "native" only on a CPU with AVX512-BF16/AMX
                   (elsewhere oneDNN emulates bf16 and it is slower than fp32)
    compile        torch.compile (inductor) of the fp32 channels_last model; compiles on first call
    onnxruntime    the model exported to ONNX (fp32), run by ONNX Runtime's CPU provider

Measured on a 2-core Zen 4 with AVX512-BF16, the figures that make these the candidates (torchvision ResNet-50, batch 16:
eager 4.4 img/s, channels_last 8.8, bf16 27.6, ONNX Runtime 23).
"""

from __future__ import annotations

import copy
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError
from cnnlab.export.preprocess import Preprocessing

__all__ = ["BACKENDS", "Backend", "make_backend", "machine_info", "parse_backends"]

BACKENDS = ("eager", "channels_last", "bf16", "compile", "onnxruntime")
MAX_ONNX_BYTES = 2 << 30  # protobuf's limit for a model without external data


@dataclass
class Backend:
    name: str
    run: Callable[[Tensor], Tensor]  # fp32 (N, C, H, W) -> fp32 logits (N, K)
    label: str  # what it is, e.g. "bf16 autocast + channels_last (native AVX512-BF16)"
    files: list[Path] = field(default_factory=list)  # artefacts it made or uses (ONNX file)


def parse_backends(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in BACKENDS]
    if bad or not names:
        raise ConfigError(f"unknown backend {bad[0] if bad else text!r} (use a comma-separated list of "
                          f"{', '.join(BACKENDS)})")
    return list(dict.fromkeys(names))


def _channels_last(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval().to(memory_format=torch.channels_last)


def _torch_backend(name: str, model: nn.Module) -> Backend:
    from cnnlab.training.device import cpu_has_bf16

    if name == "eager":
        net = model.eval()

        def run(x: Tensor) -> Tensor:
            with torch.inference_mode():
                return net(x)

        return Backend(name, run, "fp32, NCHW (the model as built)")
    net = _channels_last(model)
    if name == "compile":
        net = torch.compile(net, dynamic=False)
    bf16 = name == "bf16"

    def run_cl(x: Tensor) -> Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(x.contiguous(memory_format=torch.channels_last)).float()

    label = {"channels_last": "fp32, channels_last",
             "compile": "torch.compile (inductor), fp32 channels_last",
             "bf16": "bf16 autocast + channels_last (" + ("native AVX512-BF16/AMX" if cpu_has_bf16()
                                                          else "emulated: this CPU has no native bf16") + ")"}[name]
    return Backend(name, run_cl, label)


def _ort_session(model: Path | bytes, threads: int | None):
    (ort,) = _require_ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # No busy-waiting between runs: spinning ORT threads would steal the cores from whatever runs next
    # (the other backends, in a side-by-side benchmark; the rest of the program, in predict).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def _require_ort():
    from cnnlab.export.export import require

    return require("onnxruntime")


def _onnx_backend(model: nn.Module, prep: Preprocessing, onnx_path: Path, onnx_bytes: bytes | None) -> Backend:
    from cnnlab.export.export import export_onnx

    _require_ort()
    if onnx_bytes is None and not os.path.lexists(onnx_path):
        export_onnx(model, onnx_path, preprocessing=prep, dynamic_batch=True)
    if onnx_bytes is None:  # read as a regular file only: a FIFO in its place must not hang the session
        from cnnlab.errors import WeightsError
        from cnnlab.safeio import read_regular

        onnx_bytes = read_regular(onnx_path, what="ONNX file", error=WeightsError, max_bytes=MAX_ONNX_BYTES)
    session = _ort_session(onnx_bytes, None)
    input_name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {input_name: x.detach().contiguous().numpy()})[0])

    return Backend("onnxruntime", run, "ONNX Runtime fp32 (CPUExecutionProvider)", [onnx_path])


def make_backend(name: str, model: nn.Module, *, preprocessing: Preprocessing,
                 onnx_path: str | os.PathLike | None = None, onnx_bytes: bytes | None = None) -> Backend:
    """The backend ``name`` for ``model`` (left unchanged: layouts are applied to a copy).

    ``onnx_path``: the ONNX file onnxruntime runs (exported there when missing); ``onnx_bytes``: its
    content, already read and checked by the caller (then the file is not read again)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r} (use {', '.join(BACKENDS)})")
    if name == "onnxruntime":
        if onnx_path is None:
            raise ConfigError("the onnxruntime backend needs an onnx_path (a file, exported there when missing)")
        return _onnx_backend(model, preprocessing, Path(onnx_path), onnx_bytes)
    return _torch_backend(name, model)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def machine_info() -> dict:
    """What the timings were measured on: CPU, its vector extensions, threads, library versions."""
    from cnnlab.training.device import cpu_has_bf16

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    try:
        load = round(os.getloadavg()[0], 2)  # above the CPU count: other programs share the cores
    except OSError:
        load = None
    return {"cpu": _cpu_model(), "cpu_flags": _cpu_flags(), "native_bf16": cpu_has_bf16(),
            "cpus": os.cpu_count(), "load_average_1min": load, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "onnxruntime": ort_version, "python": platform.python_version(), "os": platform.platform(terse=True)}
