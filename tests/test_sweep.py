"""``cnnlab sweep``: grid points, k-fold splits, the choice on val, the files, and resuming a sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnlab.cli.sweep import parse_grid
from cnnlab.data import load_dataset, stratified_folds
from cnnlab.errors import ConfigError
from cnnlab.training.run import TrainSpec, spec_from_config
from cnnlab.training.sweep import SweepSpec, choose, point_name, run_sweep
from cli_helpers import isolated_cwd, one_line, run_cli  # noqa: F401  (a fixture)

BASE = TrainSpec(model="lenet5", data="synthetic", data_options={"n_train": 64, "n_test": 16}, epochs=1,
                 max_steps=2, batch_size=32, precision="fp32", threads=1, checkpoint_every=1)


# ------------------------------------------------------------------------------- the grid


def test_grid_flags_parse_into_typed_values():
    assert parse_grid(["lr=0.01,0.1", "weight_decay=0,5e-4", "optimizer=sgd,adam", "flip=true"]) == {
        "lr": (0.01, 0.1), "weight_decay": (0, 0.0005), "optimizer": ("sgd", "adam"), "flip": (True,)}
    with pytest.raises(ConfigError, match="FIELD=V1,V2"):
        parse_grid(["lr"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["lr=0.1", "lr=0.2"])


def test_points_are_every_combination_first_field_slowest():
    spec = SweepSpec(base=BASE, grid={"lr": (0.01, 0.1), "weight_decay": (0, 5e-4)})
    assert spec.points() == [{"lr": 0.01, "weight_decay": 0}, {"lr": 0.01, "weight_decay": 5e-4},
                             {"lr": 0.1, "weight_decay": 0}, {"lr": 0.1, "weight_decay": 5e-4}]
    assert point_name(spec.points()[1]) == "lr=0.01+weight_decay=0.0005"


@pytest.mark.parametrize(("grid", "folds", "needle"), [
    ({"lrr": (0.1,)}, None, "did you mean lr"),
    ({"lr": ()}, None, "at least one value"),
    ({"lr": (0.1, 0.1)}, None, "given twice"),
    ({"lr": tuple(range(1, 26)), "weight_decay": tuple(i / 100 for i in range(21))}, None, "at most 500"),
    ({"lr": tuple(range(1, 30))}, 20, "at most 500"),
    ({"lr": (0.1,)}, 1, "--folds"),
    ({"lr": (0.1,)}, 21, "--folds"),
    ({"name": ("x",)}, None, "not a recipe field"),
])
def test_bad_grids_are_refused_before_anything_trains(grid, folds, needle):
    with pytest.raises(ConfigError, match=needle):
        SweepSpec(base=BASE, grid=grid, folds=folds)


def test_a_field_both_fixed_and_swept_is_refused():
    with pytest.raises(ConfigError, match="--grid lr and --set lr"):
        SweepSpec(base=TrainSpec(model="lenet5", overrides={"lr": 0.1}), grid={"lr": (0.01,)})
    with pytest.raises(ConfigError, match="--grid batch_size and --batch-size"):
        SweepSpec(base=TrainSpec(model="lenet5", batch_size=32), grid={"batch_size": (16, 64)})


def test_the_choice_reads_the_validation_metric_only():
    rows = [{"folder": "a", "val_acc": 0.90, "status": "ok"}, {"folder": "b", "val_acc": 0.95, "status": "ok"},
            {"folder": "c", "val_acc": 0.99, "status": "diverged"}, {"folder": "d", "val_acc": 0.95, "status": "ok"},
            {"folder": "e", "val_acc": None, "status": "incomplete"}]
    assert choose(rows, key="val_acc", mode="max")["folder"] == "b"  # the first of a tie; a diverged point never
    assert choose(rows, key="val_acc", mode="min")["folder"] == "a"
    assert choose([{"folder": "x", "val_acc": None, "status": "ok"}], key="val_acc", mode="max") is None


# ------------------------------------------------------------------------------- k-fold splits


def test_stratified_folds_by_hand():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    folds = stratified_folds(labels, folds=2, seed=0)
    # class 0 (5) is dealt 3 / 2, class 1 (3) continues where class 0 stopped: 1 / 2 -> sizes 4 and 4
    assert [len(f) for f in folds] == [4, 4]
    assert [int((labels[f] == 0).sum()) for f in folds] == [3, 2]
    assert sorted(np.concatenate(folds).tolist()) == list(range(8))
    with pytest.raises(ConfigError, match="cannot make 9 folds"):
        stratified_folds(labels, folds=9, seed=0)


def test_kfold_val_splits_partition_the_training_split_and_leave_test_alone():
    plain = load_dataset("mnist-5k", input_size=(1, 32, 32))
    sizes, counts = [], []
    for fold in range(3):
        data = load_dataset("mnist-5k", input_size=(1, 32, 32), folds=3, fold=fold)
        assert len(data.train) + len(data.val) == 4000  # mnist-5k's 4,000 training digits, all used
        assert torch.equal(data.test.y, plain.test.y)
        sizes.append(len(data.val))
        counts.append(torch.bincount(data.val.y, minlength=10).tolist())
    assert sizes == [1334, 1333, 1333]  # 4,000 = 1,334 + 1,333 + 1,333
    assert all(sorted(set(c)) == [133, 134] for c in counts)  # 400 digits per class / 3 folds
    for bad, needle in (({"folds": 3}, "both folds=K and fold=I"), ({"folds": 3, "fold": 3}, "fold must be"),
                        ({"folds": 1, "fold": 0}, "folds must be")):
        with pytest.raises(ConfigError, match=needle):
            load_dataset("mnist-5k", input_size=(1, 32, 32), **bad)
    with pytest.raises(ConfigError, match="own validation split"):
        load_dataset("mnist-seg", folds=3, fold=0)


# ------------------------------------------------------------------------------- running


class Interrupt:
    """Ctrl-C after the first update of the runs with this rate (after its checkpoint is written)."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def on_step_end(self, trainer, step, loss) -> None:
        if trainer.recipe.lr == self.lr and step == 1:
            raise KeyboardInterrupt


class NanAt:
    """A NaN loss for the runs with this rate (as a too-high rate gives); counts the runs started."""

    def __init__(self, lr: float) -> None:
        self.lr, self.started = lr, 0

    def on_fit_start(self, trainer) -> None:
        self.started += 1

    def on_loss(self, trainer, step, loss):
        return loss * float("nan") if trainer.recipe.lr == self.lr else None


def test_a_sweep_resumes_skipping_finished_runs_and_continuing_unfinished_ones(tmp_path):
    out = tmp_path / "sweep"
    first = run_sweep(SweepSpec(base=BASE, grid={"lr": (0.05,)}), out=out, progress=False)
    done = out / "lr=0.05" / "results.json"
    before = done.read_bytes(), done.stat().st_mtime_ns
    grid = {"lr": (0.05, 0.1)}
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SweepSpec(base=BASE, grid=grid), out=out, progress=False, callbacks=[Interrupt(0.1)])
    assert (out / "lr=0.1" / "checkpoints" / "manifest.json").exists() and not (out / "lr=0.1" / "results.json").exists()
    result = run_sweep(SweepSpec(base=BASE, grid=grid), out=out, progress=False)
    assert [r["status"] for r in result.runs] == ["done before", "resumed"]
    assert (done.read_bytes(), done.stat().st_mtime_ns) == before  # the finished point was not retrained
    assert first.runs[0]["val"] == result.runs[0]["val"]
    resumed = json.loads((out / "lr=0.1" / "config.json").read_text())
    assert resumed["resumes"] and json.loads((out / "lr=0.1" / "results.json").read_text())["steps"] == 2
    # the table, and the chosen point as a run description `cnnlab train --config` reads
    vals = [json.loads((out / f / "results.json").read_text())["val_acc"] for f in ("lr=0.05", "lr=0.1")]
    assert [p["val_acc"] for p in result.points] == vals
    assert result.best["folder"] == ("lr=0.05" if vals[0] >= vals[1] else "lr=0.1")
    best = spec_from_config(out / "best.json")
    assert best.overrides == {"lr": result.best["lr"]} and best.model == "lenet5" and "folds" not in best.data_options
    assert (out / "table.csv").read_text().splitlines()[0] == "lr,val_acc,val_loss,runs,status,folder"
    assert "**" in (out / "table.md").read_text()


def test_kfold_scores_are_the_mean_over_folds(tmp_path):
    result = run_sweep(SweepSpec(base=BASE, grid={"lr": (0.05,)}, folds=2), out=tmp_path / "cv", progress=False)
    docs = [json.loads((tmp_path / "cv" / "lr=0.05" / f"fold-{i}" / "config.json").read_text()) for i in (0, 1)]
    assert [d["data"]["val_size"] for d in docs] == [32, 32] and [d["data"]["train_size"] for d in docs] == [32, 32]
    assert [d["spec"]["data_options"]["fold"] for d in docs] == [0, 1]
    vals = [r["val"]["acc"] for r in result.runs]
    assert result.points[0]["val_acc"] == pytest.approx(sum(vals) / 2)
    assert result.points[0]["val_acc_sd"] == pytest.approx(abs(vals[0] - vals[1]) / 2 ** 0.5)


def test_a_diverged_point_is_recorded_never_chosen_and_not_retried(tmp_path):
    out = tmp_path / "sweep"
    spec = SweepSpec(base=BASE, grid={"lr": (0.05, 0.1)})
    nan = NanAt(0.1)
    result = run_sweep(spec, out=out, progress=False, callbacks=[nan])
    assert [p["status"] for p in result.points] == ["ok", "diverged"] and result.best["folder"] == "lr=0.05"
    assert "NaN" in result.runs[1]["error"] or "nan" in result.runs[1]["error"].lower()
    again = NanAt(0.1)
    result = run_sweep(spec, out=out, progress=False, callbacks=[again])
    assert again.started == 0 and [r["status"] for r in result.runs] == ["done before", "diverged"]
    with pytest.raises(ConfigError, match="epochs"):  # another budget: not the same sweep
        run_sweep(SweepSpec(base=TrainSpec(**{**BASE.to_dict(), "epochs": 2}), grid={"lr": (0.05,)}), out=out)


def test_the_command_writes_its_table_heat_map_and_best_json(isolated_cwd, capsys):
    rc, out, err = run_cli(["sweep", "lenet5", "--grid", "lr=0.05,0.1", "--grid", "weight_decay=0,5e-4",
                            "--data", "synthetic", "--data-set", "n_train=64", "--data-set", "n_test=16",
                            "--epochs", "1", "--max-steps", "1", "--batch-size", "32", "--threads", "1",
                            "--precision", "fp32", "--no-progress", "--out", "sw"], capsys)
    assert rc == 0, err
    assert err.count("cnnlab sweep: [") == 4 and "chosen on val" in out
    files = {p.name for p in (isolated_cwd / "sw").iterdir()}
    assert {"sweep.json", "table.csv", "table.md", "best.json", "heatmap.png"} <= files
    assert (isolated_cwd / "sw" / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one_line(*run_cli(["sweep", "lenet5", "--grid", "lrr=0.1", "--out", "bad"], capsys)[::2], "lrr", "lr")
    one_line(*run_cli(["sweep", "lenet5", "--grid", "lr=0.1", "--set", "lr=0.2"], capsys)[::2], "--grid lr")
    assert not (isolated_cwd / "bad").exists()
    # an option only the run finds bad: one line, and no sweep folder left behind
    one_line(*run_cli(["sweep", "lenet5", "--grid", "lr=0.1", "--folds", "2", "--data", "mnist-seg", "--out", "seg"],
                      capsys)[::2], "mnist-seg", "own validation split")
    assert not (isolated_cwd / "seg").exists()
