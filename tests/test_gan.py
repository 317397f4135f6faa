"""DCGAN and the "gan" task.

- ``dcgan``/``cdcgan`` have the parameter count of their layer tables (counted by hand below), draw
  images of the data's size in [-1, 1], follow the paper's guidelines (no pooling, no BN on G's output
  or D's input, LeakyReLU 0.2, tanh, N(0, 0.02) weights) and are analysable by ``summary``;
- the Fréchet distance equals closed forms (1-d Gaussians: (m1-m2)^2 + (s1-s2)^2; commuting
  covariances) and scipy's ``sqrtm`` on random covariances; the feature sums give numpy's mean/cov;
- the Trainer's optimiser hook leaves classification a plain PyTorch loop, bit for bit;
- a tiny GAN run through ``cnnlab train`` killed with SIGKILL mid-epoch and resumed in a new
  process ends bitwise equal to the run never interrupted (both optimisers restored);
- ``cnnlab sample`` on a GAN run writes a grid and an interpolation, never overwriting; bad input
  is one line.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from cli_helpers import one_line, run_cli
from cnnlab import ConfigError, analyze, create_model
from cnnlab.data import BatchLoader, load_dataset
from cnnlab.training import TrainSpec, fit
from cnnlab.training import checkpoint as ck
from cnnlab.training.frechet import feature_sums, frechet_distance, gaussian_from_sums
from cnnlab.training.recipes import Recipe


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------------------------------------- model

# Counted from the layer tables (28x28, w = 64, z of 100, one channel; BN has a scale and a shift):
#   G: project 100*128*7*7 (no bias) + BN 2*128; up1 128*64*4*4 + BN 2*64; up2 64*1*4*4 + 1
#   D: conv1 1*64*4*4 + 64; conv2 64*128*4*4 (no bias) + BN 2*128; out 128*7*7 + 1
G_PARAMS = 100 * 128 * 49 + 256 + 128 * 64 * 16 + 128 + 64 * 16 + 1
D_PARAMS = 16 * 64 + 64 + 64 * 128 * 16 + 256 + 128 * 49 + 1
# cdcgan: the generator reads 10 more inputs (one-hot y), the discriminator 10 more channels.
COND_EXTRA = 10 * 128 * 49 + 10 * 64 * 16


def test_dcgan_params_match_the_layer_tables_and_shapes():
    g = create_model("dcgan")
    assert (sum(p.numel() for p in g.generator.parameters()), sum(p.numel() for p in g.discriminator.parameters())) \
        == (G_PARAMS, D_PARAMS) == (759_681, 138_689)
    c = create_model("cdcgan")
    assert sum(p.numel() for p in c.parameters()) == G_PARAMS + D_PARAMS + COND_EXTRA
    z = g.sample_latent(3, generator=torch.Generator().manual_seed(0))
    img = g.eval().generate(z)
    assert img.shape == (3, 1, 28, 28) and img.abs().max() <= 1
    assert g(img).shape == (3, 1) and c.eval()(img).shape == (3, 10)
    assert c.generate(z, torch.tensor([0, 1, 2])).shape == (3, 1, 28, 28)
    big = create_model("dcgan", image_size=32)
    assert big.generate(big.sample_latent(2)).shape == (2, 1, 32, 32)
    # the paper's guidelines: strided convolutions, no pooling; BN except G's output and D's input
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in g.modules())
    assert isinstance(g.generator.up2, nn.ConvTranspose2d) and isinstance(g.generator.tanh, nn.Tanh)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.discriminator.conv1.modules())
    assert {m.negative_slope for m in g.discriminator.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(float(w.detach().std()) - 0.02) < 0.001  # §4: N(0, 0.02)


def test_summary_of_dcgan_counts_both_networks(capsys):
    a = analyze("dcgan")
    assert a.total.params == G_PARAMS + D_PARAMS
    # the discriminator's MACs: conv1 1*64*16 per output pixel of 14x14, conv2 64*128*16 of 7x7, out 6272
    assert a.total.macs == 16 * 64 * 196 + 64 * 128 * 16 * 49 + 6272
    # the generator's, with z as a 100x1x1 input: a transposed conv costs C_in*C_out*k*k per input pixel
    g = analyze(create_model("dcgan").generator, (100, 1, 1))
    assert g.total.macs == 100 * 128 * 49 + 128 * 64 * 16 * 49 + 64 * 1 * 16 * 196
    rc, out, err = run_cli(["summary", "dcgan"], capsys)
    assert rc == 0 and "discriminator.conv2" in out, err


def test_bad_model_options_name_the_field():
    with pytest.raises(ConfigError, match="image_size"):
        create_model("dcgan", image_size=30)
    with pytest.raises(ConfigError, match="cdcgan"):
        create_model("dcgan", conditional=True)
    with pytest.raises(ConfigError, match="latent_dim"):
        create_model("dcgan", latent_dim=0)


# ---------------------------------------------------------------------------------------------- Frechet


def test_frechet_distance_equals_closed_forms():
    # 1-d: W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])) \
        == pytest.approx(9.0 + 1.0, abs=1e-12)
    # commuting covariances R diag(a) R^T, R diag(b) R^T: |dmu|^2 + sum (sqrt a - sqrt b)^2
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    mu1, mu2 = np.array([0.0, 0.0, 1.0]), np.array([1.0, 2.0, 1.0])
    expected = 1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 4) ** 2
    assert frechet_distance(mu1, rot @ np.diag(a) @ rot.T, mu2, rot @ np.diag(b) @ rot.T) == pytest.approx(expected)
    assert frechet_distance(mu1, np.eye(3), mu1, np.eye(3)) == pytest.approx(0.0, abs=1e-12)


def test_frechet_distance_agrees_with_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    for d in (2, 7, 30):
        a, b = rng.normal(size=(d, 2 * d)), rng.normal(size=(d, 3 * d))
        c1, c2 = a @ a.T / d, b @ b.T / d  # not commuting
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        ref = float(np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real))
        assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-8)


def test_feature_sums_give_numpys_mean_and_covariance():
    f = torch.randn(50, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1
    sums = feature_sums(f[:20]) + feature_sums(f[20:])  # batches add up
    mean, cov, n = gaussian_from_sums(sums, 4)
    assert n == 50
    np.testing.assert_allclose(mean, f.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(f.double().numpy(), rowvar=False), rtol=1e-10)


# ---------------------------------------------------------------------------------------------- the hook


def test_classification_update_is_a_plain_pytorch_loop_bit_for_bit():
    data = load_dataset("synthetic", input_size=(1, 8, 8), n_train=80, n_test=16, num_classes=3)
    recipe = Recipe(name="t", source="test", optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                    weight_decay=1e-4, batch_size=16, epochs=2, grad_clip=0.5)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    ref = copy.deepcopy(net)

    class Last:  # the last weights (fit returns the selected ones)
        def on_epoch_end(self, trainer, epoch, row):
            self.state = copy.deepcopy(trainer.model.state_dict())

    last = Last()
    result = fit(net, data, TrainSpec(recipe=recipe, precision="fp32"), progress=False,
                 callbacks=[last])
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    loader = BatchLoader(data.train, 16, shuffle=True, seed=0)
    losses = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = nn.functional.cross_entropy(ref(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
            opt.step()
            losses.append(float(loss.detach()))
    assert result.step_losses == losses
    assert all(torch.equal(p, q) for p, q in zip(last.state.values(), ref.state_dict().values()))


# ---------------------------------------------------------------------------------------------- runs

# 160 synthetic 28x28 images, batch 16: 10 updates an epoch, 2 epochs. Without --deterministic: on a CPU
# with one thread the run repeats bit for bit all the same (and the flag's import of torch's compiler
# costs seconds).
ARGS = ["train", "dcgan", "--data", "synthetic", "--data-set", "n_train=160", "--data-set", "n_test=32",
        "--model-set", "width=8", "--model-set", "latent_dim=8", "--task-set", "judge_epochs=1",
        "--epochs", "2", "--batch-size", "16", "--threads", "1", "--precision", "fp32",
        "--checkpoint-every", "4", "--no-progress"]

# The CLI's run of ARGS (its spec, through cnnlab.training.run.train), SIGKILLed once update K is
# checkpointed (Checkpointing runs before this callback's on_step_end).
KILL_SCRIPT = """
import os, signal, sys
from cnnlab.cli import build_parser
from cnnlab.cli.train import _spec_from_args
from cnnlab.training.run import train

class KillAt:
    def on_step_end(self, trainer, step, loss):
        if step == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)

ns = build_parser().parse_args(sys.argv[2:])
train(_spec_from_args(ns), out=ns.out, progress=False, callbacks=[KillAt()])
"""


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def gan_runs(tmp_path_factory):
    """The straight run (in this process) and the run killed at update 12 (a subprocess) and resumed here."""
    from cnnlab.cli import build_parser
    from cnnlab.cli.train import _spec_from_args
    from cnnlab.training.run import train

    tmp = tmp_path_factory.mktemp("gan")
    straight, cut = tmp / "straight", tmp / "cut"
    spec = _spec_from_args(build_parser().parse_args(ARGS))
    n = torch.get_num_threads()
    try:
        train(spec, out=straight, progress=False)
        script = tmp / "kill.py"
        script.write_text(KILL_SCRIPT)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        killed = subprocess.run([sys.executable, str(script), "12", *ARGS, "--out", str(cut)], env=env,
                                capture_output=True, text=True, timeout=600)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert ck.read_manifest(cut / "checkpoints")["last"]["step"] == 12  # epoch 2, batch 2
        train(None, resume=str(cut), progress=False)
    finally:
        torch.set_num_threads(n)
    return straight, cut


def test_gan_run_killed_and_resumed_is_bitwise_the_straight_run(gan_runs):
    straight, cut = gan_runs
    a, b = _rows(straight / "steps.csv"), _rows(cut / "steps.csv")
    assert len(a) == 20 and [r["step"] for r in b] == [str(k) for k in range(1, 21)]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert _rows(straight / "metrics.csv")[-1]["val_fd"] == _rows(cut / "metrics.csv")[-1]["val_fd"]
    wa, wb = load_file(str(straight / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # both optimisers are in the checkpoint: the discriminator's first, the generator's in "optimizers"
    _, ts = ck.load_checkpoint(cut / "checkpoints", "last", map_location="cpu")
    # G: project w, bn w, b; up1 w, bn w, b; up2 w, b
    assert len(ts["optimizers"]) == 1 and len(ts["optimizers"][0]["state"]) == 8
    assert len(ts["optimizer"]["state"]) == 7  # D: conv1 w, b; conv2 w; bn w, b; out w, b
    assert ts["optimizer"]["param_groups"][0]["betas"] == (0.5, 0.999)
    results = json.loads((straight / "results.json").read_text())
    assert results["selected_on"] == "val_fd (min)" and results["test_fd"] >= 0
    config = json.loads((straight / "config.json").read_text())
    assert "lenet5_relu" in config["task"]["judge"] and "not the Inception FID" in config["task"]["fd"]
    arrays = np.load(straight / "generative.npz")
    assert arrays["samples"].shape == (64, 1, 28, 28) and arrays["latent_walk"].shape == (80, 1, 28, 28)
    assert 0 <= arrays["samples"].min() and arrays["samples"].max() <= 1


def test_eval_of_a_gan_run_trains_the_same_judge_and_repeats_test_fd(gan_runs, capsys):
    straight, _ = gan_runs
    rc, out, err = run_cli(["eval", str(straight / "model.safetensors"), "--threads", "1", "--precision", "fp32",
                            "--format", "json"], capsys)
    assert rc == 0, err
    results = json.loads((straight / "results.json").read_text())
    assert json.loads(out)["test"]["fd"] == results["test_fd"]
    assert 0 <= results["test_fd_real"] < results["test_fd"]  # real digits score better than 18 updates' fakes


def test_sample_on_a_gan_run_writes_a_grid_and_an_interpolation(gan_runs, tmp_path, capsys):
    straight, _ = gan_runs
    out = tmp_path / "g.png"
    rc, _, err = run_cli(["sample", str(straight), "--n", "16", "--out", str(out), "--rows", "3", "--steps", "5"],
                         capsys)
    assert rc == 0, err
    walk = tmp_path / "g-interpolation.png"
    first = walk.read_bytes()
    assert out.read_bytes()[:8] == first[:8] == b"\x89PNG\r\n\x1a\n"
    out.unlink()  # the grid is free, its interpolation is not: nothing is written
    one_line(*run_cli(["sample", str(straight), "--out", str(out)], capsys)[::2], "exists")
    assert not out.exists() and walk.read_bytes() == first


def test_gan_bad_input_is_one_line(tmp_path, capsys):
    base = ["train", "dcgan", "--data", "synthetic", "--data-set", "n_train=64", "--epochs", "1", "--threads", "1",
            "--no-progress", "--out", str(tmp_path / "r")]
    one_line(*run_cli([*base, "--task-set", "judge_epochs=0"], capsys)[::2], "judge_epochs")
    one_line(*run_cli([*base, "--model-set", "image_size=32"], capsys)[::2], "(1, 32, 32)")
    one_line(*run_cli([*base, "--task-set", "judge=nowhere"], capsys)[::2], "nowhere")
    data = load_dataset("synthetic", input_size=(1, 28, 28), n_train=32, n_test=8)
    with pytest.raises(ConfigError, match="needs a GAN"):
        fit(create_model("lenet5"), data, TrainSpec(recipe="dcgan", task="gan", epochs=1), progress=False)
