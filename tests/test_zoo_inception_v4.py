"""Inception-v4 against the paper's figures and the published counts.

Outside figures:
- 42,679,816 parameters for 1000 classes: Keras-Hub's ``inception_v4_imagenet`` preset metadata and
  pytorchcv's ``inceptionv4`` test; timm's model card (``timm/inception_v4.tf_in1k``) prints 42.7M,
  and timm 1.0.31's ``InceptionV4()`` counts 42,679,816 (the structure is the same, so the count is
  checked exactly).
- 12.3 GMACs at 299x299: timm's model card; OpenVINO's ``googlenet-v4-tf`` page gives 24.584 GFLOPs
  (12.29 G multiply-adds). Checked within 1%.
- Figure 3's stem sizes (149, 147, 73x73x160, 71x71x192, 35x35x384), Figure 9's stage outputs
  (35x35x384, 17x17x1024, 8x8x1536), Figure 9's block counts 4 / 7 / 3 and Table 1's k, l, m, n.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnlab
from cnnlab.models.blocks.inception_v4 import MixedBlock

PUBLISHED_PARAMS = 42_679_816
PUBLISHED_GMACS = 12.3


@pytest.fixture(scope="module")
def meta_model() -> nn.Module:
    with torch.device("meta"):
        return cnnlab.create_model("inception_v4").eval()


@pytest.fixture(scope="module")
def analysis():
    return cnnlab.analyze("inception_v4")


def test_parameter_count_is_the_published_one(meta_model):
    assert sum(p.numel() for p in meta_model.parameters()) == PUBLISHED_PARAMS


def test_macs_at_299_are_the_published_12_3_g(meta_model, analysis):
    with FlopCounterMode(display=False) as counter:
        meta_model(torch.empty(1, 3, 299, 299, device="meta"))
    macs = counter.get_total_flops() / 2
    assert macs == pytest.approx(PUBLISHED_GMACS * 1e9, rel=0.01)
    assert macs == pytest.approx(24.584e9 / 2, rel=0.01)  # OpenVINO's GFLOPs of the TensorFlow model
    assert analysis.total.macs == macs  # the analyzer counts what FlopCounterMode counts


def test_stem_and_stage_outputs_are_figure_3_and_figure_9(analysis):
    shape = {r.name: tuple(r.output_shape[1:]) for r in analysis.fold(2).layers}
    assert shape["stem_convs.0"] == (32, 149, 149)
    assert shape["stem_convs.1"] == (32, 147, 147)
    assert shape["stem_convs.2"] == (64, 147, 147)
    assert shape["stem.mixed0"] == (160, 73, 73)
    assert shape["stem.mixed1"] == (192, 71, 71)
    assert shape["stem.mixed2"] == (384, 35, 35)
    assert shape["inception_a.a3"] == (384, 35, 35)
    assert shape["reduction_a.cat"] == (1024, 17, 17)
    assert shape["inception_b.b6"] == (1024, 17, 17)
    assert shape["reduction_b.cat"] == (1536, 8, 8)
    assert shape["inception_c.c2"] == (1536, 8, 8)


def test_block_counts_are_4_7_3_and_reduction_a_is_table_1(meta_model):
    counts = {name: sum(isinstance(m, MixedBlock) for m in getattr(meta_model, name).children())
              for name in ("inception_a", "inception_b", "inception_c")}
    assert counts == {"inception_a": 4, "inception_b": 7, "inception_c": 3}
    red_a = meta_model.reduction_a
    # Table 1, Inception-v4: k=192, l=224, m=256, n=384
    assert red_a.branch0.conv.out_channels == 384
    assert [layer.conv.out_channels for layer in red_a.branch1] == [192, 224, 256]


def test_smaller_inputs_reach_the_classifier():
    # 75x75 is the smallest side whose valid convolutions leave a map after Reduction-B
    model = cnnlab.create_model("inception_v4", num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 75, 75, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 5) and torch.isfinite(out).all()
