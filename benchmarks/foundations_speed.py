"""NumPy convolution from scratch against PyTorch: the direct loop, im2col, and ``F.conv2d``, side by side.

The three compute the same float64 convolution (checked here before timing; PyTorch is also timed in
float32, its fast path); each is timed in the
same process, median of ``--repeats`` runs, forward and forward + backward. Ratios are against
im2col. The loop is timed on a smaller batch (it is thousands of times slower) and scaled per image.
Then the NumPy CNN is trained on scikit-learn's digits and its test accuracy and speed reported.

    .venv/bin/python benchmarks/foundations_speed.py
    .venv/bin/python benchmarks/foundations_speed.py --repeats 5 --skip-train
    .venv/bin/python benchmarks/foundations_speed.py --threads 1 --clock cpu   # on a busy machine

On a machine shared with other jobs, wall-clock ratios swing with the load; ``--threads 1 --clock
cpu`` compares single-threaded CPU time (NumPy's BLAS and PyTorch both limited to one thread),
which the load disturbs much less.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.foundations import (
    SGDConfig,
    conv2d_backward,
    conv2d_backward_loop,
    conv2d_forward,
    conv2d_forward_loop,
    train_digits,
)

# (name, N, C_in, H, C_out, k, stride, padding): a LeNet-sized layer, a CIFAR ResNet layer, a strided one
SHAPES = [
    ("lenet C3: 6->16, 5x5 on 14x14", 32, 6, 14, 16, 5, 1, 0),
    ("resnet20 layer1: 16->16, 3x3 on 32x32", 32, 16, 32, 16, 3, 1, 1),
    ("stride 2: 32->64, 3x3 on 16x16", 32, 32, 16, 64, 3, 2, 1),
]
LOOP_BATCH = 1  # images the loop version runs (its time is scaled to the full batch)


CLOCK = time.perf_counter


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return statistics.median(times)


def bench_shape(n, c, h, o, k, s, p, repeats):
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(n, c, h, h)), rng.normal(size=(o, c, k, k)), rng.normal(size=o)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = conv2d_forward(x, w, b, s, p)
    dy = rng.normal(size=y.shape)
    dyt = torch.tensor(dy)
    # the three agree before anything is timed
    np.testing.assert_allclose(y, F.conv2d(xt, wt, bt, s, p).detach().numpy(), rtol=1e-9, atol=1e-9)
    xl, dyl = x[:LOOP_BATCH], dy[:LOOP_BATCH]
    np.testing.assert_allclose(conv2d_forward_loop(xl, w, b, s, p), y[:LOOP_BATCH], rtol=1e-9, atol=1e-9)

    def torch_fwd_bwd(xt, wt, bt, dyt):
        xt.grad = wt.grad = bt.grad = None
        F.conv2d(xt, wt, bt, s, p).backward(dyt)

    # PyTorch in float32 too: its fast path (oneDNN); float64 convolutions on the CPU take a slower one
    x32, w32, b32 = (t.detach().float().requires_grad_() for t in (xt, wt, bt))
    dy32 = dyt.float()

    scale = n / LOOP_BATCH
    return {
        "loop": (median_time(lambda: conv2d_forward_loop(xl, w, b, s, p), 1) * scale,
                 median_time(lambda: (conv2d_forward_loop(xl, w, b, s, p), conv2d_backward_loop(dyl, xl, w, s, p)), 1)
                 * scale),
        "im2col": (median_time(lambda: conv2d_forward(x, w, b, s, p), repeats),
                   median_time(lambda: (conv2d_forward(x, w, b, s, p), conv2d_backward(dy, x, w, s, p)), repeats)),
        "pytorch": (median_time(lambda: F.conv2d(xt.detach(), wt.detach(), bt.detach(), s, p), repeats),
                    median_time(lambda: torch_fwd_bwd(xt, wt, bt, dyt), repeats)),
        "pt fp32": (median_time(lambda: F.conv2d(x32.detach(), w32.detach(), b32.detach(), s, p), repeats),
                    median_time(lambda: torch_fwd_bwd(x32, w32, b32, dy32), repeats)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-train", action="store_true", help="only the convolution timings")
    ap.add_argument("--threads", type=int, default=None, help="limit PyTorch and NumPy's BLAS to N threads")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall time or this process's CPU time")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(limits=args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}; float64, "
          f"{args.clock} clock, median of {args.repeats} (loop: 1 run of {LOOP_BATCH} image, scaled to the batch)\n")
    print(f"{'layer (batch 32)':<40} {'version':<8} {'forward ms':>11} {'x im2col':>9} {'fwd+bwd ms':>11} {'x im2col':>9}")
    for name, n, c, h, o, k, s, p in SHAPES:
        res = bench_shape(n, c, h, o, k, s, p, args.repeats)
        base_f, base_b = res["im2col"]
        for version, (tf, tb) in res.items():
            print(f"{name:<40} {version:<8} {1e3 * tf:11.2f} {tf / base_f:8.2f}x {1e3 * tb:11.2f} {tb / base_b:8.2f}x",
                  flush=True)
            name = ""
    if not args.skip_train:
        _, report = train_digits(SGDConfig(), progress=True)
        tr, va, te = report.splits
        print(f"\nNumPy CNN on scikit-learn digits ({tr} train / {va} val / {te} test, {len(report.val_acc)} "
              f"epochs, seed 0): test accuracy {100 * report.test_acc:.2f}% (val {100 * report.val_acc[-1]:.2f}%), "
              f"{report.seconds:.1f} s training, {report.images_per_second:,.0f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
