"""CPU inference: cnnlab's chosen path against ONNX Runtime fp32, side by side in one process.

    resnet50   batch 16, 3x224x224: throughput (img/s)
    resnet20   batch 1, 3x32x32:    p50 latency (ms)
    lenet5     batch 1, 1x32x32:    p50 latency (ms)

Every backend of ``cnnlab bench`` is timed in interleaved rounds (``cnnlab.export.bench``). "cnnlab's
chosen path" is what ``cnnlab predict --backend auto`` picks by the same rule: the fastest backend
whose top-1 answers agree with eager fp32 (bf16 only on a CPU with native bf16 and at least 99%
agreement), here chosen from these timings. ``torch.compile`` is timed for the small nets (for
resnet50 it compiles for over a minute; PERF-NOTES.md measured it slower than eager there).

    .venv/bin/python benchmarks/inference.py                  # all three, 5 rounds
    .venv/bin/python benchmarks/inference.py --rounds 2 --threads 1

Goals (issue 19): resnet50 through cnnlab's path at least as fast as ONNX Runtime fp32; resnet20 and
lenet5 p50 latency at most ONNX Runtime's. The weights are random (speed does not depend on them;
agreement is measured on random inputs). Timings on the shared machines drift with the other
processes' load (the load average is printed): compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from cnnlab.export.bench import benchmark, format_bench
from cnnlab.export.source import load_model
from cnnlab.training.device import cpu_has_bf16

CASES = {  # model -> (batch for throughput, backends, what the goal compares)
    "resnet50": (16, ["eager", "channels_last", "bf16", "onnxruntime"], "throughput"),
    "resnet20": (16, ["eager", "channels_last", "bf16", "compile", "onnxruntime"], "latency"),
    "lenet5": (16, ["eager", "channels_last", "bf16", "compile", "onnxruntime"], "latency"),
}


def chosen(rows: list[dict], goal: str, *, torch_only: bool = False) -> dict:
    """The backend ``cnnlab predict --backend auto`` would take, by this run's timings (``torch_only``:
    the best PyTorch path, leaving ONNX Runtime out)."""
    ok = [r for r in rows if r["backend"] != "compile" and not (torch_only and r["backend"] == "onnxruntime") and (
        r["top1_agreement"] >= 0.99 if r["backend"] == "bf16" else r["max_abs_diff"] <= 1e-4 or r["top1_agreement"] >= 0.995)
        and (r["backend"] != "bf16" or cpu_has_bf16())]
    key = (lambda r: -r["images_per_second"]) if goal == "throughput" else (lambda r: r["p50_ms"])
    return min(ok, key=key)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(CASES), help="comma-separated, of " + ",".join(CASES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--latency-calls", type=int, default=10, help="batch-1 calls per backend per round")
    ap.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default torch's)")
    ap.add_argument("--json", help="also write every measurement to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results, lines, compile_lines = {}, [], []
    for name in args.models.split(","):
        batch, backends, goal = CASES[name]
        src = load_model(model=name)
        print(f"--- {name}", file=sys.stderr, flush=True)
        res = benchmark(src.model, src.preprocessing, backends=backends, batch_size=batch, rounds=args.rounds,
                        latency_calls=args.latency_calls, log=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
        results[name] = res
        print(format_bench(res) + "\n", flush=True)
        rows = {r["backend"]: r for r in res["rows"]}
        pick, ort = chosen(res["rows"], goal), rows["onnxruntime"]
        best_torch = chosen(res["rows"], goal, torch_only=True)
        if goal == "throughput":
            verdict = pick["images_per_second"] / ort["images_per_second"]
            lines.append(f"| {name}, batch {batch}, img/s | {pick['backend']} {pick['images_per_second']:.1f} | "
                         f"{best_torch['backend']} {best_torch['images_per_second']:.1f} | "
                         f"{rows['eager']['images_per_second']:.1f} | {ort['images_per_second']:.1f} | "
                         f"{verdict:.2f}x ({'met' if verdict >= 1 else 'NOT met'}) |")
        else:
            verdict = ort["p50_ms"] / pick["p50_ms"]
            lines.append(f"| {name}, batch 1, p50 ms | {pick['backend']} {pick['p50_ms']:.2f} | "
                         f"{best_torch['backend']} {best_torch['p50_ms']:.2f} | {rows['eager']['p50_ms']:.2f} | "
                         f"{ort['p50_ms']:.2f} | {verdict:.2f}x ({'met' if verdict >= 1 else 'NOT met'}) |")
        if "compile" in rows:
            c, e = rows["compile"], rows["eager"]
            compile_lines.append(f"| {name} | {c['p50_ms']:.2f} ms, {c['images_per_second']:.0f} img/s | "
                         f"{e['p50_ms']:.2f} ms, {e['images_per_second']:.0f} img/s | {e['p50_ms'] / c['p50_ms']:.2f}x latency, "
                         f"{c['images_per_second'] / e['images_per_second']:.2f}x throughput (compiled in "
                         f"{c['setup_seconds']:.0f} s) |")
    m = next(iter(results.values()))["machine"]
    print(f"machine: {m['cpu']} [{' '.join(m['cpu_flags'])}], native bf16 {m['native_bf16']}, "
          f"{m['torch_threads']} threads, load average {m['load_average_1min']} on {m['cpus']} CPUs, "
          f"torch {m['torch']}, onnxruntime {m['onnxruntime']}")
    print("| case | cnnlab's chosen path | best PyTorch path | eager fp32 | ONNX Runtime fp32 | chosen vs ORT (goal) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(lines))
    if compile_lines:
        print("\n| torch.compile | compiled: p50 batch 1, throughput | eager: p50, throughput | compile vs eager |")
        print("|---|---|---|---|")
        print("\n".join(compile_lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
