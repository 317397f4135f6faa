"""kill -9 while checkpoints are being saved, over and over: the manifest's checkpoints always load.

A helper process imports torch once, then forks a child per round that saves ``last`` (and every
third step ``best``) in a loop; the helper kills it with SIGKILL at a random moment, then checks the
directory: every checkpoint the manifest lists matches its sizes and hashes, the resumable one
loads, its weights and training state belong to the same step, and no completed save was lost.
The next child resumes from there and first removes the strays of the killed one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL (POSIX)")

ROUNDS = 20

HELPER = textwrap.dedent(
    r"""
    import json, os, random, signal, sys, time
    import torch
    torch.set_num_threads(1)  # forked children then hold no OpenMP pool that could deadlock
    from torch import nn
    from cnnlab.training.checkpoint import (clean_temporaries, find_resumable, load_checkpoint,
                                            read_manifest, save_checkpoint)

    directory, rounds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    torch.manual_seed(0)
    # A small model, but ~2 MB of weights and as much optimizer state: a save takes milliseconds.
    model = nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 256))
    momentum = [torch.randn_like(p) for p in model.parameters()]

    def temporaries():
        return sorted(n for n in os.listdir(directory) if n.startswith(".cnnlab-tmp-"))

    def child(start, out):
        removed = clean_temporaries(directory)  # what every run does when it starts
        os.write(out, f"ready {len(removed)}\n".encode())
        step = start
        while True:
            step += 1
            with torch.no_grad():
                model[0].bias.fill_(step)  # the weights carry their step, to match them with the state
            state = {"step": step, "epoch": step // 10, "optimizer": {"momentum": momentum}}
            save_checkpoint(directory, "last", model=model, train_state=state)
            if step % 3 == 0:
                save_checkpoint(directory, "best", model=model, train_state=state)
            os.write(out, f"saved {step}\n".encode())

    # Calibrate: how long does one save take here?
    os.makedirs(directory, exist_ok=True)
    t = time.perf_counter()
    for step in (1, 2):
        with torch.no_grad():
            model[0].bias.fill_(step)
        save_checkpoint(directory, "last", model=model, train_state={"step": step, "optimizer": {"momentum": momentum}})
    save_seconds = (time.perf_counter() - t) / 2
    print(json.dumps({"save_seconds": save_seconds}), flush=True)

    done = 2  # the last step whose save returned
    for r in range(rounds):
        strays = temporaries()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            try:
                child(done, write_fd)
            finally:
                os._exit(1)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            ready = pipe.readline().split()
            assert ready[0] == b"ready", ready
            time.sleep(rng.uniform(0.0, 2.5 * save_seconds))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            lines = pipe.read().decode().split()
        saved = [int(x) for x in lines[1::2]]
        done = max(saved, default=done)

        left = temporaries()
        verified = {}
        errors = []
        try:
            for tag, entry in read_manifest(directory).items():
                # Every entry: sizes and sha256 match, both files parse, and they belong together.
                state_dict, train_state = load_checkpoint(directory, tag)
                if not (train_state["step"] == entry["step"] and torch.all(state_dict["0.bias"] == entry["step"])):
                    errors.append(f"{tag}: manifest step {entry['step']}, state step {train_state['step']}, "
                                  f"weights step {state_dict['0.bias'][0].item()}")
                verified[tag] = entry["step"]
            tag = find_resumable(directory)
            state_dict, train_state = load_checkpoint(directory, tag)
            loaded = train_state["step"]
            if not torch.all(state_dict["0.bias"] == loaded):
                errors.append(f"weights of step {state_dict['0.bias'][0].item()} with state of step {loaded}")
            if not done <= loaded <= done + 1:
                errors.append(f"loaded step {loaded}, but step {done} had been saved")
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}")
            tag, loaded = None, None
        print(json.dumps({
            "round": r, "strays_at_start": strays, "strays_removed_by_child": int(ready[1]),
            "saves_completed": len(saved), "temporaries_after_kill": left, "manifest": verified,
            "resumed_tag": tag, "loaded_step": loaded, "errors": errors,
        }), flush=True)
        if loaded is not None:
            done = loaded  # the next run resumes from what was loaded

    strays = temporaries()
    removed = clean_temporaries(directory)
    print(json.dumps({"final_strays": strays, "final_removed": removed, "left": temporaries()}), flush=True)
    """
)


def test_kill_minus_9_during_saves_never_loses_a_checkpoint(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", HELPER, str(tmp_path / "run"), str(ROUNDS), "1234"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    calibration, rounds, final = lines[0], lines[1:-1], lines[-1]
    assert len(rounds) == ROUNDS and calibration["save_seconds"] > 0

    for r in rounds:
        assert not r["errors"], r
        assert r["resumed_tag"] in r["manifest"]
        assert all(step is not None for step in r["manifest"].values())
    # Strays left by one killed child are gone once the next has started.
    for before, after in zip(rounds, rounds[1:]):
        assert after["strays_at_start"] == before["temporaries_after_kill"]
        assert after["strays_removed_by_child"] == len(after["strays_at_start"])
    assert final["left"] == [] and final["final_removed"] == final["final_strays"]

    # The kills really landed inside saves: some left temporaries or a half-rotated `last`.
    mid_save = [r for r in rounds if r["temporaries_after_kill"] or "last" not in r["manifest"]]
    assert len(mid_save) >= 3, [(r["temporaries_after_kill"], sorted(r["manifest"])) for r in rounds]
    # And the runs made progress: resumed steps only move forward.
    steps = [r["loaded_step"] for r in rounds]
    assert steps == sorted(steps) and steps[-1] > steps[0]
