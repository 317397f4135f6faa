"""`cnnlab experiment all --out DIR`: one folder per experiment and an index of verdicts."""

from __future__ import annotations

import cnnlab.experiments as experiments
from cnnlab.cli import main


def test_experiment_all_out_writes_each_and_an_index(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(experiments, "list_experiments", lambda: ["small-filters", "augmentation"])
    assert main(["experiment", "all", "--scale", "tiny", "--out", str(tmp_path / "all"), "--quiet"]) == 0
    index = (tmp_path / "all" / "index.md").read_text()
    for name in ("small-filters", "augmentation"):
        assert (tmp_path / "all" / f"{name}-tiny" / "report.md").is_file()
        assert f"[{name}]({name}-tiny/report.md)" in index
    assert "not measured" in index and "plumbing only" in index
    assert "index: " in capsys.readouterr().out


def test_experiment_all_out_on_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["experiment", "all", "--scale", "tiny", "--out", str(tmp_path / "f")]) == 2
    assert "not a directory" in capsys.readouterr().err
