"""Time and peak memory of ``cnnlab.analyze`` against ``torchinfo.summary``, side by side.

Each measurement runs in its own subprocess (so one's memory cannot hide another's) and reports:

- ``build``: making the model (cnnlab: on the meta device, no weights; torchinfo needs real ones);
- ``summary``: the summary call itself (torchinfo runs a real forward pass at that batch size);
- ``peak``: the process's peak resident memory (``resource.getrusage`` maxrss), and ``+peak``: the
  peak minus the resident memory after the imports (torch, cnnlab, torchinfo alike in both);
- the totals each tool reports (params, multiply-adds), which should be identical. torchinfo also
  counts bias additions (one per output value of a convolution or linear layer with a bias) and one
  mult-add per batch-norm parameter and image; the script checks that this accounts for the whole difference.

Goals (issue 3): identical totals, no slower, at least 5x less peak memory.

    .venv/bin/python benchmarks/summary_cost.py                 # resnet152 and vgg16, batch 1 and 64
    .venv/bin/python benchmarks/summary_cost.py --models resnet18 --batches 1

Timings on the shared 2-core machines drift with the other processes' load: compare the ratios of
one run, never absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(tool: str, model: str, batch: int) -> dict:
    import torch  # noqa: F401
    import torchinfo

    import cnnlab
    from cnnlab.analysis import analyze

    del torchinfo  # imported in both children so that both baselines hold the same libraries
    cnnlab.create_model("lenet5")  # loads the zoo registry in both children
    base = _rss_mb()
    t0 = time.perf_counter()
    if tool == "cnnlab":
        t1 = t0
        result = analyze(model, batch_size=batch)  # builds on the meta device inside
        t2 = time.perf_counter()
        params, macs = result.total.params, result.total.macs
        # torchinfo also counts bias additions, one per output value of a convolution or linear layer
        # with a bias, and one mult-add per batch-norm parameter and image (whatever the map size)
        extra = sum(r.activations for r in result.layers if r.type in ("Conv2d", "Linear") and r.params > r.weights)
        extra += batch * sum(r.params for r in result.layers if r.type.startswith("BatchNorm"))
    else:
        import torchinfo

        net = cnnlab.create_model(model)
        t1 = time.perf_counter()
        info = cnnlab.model_info(model)
        stats = torchinfo.summary(net, input_size=(batch, *info.input_size), verbose=0)
        t2 = time.perf_counter()
        params, macs, extra = stats.total_params, stats.total_mult_adds, 0
    return dict(tool=tool, model=model, batch=batch, build=t1 - t0, summary=t2 - t1, total=t2 - t0,
                peak=_rss_mb(), base=base, params=int(params), macs=int(macs), extra=int(extra))


def measure(tool: str, model: str, batch: int, timeout: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", tool, model, str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{tool} {model} batch {batch} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet152", "vgg16"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--timeout", type=int, default=1800, help="seconds per measurement")
    p.add_argument("--child", nargs=3, metavar=("TOOL", "MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        tool, model, batch = args.child
        print(json.dumps(child(tool, model, int(batch))))
        return

    header = (f"{'model':10} {'batch':>5} | {'cnnlab s':>8} {'torchinfo s':>11} {'speedup':>7} | "
              f"{'cnnlab MB':>9} {'torchinfo MB':>12} {'ratio':>6} | {'+MB cnnlab':>10} {'+MB tinfo':>9} "
              f"{'ratio':>6} | totals")
    print(header)
    print("-" * len(header))
    for model in args.models:
        for batch in args.batches:
            c = measure("cnnlab", model, batch, args.timeout)
            t = measure("torchinfo", model, batch, args.timeout)
            if (c["params"], c["macs"]) == (t["params"], t["macs"]):
                same = "identical"
            elif c["params"] == t["params"] and t["macs"] - c["macs"] == c["extra"]:
                same = (f"params identical; MACs identical but for torchinfo's bias additions and batch-norm "
                        f"parameters ({c['extra']:,} = {100 * c['extra'] / c['macs']:.3f}%)")
            else:
                same = (f"DIFFER: params {c['params']:,} vs {t['params']:,}; MACs {c['macs']:,} vs {t['macs']:,} "
                        f"({100 * (t['macs'] / c['macs'] - 1):+.3f}%)")
            extra_c, extra_t = c["peak"] - c["base"], t["peak"] - t["base"]
            print(f"{model:10} {batch:>5} | {c['total']:8.2f} {t['total']:11.2f} {t['total'] / c['total']:6.1f}x | "
                  f"{c['peak']:9.0f} {t['peak']:12.0f} {t['peak'] / c['peak']:5.1f}x | {extra_c:10.0f} {extra_t:9.0f} "
                  f"{extra_t / max(extra_c, 1):5.0f}x | {same}")
            print(f"{'':10} {'':>5} |   (torchinfo: build {t['build']:.2f} s + summary {t['summary']:.2f} s; "
                  f"cnnlab build+trace {c['total']:.2f} s; "
                  f"baseline after imports {c['base']:.0f} / {t['base']:.0f} MB)")
    print("\ntime = building the model + the summary; MB = peak resident memory of the process; +MB = peak "
          "above the memory after imports; ratios are torchinfo / cnnlab")


if __name__ == "__main__":
    main()
