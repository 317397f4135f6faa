"""`cnnlab viz` on a run folder and on a torchvision weights file; bad input is one line, exit 2."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from cnnlab import create_model
from cnnlab.cli import main
from cnnlab.models.weights import save_weights


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Setting backward hooks")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as `cnnlab train lenet5_relu` leaves it: config.json (its spec) and model.safetensors."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    save_weights(create_model("lenet5_relu"), run / "model.safetensors")
    spec = {"model": "lenet5_relu", "data": "mnist-5k", "model_config": {}, "data_options": {}, "seed": 0}
    (run / "config.json").write_text(json.dumps({"spec": spec, "data": {"num_classes": 10}}))
    return run


@pytest.mark.parametrize("what,expected", [
    ("filters", ["filters-c1.0.png"]),
    ("stats", ["stats.png", "stats.csv"]),
    ("feature-maps", ["feature-maps.png"]),
    ("top-patches", ["top-patches-c1.png"]),
])  # fmt: skip
def test_viz_on_a_run_folder(run_dir, tmp_path, capsys, what, expected):
    assert main(["viz", what, "--run", str(run_dir), "--out", str(tmp_path), "--images", "64"]) == 0
    for name in expected:
        assert (tmp_path / name).stat().st_size > 300
    if what == "stats":
        assert "c1.0" in capsys.readouterr().out


def test_viz_attributions_on_image_files(run_dir, tmp_path):
    from PIL import Image

    img = torch.zeros(28, 28, dtype=torch.uint8)
    img[6:22, 12:16] = 255  # a "1"
    Image.fromarray(img.numpy()).save(tmp_path / "one.png")
    code = main(["viz", "attributions", "--run", str(run_dir), "--image", str(tmp_path / "one.png"),
                 "--method", "saliency", "--method", "occlusion", "--out", str(tmp_path / "a")])
    assert code == 0
    assert {p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith(".")} == {
        "saliency.png", "occlusion.png", "attributions-panel.png"}  # and the hidden ledger of what cnnlab wrote


def test_viz_on_a_torchvision_weights_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    code = main(["viz", "cam", "--weights", str(tmp_path / "resnet18.pth"), "--model", "resnet18", "--size", "32",
                 "--count", "2", "--out", str(tmp_path / "v")])
    assert code == 0 and (tmp_path / "v" / "cam-panel.png").is_file()


@pytest.mark.parametrize("argv,message", [
    (["viz", "filters", "--run", "/nonexistent/run"], "not a finished run folder"),
    (["viz", "filters"], "say which network"),
    (["viz", "feature-maps", "--model", "lenet5_relu", "--layer", "c3x"], "did you mean c3"),
    (["viz", "attributions", "--model", "lenet5_relu", "--method", "gradcm"], "did you mean gradcam"),
    (["viz", "cam", "--model", "lenet5_relu"], "global average pooling"),
    (["viz", "attributions", "--model", "lenet5_relu", "--image", "/nonexistent.png"], "does not exist"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_unknown_what_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["viz", "pictures", "--model", "lenet5"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_viz_attributions_explain_the_class_given_by_target(tmp_path, capsys):
    from cli_helpers import one_line, run_cli
    from cnnlab.cli.viz import _targets

    rc, _, err = run_cli(["viz", "attributions", "--model", "lenet5_relu", "--method", "saliency", "--count", "2",
                          "--target", "3", "--out", str(tmp_path / "t")], capsys)
    assert rc == 0, err
    assert (tmp_path / "t" / "saliency.png").is_file()
    rc, _, err = run_cli(["viz", "cam", "--model", "resnet20", "--target", "dog", "--out", str(tmp_path / "u")], capsys)
    one_line(rc, err, "--target 'dog'", "class index in 0..9")

    class Data:
        class_names = tuple(f"digit-{i}" for i in range(10))

    class Subject:
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
        images = torch.randn(3, 1, 2, 2)
        data = Data()

    target, predicted = _targets(Subject(), "digit-7")
    assert target.tolist() == [7, 7, 7] and predicted.shape == (3,)
    assert _targets(Subject(), None)[0].tolist() == predicted.tolist()
