"""torchinfo's habits on cnnlab's analyzer: the table when echoed, a batch dimension in
``input_size``, ``depth=``, a weights column, and rows for parameters that forward does not run."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import cnnlab
from cnnlab.errors import ConfigError


def test_input_size_with_batch_dimension_counts_the_batch_as_flop_counter_does():
    a = cnnlab.analyze("resnet18", (8, 3, 112, 112))
    assert a.batch_size == 8 and a.input_size == (3, 112, 112)
    model = torchvision.models.resnet18()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(8, 3, 112, 112))
    assert a.total.macs == counter.get_total_flops() // 2
    with pytest.raises(ConfigError, match="batch_size"):
        cnnlab.analyze("resnet18", (8, 3, 112, 112), batch_size=2)


def test_depth_keyword_folds_rows():
    folded = cnnlab.analyze("resnet18", depth=1)
    assert [r.name for r in folded.layers][:5] == ["conv1", "bn1", "relu", "maxpool", "layer1"]
    assert folded.total == cnnlab.analyze("resnet18").total


def test_repr_is_the_table_and_notebook_renderings_exist():
    a = cnnlab.analyze("lenet5")
    assert repr(a) == a.table() and "60,850" in repr(a)
    assert a._repr_markdown_().startswith("| layer |")
    html = a._repr_html_()
    assert html.startswith("<table>") and "60,850" in html and "<script" not in html


def test_weights_column_shows_the_lectures_conv1_count():
    table = cnnlab.analyze("alexnet_2012").table()
    header = table.splitlines()[0].split()
    assert header[:5] == ["layer", "type", "output", "params", "weights"]
    conv1 = next(line for line in table.splitlines() if line.split()[0].endswith("conv1"))
    assert "34,848" in conv1.split() and "34,944" in conv1.split()  # (11*11*3)*96 weights, + 96 biases


def test_googlenet_aux_heads_are_rows_so_rows_add_up_to_the_total():
    a = cnnlab.analyze("googlenet_2014")
    model = cnnlab.create_model("googlenet_2014")
    assert a.total.params == sum(p.numel() for p in model.parameters())
    aux = {r.name: r for r in a.layers if r.source == "idle"}
    assert set(aux) == {"aux1", "aux2"}
    assert aux["aux1"].params == sum(p.numel() for p in model.aux1.parameters())
    assert sum(r.params for r in a.layers) == a.total.params
    assert any("not run by forward" in n for n in a.notes)
    assert not any(r.source == "idle" for r in cnnlab.analyze("googlenet_2014", config={"aux_logits": False}).layers)
