"""Where and in which number format to train: device, autocast dtype, memory layout.

``precision="auto"`` picks, per machine (benchmarks/train_throughput.py measures it; docs/training.md has the figures):

* CUDA: bf16 autocast when the GPU supports bf16 (Ampere and later), else fp32.
* CPU with native bf16 (AVX512-BF16 or AMX): bf16 autocast, about 2.7x faster than fp32 for
  resnet20 training on the project's Zen 4 machines.
* other CPUs (AVX2, or AVX-512 without its BF16 extension): fp32. bf16 is emulated there and
  slower than fp32 (resnet20 training: AVX2 Zen 3 10 against 96 img/s; AVX-512 Xeon 227 against
  426 img/s with channels_last, benchmarks/train_throughput.py).

and channels_last memory layout in every case (``memory_format="auto"``).

Parameters and optimizer state stay fp32 in every mode (autocast only changes the compute dtype of
convolutions and matrix products), so weights saved from a bf16 run are ordinary fp32 tensors.
``fp16`` (CUDA only) adds a gradient scaler.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from cnnlab.errors import ConfigError

__all__ = ["Precision", "PRECISIONS", "MEMORY_FORMATS", "resolve_device", "cpu_has_bf16", "resolve_precision",
           "threads_for_load"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32" | "bf16" | "fp16"
    channels_last: bool
    reason: str  # why "auto" chose this, for config.json

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch.device; None: CUDA when present, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available here")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r}: cnnlab trains on cpu or cuda")
    return dev


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 autocast pays off.

    Not ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: it is true on any AVX-512 CPU, where oneDNN
    emulates bf16. Measured on such a CPU (Xeon, AVX-512 without AVX512-BF16): resnet20 training
    with bf16 autocast ran at 227 img/s against 426 in fp32 (benchmarks/train_throughput.py).
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # cpuinfo's flags, any OS
    if all(hasattr(torch.cpu, name) for name in probes):
        return any(getattr(torch.cpu, name)() for name in probes)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device, *, memory_format: str = "auto") -> Precision:
    """The concrete precision and layout for ``precision`` ("auto", "fp32", "bf16", "fp16") on ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    if memory_format not in MEMORY_FORMATS:
        raise ConfigError(f"unknown memory format {memory_format!r} (use {', '.join(MEMORY_FORMATS)})")
    cuda = device.type == "cuda"
    if precision == "auto":
        if cuda:
            bf16 = torch.cuda.is_bf16_supported()
            name, reason = ("bf16", "CUDA with bf16") if bf16 else ("fp32", "CUDA without bf16")
        elif cpu_has_bf16():
            name, reason = "bf16", "CPU with native bf16 (AVX512-BF16/AMX)"
        else:
            name, reason = "fp32", "CPU without native bf16 (bf16 would be emulated, slower)"
    else:
        name, reason = precision, "asked for"
    if name == "fp16" and not cuda:
        raise ConfigError("precision fp16 needs CUDA (on a CPU use bf16 or fp32)")
    if memory_format == "auto":
        # channels_last (NHWC) everywhere: oneDNN's CPU kernels and the GPUs' tensor cores are NHWC.
        # Measured in training (benchmarks/train_throughput.py, 1 thread, AVX2 Zen 3): resnet20 fp32
        # 1.5x, lenet5 fp32 1.2x; with bf16 on Zen 4 (2 threads) 710 against 632 img/s.
        channels_last = True
    else:
        channels_last = memory_format == "channels_last"
    return Precision(name, channels_last, reason)


def _busy_cores() -> tuple[float, str] | None:
    """How many cores other processes are using now, and how that was read; None where unknown.

    On Linux, ``/proc/loadavg``'s count of runnable threads, less this one, sampled 5 times over
    0.1 s (the median): the 1-minute load average lags by a minute, so right after a job ends it
    would still read as busy. Elsewhere the load average.
    """
    import statistics
    import time

    samples = []
    for i in range(5):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            break
        samples.append(max(0, running - 1))
        if i < 4:
            time.sleep(0.025)
    if samples:
        busy = float(statistics.median(samples))
        return busy, f"{busy:g} other thread{'s' if busy != 1 else ''} running"
    try:
        load = os.getloadavg()[0]
        return load, f"load average {load:.1f}"
    except (AttributeError, OSError):
        return None


def threads_for_load(*, cores: int | None = None, busy: float | None = None) -> tuple[int | None, str]:
    """torch CPU threads for a run that did not choose: (None, "") on an idle machine (torch's default,
    one per core); when other processes keep cores busy, the cores they leave, at least 1, with a note.

    Why: torch's OpenMP threads wait for each other at every parallel region; beside other busy
    processes a thread that has no core holds up the rest. Measured with benchmarks/busy_threads.py
    (2-core Zen 4, resnet20, beside two processes running torch convolutions): 2 threads took 1.77x
    the wall time of 1 thread, and passive OpenMP waiting did not help (1.75x); idle, 2 threads take
    0.70x of 1 thread's time.
    """
    how = f"{busy} busy"
    try:
        cores = cores or len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    if busy is None:
        measured = _busy_cores()
        if measured is None:
            return None, ""
        busy, how = measured
    threads = max(1, cores - int(busy))
    if int(busy) < 1 or threads >= torch.get_num_threads():
        return None, ""
    return threads, (f"the machine is busy ({how} on {cores} cores): training with "
                     f"{threads} thread{'s' if threads > 1 else ''}, faster beside other jobs; --threads N to choose")
