"""Every zoo model exports to ONNX (torch's dynamo exporter) with a dynamic batch dimension, and ONNX
Runtime's outputs equal PyTorch's within 1e-4 (fp32) at batch sizes other than the one exported with.

The exporter costs 2-7 s of CPU per net (resnet56: 1 s in torch.export, 3.4 s translating to ONNX,
measured with one thread), which is more than two minutes for all 44. So the fast test exports one
representative of every family and of every distinct layer pattern (LRN, 1x1 convs, BN, grouped
convs, SE gates, option-A shortcuts, plain stacks, aux-head GoogLeNet, drop-path joins); the other
nets, deeper or wider copies of the same blocks, are the slow-marked test.

Nets are built at reduced width where their config allows it (VGG/AlexNet ``width``, ImageNet
ResNets ``widths``, FractalNet ``channels``) and run at 64x64 where their pooling allows it: the
exporter's work grows with the number of layers, not the width, so every layer of each net is still
exported and compared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.export import Preprocessing, export_onnx, read_onnx_metadata
from cnnlab.models.registry import create_model, list_models, model_info

ort = pytest.importorskip("onnxruntime", reason="pip install '.[export]'")
pytest.importorskip("onnxscript", reason="pip install '.[export]'")

TOL = 1e-4
# One per family and per distinct layer pattern; every other zoo net is in the slow test.
FAST = {"lenet5", "lenet5_relu", "alexnet", "alexnet_2012", "zfnet", "vgg_a_lrn", "vgg_c", "vgg11_bn",
        "googlenet", "googlenet_2014", "nin_cifar", "fractalnet_cifar", "resnet18", "resnet50", "airbench_mini",
        "resnext50_32x4d", "se_resnet50", "plain18", "resnet20", "plain20", "se_resnet20",
        # dense prediction and generative nets: per-pixel logits, [0, 1] pixels
        "fcn_digits", "dilated_digits", "unet_small", "fcn8s_vgg16", "ae_conv", "vae_conv",
        "efficientnet_lite0", "cdcgan"}
# Detectors and captioners answer with boxes and words, not logits: not exported (docs/detection.md).
NOT_EXPORTED_TASKS = ("detection", "captioning")
SLOW = sorted(n for n in set(list_models()) - FAST if model_info(n).task not in NOT_EXPORTED_TASKS)

def small_case(name: str) -> tuple[dict, tuple[int, int, int]]:
    """A reduced-width config and input size for ``name`` (the architecture's layers unchanged)."""
    info = model_info(name)
    size = info.input_size
    if info.family in ("vgg",):
        return {"width": 0.125}, (3, 64, 64)
    if name == "alexnet_2012":  # no adaptive pool: FC6 needs the paper's 227x227
        return {"width": 0.25}, size
    if info.family == "alexnet":
        return {"width": 0.25}, (3, 64, 64) if name == "alexnet" else size
    if info.family == "fractalnet":
        return {"channels": (8, 16, 16, 32, 32)}, size
    if size[1] >= 224 and info.family in ("resnet", "plain", "resnext", "senet"):
        widths = (16, 32, 64, 128) if info.family == "resnext" else (8, 16, 32, 64)
        return {"widths": widths}, (3, 64, 64)
    if name == "inception_v4":  # its valid convolutions need 75x75 to leave a map after Reduction-B
        return {}, (3, 75, 75)
    if info.family == "googlenet":
        return {}, (3, 64, 64)
    if info.family == "efficientnet_lite":  # TF "SAME" pads of odd and even sides: 65 has both
        return {"width": 0.25}, (3, 65, 65)
    if info.family in ("fcn", "dilated") and size[1] >= 224:  # VGG-16 backbones at 1/16 of their widths
        return {"width": 1 / 16}, (3, 64, 64)
    return {}, size


# At its random initialisation resnet1202's activations overflow through 600 residual additions:
# PyTorch's own eval-mode output is NaN (measured), so there would be nothing to compare.
DAMPED = {"resnet1202"}


def _damp_residuals(model) -> None:
    """Scale each residual branch's last BN by 0.1 (zero_init_residual's norms, but not zero): the
    activations stay finite (largest logit 48) and every layer still computes."""
    with torch.no_grad():
        for _, block in model.blocks():  # basic blocks: conv1-bn1-relu-conv2-bn2
            block.bn2.weight.mul_(0.1)


def _check(name: str, tmp_path) -> None:
    config, size = small_case(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, **config).eval()  # GoogLeNet: eval mode, aux heads unused
    if name in DAMPED:
        _damp_residuals(model)
    with torch.no_grad():  # FCN's score layers start at zero (the paper's init): give them weights to compare
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 0.01)
    prep = Preprocessing(model=name, input_size=size, mean=(0.5,) * size[0], std=(0.25,) * size[0],
                         class_names=tuple(f"c{i}" for i in range(10)), model_config=config)
    path = export_onnx(model, tmp_path / f"{name}.onnx", preprocessing=prep, dynamic_batch=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch", session.get_inputs()[0].shape  # symbolic, not 2
    for batch in (1, 3):  # the export traced batch 2
        x = torch.randn(batch, *size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == expected.shape
        assert np.isfinite(expected).all(), f"{name}: PyTorch's own output is not finite"
        scale = max(1.0, float(np.abs(expected).max()))
        assert np.abs(got - expected).max() <= TOL * scale, (name, batch, np.abs(got - expected).max(), scale)
        assert float(np.abs(expected).max()) > 1e-6, f"{name}: outputs are all ~0; the comparison would be empty"
    assert read_onnx_metadata(path).to_dict() == prep.to_dict()


@pytest.mark.parametrize("name", sorted(FAST))
def test_model_exports_to_onnx_and_matches_pytorch(name, tmp_path):
    _check(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_deep_model_exports_to_onnx_and_matches_pytorch(name, tmp_path):
    _check(name, tmp_path)


def test_every_zoo_model_is_covered():
    assert FAST <= set(list_models())
    assert {model_info(n).family for n in FAST} == {model_info(n).family for n in list_models()
                                                    if model_info(n).task not in NOT_EXPORTED_TASKS}
