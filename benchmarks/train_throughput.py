"""Training throughput: cnnlab's engine against a plain PyTorch loop, side by side in one process.

The baseline is the loop a tutorial writes: an fp32 NCHW model, a ``Dataset`` of uint8 images
with torchvision ``v2`` per-sample transforms (the recipe's augmentation: pad-and-crop, flip), a
``DataLoader`` (``num_workers=0``: the machine has 2 cores and the model uses both), the same
optimizer as the recipe. cnnlab's engine (``cnnlab.training.fit``) keeps the normalised set in
memory, slices batches and augments whole batches. It is timed in fp32 NCHW (``engine fp32``, to
separate the gains), with the channels_last layout alone, and with bf16 autocast + channels_last
(labelled native or emulated by the CPU's flags). ``<- auto`` marks what ``precision="auto"``
picks on this machine: bf16 + channels_last with native bf16, fp32 + channels_last elsewhere.

Each round times every contender for the same number of updates after a warm-up; rounds are
interleaved so that the other processes' load hits them alike, and the ratio of medians is printed.
Only the training steps are timed (the engine's per-epoch test pass is excluded, as the baseline has none).

    .venv/bin/python benchmarks/train_throughput.py                    # resnet20 (batch 128) and lenet5 (batch 64)
    .venv/bin/python benchmarks/train_throughput.py --models resnet20 --steps 20 --rounds 5

Goal (issue 4): engine at least 2.5x the baseline for resnet20. Timings on the shared 2-core
machines drift with the other processes' load: compare the ratios of one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

import cnnlab
from cnnlab.data import DataBundle, TensorPair
from cnnlab.training import TrainSpec, fit, get_recipe
from cnnlab.training.device import cpu_has_bf16, resolve_precision

# model -> (recipe, input shape, batch); the batch is the recipe's
SETUPS = {"resnet20": ("resnet_cifar", (3, 32, 32)), "lenet5": ("lenet", (1, 32, 32))}


def synthetic_uint8(shape: tuple[int, int, int], n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,), generator=g)


class Uint8Images(Dataset):
    """What torchvision's CIFAR10 dataset hands a DataLoader: one image at a time, transformed alone."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.transform(self.x[i]), int(self.y[i])


def baseline_transform(recipe, mean: float, std: float):
    steps = []
    if recipe.crop_padding:
        steps.append(v2.RandomCrop(32, padding=recipe.crop_padding))
    if recipe.translate:
        steps.append(v2.RandomCrop(32, padding=recipe.translate))
    if recipe.flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize([mean], [std])]
    return v2.Compose(steps)


def optimizer_for(recipe, model):
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                               nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=recipe.lr, betas=(recipe.momentum, 0.999),
                            weight_decay=recipe.weight_decay)


def time_baseline(name: str, recipe, x8, y, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = cnnlab.create_model(name, num_classes=10, in_chans=x8.shape[1]).train()
    opt = optimizer_for(recipe, model)
    loader = DataLoader(Uint8Images(x8, y, baseline_transform(recipe, 0.5, 0.25)), batch_size=recipe.batch_size,
                        shuffle=True, num_workers=0, drop_last=True)
    it = iter(loader)
    n = 0
    for k in range(warmup + steps):
        if k == warmup:
            t0, n = time.perf_counter(), 0
        try:
            xb, yb = next(it)
        except StopIteration:
            it = iter(loader)
            xb, yb = next(it)
        loss = F.cross_entropy(model(xb), yb, label_smoothing=recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(yb)
    return n / (time.perf_counter() - t0)


def time_engine(name: str, recipe, bundle: DataBundle, steps: int, warmup: int, precision: str,
                memory_format: str = "auto") -> float:
    kw = dict(precision=precision, memory_format=memory_format)
    torch.manual_seed(0)
    model = cnnlab.create_model(name, num_classes=10, in_chans=bundle.input_size[0])
    fit(model, bundle, TrainSpec(recipe=recipe, max_steps=warmup, **kw), progress=False)  # oneDNN primitives, caches
    torch.manual_seed(0)
    model = cnnlab.create_model(name, num_classes=10, in_chans=bundle.input_size[0])
    result = fit(model, bundle, TrainSpec(recipe=recipe, max_steps=steps, **kw), progress=False)
    return result.images_per_second  # training steps only (augmentation included), not the test pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--steps", type=int, default=12, help="timed updates per contender and round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    auto = resolve_precision("auto", torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, precision auto -> {auto.name}"
          f"{' + channels_last' if auto.channels_last else ''} ({auto.reason})")
    print("images/s per round (training steps only); ratios of the medians\n")
    rows = []
    for name in args.models:
        recipe_name, shape = SETUPS[name]
        recipe = get_recipe(recipe_name)
        n = recipe.batch_size * (args.steps + args.warmup + 2)
        x8, y = synthetic_uint8(shape, n)
        x = (x8.float() / 255 - 0.5) / 0.25  # the engine's in-memory, normalised copy of the same images
        bundle = DataBundle(name="synthetic-uint8", train=TensorPair(x, y), test=TensorPair(x[:256], y[:256]),
                            val=TensorPair(x[:256], y[:256]),  # a speed test: no selection to speak of
                            num_classes=10, input_size=shape, mean=(0.5,) * shape[0], std=(0.25,) * shape[0],
                            class_names=tuple(str(c) for c in range(10)), notes=())
        bf16 = f"engine bf16 channels_last ({'native' if cpu_has_bf16() else 'emulated'})"
        runs: dict[str, list[float]] = {"baseline fp32 + DataLoader": [], "engine fp32": [],
                                        "engine fp32 channels_last": [], bf16: []}
        for r in range(args.rounds):
            runs["baseline fp32 + DataLoader"].append(time_baseline(name, recipe, x8, y, args.steps, args.warmup))
            runs["engine fp32"].append(time_engine(name, recipe, bundle, args.steps, args.warmup, "fp32", "contiguous"))
            runs["engine fp32 channels_last"].append(
                time_engine(name, recipe, bundle, args.steps, args.warmup, "fp32", "channels_last"))
            runs[bf16].append(time_engine(name, recipe, bundle, args.steps, args.warmup, "bf16", "channels_last"))
            print(f"{name} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in runs.items()), flush=True)
        base = statistics.median(runs["baseline fp32 + DataLoader"])
        for k, v in runs.items():
            mark = "  <- auto" if k == (bf16 if auto.name == "bf16" else "engine fp32 channels_last") else ""
            rows.append((name, recipe.batch_size, k + mark, statistics.median(v), statistics.median(v) / base))
    print(f"\n{'model':<10} {'batch':>5}  {'contender':<46} {'img/s':>8} {'x baseline':>10}")
    for name, batch, k, med, ratio in rows:
        print(f"{name:<10} {batch:>5}  {k:<46} {med:8.0f} {ratio:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
