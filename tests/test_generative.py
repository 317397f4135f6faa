"""Autoencoders and VAEs trained by the engine: the "reconstruction" and "vae" tasks, the run's
results and pictures, and ``cnnlab sample``.

- ae_conv and dae_conv reconstruct unseen digits far better than the mean image does; dae_conv
  removes most of the noise it was trained on (its output is closer to the clean image than its
  corrupted input is);
- a vae run logs the negative ELBO split into reconstruction and KL for train and val, writes
  test_elbo and test_nll_is (never worse than the ELBO) to results.json, and its pictures;
- ``cnnlab sample RUN`` writes a new grid; bad input is one line and exit code 2, and an existing
  file is never overwritten.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from cnnlab import ConfigError, create_model
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.training import TrainSpec, fit
from cnnlab.viz.run_pictures import RunPictures
from cnnlab.training.generative import ReconstructionTask, VAETask
from cnnlab.training.tasks import get_task


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def digits16():
    return load_dataset("digits", input_size=(1, 16, 16))


@pytest.fixture(scope="module")
def digits8():
    return load_dataset("digits", input_size=(1, 8, 8))


def _pixels(data, x: torch.Tensor) -> torch.Tensor:
    c = data.input_size[0]
    return (x * torch.tensor(data.std).view(1, c, 1, 1) + torch.tensor(data.mean).view(1, c, 1, 1)).clamp(0, 1)


def test_tasks_are_registered_and_targets_are_the_raw_pixels(digits16):
    assert isinstance(get_task("reconstruction"), ReconstructionTask)
    assert isinstance(get_task("vae", beta=4.0), VAETask)
    task = get_task("reconstruction")
    task.setup(digits16)
    raw = _pixels(digits16, digits16.test.x)
    assert float(raw.min()) >= 0 and float(raw.max()) <= 1 and float(raw.max()) > 0.9
    torch.testing.assert_close(task.target(digits16.test.x), raw)
    binary = get_task("vae", binarize=True)
    binary.setup(digits16)
    assert torch.equal(binary.target(digits16.test.x), (raw > 0.5).float())
    with pytest.raises(ConfigError, match="loss"):
        get_task("reconstruction", loss="l1")
    with pytest.raises(ConfigError, match="vae"):  # a classifier cannot be trained as a VAE
        fit(torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.Linear(256, 10)), digits16, TrainSpec(recipe="lenet", task="vae", max_steps=1), progress=False)


@pytest.mark.parametrize("name", ["ae_conv", "dae_conv"])
def test_autoencoders_reconstruct_better_than_the_mean_image(name, digits16):
    torch.manual_seed(0)
    noise = dict(noise_level=1.0) if name == "dae_conv" else {}  # std of one normalised unit, ~0.3 of a pixel
    model = create_model(name, channels=(16, 8), **noise)  # code 8 x 4 x 4 = 128 values for 256 pixels
    result = fit(model, digits16, TrainSpec(recipe="autoencoder", epochs=5, batch_size=32, lr=5e-3, task="reconstruction"), progress=False)
    rows = result.history
    assert {"train_loss", "train_mse", "val_loss", "val_mse"} <= set(rows[0])
    clean = _pixels(digits16, digits16.test.x)
    mean_image_mse = float(((clean - _pixels(digits16, digits16.train.x).mean(0)) ** 2).mean())
    if name == "ae_conv":
        assert result.test["mse"] < 0.5 * mean_image_mse, (result.test["mse"], mean_image_mse)
        return
    # The denoising autoencoder, given corrupted test images: its output is much closer to the clean
    # images than its input is, and than the mean image is.
    torch.manual_seed(1)
    noisy = model.corrupt(digits16.test.x)
    with torch.no_grad():
        denoised = model.eval()(noisy)
    noisy_mse = float(((_pixels(digits16, noisy) - clean) ** 2).mean())
    denoised_mse = float(((denoised - clean) ** 2).mean())
    assert denoised_mse < 0.5 * noisy_mse and denoised_mse < 0.6 * mean_image_mse, (denoised_mse, noisy_mse)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, digits8):
    data = digits8
    out = tmp_path_factory.mktemp("vae") / "run"
    torch.manual_seed(0)
    model = create_model("vae_mlp", hidden=(64,), latent_dim=2, image_size=(8, 8))
    spec = TrainSpec(model="vae_mlp", model_config={"hidden": [64], "latent_dim": 2, "image_size": [8, 8]},
                     recipe="vae", epochs=3, task="vae", task_options={"is_samples": 50})
    result = fit(model, data, spec, run_dir=out, progress=False,
                 callbacks=[RunPictures()])  # training writes numbers; viz draws the pictures
    return result, out


def test_vae_run_logs_the_elbo_split_and_writes_likelihoods_and_pictures(vae_run):
    result, out = vae_run
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for split in ("train", "val"):
        for key in ("neg_elbo", "recon", "kl"):
            assert f"{split}_{key}" in rows[0]
        for row in rows:
            assert float(row[f"{split}_neg_elbo"]) == pytest.approx(float(row[f"{split}_recon"]) + float(row[f"{split}_kl"]))
    assert float(rows[-1]["train_neg_elbo"]) < float(rows[0]["train_neg_elbo"])
    results = json.loads((out / "results.json").read_text())
    assert results["test_elbo"] < 0 and results["test_nll_is"] > 0
    # log p(x) >= ELBO: the importance-sampled NLL is at most the negative ELBO (up to noise).
    assert results["test_nll_is"] <= -results["test_elbo"] + 0.2
    for png in ("reconstructions.png", "samples.png", "interpolation.png", "latent.png", "curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    arrays = dict(__import__("numpy").load(out / "generative.npz"))
    assert arrays["manifold"].shape == (15 * 15, 1, 8, 8) and arrays["latent_mu"].shape[1] == 2


def test_sample_cli_writes_a_grid_and_refuses_bad_input(vae_run, tmp_path, capsys):
    _, run = vae_run
    out = tmp_path / "grid.png"
    assert main(["sample", str(run), "--n", "16", "--out", str(out)]) == 0
    first = out.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    # An existing file is never overwritten.
    assert main(["sample", str(run), "--n", "16", "--out", str(out), "--seed", "1"]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == first
    assert main(["sample", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a.png")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["sample", str(tmp_path), "--out", str(tmp_path / "b.png")]) == 2
    assert "config.json" in capsys.readouterr().err
    assert main(["sample", str(run), "--out", str(tmp_path / "c.jpg")]) == 2
    with pytest.raises(SystemExit) as err:
        main(["sample", str(run), "--n", "0"])
    assert err.value.code == 2
    # A run whose model is not a VAE has no prior to sample from.
    ae_run = tmp_path / "ae"
    (ae_run).mkdir()
    cfg = json.loads((run / "config.json").read_text())
    cfg["spec"] = {**cfg["spec"], "model": "ae_linear", "model_config": {"image_size": [8, 8]}}
    (ae_run / "config.json").write_text(json.dumps(cfg))
    from cnnlab.models.weights import save_weights

    save_weights(create_model("ae_linear", image_size=(8, 8)), ae_run / "model.safetensors")
    assert main(["sample", str(ae_run), "--out", str(tmp_path / "d.png")]) == 2
    assert "not a VAE" in capsys.readouterr().err
    assert not (tmp_path / "d.png").exists()


def test_cnnlab_train_runs_a_vae_with_task_options(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "vae_mlp", "--data", "digits", "--epochs", "1", "--max-steps", "3", "--task-set",
                 "is_samples=5", "--model-set", "hidden=(32,)", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "val (neg_elbo" in printed and "nll_is" in printed and "epoch 0" not in printed  # cut inside epoch 1
    results = json.loads((out / "results.json").read_text())
    assert results["test_is_samples"] == 5 and results["test_nll_is"] > 0
    assert json.loads((out / "config.json").read_text())["spec"]["task_options"] == {"is_samples": 5}
    assert main(["train", "vae_mlp", "--data", "digits", "--max-steps", "1", "--task-set", "is_samples=-1",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "is_samples" in capsys.readouterr().err


def test_a_vae_run_is_reported_by_its_own_metrics(vae_run, capsys):
    """The task declares its metrics once (config.json); `runs`, the report's cards and results table
    and the curves' right-hand panel show the negative ELBO, not an empty accuracy."""
    from cnnlab.cli import main
    from cnnlab.viz.html_report import render_run
    from cnnlab.viz.runs import read_run, task_metrics

    result, out = vae_run
    config = json.loads((out / "config.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert [m["key"] for m in task_metrics(config)] == ["neg_elbo", "nll_is", "kl"]
    summary = read_run(out)
    assert summary.val == results["val_neg_elbo"] and summary.test == results["test_neg_elbo"]
    assert summary.val_acc is None  # no accuracy pretended
    assert main(["runs", str(out.parent)]) == 0
    assert f"{results['test_neg_elbo']:.4g} neg_elbo" in capsys.readouterr().out
    page = render_run(out)
    assert "test negative ELBO (nats)" in page and "importance-sampled NLL (nats) (test, selected model)" in page
    assert "test accuracy" not in page


def test_runs_written_before_tasks_declared_their_metrics_keep_their_headline():
    from cnnlab.viz.runs import task_metrics

    assert task_metrics({"task": {"name": "segmentation", "monitor": "miou"}})[0]["key"] == "miou"
    assert task_metrics({})[0]["key"] == "acc"  # the oldest runs: classification
    crafted = {"task": {"name": "vae", "metrics": [{"key": 3, "label": "x"}, "no"]}}
    assert task_metrics(crafted)[0]["key"] == "neg_elbo"  # a crafted declaration is ignored, not trusted


def test_predict_on_a_vae_run_says_to_sample_it(vae_run, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from cnnlab.cli import main

    _, out = vae_run
    image = tmp_path / "digit.png"
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype("uint8")).save(image)
    assert main(["predict", str(image), "--run", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained as a vae model" in err and "cnnlab sample" in err


def test_viz_views_that_explain_classes_refuse_a_vae_in_one_line(vae_run, capsys):
    from cnnlab.cli import main

    _, out = vae_run
    for view in ("attributions", "cam", "embedding"):
        assert main(["viz", view, "--run", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not a classifier" in err, err
