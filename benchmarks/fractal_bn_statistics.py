"""FractalNet + drop-path: how far the batch-norm running statistics from training are off at test time.

Trains ``fractalnet_cifar`` (C = 3, the fractal-droppath quick net by default: 4 blocks of 16-32-64-64
channels on 16x16 mnist-5k, no dropout) with a plain loop (SGD 0.02, momentum 0.9, cosine, batch 64,
no augmentation, fp32) and prints, on the test split:

- eval: eval mode with the running statistics collected in training;
- batchstats_allpaths: all paths, BN on the test batch's own statistics (what the weights compute);
- eval_recal: eval mode after ``cnnlab.training.recalibrate_batchnorm`` on the training images;
- eval_mixture_cumulative: statistics averaged over one training pass with drop-path on (no EMA noise);
- col<c> / col<c>_recal_own: column c alone, with the training statistics / re-estimated on that column;
- per BN layer reading a join: running variance from training over the all-path variance (median).

    PYTHONPATH=src python benchmarks/fractal_bn_statistics.py --epochs 6 --seed 0 --arms dp,nodp
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch
from torch import Tensor, nn

from cnnlab import create_model
from cnnlab.data.datasets import load_dataset
from cnnlab.training import recalibrate_batchnorm

ARMS = {"dp": dict(drop_path_local=0.15, global_drop_ratio=0.5), "nodp": dict(drop_path_local=0.0, global_drop_ratio=0.0)}


def accuracy(fn, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        out = torch.cat([fn(x[i : i + 500]) for i in range(0, len(x), 500)])
    return float((out.argmax(1) == y).float().mean())


def train(net: nn.Module, x: Tensor, y: Tensor, *, epochs: int, batch: int = 64) -> float:
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * math.ceil(len(x) / batch))
    correct = 0
    for ep in range(epochs):
        net.train()
        perm, correct, t = torch.randperm(len(x)), 0, time.time()
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            out = net(x[idx])
            loss = nn.functional.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += int((out.argmax(1) == y[idx]).sum())
        print(f"  epoch {ep + 1}: training-mode acc {correct / len(x):.3f} ({time.time() - t:.0f} s)", flush=True)
    return correct / len(x)


def measure(net: nn.Module, data, *, columns: int) -> dict[str, float]:
    xtr, xte, yte = data.train.x, data.test.x, data.test.y
    res = {"eval": accuracy(net.eval(), xte, yte)}
    for c in range(columns):
        res[f"col{c}"] = accuracy(lambda z, c=c: net.forward_column(z, c), xte, yte)
    ref = copy.deepcopy(net).eval()
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()  # all paths (eval mode), BN on the batch's own statistics
    res["batchstats_allpaths"] = accuracy(ref, xte, yte)
    recal = recalibrate_batchnorm(copy.deepcopy(net), xtr)
    res["eval_recal"] = accuracy(recal, xte, yte)
    mixture = copy.deepcopy(net)
    for m in mixture.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats(), setattr(m, "momentum", None)
    mixture.train()
    with torch.no_grad():
        for i in range(0, len(xtr), 64):
            mixture(xtr[i : i + 64])  # drop-path on: the training mixture, averaged exactly
    res["eval_mixture_cumulative"] = accuracy(mixture.eval(), xte, yte)
    for c in range(columns):
        m = copy.deepcopy(net)
        recalibrate_batchnorm(m, xtr, forward=lambda z, c=c, m=m: m.forward_column(z, c))
        res[f"col{c}_recal_own"] = accuracy(lambda z, c=c, m=m: m.forward_column(z, c), xte, yte)
    for b, block in enumerate(net.blocks):  # the first BN of column 0 reads the previous block's join
        if b:
            ratio = block.columns[0][0].bn.running_var / recal.blocks[b].columns[0][0].bn.running_var
            res[f"var_ratio_block{b}_col0"] = float(ratio.median())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--channels", default="16,32,64,64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arms", default="dp,nodp")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared, loaded CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chans = tuple(int(c) for c in args.channels.split(","))
    data = load_dataset("mnist-5k", input_size=(1, 16, 16))
    for arm in args.arms.split(","):
        torch.manual_seed(args.seed)
        net = create_model("fractalnet_cifar", in_chans=1, num_classes=10, columns=3, blocks=len(chans),
                           channels=chans, dropout=(0.0,) * len(chans), **ARMS[arm])
        print(f"{arm} seed {args.seed}:", flush=True)
        train(net, data.train.x, data.train.y, epochs=args.epochs)
        print(f"{arm} seed {args.seed}:", {k: round(v, 3) for k, v in measure(net, data, columns=3).items()}, flush=True)


if __name__ == "__main__":
    main()
