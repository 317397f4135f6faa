"""Does bf16 autocast cost accuracy? The same runs in fp32 and bf16, side by side.

``--precision auto`` trains in bf16 (autocast, channels_last) on CPUs with native bf16; this script
checks that the accuracy matches fp32 for the same seed, data and recipe. On a CPU without native
bf16 (AVX2 only) the bf16 runs are emulated and slow, but their accuracy is still meaningful.

    .venv/bin/python benchmarks/precision_accuracy.py                      # lenet5 and resnet20 on mnist-5k
    .venv/bin/python benchmarks/precision_accuracy.py --models lenet5 --epochs 5 --seeds 0 1

resnet20 takes mnist-5k's digits repeated to 3 channels (32x32); its recipe is shortened with
``--epochs`` (milestones scaled).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

import cnnlab
from cnnlab.data import load_dataset
from cnnlab.training import TrainSpec, fit
from cnnlab.training.device import cpu_has_bf16


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lenet5", "resnet20"])
    ap.add_argument("--epochs", type=int, default=None, help="default: lenet5 the recipe's, resnet20 3")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--data", default="mnist-5k")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_bf16()}\n")
    print(f"{'model':<10} {'seed':>4} {'precision':<9} {'epochs':>6} {'test acc':>9} {'train acc':>9} {'img/s':>7}")
    for name in args.models:
        info = cnnlab.model_info(name)
        data = load_dataset(args.data, input_size=info.input_size)
        epochs = args.epochs or (None if name.startswith("lenet") else 3)
        accs: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for seed in args.seeds:
            for precision in ("fp32", "bf16"):
                torch.manual_seed(seed)
                model = cnnlab.create_model(name, num_classes=data.num_classes, in_chans=data.input_size[0])
                r = fit(model, data, TrainSpec(recipe=info.recipe, epochs=epochs, precision=precision, seed=seed, memory_format="channels_last" if precision == "bf16" else "contiguous"), progress=False)
                accs[precision].append(r.test_acc)
                print(f"{name:<10} {seed:>4} {precision:<9} {len(r.history):>6} {100 * r.test_acc:8.2f}% "
                      f"{100 * r.train_acc:8.2f}% {r.images_per_second:7.0f}", flush=True)
        diff = statistics.mean(accs["bf16"]) - statistics.mean(accs["fp32"])
        print(f"{name:<10} mean test accuracy bf16 - fp32: {100 * diff:+.2f} points\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
