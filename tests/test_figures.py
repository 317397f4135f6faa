"""The figures of the lectures: the ILSVRC "revolution of depth" chart and the architecture diagrams.

Expectations from outside the code: the depths the decks quote ("AlexNet 8 layers", "22 layers",
"16 - 19 layers", "152 layers"), which the analyzer must also count in the zoo's nets; GoogLeNet's
Table 1 (Szegedy et al. 2015: the widths of inception (3a) and its 28x28x256 output) and ResNet-50's
Table 1 (He et al. 2016: 3, 4, 6, 3 bottleneck blocks, projections where the width changes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cnnlab
from cnnlab import results as R
from cnnlab.analysis.graph import layer_graph
from cnnlab.viz.diagram import dot_available

from cli_helpers import isolated_cwd, one_line, run_cli  # noqa: F401  (isolated_cwd is a fixture)

SEEDS = Path("/work/shared/seeds")
NO_DOT = "rendering needs Graphviz: the Python package graphviz and its dot program (apt-get install graphviz)"


# ------------------------------------------------------------------ the ILSVRC chart

def test_the_chart_data_has_the_lectures_depths():
    depth = {w.network.split(",")[0]: w.layers for w in (*R.ILSVRC_WINNERS, *R.ILSVRC_RUNNERS_UP)}
    assert depth == {"sparse coding + SVM (not a CNN)": None, "Fisher vectors + SVM (not a CNN)": None,
                     "AlexNet": 8, "ZFNet ensemble": 8, "GoogLeNet": 22, "VGG": 19, "ResNet-152 ensemble": 152}
    if SEEDS.is_dir():
        text = "\n".join(p.read_text(errors="replace") for p in sorted(SEEDS.glob("*.txt")))
        for quote in ("AlexNet 8 layers", "Very deep network with 22 layers", "16 - 19 layers", "ResNet 152 layers",
                      "7.3% error"):
            assert quote in text, quote


@pytest.mark.parametrize("model, layers", [("alexnet_2012", 8), ("zfnet", 8), ("googlenet_2014", 22),
                                           ("vgg19", 19), ("resnet152", 152)])
def test_the_analyzer_counts_the_quoted_depth_in_the_zoo(model, layers):
    quoted = {e.layers for e in (*R.ILSVRC_WINNERS, *R.ILSVRC_RUNNERS_UP)}
    assert layers in quoted
    assert cnnlab.analyze(model).total.depth == layers


def test_plot_ilsvrc_writes_png_and_svg_with_the_sources(isolated_cwd, capsys):
    rc, out, err = run_cli(["plot", "ilsvrc", "--out", "chart.png"], capsys)
    assert rc == 0, err
    assert Path("chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, out, err = run_cli(["plot", "ilsvrc", "--out", "figs/chart.svg"], capsys)
    assert rc == 0, err
    svg = Path("figs/chart.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    # matplotlib writes SVG text as glyph paths with the string in a comment: look for the strings
    for text in ("152 layers", "22 layers", "3.57", "16.4", "Russakovsky", "Szegedy", "lecture 000"):
        assert text in svg, text
    first = Path("figs/chart.svg").read_bytes()
    assert run_cli(["plot", "ilsvrc", "--out", "figs/chart.svg"], capsys)[0] == 0  # its own file: replaced
    assert Path("figs/chart.svg").read_bytes() == first  # the same data, the same bytes


def test_plot_refuses_a_users_file_and_an_unknown_suffix(isolated_cwd, capsys):
    Path("mine.png").write_bytes(b"not cnnlab's")
    one_line(*run_cli(["plot", "ilsvrc", "--out", "mine.png"], capsys)[::2], "not replaced")
    assert Path("mine.png").read_bytes() == b"not cnnlab's"
    one_line(*run_cli(["plot", "ilsvrc", "--out", "chart.jpg"], capsys)[::2], "--out", ".png or .svg")
    assert not Path("chart.jpg").exists()


# ------------------------------------------------------------------ architecture diagrams

def test_googlenet_inception_modules_are_groups_of_four_branches():
    g = layer_graph("googlenet_2014")
    assert len(g.groups) == 9  # 3a, 3b, 4a-4e, 5a, 5b
    members = [n for n in g.nodes if n.group == "inception3a"]
    titles = sorted(n.title for n in members)
    # Table 1, inception (3a): #1x1 64, #3x3 reduce 96, #3x3 128, #5x5 reduce 16, #5x5 32, pool proj 32
    assert titles == sorted(["1x1 conv, 64", "1x1 conv, 96", "3x3 conv, 128", "1x1 conv, 16", "5x5 conv, 32",
                             "3x3 max pool", "1x1 conv, 32", "concat"])
    concat = next(n for n in members if n.kind == "concat")
    assert concat.shape == "28x28x256"  # Table 1's output size
    assert len([e for e in g.edges if e.dst == concat.id]) == 4
    first = next(n for n in g.nodes if n.kind == "conv")
    assert (first.title, first.shape) == ("7x7 conv, 64, /2", "112x112x64")


def test_resnet50_blocks_have_their_skip_arrows():
    g = layer_graph("resnet50")
    skips = [e for e in g.edges if e.skip]
    assert len(skips) == 3 + 4 + 6 + 3  # He et al. 2016, Table 1
    projections = [e.label for e in skips if e.label != "identity"]
    assert projections == ["1x1 conv, 256", "1x1 conv, 512, /2", "1x1 conv, 1024, /2", "1x1 conv, 2048, /2"]
    block = next(n for n in g.nodes if n.kind == "block")
    assert block.title.split("\n") == ["1x1 conv, 64", "3x3 conv, 64", "1x1 conv, 256"]
    assert block.shape == "56x56x256"
    assert sum(n.kind == "add" for n in g.nodes) == 16


def test_lenet5_is_drawn_as_figure_2_with_its_custom_layers():
    g = layer_graph("lenet5")
    layers = [(n.title.split(",")[0].split(" (")[0], n.shape) for n in g.nodes if n.kind != "input"]
    # LeCun et al. 1998, Figure 2: C1 6@28x28, S2 6@14x14, C3 16@10x10, S4 16@5x5, C5 120, F6 84, output 10
    assert layers == [("5x5 conv", "28x28x6"), ("Subsampling", "14x14x6"), ("5x5 conv", "10x10x16"),
                      ("Subsampling", "5x5x16"), ("5x5 conv", "1x1x120"), ("fc 84", "84"), ("fc 10", "10")]


@pytest.mark.skipif(not dot_available(), reason=NO_DOT)
def test_diagram_cli_renders_svg_png_and_pdf(isolated_cwd, capsys):
    rc, out, err = run_cli(["diagram", "googlenet_2014", "--out", "g.svg"], capsys)
    assert rc == 0, err
    svg = Path("g.svg").read_text()
    assert "<svg" in svg and "inception3a" in svg and "5x5 conv, 32" in svg
    assert len(svg) < 400_000
    assert run_cli(["diagram", "resnet50", "--out", "r.png"], capsys)[0] == 0
    assert Path("r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_cli(["diagram", "lenet5", "--out", "l.pdf"], capsys)[0] == 0
    assert Path("l.pdf").read_bytes()[:5] == b"%PDF-"


def test_diagram_without_dot_says_what_to_install(isolated_cwd, capsys, monkeypatch):
    import cnnlab.viz.diagram as diagram

    monkeypatch.setattr(diagram, "dot_available", lambda: False)
    line = one_line(*run_cli(["diagram", "resnet50", "--out", "r.svg"], capsys)[::2], "apt-get install graphviz")
    assert "pip install graphviz" in line and not Path("r.svg").exists()


def test_diagram_bad_inputs_are_one_line(isolated_cwd, capsys):
    one_line(*run_cli(["diagram", "resnet5O", "--out", "r.svg"], capsys)[::2], "resnet50")
    one_line(*run_cli(["diagram", "resnet50", "--out", "r.txt"], capsys)[::2], "--out", ".svg")
    Path("mine.dot").write_text("my own graph")
    one_line(*run_cli(["diagram", "resnet50", "--out", "mine.dot"], capsys)[::2], "not replaced")
    assert Path("mine.dot").read_text() == "my own graph"
