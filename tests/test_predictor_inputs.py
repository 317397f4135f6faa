"""``Predictor.predict`` takes what users hold: a path, a PIL image, a NumPy array or a tensor (one or a
batch); digits drawn dark on light are inverted with a note, and unusual images are predicted but noted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import Predictor
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import create_model
from cnnlab.models.weights import save_weights
from cli_helpers import run_cli


@pytest.fixture
def predictor(tmp_path) -> Predictor:
    """lenet5 as a run on MNIST-like data (mean 0.1307: light digits on a dark background), eager backend."""
    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    save_weights(create_model("lenet5", num_classes=10), run / "model.safetensors")
    config = {"spec": {"model": "lenet5", "data": "mnist", "model_config": {}},
              "data": {"name": "mnist", "num_classes": 10, "input_size": [1, 32, 32], "mean": [0.1307],
                       "std": [0.3081], "class_names": [str(i) for i in range(10)],
                       "notes": ["mnist: 28x28 zero-padded to 32x32"]}}
    (run / "config.json").write_text(json.dumps(config))
    return Predictor.from_run(run, backend="eager", cache=False)


def _digit() -> np.ndarray:
    """A light '7' on black, 28x28 uint8, as MNIST draws digits."""
    a = np.zeros((28, 28), np.uint8)
    a[6:9, 7:21] = 255
    for i in range(9, 23):
        a[i, 20 - (i - 9) // 2 : 23 - (i - 9) // 2] = 255
    return a


def test_every_input_kind_gives_the_same_prediction(predictor, tmp_path) -> None:
    a = _digit()
    path = tmp_path / "seven.png"
    Image.fromarray(a).save(path)
    reference = predictor.predict([path])[0].top
    kinds = [str(path), path, Image.open(path), a, a.astype(np.float32) / 255.0, a[:, :, None],
             np.stack([a, a, a], axis=-1), torch.tensor(a)[None], torch.tensor(a)[None].float() / 255.0]
    for image in kinds:
        (pred,) = predictor.predict(image)
        assert [n for n, _, _ in pred.top] == [n for n, _, _ in reference], type(image)
        assert np.allclose([p for _, _, p in pred.top], [p for _, _, p in reference], atol=1e-5), type(image)
    batch = predictor.predict(np.stack([a, a]))
    assert len(batch) == 2 and batch[0].top == batch[1].top
    assert len(predictor.predict(torch.tensor(a)[None, None].repeat(3, 1, 1, 1))) == 3


def test_a_digit_drawn_dark_on_light_is_inverted_with_a_note(predictor) -> None:
    a = _digit()
    (plain,) = predictor.predict(a)
    (dark,) = predictor.predict(255 - a)
    assert plain.notes == ()
    assert dark.top == plain.top  # inverted back to the very pixels of the plain digit
    assert any("inverted" in n for n in dark.notes)
    (kept,) = predictor.predict(255 - a, invert=False)
    assert kept.top != plain.top and any("far from the training images" in n for n in kept.notes)


def test_a_colour_image_into_a_grey_model_is_noted(predictor) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    (pred,) = predictor.predict(rgb)
    assert any("colour image" in n for n in pred.notes)
    assert len(pred.top) == 5  # still predicted


@pytest.mark.parametrize("bad, needle", [
    (5, "cannot read an image from a int"),
    (np.zeros((2, 2, 2, 2, 2)), "must be (H, W), (H, W, C)"),
    (np.full((8, 8), 3.0), "values in [0, 1]"),
    (np.full((8, 8), np.nan), "values in [0, 1]"),
    (torch.zeros(7, 8, 8), "1, 3 or 4 channels"),
    ("no-such-image.png", "no-such-image.png"),
])
def test_bad_inputs_are_refused_with_a_message(predictor, bad, needle) -> None:
    with pytest.raises(CnnlabError, match=None) as err:
        predictor.predict(bad)
    assert needle in str(err.value)


def test_the_cli_prints_the_notes(predictor, tmp_path, capsys) -> None:
    path = tmp_path / "dark.png"
    Image.fromarray(255 - _digit()).save(path)
    rc, out, err = run_cli(["predict", str(path), "--run", str(tmp_path / "run"), "--backend", "eager",
                            "--no-cache"], capsys)
    assert rc == 0, err
    assert "note: drawn dark on light: inverted" in out


def test_more_images_than_the_cap_are_refused_not_dropped(predictor, monkeypatch) -> None:
    from cnnlab import limits

    monkeypatch.setattr(limits, "MAX_PREDICT_IMAGES", 3)
    assert len(predictor.predict(np.zeros((3, 28, 28), np.uint8))) == 3
    for too_many in (np.zeros((4, 28, 28), np.uint8), torch.zeros(4, 1, 28, 28), [_digit()] * 4):
        with pytest.raises(CnnlabError, match="4 images in one call; give at most 3"):
            predictor.predict(too_many)


def test_auto_backend_without_onnxruntime_caches_its_choice(tmp_path, monkeypatch) -> None:
    """The base install (no [export] extra): the run has no inference/ folder yet; the choice is still saved."""
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if name == "onnxruntime":
            raise ImportError("no onnxruntime here")
        return real_import(name, *args, **kwargs)

    run = tmp_path / "run"
    run.mkdir()
    save_weights(create_model("lenet5", num_classes=10), run / "model.safetensors")
    config = {"spec": {"model": "lenet5", "data": "synthetic", "model_config": {},
                       "data_options": {"shape": [1, 32, 32], "n_train": 64, "n_test": 16}},
              "data": {"name": "synthetic", "num_classes": 10, "input_size": [1, 32, 32], "mean": [0.5],
                       "std": [0.5], "class_names": [str(i) for i in range(10)], "notes": []}}
    (run / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    p = Predictor.from_run(run, backend="auto")
    assert p.backend.name != "onnxruntime"
    assert list((run / "inference").glob("*.choice.json"))
    assert len(p.predict(np.zeros((2, 28, 28), np.uint8))) == 2
