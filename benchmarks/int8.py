"""int8 post-training static quantisation with ONNX Runtime: accuracy change and speed against fp32.

The run's model is exported to ONNX (fp32), quantised with ``onnxruntime.quantization.quantize_static``
(QDQ format, int8 weights per output channel, uint8 activations, MinMax calibration) on images of
the run's train split (never test), then both models are evaluated once on the run's test split.

    .venv/bin/python benchmarks/int8.py --run runs/<run>                 # e.g. a `cnnlab train lenet5` run
    .venv/bin/python benchmarks/int8.py --run runs/<run> --calibration 512 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import load_dataset
from cnnlab.export.export import export_onnx, require
from cnnlab.export.source import load_model
from cnnlab.models.registry import model_info


def _session(ort, path: Path, threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _accuracy(session, x: np.ndarray, y: np.ndarray, batch: int = 250) -> float:
    name = session.get_inputs()[0].name
    pred = np.concatenate([session.run(None, {name: x[i:i + batch]})[0].argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).mean())


def _timings(sessions: dict, x: np.ndarray, rounds: int) -> dict:
    out = {k: {"p50": [], "ips": []} for k in sessions}
    for _ in range(rounds):  # interleaved rounds
        for k, s in sessions.items():
            name = s.get_inputs()[0].name
            for i in range(20):
                t = time.perf_counter()
                s.run(None, {name: x[i:i + 1]})
                out[k]["p50"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            s.run(None, {name: x[:64]})
            out[k]["ips"].append(64 / (time.perf_counter() - t))
    return {k: {"p50_ms": statistics.median(v["p50"]), "images_per_second": statistics.median(v["ips"])}
            for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder")
    ap.add_argument("--calibration", type=int, default=256, help="train images for calibration (default 256)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    ort, _ = require("onnxruntime", "onnx")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src = load_model(run=args.run)
    spec = src.config["spec"]
    data = load_dataset(spec["data"], root=spec.get("data_root") or "data", input_size=model_info(src.name).input_size,
                        seed=int(spec.get("seed") or 0), **(spec.get("data_options") or {}))
    calib = data.train.x[: args.calibration].numpy()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(src.model, Path(tmp) / "fp32.onnx", preprocessing=src.preprocessing, dynamic_batch=True)
        int8 = Path(tmp) / "int8.onnx"
        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        sessions = {"fp32": _session(ort, fp32, args.threads), "int8": _session(ort, int8, args.threads)}
        x, y = data.test.x.contiguous().numpy(), data.test.y.numpy()
        acc = {k: _accuracy(s, x, y) for k, s in sessions.items()}
        speed = _timings(sessions, x, args.rounds)
        sizes = {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}
    print(f"{src.name} on {data.name}: {len(x)} test images, calibrated on {len(calib)} train images, "
          f"{args.threads} threads")
    print("| ONNX Runtime | test accuracy | p50 ms (batch 1) | img/s (batch 64) | file |\n|---|---|---|---|---|")
    for k in sessions:
        print(f"| {k} | {100 * acc[k]:.2f}% | {speed[k]['p50_ms']:.3f} | {speed[k]['images_per_second']:.0f} | "
              f"{sizes[k] / 1e3:.0f} kB |")
    print(f"accuracy change int8 - fp32: {100 * (acc['int8'] - acc['fp32']):+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
