"""cnnlab.models.weights: safe loading of .safetensors / .pth files, sha256 pins, key and shape reports."""

from __future__ import annotations

import hashlib
import warnings

import pytest
import torch
from safetensors.torch import save_file, save_model
from torch import nn

import cnnlab
from cnnlab.errors import WeightsError
from cnnlab.models.weights import load_weights, read_state_dict, save_weights


def _reference(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cnnlab.create_model("lenet5").eval()


def _same_output(a: nn.Module, b: nn.Module) -> bool:
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.fixture
def ref() -> nn.Module:
    return _reference()


def test_two_fresh_models_differ(ref):
    # Guards the tests below: equal outputs mean the weights were loaded, not that init is fixed.
    assert not _same_output(ref, _reference(seed=1))


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda m, p: save_weights(m, p), id="safetensors"),
        pytest.param(lambda m, p: torch.save(m.state_dict(), p), id="pth-zip"),
        pytest.param(lambda m, p: torch.save(m.state_dict(), p, _use_new_zipfile_serialization=False), id="pth-legacy"),
        pytest.param(lambda m, p: torch.save({"state_dict": m.state_dict(), "epoch": 3}, p), id="nested-state_dict"),
        pytest.param(lambda m, p: torch.save({"model": m.state_dict(), "optimizer": {}}, p), id="nested-model"),
        pytest.param(lambda m, p: torch.save({f"module.{k}": v for k, v in m.state_dict().items()}, p), id="ddp-prefix"),
    ],
)
def test_formats_load_through_create_model(tmp_path, ref, write):
    path = tmp_path / "weights.bin"  # the format is recognised by content, not by the file name
    write(ref, path)
    model = cnnlab.create_model("lenet5", weights=str(path))
    assert _same_output(ref, model)


def test_sha256_pin(tmp_path, ref):
    path = tmp_path / "w.safetensors"
    returned = save_weights(ref, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert returned == digest
    report = load_weights(_reference(seed=1), path, sha256=digest.upper())
    assert report.sha256 == digest and report.complete
    wrong = "0" * 64
    model = _reference(seed=1)
    with pytest.raises(WeightsError) as err:
        load_weights(model, path, sha256=wrong)
    assert wrong in str(err.value) and digest in str(err.value) and str(path) in str(err.value)
    assert not _same_output(ref, model)  # nothing loaded
    with pytest.raises(WeightsError, match="64 hexadecimal"):
        load_weights(model, path, sha256="abc")


def test_missing_unexpected_and_shape_mismatch_are_listed(tmp_path, ref):
    state = ref.state_dict()
    state.pop("c5.0.weight")  # missing
    state["extra.weight"] = torch.zeros(2)  # unexpected
    state["fc.weight"] = torch.zeros(7, 84)  # shape mismatch
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    model = _reference(seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as err:
        load_weights(model, path)
    msg = str(err.value)
    assert str(path) in msg
    assert "1 missing key(s): c5.0.weight" in msg
    assert "1 unexpected key(s): extra.weight" in msg
    assert "fc.weight (file [7, 84] vs model [10, 84])" in msg
    # strict failure leaves the model untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    report = load_weights(model, path, strict=False)
    assert report.missing == ["c5.0.weight"] and report.unexpected == ["extra.weight"]
    assert report.mismatched == [("fc.weight", (7, 84), (10, 84))]
    assert "c1.0.weight" in report.loaded and "fc.weight" not in report.loaded
    after = model.state_dict()
    assert torch.equal(after["c1.0.weight"], ref.state_dict()["c1.0.weight"])  # matching keys loaded
    assert torch.equal(after["c5.0.weight"], before["c5.0.weight"])  # the rest kept


def test_new_head_with_no_strict_through_create_model(tmp_path, ref):
    path = tmp_path / "w.safetensors"
    save_weights(ref, path)
    with pytest.raises(WeightsError, match="shape mismatch"):
        cnnlab.create_model("lenet5", num_classes=3, weights=str(path))
    model = cnnlab.create_model("lenet5", num_classes=3, weights=str(path), strict=False)
    assert torch.equal(model.c1[0].weight, ref.c1[0].weight)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not a weights file"),
        (b"hello, this is text and not weights\n", "not a weights file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a weights file"),
    ],
)
def test_not_a_weights_file(tmp_path, content, match):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=match) as err:
        read_state_dict(path)
    assert str(path) in str(err.value)


def test_truncated_and_corrupted_files(tmp_path, ref):
    zip_path = tmp_path / "w.pth"
    torch.save(ref.state_dict(), zip_path)
    data = zip_path.read_bytes()
    zip_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a readable torch.save archive") as err:
        read_state_dict(zip_path)
    assert str(zip_path) in str(err.value)

    legacy_path = tmp_path / "legacy.pth"
    torch.save(ref.state_dict(), legacy_path, _use_new_zipfile_serialization=False)
    data = legacy_path.read_bytes()
    legacy_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupted or truncated torch-pickle") as err:
        read_state_dict(legacy_path)
    assert str(legacy_path) in str(err.value)

    st_path = tmp_path / "w.safetensors"
    save_weights(ref, st_path)
    data = st_path.read_bytes()
    st_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="invalid safetensors") as err:
        read_state_dict(st_path)
    assert str(st_path) in str(err.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        cnnlab.create_model("lenet5", weights=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match="is a directory"):
        cnnlab.create_model("lenet5", weights=str(tmp_path))


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():  # torch.jit is deprecated, but such files are still published
        warnings.simplefilter("ignore")
        torch.jit.script(nn.Linear(2, 2)).save(str(path))
    with warnings.catch_warnings():  # one line, not torch's "dispatching to torch.jit.load" warning first
        warnings.simplefilter("error")
        with pytest.raises(WeightsError, match="TorchScript archive") as err:
            read_state_dict(path)
    assert str(path) in str(err.value)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(WeightsError, match="not a state dict"):
        read_state_dict(path)


def test_tied_weights_round_trip(tmp_path):
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(4, 4, bias=False)
            self.out = nn.Linear(4, 4, bias=False)
            self.out.weight = self.embed.weight  # shared storage: safetensors' save_file refuses it

    torch.manual_seed(0)
    model = Tied()
    path = tmp_path / "tied.safetensors"
    save_weights(model, path)
    state, _, fmt = read_state_dict(path)
    assert fmt == "safetensors" and set(state) == {"embed.weight", "out.weight"}
    fresh = Tied()
    load_weights(fresh, path)
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    assert fresh.out.weight is fresh.embed.weight  # still tied after loading

    # safetensors' own save_model stores a tied tensor under one name only: still a complete file.
    deduped = tmp_path / "deduped.safetensors"
    save_model(model, str(deduped))
    assert len(read_state_dict(deduped)[0]) == 1
    fresh = Tied()
    report = load_weights(fresh, deduped)
    assert report.complete and torch.equal(fresh.out.weight, model.embed.weight)
    # An untied model really lacks the second tensor: that one is reported missing.
    untied = nn.Module()
    untied.embed, untied.out = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    with pytest.raises(WeightsError, match="1 missing key"):
        load_weights(untied, deduped)


def test_save_weights_is_atomic_and_leaves_no_temporaries(tmp_path, ref):
    path = tmp_path / "w.safetensors"
    save_weights(ref, path)
    save_weights(_reference(seed=1), path)  # replaces the file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_half_precision_safetensors_loads_into_fp32(tmp_path, ref):
    path = tmp_path / "half.safetensors"
    save_file({k: v.half() for k, v in ref.state_dict().items()}, str(path))
    model = cnnlab.create_model("lenet5", weights=str(path))
    assert model.c1[0].weight.dtype == torch.float32
    assert torch.allclose(model.c1[0].weight, ref.c1[0].weight, atol=1e-3)


def test_torchvision_resnet18_file_gives_torchvision_logits(tmp_path):
    """An outside reference: torchvision's own resnet18, its state dict saved as torchvision ships it."""
    torchvision = pytest.importorskip("torchvision")
    assert "resnet18" in cnnlab.list_models("resnet18")
    torch.manual_seed(0)
    tv = torchvision.models.resnet18()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a wrongly mapped buffer shows
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    tv.eval()
    path = tmp_path / "resnet18-torchvision.pth"
    state = tv.state_dict()
    # Old torchvision files predate BatchNorm's num_batches_tracked; torch fills it in.
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    model = cnnlab.create_model("resnet18", weights=str(path)).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = tv(x), model(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
