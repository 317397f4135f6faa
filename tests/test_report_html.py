"""`cnnlab report`: the HTML pages' content, made from a run folder's files (no browser needed)."""

from __future__ import annotations

import csv
import json

import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.viz.html_report import detect_kind, render_run, write_report

XSS = "<script>alert(1)</script>"


def make_run(folder, *, class_names=("zero", XSS), finished=True):
    """A run folder laid out as `cnnlab train lenet5` writes it (engine v2 keys)."""
    folder.mkdir(parents=True)
    config = {"cnnlab_run": 1, "spec": {"model": "lenet5", "data": "mnist-5k", "overrides": {"lr": 0.02},
                                        "model_config": {}},
              "model": {"name": "lenet5", "class": "LeNet5", "params": 60850},
              "data": {"name": "mnist-5k", "num_classes": 2, "input_size": [1, 32, 32], "train_size": 3600,
                       "val_size": 400, "test_size": 1000, "class_names": list(class_names), "notes": []},
              "recipe": {"name": "lenet", "lr": 0.02, "batch_size": 64}, "seed": 0,
              "selection": {"split": "val", "monitor": "acc", "mode": "max"},
              "precision": {"asked": "auto", "used": "fp32", "reason": "test"}, "device": "cpu", "world_size": 1,
              "threads": 2, "versions": {"torch": torch.__version__}, "git_commit": "abc123",
              "command": "/usr/bin/cnnlab train lenet5 --set lr=0.02", "created": "2026-11-30T05:00:00+0000"}
    (folder / "config.json").write_text(json.dumps(config))
    with open(folder / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc"])
        w.writerow([1, 57, 0.02, 0.7, 0.8, 0.5, 0.9])
        w.writerow([2, 114, 0.01, 0.3, 0.93, 0.2, 0.955])
    with open(folder / "steps.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "epoch", "batch", "lr", "loss"])
        for s in range(1, 115):
            w.writerow([s, 1 + s // 58, s, 0.02, 1.0 / s])
    with open(folder / "confusion.csv", "w", newline="") as f:
        csv.writer(f).writerows([["true/predicted", *class_names], [class_names[0], 480, 20], [class_names[1], 30, 470]])
    if finished:
        (folder / "results.json").write_text(json.dumps(
            {"model": "lenet5", "data": "mnist-5k", "epochs": 2, "val_acc": 0.955, "best_epoch": 2,
             "test_acc": 0.9512, "test_acc_last": 0.9498, "seconds": 30.0}))
    return folder


def test_run_page_shows_the_numbers_from_the_files_and_escapes_class_names(tmp_path):
    html = render_run(make_run(tmp_path / "run"))
    assert "95.12%" in html and "95.50%" in html and "94.98%" in html  # test, val, test of the last weights
    assert "60,850" in html and "3,600/400/1,000" in html
    assert "cnnlab train lenet5 --set lr=0.02" in html and "/usr/bin/cnnlab" not in html
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "96.00%" in html and "94.00%" in html  # per-class accuracy from confusion.csv: 480/500, 470/500
    assert html.count("data:image/png;base64,") >= 1  # steps.csv curves drawn inline
    assert "http://" not in html and "https://" not in html and "<link" not in html  # self-contained


def test_run_page_has_the_analyzer_layer_table(tmp_path):
    html = render_run(make_run(tmp_path / "run"))
    lenet = cnnlab.analyze("lenet5", (1, 32, 32), config={"num_classes": 2})
    assert f"{lenet.total.params:,} params" in html and f"{lenet.total.macs:,} MACs" in html


def test_collection_index_links_every_page_and_sorts(tmp_path):
    root = tmp_path / "runs"
    make_run(root / "a")
    make_run(root / "b", finished=False)
    exp = root / "experiments" / "probes-tiny"
    exp.mkdir(parents=True)
    (exp / "results.json").write_text(json.dumps(
        {"experiment": "probes", "title": "Linear probes", "claim": "deeper features are more separable",
         "scale": "tiny", "seed": 0, "data": "synthetic", "reproduced": "not measured", "verdict": "Not measured.",
         "criteria": [{"description": "accuracy rises with depth", "finding": "0.4 -> 0.6", "passed": True, "status": ""},
                      {"description": "layer3 beats layer2", "finding": "+0.1 +- 0.3 points", "passed": False,
                       "status": "within noise"}], "tables": [], "plots": [],
         "setup": ["Data: `mnist-5k` <b>at</b> 28x28"], "source": "lecture 001", "paper": "Alain & Bengio 2016", "command": "cnnlab experiment probes",
         "seconds": 3.0}))
    written = write_report(root)
    index = written[0].read_text()
    assert written[0] == root / "index.html" and len(written) == 4
    for href in ("./a/report.html", "./b/report.html", "./experiments/probes-tiny/report.html"):
        assert f'href="{href}"' in index
    assert "unfinished" in index and "not measured" in index and "table class=\"sortable\"" in index
    page = (exp / "report.html").read_text()
    assert page.count("Linear probes") >= 1
    # each criterion shows its rule, what was measured, and whether it was met, or within noise
    assert "accuracy rises with depth" in page and "0.4 -&gt; 0.6" in page and "+0.1 +- 0.3 points" in page
    assert '<td class="pass">yes</td>' in page and '<td class="noise">within noise</td>' in page
    # markdown code spans of the setup become <code>; anything else in it stays text
    assert "Data: <code>mnist-5k</code> &lt;b&gt;at&lt;/b&gt; 28x28" in page


def test_report_cli_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    run = make_run(tmp_path / "run")
    assert main(["report", str(run), "--out", str(tmp_path)]) == 2  # a folder, not a file
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("cnnlab report: error:") for line in err)
    assert detect_kind(run) == "run"
