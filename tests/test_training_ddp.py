"""DistributedDataParallel on 2 CPU processes (gloo, 127.0.0.1): both ranks end with identical
weights, equal (to float tolerance) to one process training on the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.data import load_dataset
from cnnlab.training import TrainSpec, fit

# LeNet-5 has neither batch norm nor dropout, the two things that make per-rank batches differ
# from one big batch; augmentation is switched off for the same reason. A frozen layer, a learning-rate
# multiplier and the L1 penalty are on: DDP must not wait for the frozen parameters' gradients, and the
# penalty (added on every rank, then averaged) must give the single process's update.
OVERRIDES = dict(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, translate=0, schedule="constant",
                 freeze=("c1",), lr_mult={"fc": 0.5}, l1=1e-4)
WORKER = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    import cnnlab
    from safetensors.torch import save_file
    from cnnlab.data import load_dataset
    from cnnlab.training import distributed as D, fit, TrainSpec
    info = D.init_from_env("cpu")
    data = load_dataset("synthetic", input_size=(1, 32, 32), n_train=256, n_test=64)
    torch.manual_seed(0)
    model = cnnlab.create_model("lenet5")
    r = fit(model, data, TrainSpec(recipe="lenet", overrides={overrides!r}, max_steps=6, precision="fp32", device="cpu"),
            progress=False)
    save_file(r.model.state_dict(), sys.argv[1] + f"/rank{{info.rank}}.safetensors")
    open(sys.argv[1] + f"/rank{{info.rank}}.json", "w").write(json.dumps([r.step_losses, r.test_acc]))
    D.shutdown()
""").format(overrides=OVERRIDES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_ranks_match_one_process(tmp_path):
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_dataset("synthetic", input_size=(1, 32, 32), n_train=256, n_test=64)
        torch.manual_seed(0)
        single = fit(cnnlab.create_model("lenet5"), data, TrainSpec(recipe="lenet", overrides=OVERRIDES, max_steps=6,
                                                                    precision="fp32", device="cpu"), progress=False)
    finally:
        torch.set_num_threads(threads)

    w0, w1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # the ranks never drift apart
    ref = single.model.state_dict()
    for k in w0:
        torch.testing.assert_close(w0[k], ref[k], rtol=1e-4, atol=1e-5)
    losses, test_acc = json.loads((tmp_path / "rank0.json").read_text())
    assert losses == pytest.approx(single.step_losses, rel=1e-5)  # mean of the rank losses = the global loss
    assert test_acc == pytest.approx(single.test_acc)  # the sharded test set, summed over ranks
    torch.manual_seed(0)
    init = cnnlab.create_model("lenet5").state_dict()
    assert not all(torch.equal(w0[k], init[k]) for k in w0)  # training did move the weights
    assert all(torch.equal(w0[k], init[k]) for k in ("c1.0.weight", "c1.0.bias"))  # but not the frozen ones
