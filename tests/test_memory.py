"""Training-memory estimate (lecture 002's "~*2 for bwd") against what autograd really saves, and
the `cnnlab summary` notes on the lectures' numbers, each figure against the zoo or the analyzer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from cnnlab.analysis import analyze
from cnnlab.analysis.memory import measure_saved_activations, training_memory
from cnnlab.analysis.notes import MODEL_NOTES
from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.models import create_model


def _params(name: str, **config) -> tuple[int, int]:
    with torch.device("meta"):
        m = create_model(name, **config)
    return sum(p.numel() for p in m.parameters()), sum(p.numel() for p in m.parameters() if p.dim() > 1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# (model, input, measured saved floats / estimate): a plain conv stack saves every activation once;
# a residual block's second BN output feeds only the addition, which saves nothing (-20%); AlexNet's
# LRN (a composite of pow/avg_pool/div) and dropout masks save more than the activations (+34%);
# NIN's dropout masks +5%.
@pytest.mark.parametrize("name,size,low,high", [
    ("plain20", (3, 32, 32), 0.99, 1.01),
    ("lenet5_relu", (1, 32, 32), 0.99, 1.01),
    ("resnet20", (3, 32, 32), 0.75, 0.85),
    ("nin_cifar", (3, 32, 32), 1.00, 1.10),
])  # fmt: skip
def test_kept_for_backward_estimate_against_saved_tensor_hooks(name, size, low, high):
    torch.manual_seed(0)
    model = create_model(name)
    est = training_memory(analyze(model, size, batch_size=4)).kept_for_backward
    measured = measure_saved_activations(model, torch.randn(4, *size))
    assert low <= measured["float_bytes"] / est <= high, (measured, est)


def test_saved_bytes_scale_with_the_batch_and_pool_indices_are_int64():
    torch.manual_seed(0)
    model = create_model("lenet5_relu")
    one = measure_saved_activations(model, torch.randn(2, 1, 32, 32))
    two = measure_saved_activations(model, torch.randn(4, 1, 32, 32))
    assert two["float_bytes"] == 2 * one["float_bytes"]
    # two 2x2 max pools: 6x14x14 + 16x5x5 indices per image, 8 bytes each
    assert one["index_bytes"] == 2 * (6 * 14 * 14 + 16 * 5 * 5) * 8


def test_optimizer_state_and_the_lectures_x2():
    a = analyze("vgg16", batch_size=1)
    sgd, mom, adam = (training_memory(a, optimizer=o) for o in ("sgd", "momentum", "adam"))
    p = 138_357_544 * 4
    assert (sgd.optimizer_state, mom.optimizer_state, adam.optimizer_state) == (0, p, 2 * p)
    assert sgd.weights == sgd.weight_gradients == p
    # forward + backward activations = 2 x forward (lecture 002, VGG-16: 15,262,696 values x 4 bytes)
    assert sgd.kept_for_backward + sgd.activation_gradients == 2 * 15_262_696 * 4
    with pytest.raises(ConfigError, match="unknown optimizer 'rmsprop'"):
        training_memory(a, optimizer="rmsprop")


def test_summary_prints_memory_and_notes(capsys):
    assert main(["summary", "alexnet_2012", "--depth", "1", "--batch-size", "2", "--optimizer", "adam"]) == 0
    out = capsys.readouterr().out
    assert "training memory at batch 2 with adam" in out and "2 fp32 copies" in out
    assert "62,378,344" in out
    assert main(["summary", "lenet5", "--format", "json"]) == 0
    captured = capsys.readouterr()
    import json

    json.loads(captured.out)  # still machine-readable
    assert "training memory" in captured.err


def test_alexnet_62m_is_the_ungrouped_net():
    grouped, _ = _params("alexnet_2012")
    ungrouped, _ = _params("alexnet_2012", two_towers=False)
    assert (grouped, ungrouped) == (60_965_224, 62_378_344)
    assert round(ungrouped / 1e6) == 62 and round(grouped / 1e6) == 61  # lecture 000's "62M"
    assert f"{grouped:,}" in MODEL_NOTES["alexnet_2012"][0] and f"{ungrouped:,}" in MODEL_NOTES["alexnet_2012"][0]


def test_resnet152_is_60m_in_every_variant_but_option_c():
    params, weights = _params("resnet152")
    assert (params, weights) == (60_192_808, 60_040_384)
    assert _params("resnet152", stride_in_1x1=True)[0] == params
    with torch.device("meta"):
        m = create_model("resnet152")
    assert sum(v.numel() for v in m.state_dict().values()) == 60_344_387
    assert round(_params("resnet152", shortcut="C")[0] / 1e6) == 107
    note = MODEL_NOTES["resnet152"][0]
    for figure in ("60,192,808", "60,040,384", "60,344,387", "107M"):
        assert figure in note


def _seed_text(prefix: str) -> str:
    for d in (Path(__file__).resolve().parents[3] / "shared" / "seeds", Path("/work/shared/seeds")):
        hits = sorted(d.glob(f"{prefix}_*.txt")) if d.is_dir() else []
        if hits:
            return hits[0].read_text()
    pytest.skip("the lecture decks (seeds) are not on this machine")


def test_googlenet_27_layers_and_5m_weights():
    a = analyze("googlenet_2014")
    assert a.total.depth == 22
    top = [row for row in a.fold(1).layers]
    pools = [r.name for r in top if r.type in ("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d")]
    assert pools == ["maxpool1", "maxpool2", "maxpool3", "maxpool4", "avgpool"]
    assert a.total.depth + len(pools) == 27  # lecture 004: "Total: 27 layers"
    params, weights = _params("googlenet_2014", aux_logits=False)
    assert (params, weights) == (6_998_552, 6_990_272)
    assert _params("googlenet_2014")[0] == 13_378_280
    assert round(60.97e6 / 12 / 1e6) == 5  # "12 times fewer than AlexNet" -> the lecture's 5M
    # Table 1's params column (lecture 004's copy) sums to 6,798K
    table = _seed_text("004")
    ks = [float(v) for v in re.findall(r"\t([\d.]+)K\t\d+M", table)]
    assert len(ks) == 12 and round(sum(ks)) == 6798
    notes = " ".join(MODEL_NOTES["googlenet_2014"])
    for figure in ("6,990,272", "6,998,552", "6,798K", "13,378,280"):
        assert figure in notes


def test_googlenet_4a_73m_is_the_table_params_times_196():
    rows = {r.name: r for r in analyze("googlenet_2014").fold(1).layers}
    a4 = rows["inception4a"]
    assert (a4.weights, a4.macs) == (375_552, 73_608_192) and a4.macs == a4.weights * 14 * 14
    assert round(a4.macs / 1e6) == 74  # the widths' figure does not round to 73M
    assert int(364 * 1024 * 196 / 1e6) == 73 and round(364 * 1024 * 196 / 1e6) == 73  # the table's params do
    assert round(rows["inception4b"].macs / 1e6) == 88 and round(rows["inception4d"].macs / 1e6) == 119
