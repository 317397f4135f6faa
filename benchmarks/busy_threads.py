"""Training on a busy machine: torch's default threads against ``--threads 1`` and passive OpenMP waiting.

torch's OpenMP threads spin while they wait for each other; when other processes hold the cores, a
thread that spins for a core it cannot get makes every parallel region wait, and a 2-thread run can
be many times slower than a 1-thread one. This script times the same short ``cnnlab train`` run
(a subprocess each, so the OpenMP settings are fresh) in three settings:

    default         torch's threads (one per core), OpenMP's default waiting
    passive         the same threads with OMP_WAIT_POLICY=PASSIVE (threads sleep instead of spinning)
    --threads 1     one thread

first on the machine as it is (run it idle), then with ``--busy N`` processes that keep the cores
busy (torch convolutions on torch's default threads, as another training run; or a Python loop with
``--busy-kind python``), and prints each setting's wall time and its ratio to ``--threads 1``.

    .venv/bin/python benchmarks/busy_threads.py                 # lenet5, 200 updates, 2 busy torch processes
    .venv/bin/python benchmarks/busy_threads.py --model resnet20 --steps 40 --rounds 1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "default": ({}, []),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, []),
    "--threads 1": ({}, ["--threads", "1"]),
}


def _spin(stop: mp.Event, kind: str) -> None:
    """Keep cores busy: a Python loop (one core), or torch convolutions on torch's default threads,
    as another training run would (its OpenMP threads spin too)."""
    if kind == "python":
        x = 0
        while not stop.is_set():
            for _ in range(100_000):
                x += 1
        return
    import torch

    x, w = torch.randn(32, 32, 32, 32), torch.randn(32, 32, 3, 3)
    while not stop.is_set():
        torch.nn.functional.conv2d(x, w, padding=1)


def time_run(model: str, steps: int, env_extra: dict, args_extra: list[str], tmp: Path, tag: str) -> float:
    cnnlab = Path(sys.executable).with_name("cnnlab")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    out = tmp / tag
    cmd = [str(cnnlab), "train", model, "--epochs", "1", "--max-steps", str(steps), "--out", str(out),
           "--no-progress", *args_extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"busy_threads: {' '.join(cmd)} failed:\n{proc.stderr.strip()[-1500:]}")
    return wall


def measure(label: str, model: str, steps: int, rounds: int, tmp: Path) -> dict[str, float]:
    walls: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for r in range(rounds):  # interleaved, so a change in the machine's load hits every setting alike
        for name, (env_extra, args_extra) in SETTINGS.items():
            walls[name].append(time_run(model, steps, env_extra, args_extra, tmp, f"{label}-{r}-{len(walls[name])}-"
                                        f"{name.replace(' ', '').replace('-', '')}"))
    best = {name: min(v) for name, v in walls.items()}
    base = best["--threads 1"]
    print(f"{label}: load average {os.getloadavg()[0]:.2f} at the end")
    for name, wall in best.items():
        print(f"  {name:12s} {wall:7.1f} s  ({wall / base:.2f}x --threads 1)")
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet5")
    p.add_argument("--steps", type=int, default=200, help="updates per run (default 200)")
    p.add_argument("--busy", type=int, default=2, help="busy background processes (default 2)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per setting; the fastest is kept (default 2)")
    p.add_argument("--busy-kind", choices=("torch", "python"), default="torch",
                   help="what the busy processes run: torch convolutions (another training run) or a Python loop")
    args = p.parse_args()
    print(f"{os.cpu_count()} logical CPUs; load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="cnnlab-busy-") as tmp:
        for _ in range(60):  # the idle round wants no other runnable thread (this one aside)
            if int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) <= 1:
                break
            time.sleep(1)
        idle = measure("idle", args.model, args.steps, args.rounds, Path(tmp))
        ctx = mp.get_context("spawn")  # fresh processes: torch's threads are not forked
        stop = ctx.Event()
        spinners = [ctx.Process(target=_spin, args=(stop, args.busy_kind), daemon=True) for _ in range(args.busy)]
        for s in spinners:
            s.start()
        try:
            time.sleep(2)
            busy = measure(f"{args.busy} busy processes ({args.busy_kind})", args.model, args.steps, args.rounds, Path(tmp))
        finally:
            stop.set()
            for s in spinners:
                s.join(timeout=5)
    print(f"busy / idle: default {busy['default'] / idle['default']:.2f}x, passive "
          f"{busy['passive'] / idle['passive']:.2f}x, --threads 1 {busy['--threads 1'] / idle['--threads 1']:.2f}x; "
          f"idle passive / idle default {idle['passive'] / idle['default']:.2f}x")


if __name__ == "__main__":
    main()
