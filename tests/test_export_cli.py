"""``cnnlab export``, ``cnnlab bench`` and ``cnnlab predict``: files that load back with their
preprocessing, predictions that match the model, caches that never overwrite, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.export import Predictor, load_model, load_pt2, read_onnx_metadata
from cnnlab.models.registry import create_model
from cnnlab.models.weights import save_weights
from cli_helpers import one_line as _one_line_error, run_cli as _run, isolated_cwd  # noqa: F401  (a fixture)


@pytest.fixture(autouse=True)
def _isolated(isolated_cwd):
    yield isolated_cwd


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as the engine writes it: lenet5 on 10 named classes, digits padded 28 -> 32."""
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10)
    save_weights(model, run / "model.safetensors")
    names = [f"digit-{i}" for i in range(10)]
    config = {"spec": {"model": "lenet5", "data": "synthetic", "model_config": {},
                       "data_options": {"shape": [1, 32, 32], "n_train": 64, "n_test": 16}},
              "data": {"name": "synthetic", "num_classes": 10, "input_size": [1, 32, 32], "mean": [0.1307],
                       "std": [0.3081], "class_names": names,
                       "notes": ["mnist-5k: 28x28 zero-padded to 32x32 (LeCun et al. 1998 ...)"]}}
    (run / "config.json").write_text(json.dumps(config))
    return run


def _digit(path, size=(40, 40), mode="L"):
    arr = np.zeros(size, np.uint8)
    arr[8:32, 18:22] = 255
    img = Image.fromarray(arr)
    img.convert(mode).save(path)
    return path


def test_predict_equals_the_models_softmax_with_the_runs_preprocessing(run_dir, tmp_path, capsys):
    img = _digit(tmp_path / "one.png")
    rgb = _digit(tmp_path / "one.jpg", mode="RGB")  # colour files are converted to the model's grey
    rc, out, err = _run(["predict", str(img), str(rgb), "--run", str(run_dir), "--backend", "eager",
                         "--top-k", "3", "--format", "json"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    # Expected by hand: PIL resize to 28x28, zero pad to 32x32, normalise with the run's mean/std.
    arr = np.asarray(Image.open(img).convert("L").resize((28, 28), Image.Resampling.BILINEAR), np.float32) / 255
    x = torch.nn.functional.pad(torch.from_numpy(arr), (2, 2, 2, 2))[None, None]
    x = (x - 0.1307) / 0.3081
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10).eval()
    probs = torch.softmax(model(x), 1)[0]
    top = probs.topk(3)
    got = doc["predictions"][0]["top"]
    assert [t["index"] for t in got] == top.indices.tolist()
    assert [t["class"] for t in got] == [f"digit-{i}" for i in top.indices.tolist()]
    assert np.allclose([t["probability"] for t in got], top.values.tolist(), atol=1e-5)
    assert len(doc["predictions"]) == 2 and len(doc["predictions"][1]["top"]) == 3


def test_auto_backend_checks_agreement_and_caches_without_overwriting(run_dir, tmp_path):
    img = _digit(tmp_path / "one.png")
    p = Predictor.from_run(run_dir)
    report = p.choice["candidates"]
    assert p.choice["backend"] in report and report[p.choice["backend"]]["accurate"]
    assert "test" not in p.choice["check"]  # the check never reads the test split
    assert all(r.get("top1_agreement", 1.0) >= 0.99 for r in report.values() if r.get("accurate"))
    cache = sorted(f.name for f in (run_dir / "inference").iterdir())
    sha = p.source.weights_sha256[:16]
    assert f"{sha}.choice.json" in cache
    before = {f: (run_dir / "inference" / f).read_bytes() for f in cache}
    again = Predictor.from_run(run_dir)  # reads the cached choice
    assert again.choice["backend"] == p.choice["backend"] and "cached" in again.choice["reason"]
    assert {f: (run_dir / "inference" / f).read_bytes() for f in cache} == before
    a, b = p.predict([img], top_k=2)[0], again.predict([img], top_k=2)[0]
    assert [t[1] for t in a.top] == [t[1] for t in b.top]


def test_a_foreign_file_in_the_cache_is_left_alone(run_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    sha = load_model(run=run_dir).weights_sha256[:16]
    (run_dir / "inference").mkdir()
    foreign = run_dir / "inference" / f"{sha}.onnx"
    foreign.write_bytes(b"the user's own file")
    p = Predictor.from_run(run_dir, backend="onnxruntime")
    assert foreign.read_bytes() == b"the user's own file"
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(p.logits(x), p.source.model(x), atol=1e-4)


def test_export_onnx_and_pt2_from_a_run_carry_its_preprocessing(run_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    rc, out, err = _run(["export", "--run", str(run_dir), "--format", "onnx", "--dynamic-batch",
                         "--out", str(tmp_path / "m.onnx")], capsys)
    assert rc == 0, err
    prep = read_onnx_metadata(tmp_path / "m.onnx")
    assert prep.class_names[3] == "digit-3" and prep.mean == (0.1307,) and prep.pad == 2
    rc, out, err = _run(["export", "--run", str(run_dir), "--format", "pt2", "--dynamic-batch",
                         "--out", str(tmp_path / "m.pt2")], capsys)
    assert rc == 0, err
    program, prep2 = load_pt2(tmp_path / "m.pt2")
    assert prep2 == prep
    x = torch.randn(5, 1, 32, 32)
    ref = load_model(run=run_dir).model(x)
    assert torch.allclose(program.module()(x), ref, atol=1e-5)
    # never overwritten
    before = (tmp_path / "m.pt2").read_bytes()
    rc, out, err = _run(["export", "--run", str(run_dir), "--format", "pt2", "--out", str(tmp_path / "m.pt2")], capsys)
    _one_line_error(rc, err, "m.pt2", "exists")
    assert (tmp_path / "m.pt2").read_bytes() == before


def test_pt2_with_a_pickled_entry_is_refused(tmp_path):
    """torch.export.load would torch.load(weights_only=False) a weight flagged use_pickle."""
    import zipfile

    from cnnlab.errors import WeightsError
    from cnnlab.export import export_pt2

    im = load_model(model="lenet5")
    good = export_pt2(im.model, tmp_path / "good.pt2", preprocessing=im.preprocessing)
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("model_weights_config.json"):
                doc = json.loads(data)
                first = next(iter(doc["config"]))
                doc["config"][first]["use_pickle"] = True
                data = json.dumps(doc).encode()
            dst.writestr(item, data)
    with pytest.raises(WeightsError, match="pickled"):
        load_pt2(bad)
    load_pt2(good)


def test_bench_json_has_every_backend_and_the_machine(capsys):
    rc, out, err = _run(["bench", "lenet5", "--batch-size", "4", "--rounds", "1", "--backends",
                         "eager,channels_last,bf16", "--format", "json", "--threads", "1"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    assert [r["backend"] for r in doc["rows"]] == ["eager", "channels_last", "bf16"]
    eager = doc["rows"][0]
    assert eager["throughput_vs_eager"] == 1.0 and eager["max_abs_diff"] == 0.0
    assert all(r["images_per_second"] > 0 and r["p90_ms"] >= r["p50_ms"] for r in doc["rows"])
    assert doc["rows"][1]["max_abs_diff"] < 1e-4 and doc["rows"][2]["max_abs_diff"] < 0.5
    assert "native_bf16" in doc["machine"] and doc["machine"]["torch_threads"] == 1
    label = doc["rows"][2]["label"]
    assert ("native" in label) == doc["machine"]["native_bf16"]


@pytest.mark.parametrize("argv, needles", [
    (["export", "resnet_20", "--format", "onnx"], ("resnet_20", "did you mean")),
    (["export", "--run", "no/such/run"], ("no/such/run",)),
    (["export", "lenet5", "--input", "1x32"], ("does not run on a 1x1x32 input", "--input")),
    (["export", "lenet5", "--input", "32x32", "--out", "l.onnx"], ()),  # HxW alone is fine
    (["export", "lenet5", "--input", "3by32"], ("--input", "3by32")),
    (["export", "lenet5", "--input", "3x32x32"], ("channels",)),
    (["bench", "lenet5", "--backends", "eager,tensorrt"], ("tensorrt",)),
    (["predict", "missing.png", "--model", "lenet5", "--weights", "w.safetensors"], ("missing.png",)),
    (["predict", "x.png"], ("--run",)),
])
def test_cli_errors_are_one_line(argv, needles, capsys, tmp_path):
    _digit(tmp_path / "x.png")
    rc, out, err = _run(argv, capsys)
    if not needles:
        assert rc == 0, err
        return
    _one_line_error(rc, err, *needles)


def test_predict_bad_image_names_the_file(run_dir, tmp_path, capsys):
    good = _digit(tmp_path / "ok.png")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    rc, out, err = _run(["predict", str(good), str(bad), "--run", str(run_dir), "--backend", "eager"], capsys)
    _one_line_error(rc, err, "broken.jpg")


def test_predict_on_png_files_sees_what_the_engine_saw(tmp_path):
    """Digits written as PNG files and read back by predict give the probabilities the model gives on
    load_dataset's tensors (decoded, padded 28 -> 32 and normalised by cnnlab.data)."""
    from cnnlab.data import embedded, load_dataset

    data = load_dataset("mnist-5k", input_size=(1, 32, 32))
    run = tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10).eval()
    save_weights(model, run / "model.safetensors")
    config = {"spec": {"model": "lenet5", "data": "mnist-5k"},
              "data": {"name": data.name, "num_classes": 10, "input_size": list(data.input_size),
                       "mean": list(data.mean), "std": list(data.std), "notes": list(data.notes)}}
    (run / "config.json").write_text(json.dumps(config))
    raw = embedded.load_mnist_5k()
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(raw.test_x[i, 0].numpy().astype(np.uint8)).save(paths[-1])
    got = Predictor.from_run(run, backend="eager").predict(paths, top_k=10)
    with torch.no_grad():
        expected = torch.softmax(model(data.test.x[:8]), 1)
    for pred, row in zip(got, expected):
        assert np.allclose([p for _, i, p in sorted(pred.top, key=lambda t: t[1])], row.tolist(), atol=1e-5)


def test_export_has_a_dynamic_batch_by_default(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    rc, out, err = _run(["export", "lenet5", "--format", "onnx", "--out", str(tmp_path / "any.onnx")], capsys)
    assert rc == 0, err
    session = ort.InferenceSession(str(tmp_path / "any.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    assert session.run(None, {name: np.zeros((3, 1, 32, 32), np.float32)})[0].shape == (3, 10)
    rc, out, err = _run(["export", "lenet5", "--format", "onnx", "--no-dynamic-batch",
                         "--out", str(tmp_path / "one.onnx")], capsys)
    assert rc == 0, err
    fixed = ort.InferenceSession(str(tmp_path / "one.onnx"), providers=["CPUExecutionProvider"])
    assert fixed.get_inputs()[0].shape[0] == 1
