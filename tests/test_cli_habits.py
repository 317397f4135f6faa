"""Habits users bring from timm, Lightning and other CLIs: whole flags only (no prefix expansion),
the closest flag named for a typo, and the common spellings of the main options."""

from __future__ import annotations

import json

import pytest

from cli_helpers import one_line, run_cli


@pytest.mark.parametrize("argv, suggestion", [
    (["train", "lenet5", "--batch_size", "8"], "--batch-size"),
    (["train", "lenet5", "--max-step", "3"], "--max-steps"),
    (["summary", "alexnet", "--dept", "1"], "--depth"),
    (["export", "lenet5", "--outt", "x.onnx"], "--out"),
])
def test_a_mistyped_flag_names_the_closest_one(argv, suggestion, capsys) -> None:
    rc, _, err = run_cli(argv, capsys)
    line = one_line(rc, err, "unrecognized arguments", argv[2], f"did you mean {suggestion}?")
    assert f"cnnlab {argv[0]} --help" in line


def test_a_prefix_of_a_flag_is_not_expanded(capsys) -> None:
    # argparse's default would read --model-s as --model-set and train with a model option "a=1"
    rc, _, err = run_cli(["train", "lenet5", "--model-s", "a=1"], capsys)
    one_line(rc, err, "--model-s", "--model-set")


def test_train_takes_the_model_as_a_flag_and_max_epochs(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--model", "lenet5", "--max-epochs", "1", "--max-steps", "2",
                          "--out", str(out), "--no-progress"], capsys)
    assert rc == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["spec"]["model"] == "lenet5" and config["spec"]["epochs"] == 1


def test_two_different_models_are_refused(capsys) -> None:
    rc, _, err = run_cli(["train", "resnet20", "--model", "lenet5"], capsys)
    one_line(rc, err, "two models given", "resnet20", "lenet5")


def test_threads_follow_the_cores_left_free() -> None:
    import torch

    from cnnlab.training.device import threads_for_load

    before = torch.get_num_threads()
    torch.set_num_threads(8)
    try:
        assert threads_for_load(cores=8, busy=0) == (None, "")  # idle: torch's default
        assert threads_for_load(cores=8, busy=0.5)[0] is None
        threads, note = threads_for_load(cores=8, busy=3)
        assert threads == 5 and "busy" in note and "--threads" in note
        assert threads_for_load(cores=2, busy=6)[0] == 1  # never fewer than one
    finally:
        torch.set_num_threads(before)


def test_a_run_cut_inside_its_first_epoch_says_so(tmp_path, capsys) -> None:
    rc, out, err = run_cli(["train", "lenet5", "--max-steps", "2", "--out", str(tmp_path / "r"), "--no-progress"],
                           capsys)
    assert rc == 0, err
    assert "no epoch completed (2 updates, --max-steps): the last weights kept" in out
    assert "epoch 0" not in out


def test_input_takes_a_batch_dimension(capsys) -> None:
    rc, with_n, err = run_cli(["summary", "resnet18", "--input", "8x3x224x224", "--format", "json"], capsys)
    assert rc == 0, err
    rc, with_flag, err = run_cli(["summary", "resnet18", "--input", "3x224x224", "--batch-size", "8",
                                  "--format", "json"], capsys)
    assert rc == 0, err
    assert json.loads(with_n) == json.loads(with_flag)
    # torchvision's 1.814 GFLOPS (MACs) per image, eight images
    assert "14,512,586,752" in run_cli(["summary", "resnet18", "--input", "8x3x224x224"], capsys)[1]
    rc, _, err = run_cli(["summary", "resnet18", "--input", "8x3x224x224", "--batch-size", "2"], capsys)
    one_line(rc, err, "batch 8", "--batch-size says 2")


def test_eval_viz_predict_and_export_take_threads_and_give_them_back(tmp_path, capsys) -> None:
    import torch

    before = torch.get_num_threads()
    rc, _, err = run_cli(["viz", "filters", "--model", "lenet5", "--threads", "1", "--out", str(tmp_path / "v")],
                         capsys)
    assert rc == 0, err
    assert torch.get_num_threads() == before
    for command in (["eval", "w.safetensors"], ["predict", "x.png"], ["export", "lenet5"]):
        rc, _, err = run_cli([*command, "--threads", "0"], capsys)
        one_line(rc, err, "--threads")


def test_a_long_epoch_shows_progress_in_a_log(tmp_path, capsys, monkeypatch) -> None:
    from cnnlab.training import callbacks

    monkeypatch.setattr(callbacks, "LINE_EVERY_S", 0.0)  # every update, instead of once a minute
    rc, out, err = run_cli(["train", "lenet5", "--epochs", "1", "--max-steps", "3", "--out", str(tmp_path / "r")],
                           capsys)
    assert rc == 0, err
    assert "epoch 1/1: update 1/" in out and "epoch 1/1: update 3/" in out and "img/s" in out


@pytest.mark.parametrize("model, metric", [("vae_mlp", "neg_elbo"), ("ae_mlp", "mse")])
def test_eval_of_a_generative_run_reports_its_tasks_metrics(model, metric, tmp_path, capsys) -> None:
    run = tmp_path / model
    rc, out, err = run_cli(["train", model, "--epochs", "1", "--max-steps", "3", "--out", str(run), "--no-progress",
                            *(["--task-set", "is_samples=2"] if model.startswith("vae") else [])], capsys)
    assert rc == 0, err
    assert "no epoch completed (3 updates" in out
    rc, out, err = run_cli(["eval", str(run / "model.safetensors"), "--format", "json"], capsys)
    assert rc == 0, err
    report = json.loads(out)
    assert metric in report["test"] and report["test_images"] == 1000
    rc, again, err = run_cli(["eval", str(run / "model.safetensors"), "--format", "json"], capsys)
    assert json.loads(again)["test"] == report["test"]  # seeded: the same numbers every time


def test_list_speaks_the_formats_summary_does(capsys) -> None:
    import csv
    import io

    rc, out, err = run_cli(["list", "resnet5", "--format", "csv"], capsys)
    assert rc == 0, err
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["resnet50"]["params"] == "25557032"  # torchvision's published count
    rc, out, err = run_cli(["list", "resnet50", "--format", "markdown"], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "| name | family | paper | params | input |" and "| resnet50 | resnet |" in out


def test_one_meaning_per_flag_model_options_are_model_set(capsys) -> None:
    rc, out, err = run_cli(["summary", "lenet5", "--model-set", "pooling=avg", "--format", "json"], capsys)
    assert rc == 0, err
    rc, _, err = run_cli(["summary", "lenet5", "--config", "pooling=avg"], capsys)
    one_line(rc, err, "given with --model-set")


def test_a_layer_hint_names_each_candidate_once(capsys) -> None:
    from cnnlab import ConfigError, create_model
    from cnnlab.inspect.layers import resolve_layer

    with pytest.raises(ConfigError) as err:
        resolve_layer(create_model("lenet5"), "conv1")
    assert "did you mean c1?" in str(err.value) and "c1, c1" not in str(err.value)


def test_a_run_at_chance_says_it_has_not_started_to_learn(tmp_path, capsys) -> None:
    rc, out, err = run_cli(["train", "lenet5", "--epochs", "1", "--max-steps", "4", "--out", str(tmp_path / "r"),
                            "--no-progress"], capsys)
    assert rc == 0, err
    assert "is chance for 10 classes" in err and "4 updates" in err and "lenet5_relu" in err


def test_experiment_list_speaks_json(capsys) -> None:
    rc, out, err = run_cli(["experiment", "list", "--format", "json"], capsys)
    assert rc == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert "degradation" in rows and "standard" in rows["degradation"]["scales"]
    assert rows["degradation"]["paper"].startswith("He, Zhang, Ren & Sun")


def test_list_counts_macs_on_request(capsys) -> None:
    """`list --macs`: the analyzer's multiply-adds beside the parameters; EfficientNet-Lite0/1/2's
    published 385M, 600M and 860M (the Lite release's PyTorch port, d-li14/efficientnet-lite)."""
    import csv
    import io

    rc, out, err = run_cli(["list", "efficientnet_lite", "--macs", "--format", "csv"], capsys)
    assert rc == 0, err
    rows = {r["name"]: int(r["MACs"]) for r in csv.DictReader(io.StringIO(out))}
    for name, published in (("efficientnet_lite0", 385e6), ("efficientnet_lite1", 600e6), ("efficientnet_lite2", 860e6)):
        assert abs(rows[name] - published) / published < 0.005, (name, rows[name])


def test_on_a_busy_machine_bad_input_is_still_one_line(tmp_path, capsys, monkeypatch) -> None:
    """The busy-machine note is said when training starts, so an error before that stays one line."""
    from cnnlab.training import device

    monkeypatch.setattr(device, "threads_for_load", lambda: (1, "the machine is busy (test)"))
    rc, _, err = run_cli(["train", "lenet5", "--data", "no-such-data"], capsys)
    one_line(rc, err, "no-such-data")
    rc, _, err = run_cli(["train", "lenet5", "--epochs", "1", "--max-steps", "2", "--out", str(tmp_path / "r"),
                          "--no-progress"], capsys)
    assert rc == 0 and "the machine is busy (test)" in err
