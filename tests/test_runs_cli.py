"""`cnnlab runs` and `cnnlab runs compare` on run folders laid out as `cnnlab train` writes them."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cnnlab.cli import main


def _run(folder, *, seed, val=None, test=None, finished=True, epochs=2):
    folder.mkdir(parents=True)
    config = {"cnnlab_run": 1, "spec": {"model": "lenet5", "data": "mnist-5k", "seed": seed},
              "seed": seed, "created": f"2026-11-30T0{seed}:00:00+0000", "command": f"cnnlab train --seed {seed}"}
    (folder / "config.json").write_text(json.dumps(config))
    with open(folder / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_loss", "train_acc", "val_loss", "val_acc"])
        for e in range(1, epochs + 1):
            w.writerow([e, 1.0 / e, 0.5 + 0.1 * e, 1.1 / e, 0.5 + 0.09 * e])
    if finished:
        (folder / "results.json").write_text(json.dumps(
            {"model": "lenet5", "data": "mnist-5k", "epochs": epochs, "val_acc": val, "test_acc": test, "seconds": 12.5}))


@pytest.fixture
def root(tmp_path):
    _run(tmp_path / "runs" / "a", seed=1, val=0.97, test=0.96)
    _run(tmp_path / "runs" / "b", seed=2, val=0.99, test=0.95)
    _run(tmp_path / "runs" / "c", seed=3, finished=False, epochs=1)
    (tmp_path / "runs" / "notes").mkdir()
    (tmp_path / "runs" / "notes" / "config.json").write_text("{}")  # not a run: skipped
    return tmp_path / "runs"


def test_runs_lists_each_run_with_state_sorted_by_val_acc(root, capsys):
    assert main(["runs", str(root), "--sort", "val_acc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0].rsplit("/", 1)[-1] for line in lines[2:]] == ["b", "a", "c"]
    assert "99.00%" in lines[2] and "95.00%" in lines[2] and lines[4].split()[-1] == "unfinished"


def test_runs_json_and_csv(root, capsys):
    main(["runs", str(root), "--format", "json"])
    rows = json.loads(capsys.readouterr().out)
    assert {r["state"] for r in rows} == {"finished", "unfinished"} and len(rows) == 3
    main(["runs", str(root), "--format", "csv"])
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 3 and "val_acc" in table[0]


def test_runs_compare_prints_config_differences_and_draws(root, tmp_path, capsys):
    plot = tmp_path / "cmp.png"
    assert main(["runs", "compare", str(root / "a"), str(root / "b"), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "seed: 1  |  2" in out and "command" not in out and "created" not in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_runs_errors_are_one_line(root, tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert main(["runs", "compare", str(root / "a")]) == 2
    assert main(["runs", "compare", str(root / "a"), str(root / "notes")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("cnnlab runs: error:") for line in err)


def test_runs_compare_ignores_float_noise(tmp_path, capsys):
    for name, std, lr in (("a", 0.2753760942877786, 0.1), ("b", 0.27537610967964626, 0.05)):
        _run(tmp_path / name, seed=1, val=0.9, test=0.9)
        config = json.loads((tmp_path / name / "config.json").read_text())
        config["data"], config["recipe"] = {"std": [std]}, {"lr": lr}
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    assert main(["runs", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "recipe.lr: 0.1  |  0.05" in out and "data.std" not in out
