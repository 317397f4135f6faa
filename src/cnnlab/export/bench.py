"""Inference speed of one model through several backends, measured side by side in one process.

Throughput (img/s) at ``batch_size`` and latency (p50/p90 ms) at batch 1 are timed in interleaved
rounds: every round times every backend once (in a rotated order), so a change of machine load
during the run affects all backends alike. Each backend's outputs are compared with eager fp32 on
the same batch (largest absolute difference of the logits, top-1 agreement).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.export.backends import Backend, machine_info, make_backend
from cnnlab.export.preprocess import Preprocessing

__all__ = ["benchmark", "format_bench", "compare_outputs"]


def compare_outputs(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """Largest absolute logit difference and top-1 agreement of ``out`` against the reference ``ref``."""
    out, ref = out.float(), ref.float()
    return {"max_abs_diff": float((out - ref).abs().max()),
            "top1_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean())}


def _time_calls(run, x: torch.Tensor, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        run(x)
    return time.perf_counter() - start


def _percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def benchmark(model: nn.Module, preprocessing: Preprocessing, *, backends: list[str], batch_size: int = 16,
              rounds: int = 5, latency_calls: int = 10, target_seconds: float = 0.3,
              onnx_path: str | Path | None = None, log=None) -> dict[str, Any]:
    """Time ``backends`` on random inputs of ``preprocessing.input_size``; a dict (``format_bench`` prints it).

    ``target_seconds``: each throughput measurement repeats the batch until it takes about this long.
    ``onnx_path``: where the onnxruntime backend's ONNX file is (exported there if missing; default a
    temporary file, removed afterwards)."""
    from cnnlab.errors import ConfigError
    from cnnlab.limits import MAX_INPUT_BATCH_BYTES

    per_image = 4 * math.prod(preprocessing.input_size)  # fp32
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size * per_image <= \
            MAX_INPUT_BATCH_BYTES:
        most = max(1, MAX_INPUT_BATCH_BYTES // per_image)
        raise ConfigError(f"--batch-size {batch_size!r}: batches of {'x'.join(map(str, preprocessing.input_size))} "
                          f"inputs must be 1..{most:,} images (at most {MAX_INPUT_BATCH_BYTES >> 30} GiB of fp32 "
                          "input)")
    gen = torch.Generator().manual_seed(0)
    xb = torch.randn(batch_size, *preprocessing.input_size, generator=gen)
    x1 = torch.randn(1, *preprocessing.input_size, generator=gen)
    model = model.eval()
    with torch.inference_mode():
        ref = model(xb).float()
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as tmp:
        onnx_file = Path(onnx_path) if onnx_path else Path(tmp) / f"{preprocessing.model}.onnx"
        built: list[tuple[Backend, float]] = []
        for name in backends:
            start = time.perf_counter()
            b = make_backend(name, model, preprocessing=preprocessing, onnx_path=onnx_file)
            b.run(xb), b.run(x1)  # warm-up: torch.compile compiles here, oneDNN picks its kernels
            built.append((b, time.perf_counter() - start))
            if log:
                log(f"{name}: ready in {built[-1][1]:.1f} s")
        rows = _measure(built, xb, x1, ref, rounds=rounds, latency_calls=latency_calls,
                        target_seconds=target_seconds, log=log)
    return {"model": preprocessing.model, "input_size": list(preprocessing.input_size), "batch_size": batch_size,
            "rounds": rounds, "latency_calls_per_round": latency_calls, "machine": machine_info(), "rows": rows}


def _measure(built, xb, x1, ref, *, rounds, latency_calls, target_seconds, log) -> list[dict[str, Any]]:
    # Repeats per throughput measurement, from one timed call after the warm-up.
    reps = {b.name: max(1, round(target_seconds / max(_time_calls(b.run, xb, 1), 1e-6))) for b, _ in built}
    ips: dict[str, list[float]] = {b.name: [] for b, _ in built}
    lat: dict[str, list[float]] = {b.name: [] for b, _ in built}
    for r in range(rounds):
        order = built[r % len(built):] + built[:r % len(built)]
        for b, _ in order:
            n = reps[b.name]
            ips[b.name].append(n * xb.shape[0] / _time_calls(b.run, xb, n))
        for b, _ in order:
            for _ in range(latency_calls):
                lat[b.name].append(_time_calls(b.run, x1, 1) * 1000.0)
        if log:
            log(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in ips.items()))
    rows = []
    for b, setup in built:
        with torch.inference_mode():
            quality = compare_outputs(b.run(xb), ref)
        rows.append({"backend": b.name, "label": b.label, "images_per_second": statistics.median(ips[b.name]),
                     "p50_ms": _percentile(lat[b.name], 0.5), "p90_ms": _percentile(lat[b.name], 0.9),
                     "setup_seconds": setup, **quality})
    base = next((r for r in rows if r["backend"] == "eager"), None)
    for row in rows:
        row["throughput_vs_eager"] = row["images_per_second"] / base["images_per_second"] if base else None
        row["latency_vs_eager"] = base["p50_ms"] / row["p50_ms"] if base else None  # > 1: faster
    return rows


def format_bench(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"{result['model']} {'x'.join(map(str, result['input_size']))}: throughput at batch "
             f"{result['batch_size']} (median of {result['rounds']} rounds), latency at batch 1 "
             f"({result['rounds'] * result['latency_calls_per_round']} calls); ratios against eager fp32",
             f"machine: {m['cpu']} [{' '.join(m['cpu_flags'])}], native bf16: {'yes' if m['native_bf16'] else 'no'}, "
             f"{m['torch_threads']} torch threads, torch {m['torch']}, onnxruntime {m['onnxruntime'] or '-'}, "
             f"load average {m['load_average_1min']} on {m['cpus']} CPUs", ""]
    if m["load_average_1min"] and m["cpus"] and m["load_average_1min"] > m["cpus"]:
        lines.insert(2, "warning: the machine is loaded by other programs; multi-threaded torch suffers most "
                        "(its threads wait for each other at every operation): compare ratios, not absolute figures")
    header = ("backend", "img/s", "x eager", "p50 ms", "p90 ms", "x eager", "max |diff|", "top-1 agree", "setup s")
    table = []
    for r in result["rows"]:
        ratio = (lambda v: f"{v:.2f}x" if v is not None else "-")
        table.append((r["backend"], f"{r['images_per_second']:.1f}", ratio(r["throughput_vs_eager"]),
                      f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}", ratio(r["latency_vs_eager"]),
                      f"{r['max_abs_diff']:.2e}", f"{100 * r['top1_agreement']:.1f}%", f"{r['setup_seconds']:.1f}"))
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table)]
    for i, row in enumerate([header, *table]):
        lines.append("  ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines += [f"  {r['backend']}: {r['label']}" for r in result["rows"]]
    return "\n".join(lines)
