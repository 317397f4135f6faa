"""Sizes, counts and rates past :mod:`cnnlab.limits` are refused in one line (exit code 2), before anything
is allocated or written; files that are not images are called what they are; predict streams; transparent
images keep their ink."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab import limits
from cnnlab.errors import ConfigError
from cli_helpers import one_line, run_cli, isolated_cwd  # noqa: F401  (a fixture)

TINY = ["--data", "synthetic", "--data-set", "n_train=64", "--data-set", "n_test=16", "--epochs", "1",
        "--batch-size", "32", "--threads", "1", "--precision", "fp32", "--no-progress"]


@pytest.fixture(autouse=True)
def _isolated(isolated_cwd):
    yield isolated_cwd


def _no_run_left() -> bool:
    return not Path("runs").exists() or not any(Path("runs").iterdir())


# ----------------------------------------------------------------------------- the limits themselves


def test_every_limit_is_a_positive_number_named_in_all():
    names = [n for n in limits.__all__ if n.isupper()]
    assert names and all(isinstance(getattr(limits, n), (int, float)) and getattr(limits, n) > 0 for n in names)
    from cnnlab.data.adapt import MAX_SIDE

    assert MAX_SIDE is limits.MAX_SIDE  # one owner


def test_every_registered_recipe_is_within_the_limits():
    from cnnlab.training.recipes import RECIPES

    for recipe in RECIPES.values():
        assert recipe.lr <= limits.MAX_LR and recipe.batch_size <= limits.MAX_BATCH_SIZE, recipe.name


# ----------------------------------------------------------------------------- train


@pytest.mark.parametrize("argv, needle", [
    (["--set", "lr=1e308"], "lr"),
    (["--set", "grad_clip=nan"], "grad_clip"),
    (["--set", "gamma=inf"], "gamma"),
    (["--set", "momentum=1"], "momentum"),
    (["--set", "weight_decay=5"], "weight_decay"),
    (["--set", "translate=100000"], "translate"),
    (["--set", "crop_padding=100000"], "crop_padding"),
    (["--set", "batch_size=1000000000"], "batch_size"),
    (["--set", "epochs=1000000000000"], "epochs"),
    (["--set", "milestones=nan"], "milestones"),
    (["--seed", "99999999999999999999999"], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--threads", "1000000"], "--threads"),
])
def test_train_refuses_huge_and_non_finite_values_in_one_line(argv, needle, capsys):
    quick = ["--data", "synthetic", "--data-set", "n_train=64", "--data-set", "n_test=16", "--max-steps", "1",
             "--no-progress"]  # no flag of TINY's that would replace the value under test
    rc, out, err = run_cli(["train", "lenet5", *argv, *quick], capsys)
    one_line(rc, err, needle)
    assert out == "" and _no_run_left()


def test_a_shift_larger_than_the_input_is_refused_before_training(capsys):
    rc, _, err = run_cli(["train", "lenet5", "--set", "translate=40", *TINY], capsys)
    one_line(rc, err, "translate 40", "32")
    assert _no_run_left()


def test_recipe_refuses_strings_and_non_finite_numbers_from_python():
    from cnnlab.training.recipes import get_recipe

    recipe = get_recipe("lenet")
    for field, value in (("lr", float("nan")), ("gamma", "inf"), ("grad_clip", float("inf")), ("dropout", "x"),
                         ("step_size", float("inf")), ("scale_jitter", ("a", "b")), ("momentum", 1.5)):
        with pytest.raises(ConfigError, match=field):
            recipe.replace(**{field: value})


def test_train_spec_refuses_a_seed_or_thread_count_torch_cannot_take():
    from cnnlab.training.run import TrainSpec

    with pytest.raises(ConfigError, match="seed"):
        TrainSpec(model="lenet5", seed=2**63)
    with pytest.raises(ConfigError, match="threads"):
        TrainSpec(model="lenet5", threads=limits.MAX_THREADS + 1)
    assert TrainSpec(model="lenet5", seed=2**63 - 1, threads=limits.MAX_THREADS).seed == 2**63 - 1


def test_synthetic_data_with_one_class_is_refused(capsys):
    rc, _, err = run_cli(["train", "lenet5", *TINY, "--data-set", "num_classes=1"], capsys)
    one_line(rc, err, "num_classes", "two classes")
    assert _no_run_left()
    with pytest.raises(ConfigError, match="num_classes"):
        cnnlab.data.load_dataset("synthetic", shape=(1, 8, 8), num_classes=1, n=8)


# ----------------------------------------------------------------------------- sample, export, bench


@pytest.mark.parametrize("argv, needle", [(["--n", "1000000000"], "--n"),
                                          (["--seed", "99999999999999999999999"], "--seed")])
def test_sample_caps_n_and_seed(argv, needle, capsys):
    rc, out, err = run_cli(["sample", "no-such-run", *argv], capsys)
    one_line(rc, err, needle)
    assert out == ""


def test_sample_run_refuses_a_huge_n_from_python():
    from cnnlab.training.generative import sample_run

    with pytest.raises(ConfigError, match="--n"):
        sample_run("no-such-run", n=limits.MAX_SAMPLES + 1)


@pytest.mark.parametrize("argv, needle", [
    (["export", "lenet5", "--input", "1x50000x50000"], "2048"),
    (["export", "lenet5", "--input", "1x99999999999999999999x1"], "2048"),
    (["bench", "lenet5", "--input", "1x50000x50000"], "2048"),
    (["bench", "lenet5", "--batch-size", "100000000", "--backends", "eager"], "--batch-size"),
    (["bench", "lenet5", "--threads", "100000"], "--threads"),
])
def test_export_and_bench_refuse_huge_inputs(argv, needle, capsys):
    rc, out, err = run_cli(argv, capsys)
    one_line(rc, err, needle)
    assert out == "" and not list(Path(".").iterdir())


# ----------------------------------------------------------------------------- images


def _grey(path: Path, size: tuple[int, int] = (28, 28)) -> Path:
    from PIL import Image

    arr = np.zeros(size[::-1], np.uint8)
    arr[6:22, 12:16] = 255
    Image.fromarray(arr).save(path)
    return path


def test_convolve_refuses_an_image_longer_than_max_side_from_its_header(capsys):
    from PIL import Image

    Image.new("L", (20000, 2)).save("long.png")  # a few bytes on disk
    rc, _, err = run_cli(["convolve", "long.png", "--kernel", "[[1]]"], capsys)
    one_line(rc, err, "long.png", "20000x2", "--max-side 4096")
    _grey(Path("small.png"), (300, 200))
    rc, _, err = run_cli(["convolve", "small.png", "--kernel", "[[1]]", "--max-side", "100"], capsys)
    one_line(rc, err, "300x200", "--max-side 100")
    assert sorted(p.name for p in Path(".").iterdir()) == ["long.png", "small.png"]


@pytest.mark.parametrize("command", [["filters"], ["pyramid"], ["convolve", "--kernel", "[[1]]"]])
def test_max_side_is_capped(command, capsys):
    _grey(Path("a.png"))
    rc, _, err = run_cli([command[0], "a.png", *command[1:], "--max-side", "100000"], capsys)
    one_line(rc, err, "--max-side", str(limits.MAX_IMAGE_SIDE))


@pytest.mark.parametrize("kind, needle", [("dir", "is a directory"), ("fifo", "FIFO"),
                                          ("dev", "character device"), ("missing", "does not exist")])
@pytest.mark.parametrize("command", [["filters"], ["convolve", "--kernel", "[[1]]"], ["predict", "--run", "r"]])
def test_a_non_file_given_as_an_image_is_called_what_it_is(kind, needle, command, capsys):
    path = {"dir": "d", "fifo": "f", "dev": "/dev/zero", "missing": "nope.png"}[kind]
    if kind == "dir":
        os.mkdir(path)
    elif kind == "fifo":
        os.mkfifo(path)
    rc, out, err = run_cli([command[0], path, *command[1:]], capsys)
    line = one_line(rc, err, path, needle)
    assert "no such file" not in line and out == ""


# ----------------------------------------------------------------------------- predict


def _run(root: Path) -> Path:
    """A finished run folder as predict reads it: lenet5 on 10 classes of digits (dark background)."""
    from cnnlab.models.weights import save_weights

    run = root / "r"
    run.mkdir()
    torch.manual_seed(0)
    save_weights(cnnlab.create_model("lenet5", num_classes=10), run / "model.safetensors")
    config = {"cnnlab_run": 1, "spec": {"model": "lenet5", "data": "synthetic", "model_config": {}},
              "data": {"name": "synthetic", "num_classes": 10, "input_size": [1, 32, 32], "mean": [0.1307],
                       "std": [0.3081], "class_names": [str(i) for i in range(10)], "notes": []}}
    (run / "config.json").write_text(json.dumps(config))
    return run


def test_predict_streams_chunks_of_files_in_order(tmp_path, capsys, monkeypatch):
    from cnnlab.export.predictor import Predictor

    run = _run(tmp_path)
    images = [str(_grey(tmp_path / f"{i}.png")) for i in range(5)]
    sizes = []
    predict = Predictor.predict

    def spy(self, batch, **kw):
        sizes.append(len(batch))
        return predict(self, batch, **kw)

    monkeypatch.setattr(limits, "PREDICT_CHUNK", 2)
    monkeypatch.setattr(Predictor, "predict", spy)
    rc, out, err = run_cli(["predict", *images, "--run", str(run), "--backend", "eager", "--no-cache",
                            "--top-k", "1"], capsys)
    assert rc == 0, err
    assert sizes == [2, 2, 1]
    assert [line for line in out.splitlines() if line.endswith(".png")] == images
    sizes.clear()
    rc, out, err = run_cli(["predict", *images, "--run", str(run), "--backend", "eager", "--no-cache",
                            "--format", "json"], capsys)
    assert rc == 0 and sizes == [2, 2, 1]
    assert [p["file"] for p in json.loads(out)["predictions"]] == images


def test_predict_checks_every_file_before_printing(tmp_path, capsys):
    run = _run(tmp_path)
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture\n")
    rc, out, err = run_cli(["predict", str(_grey(tmp_path / "a.png")), str(bad), "--run", str(run),
                            "--backend", "eager", "--no-cache"], capsys)
    one_line(rc, err, "notes.png")
    assert out == ""


def _transparent(path: Path, ink: int, mode: str = "RGBA") -> Path:
    """A bar drawn in grey level ``ink`` on a fully transparent background (transparent pixels are black)."""
    from PIL import Image

    arr = np.zeros((28, 28, 4), np.uint8)
    arr[6:22, 12:16] = (ink, ink, ink, 255)
    img = Image.fromarray(arr, "RGBA")
    if mode == "P":  # a palette image whose index 0 is the transparent colour
        img = Image.new("P", (28, 28), 0)
        img.putpalette([0, 0, 0, ink, ink, ink] + [0] * 762)
        img.paste(1, (12, 6, 16, 22))
        img.save(path, transparency=0)
        return path
    img.convert(mode).save(path)
    return path


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
@pytest.mark.parametrize("ink", [0, 255])
def test_a_transparent_background_keeps_the_digit(tmp_path, mode, ink):
    from cnnlab.data.readers import decode_image

    pixels = decode_image(_transparent(tmp_path / "t.png", ink, mode), mode="L", size=(28, 28))[0]
    assert pixels[14, 14] == ink and pixels[0, 0] == 255 - ink  # the background contrasts with the ink


def test_predict_reads_a_dark_digit_on_transparency_as_the_same_digit_on_black(tmp_path):
    from cnnlab.export.predictor import Predictor

    predictor = Predictor.from_run(_run(tmp_path), backend="eager", cache=False)
    rgba = _transparent(tmp_path / "t.png", 0)
    from PIL import Image

    arr = np.asarray(Image.open(rgba))
    x, labels = predictor.preprocessing.prepare([str(rgba), arr, Image.open(rgba)])
    reference, _ = predictor.preprocessing.prepare(str(_grey(tmp_path / "grey.png")))
    for i in range(3):  # file, (H, W, 4) array and PIL image alike: composited on white, then inverted
        assert torch.allclose(x[i], reference[0]), labels[i]
        assert "inverted" in labels[i][1][0]


# --- every numeric recipe field, at the edges of its type: a Recipe, or one ConfigError -------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NUMERIC_FIELDS = ("lr", "momentum", "weight_decay", "batch_size", "epochs", "gamma", "step_size", "min_lr",
                   "warmup_steps", "warmup_lr", "label_smoothing", "grad_clip", "dropout", "crop_padding",
                   "translate", "pca_lighting", "eval_batch_size", "early_stop_patience", "plateau_patience")
_EDGES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 1e308, -1e-308, float("nan"), float("inf"), True, "1", None]),
)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(_NUMERIC_FIELDS), value=_EDGES)
def test_any_value_of_a_numeric_recipe_field_is_accepted_or_refused_in_one_error(field, value) -> None:
    from cnnlab.errors import ConfigError
    from cnnlab.training import get_recipe

    try:
        recipe = get_recipe("resnet_cifar").replace(**{field: value})
    except ConfigError as err:
        assert "\n" not in str(err) and field in str(err)
        return
    accepted = getattr(recipe, field)
    assert accepted is None or accepted == accepted  # never NaN
    if isinstance(accepted, float):
        assert abs(accepted) < float("inf")
