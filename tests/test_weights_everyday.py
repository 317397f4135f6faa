"""Everyday loading habits: torchvision's hash prefixes and GoogLeNet files that carry aux heads."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torchvision

import cnnlab
from cnnlab.errors import WeightsError
from cnnlab.models.weights import load_weights


def test_sha256_prefix_as_in_torchvision_file_names(tmp_path):
    model = cnnlab.create_model("lenet5")
    path = tmp_path / "lenet5.pth"
    torch.save(model.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    load_weights(cnnlab.create_model("lenet5"), path, sha256=digest[:8])  # resnet18-f37072fd.pth style
    load_weights(cnnlab.create_model("lenet5"), path, sha256=digest.upper())
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:8]
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_weights(cnnlab.create_model("lenet5"), path, sha256=wrong)
    with pytest.raises(WeightsError, match="8 to 64 hexadecimal"):
        load_weights(cnnlab.create_model("lenet5"), path, sha256="f370")


def test_torchvision_googlenet_file_with_aux_heads_loads_into_googlenet_without(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(aux_logits=True, init_weights=True).eval()
    path = tmp_path / "googlenet.pth"
    torch.save(tv.state_dict(), path)
    ours = cnnlab.create_model("googlenet")  # aux_logits=False, as torchvision's pretrained builder leaves it
    with pytest.warns(UserWarning, match="auxiliary heads"):
        report = load_weights(ours, path)
    assert report.complete
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), tv(x), atol=1e-5, rtol=1e-5)
