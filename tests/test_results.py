"""The registry of published results (cnnlab.results) against its sources: torchvision's weights
tables as installed, the lecture decks (seeds) and the zoo itself."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from cnnlab import results as R
from cnnlab.models import list_models
from cnnlab.models.registry import model_info

SEEDS = Path(__file__).resolve().parents[1].parent.parent / "shared" / "seeds"


def _seed_text() -> str:
    candidates = [SEEDS, Path("/work/shared/seeds")]
    for d in candidates:
        if d.is_dir():
            return "\n".join(p.read_text() for p in sorted(d.glob("*.txt")))
    pytest.skip("the lecture decks (seeds) are not on this machine")


def test_torchvision_figures_equal_the_installed_weights_tables():
    from torchvision.models import get_model_weights

    for p in R.IMAGENET_TORCHVISION:
        enum_name, member = p.source.rsplit(", ", 1)[1].split(".")
        weights = get_model_weights(model_info(p.model).torchvision)[member]
        assert type(weights).__name__ == enum_name
        metrics = weights.meta["_metrics"]["ImageNet-1K"]
        assert (p.top1, p.top5) == (metrics["acc@1"], metrics["acc@5"]), p.model


def test_every_torchvision_compatible_model_has_its_v1_figure():
    for name in list_models():
        tv = model_info(name).torchvision
        if tv is None:
            continue
        from torchvision.models import get_model_weights

        v1 = [w for w in get_model_weights(tv) if w.name == "IMAGENET1K_V1"]
        ours = [p for p in R.IMAGENET_TORCHVISION if p.model == name and p.source.endswith("IMAGENET1K_V1")]
        assert len(v1) == 1 and len(ours) == 1, name


def test_every_imagenet_model_has_a_paper_figure_or_a_reason():
    imagenet = {n for n in list_models() if model_info(n).num_classes == 1000}
    with_paper = {p.model for p in R.IMAGENET_PAPER}
    assert with_paper <= imagenet
    missing = imagenet - with_paper
    assert missing == set(R.NO_PAPER_FIGURE), sorted(missing ^ set(R.NO_PAPER_FIGURE))


def test_paper_errors_are_converted_to_accuracies():
    # He et al. Table 3 prints ResNet-152 at 21.43 / 5.71 error
    p = next(p for p in R.IMAGENET_PAPER if p.model == "resnet152")
    assert (p.top1, p.top5) == (78.57, 94.29)
    for p in R.IMAGENET_PAPER + R.IMAGENET_TORCHVISION:
        for v in (p.top1, p.top5):
            assert v is None or 0 < v < 100
        if p.top1 is not None and p.top5 is not None:
            assert p.top5 > p.top1


def test_lecture_figures_are_in_the_seeds():
    text = _seed_text()
    # lecture 003's copy of He et al. Table 3
    for option, (top1, top5) in R.RESNET34_SHORTCUTS.items():
        assert re.search(rf"ResNet-34 {option}\s+{top1:.2f}\s+{top5:.2f}", text), option
    for model, row in (("resnet50", "ResNet-50"), ("resnet101", "ResNet-101"), ("resnet152", "ResNet-152"),
                       ("plain34", "plain-34")):
        p = next(p for p in R.IMAGENET_PAPER if p.model == model)
        assert re.search(rf"{row}\s+{100 - p.top1:.2f}\s+{100 - p.top5:.2f}", text), model
    # the order of the options, as published: A worst, C best
    assert R.RESNET34_SHORTCUTS["A"][0] > R.RESNET34_SHORTCUTS["B"][0] > R.RESNET34_SHORTCUTS["C"][0]
    # AlexNet's single-CNN 18.2% and the winners quoted by the lectures
    assert "18.2% top-5 error" in text
    for w in R.ILSVRC_WINNERS:
        if "not in the seeds" in w.source:
            continue
        figure = f"{w.top5_error:g}%"
        assert figure in text or f"{w.top5_error:.1f}%" in text or w.year == 2014, w
    assert "Winner of ILSVRC -2014" in text and "7.3%" in text


def test_winners_improve_every_year():
    errors = [w.top5_error for w in sorted(R.ILSVRC_WINNERS, key=lambda w: w.year)]
    assert errors == sorted(errors, reverse=True)
    assert [w.year for w in R.ILSVRC_WINNERS] == list(range(2010, 2016))


def test_cifar_table_matches_the_zoo_parameter_counts():
    # Table 6's params column (0.27M ... 19.4M) against the zoo's option-A CIFAR ResNets
    import torch

    from cnnlab.models import create_model

    for r in R.CIFAR10_RESNET:
        with torch.device("meta"):
            n = sum(p.numel() for p in create_model(r.model).parameters())
        assert math.isclose(n / 1e6, r.params_m, rel_tol=0.05), (r.model, n)
    errors = {r.model: r.error for r in R.CIFAR10_RESNET}
    assert errors["resnet110"] < errors["resnet56"] < errors["resnet20"] < errors["resnet1202"] + 1


def test_cli_list_json_includes_published_figures(capsys):
    from cnnlab.cli import main

    assert main(["list", "resnet1*", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["resnet152"]["published"]["paper"][0]["top1"] == 78.57
    assert {p["top1"] for p in rows["resnet152"]["published"]["torchvision"]} == {78.312, 82.284}
    assert rows["resnet110"]["published"]["cifar10"][0]["error"] == 6.43
    assert rows["resnet110"]["published"]["paper"] == []


def test_cli_compare_plot_adds_the_accuracy_chart(tmp_path, capsys):
    from cnnlab.cli import main

    target = tmp_path / "cx.png"
    assert main(["compare", "alexnet_2012", "resnet50", "resnet20", "--plot", str(target)]) == 0
    out = capsys.readouterr().out
    chart = tmp_path / "cx_accuracy.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    assert "no published ImageNet figure for resnet20" in out
