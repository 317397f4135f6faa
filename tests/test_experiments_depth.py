"""Depth experiments: degradation, lesion, ablation, probes, invariance.

Every experiment runs end to end at the ``tiny`` scale (random 16x16 images, 4-channel-wide nets,
one or two epochs) to check the plumbing and the files it writes; its numbers mean nothing. The
machinery the experiments rest on is checked against numbers from outside the code: binomial
counts and an enumeration of all paths, a hand-computed option-A shortcut, scikit-learn's logistic
regression, pixel positions after known transformations, and analytic parameter counts.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from cnnlab import create_model
from cnnlab.cli import main
from cnnlab.errors import UnknownNameError
from cnnlab.experiments import Criterion, ModelCache, get_experiment, list_experiments, run_experiment, verdict_from
from cnnlab.experiments.features import fit_linear_probe, probe_accuracy, transform_batch
from cnnlab.experiments.surgery import (
    DeletedBlock,
    RoutedBlock,
    delete_blocks,
    path_length_distribution,
    plain_blocks,
    remove_layers,
    residual_blocks,
)

NAMES = ("degradation", "lesion", "ablation", "probes", "invariance")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def one_thread():
    # The tiny nets are too small to gain from a second thread, and on a shared, oversubscribed
    # machine two OpenMP threads make their small convolutions many times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, one_thread):
    """Each experiment once at tiny scale, sharing trained networks as `cnnlab experiment all` does
    (degradation trains ResNet-20 and plain-20; lesion and invariance reuse them)."""
    root = tmp_path_factory.mktemp("experiments")
    cache = ModelCache()
    runs = {}
    for name in NAMES:
        if name == "ablation":
            continue  # run through the CLI below
        out = root / name
        results = run_experiment(name, scale="tiny", out_dir=out, seed=0, progress=False, cache=cache)
        runs[name] = (results, out)
    out = root / "ablation"
    assert main(["experiment", "ablation", "--scale", "tiny", "--out", str(out), "--quiet"]) == 0
    runs["ablation"] = (json.loads((out / "results.json").read_text()), out)
    return runs


# ---------------------------------------------------------------------------------------------
# Multi-seed verdict rules
# ---------------------------------------------------------------------------------------------


def test_probes_tolerance_rule_on_crafted_numbers():
    from cnnlab.experiments.probes import no_worse_than

    prev = [0.980, 0.984, 0.982]
    # A consistent loss of half a point is within the 1-point allowance: met.
    assert no_worse_than([0.975, 0.979, 0.977], prev, tolerance=0.01).verdict == "met"
    # A consistent loss of three points exceeds it: not met.
    assert no_worse_than([0.950, 0.954, 0.952], prev, tolerance=0.01).verdict == "not met"
    # A loss whose seeds scatter around the allowance (-0.2, -2.4, -0.4 points): within noise.
    assert no_worse_than([0.978, 0.960, 0.978], prev, tolerance=0.01).verdict == "within noise"
    # Without a tolerance it is compare_seeds itself.
    assert no_worse_than([0.990, 0.994, 0.992], prev, tolerance=0.0).difference == pytest.approx(0.01)


@pytest.mark.parametrize("name", ["probes", "invariance"])
def test_seeds_below_two_are_refused_naming_the_experiment(name):
    import dataclasses

    from cnnlab.errors import ConfigError

    cfg = get_experiment(name).config("tiny")
    with pytest.raises(ConfigError, match=f"{name}: seeds"):
        dataclasses.replace(cfg, seeds=1)


# ---------------------------------------------------------------------------------------------
# End to end at tiny scale: files and formats
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_tiny_run_writes_results_report_and_plots(tiny_runs, name):
    _, out = tiny_runs[name]
    results = json.loads((out / "results.json").read_text())
    for key, kind in (("claim", str), ("scale", str), ("seed", int), ("seconds", float), ("versions", dict),
                      ("verdict", str), ("criteria", list), ("source", str), ("plots", list), ("tables", list)):
        assert isinstance(results[key], kind), key
    assert results["experiment"] == name and results["scale"] == "tiny" and results["seed"] == 0
    assert results["reproduced"] == "not measured" and "plumbing only" in (out / "report.md").read_text()
    assert results["criteria_met"] in (True, False, "partly")
    assert results["versions"]["torch"] == torch.__version__
    assert results["source"].startswith("lecture 0") and "seeds/" in results["source"]
    # The verdict follows from the criteria, never written by hand.
    passed = [c["passed"] for c in results["criteria"]]
    assert results["criteria_met"] == (True if all(passed) else False if not any(passed) else "partly")

    report = (out / "report.md").read_text()
    assert results["claim"] in report
    assert results["verdict"] in report
    assert "## Verdict: " in report and "## How the verdict is computed" in report
    assert "seeds/" in report
    assert "|---" in report  # at least one markdown table

    assert results["plots"], "every experiment draws at least one plot"
    for plot in results["plots"]:
        png = out / plot["file"]
        data = png.read_bytes()
        assert data[:8] == PNG_MAGIC
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width > 100 and height > 100
        assert f"]({plot['file']})" in report
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temporary dir left behind"


def test_degradation_records_train_and_test_error_per_epoch(tiny_runs):
    results, _ = tiny_runs["degradation"]
    assert set(results["models"]) == {"plain20", "plain56", "resnet20", "resnet56"}
    assert results["seeds"] == [0, 1]
    for m in results["models"].values():
        assert len(m["train_error"]) == len(m["test_error"]) == results["epochs"] == 2
        assert all(0.0 <= e <= 1.0 for e in m["train_error"] + m["test_error"])
        assert [s["seed"] for s in m["per_seed"]] == [0, 1]
        for s in m["per_seed"]:
            # The reported epoch is the engine's val-selected one: the lowest val error (first on a tie).
            assert len(s["val_error"]) == 2 and s["best_epoch"] == 1 + s["val_error"].index(min(s["val_error"]))
        # The plotted curve is the mean of the seeds'; the criteria use each seed's last epoch.
        assert m["train_error"][-1] == pytest.approx(sum(s["train_error"][-1] for s in m["per_seed"]) / 2)
        assert m["final_train_error"] == [s["train_error"][-1] for s in m["per_seed"]]
    # The verdict's comparisons are paired by seed: plain-56 minus plain-20, per seed.
    plain = results["plain_deep_vs_shallow"]
    assert plain["a"] == results["models"]["plain56"]["final_train_error"] and plain["paired"]
    assert plain["difference"] == pytest.approx(
        sum(results["models"]["plain56"]["final_train_error"]) / 2 - sum(results["models"]["plain20"]["final_train_error"]) / 2)
    # Depth and parameters come from the analyzer: 6n+2 weight layers, plain and residual nets equal.
    assert results["models"]["plain56"]["depth"] == results["models"]["resnet56"]["depth"] == 56
    assert results["models"]["plain20"]["params"] == results["models"]["resnet20"]["params"]


def test_lesion_results_have_the_documented_keys(tiny_runs):
    results, _ = tiny_runs["lesion"]
    res, plain = results["residual"], results["plain"]
    assert 0.0 <= res["baseline_acc"] <= 1.0 and 0.0 <= plain["baseline_acc"] <= 1.0
    n = res["num_blocks"]
    assert n == 9  # ResNet-20: three stages of three blocks
    assert [r["block"] for r in res["delete_one"]][:4] == ["layer1.0", "layer1.1", "layer1.2", "layer2.0"]
    assert [r["downsampling"] for r in res["delete_one"]] == [False] * 3 + [True, False, False] * 2
    assert all(isinstance(r["acc"], float) for r in res["delete_one"])
    # plain-20: the two shape-changing blocks cannot be deleted, the other seven are.
    assert {r["layer"] for r in plain["delete_one"]} == {f"layer{s}.{i}" for s in (1, 2, 3) for i in (0, 1, 2)} - {
        "layer2.0", "layer3.0"}
    assert {r["layer"] for r in plain["skipped"]} == {"layer2.0", "layer3.0"}
    assert [r["k"] for r in res["delete_k"]] == list(range(1, n + 1))
    assert all({"mean_acc", "std_acc"} <= set(r) for r in res["delete_k"])
    assert [r["paths"] for r in res["path_lengths"]] == [math.comb(n, k) for k in range(n + 1)]
    assert all(r["mean_grad_norm"] > 0 for r in res["path_lengths"])


def test_shared_cache_reuses_trained_networks(tiny_runs):
    lesion, _ = tiny_runs["lesion"]
    invariance, _ = tiny_runs["invariance"]
    # ResNet-20 and plain-20 of both seeds, from degradation
    assert [t["reused"] for t in lesion["trained"]] == [True] * 4
    # invariance trains one ResNet-20 per seed: the run's seed is degradation's network, reused.
    assert [t["reused"] for t in invariance["trained"]][0] is True
    assert len(invariance["trained"]) == get_experiment("invariance").config("tiny").seeds


def test_ablation_params_and_rebuilt_layers(tiny_runs):
    results, _ = tiny_runs["ablation"]
    v = {x["name"]: x for x in results["variants"]}
    assert list(v) == ["full network", "without fc7", "without fc6, fc7", "without conv3, conv4",
                       "without conv3, conv4, fc6, fc7"]
    # alexnet_2012 at width 1/16 and a 1x1 map before FC6 (pool_size=1): FC6/FC7 of 256 units,
    # conv5 of 16 maps. Removing fc7 drops its 256*256 + 256 parameters.
    assert v["full network"]["params"] - v["without fc7"]["params"] == 256 * 256 + 256
    # Without fc6, fc7, fc8 reads conv5's 16 maps directly: 16*10 + 10 instead of 256*10 + 10.
    removed = (16 * 256 + 256) + (256 * 256 + 256) + (256 * 10 + 10) - (16 * 10 + 10)
    assert v["full network"]["params"] - v["without fc6, fc7"]["params"] == removed
    assert v["without fc6, fc7"]["rebuilt"] == ["classifier.fc8"]
    assert v["without conv3, conv4"]["rebuilt"] == ["features.conv5"]
    # Issue 20: each variant over the same 2 seeds; its cost paired per seed.
    full = v["full network"]["test_acc"]
    assert len(full) == 2 and all(len(x["test_acc"]) == 2 for x in v.values())
    assert v["without fc7"]["drops"] == pytest.approx([f - a for f, a in zip(full, v["without fc7"]["test_acc"])])
    assert set(results["comparisons"]) == {"fc7", "fc6_fc7", "conv3_conv4_extra"}


def test_probes_and_invariance_cover_every_stage(tiny_runs):
    probes, _ = tiny_runs["probes"]
    assert [s["stage"] for s in probes["stages"]] == ["layer1", "layer2", "layer3"]
    assert probes["held_out_classes"] == [5, 6, 7, 8, 9]
    assert all(0.0 <= s[k] <= 1.0 for s in probes["stages"] for k in ("trained_acc", "heldout_acc", "random_acc"))
    seeds = get_experiment("probes").config("tiny").seeds
    for s in probes["stages"]:  # one network per seed, each probed; the row holds their mean
        assert len(s["trained_per_seed"]) == len(s["heldout_per_seed"]) == len(s["random_per_seed"]) == seeds
        assert s["trained_acc"] == pytest.approx(sum(s["trained_per_seed"]) / seeds)
    assert set(probes["comparisons"]) == {"last_vs_first", "layer2_vs_layer1", "layer3_vs_layer2",
                                          "heldout_last_vs_first"}
    inv, _ = tiny_runs["invariance"]
    for kind, summ in inv["summary"].items():
        assert len(summ["first_layer_distance_per_seed"]) == get_experiment("invariance").config("tiny").seeds
        assert summ["first_layer_distance"] == pytest.approx(sum(summ["first_layer_distance_per_seed"]) / 2), kind
    assert len(inv["criteria"]) == 4  # translation and scale by layer; rotation against each of them
    assert inv["layers"] == ["layer1", "layer2", "layer3", "layer3 (avg-pooled)"]
    for kind, t in inv["transforms"].items():
        i = t["magnitudes"].index(t["identity"])
        assert all(t["distance"][layer][i] == pytest.approx(0.0, abs=1e-6) for layer in inv["layers"]), kind
        assert t["prob_change"][i] == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Verdicts, registry, CLI, failures
# ---------------------------------------------------------------------------------------------


def test_verdict_from_criteria():
    yes, no = Criterion("a", "A measured", True), Criterion("b", "B measured", False)
    assert verdict_from([yes, yes], context="here")[0] is True
    assert verdict_from([no], context="here")[0] is False
    status, sentence = verdict_from([yes, no], context="at quick scale on mnist-5k")
    assert status == "partly"
    assert sentence == ("Partly reproduced at quick scale on mnist-5k: A measured (as claimed); "
                        "B measured (contrary to the claim).")
    with pytest.raises(ValueError):
        verdict_from([], context="x")


def test_cli_list_and_unknown_name(capsys):
    assert main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert list_experiments()[:5] == list(NAMES)

    assert main(["experiment", "lesoin"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown experiment 'lesoin'" in err[0] and "lesion" in err[0]


def test_failed_run_leaves_earlier_results_untouched(tmp_path, one_thread):
    out = tmp_path / "lesion"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": true}')
    with pytest.raises(UnknownNameError):
        run_experiment("lesion", scale="tiny", data="no-such-data", out_dir=out, progress=False)
    assert (out / "results.json").read_text() == '{"earlier": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesion"]  # no temporary directory left


def test_data_override_drops_the_scale_data_options():
    cfg = get_experiment("lesion").config("tiny", data="digits")
    assert cfg.data == "digits" and cfg.data_options == ()
    assert get_experiment("lesion").config("tiny").data == "synthetic"


# ---------------------------------------------------------------------------------------------
# Lesion machinery
# ---------------------------------------------------------------------------------------------


def test_deleting_a_block_changes_outputs_not_shapes(one_thread):
    torch.manual_seed(0)
    model = create_model("resnet20").eval()  # untrained, 3x32x32
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        for name in ("layer1.1", "layer2.0", "layer3.2"):
            lesioned = delete_blocks(model, [name])
            out = lesioned(x)
            assert out.shape == before.shape == (4, 10)
            assert not torch.allclose(out, before)
            assert isinstance(lesioned.get_submodule(name), DeletedBlock)
        assert torch.equal(model(x), before)  # the original network is untouched


def test_deleted_block_computes_relu_of_the_shortcut():
    model = create_model("resnet20").eval()
    blocks = dict(residual_blocks(model))
    x = torch.randn(2, 16, 32, 32).relu()  # a block's input is the previous block's ReLU output
    with torch.no_grad():
        # identity shortcut: the block passes its input through
        assert torch.equal(DeletedBlock(blocks["layer1.1"])(x), x)
        # option A at layer2.0 (16 -> 32 maps, stride 2): subsample, then 16 zero maps appended
        expected = torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 16, 16, 16)], dim=1)
        assert torch.equal(DeletedBlock(blocks["layer2.0"])(x), expected)
    plain = dict(plain_blocks(create_model("plain20")))
    assert torch.equal(DeletedBlock(plain["layer1.1"])(x), x)
    with pytest.raises(ValueError):
        DeletedBlock(plain["layer2.0"])  # a shape-changing plain block has no identity


@pytest.mark.parametrize("n", [0, 1, 2, 5, 9])
def test_path_lengths_are_binomial(n):
    counts = path_length_distribution(n)
    assert counts == [math.comb(n, k) for k in range(n + 1)]
    # Enumerate the 2^n paths: each block is crossed either through its residual branch (1) or its
    # shortcut (0); a path's length is the number of residual branches on it.
    enumerated = [0] * (n + 1)
    for choice in itertools.product((0, 1), repeat=n):
        enumerated[sum(choice)] += 1
    assert counts == enumerated and sum(counts) == 2**n


def test_routed_block_keeps_the_forward_and_routes_the_gradient():
    torch.manual_seed(0)
    block = dict(residual_blocks(create_model("resnet20").eval()))["layer1.1"]
    x = torch.randn(2, 16, 8, 8).relu()
    with torch.no_grad():
        full = block(x)
        for through in (True, False):
            assert torch.allclose(RoutedBlock(block, through_residual=through)(x), full, atol=1e-6)
    # Through the identity shortcut only, d sum(relu(F(x) + x)) / dx is the ReLU's mask.
    xg = x.clone().requires_grad_(True)
    RoutedBlock(block, through_residual=False)(xg).sum().backward()
    assert torch.equal(xg.grad, (full > 0).float())


# ---------------------------------------------------------------------------------------------
# Probes, transformations, layer removal
# ---------------------------------------------------------------------------------------------


def test_linear_probe_matches_scikit_learn(one_thread):
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    x, y = torch.tensor(digits.data, dtype=torch.float64), torch.tensor(digits.target)
    xtr, ytr, xte, yte = x[:1200], y[:1200], x[1200:], y[1200:]
    l2 = 1e-2
    probe = fit_linear_probe(xtr, ytr, num_classes=10, l2=l2)
    std = xtr.std(0).clamp_min(1e-6)
    z = ((xtr - xtr.mean(0)) / std).numpy()
    # scikit-learn minimises C * sum(CE) + ||W||^2 / 2, i.e. mean(CE) + ||W||^2 / (2 C N). One BLAS
    # thread: this problem is tiny, and two threads on a busy 2-core machine are many times slower.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        ref = LogisticRegression(C=1 / (l2 * len(ytr)), max_iter=1000, tol=1e-8).fit(z, ytr.numpy())
    assert np.abs(ref.coef_ - probe.linear.weight.detach().double().numpy()).max() < 1e-3
    zte = ((xte - xtr.mean(0)) / std).numpy()
    assert probe_accuracy(probe, xte.float(), yte) == pytest.approx(ref.score(zte, yte.numpy()), abs=2e-3)


def test_transformations_move_pixels_where_expected():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2, 3] = 1.0
    down = transform_batch(x, "translation", 2, fill=[-0.5])
    assert down[0, 0, 4, 3] == 1.0 and down[0, 0, 2, 3] == 0.0
    assert torch.all(down[0, 0, :2] == -0.5)  # uncovered rows take the fill value
    up = transform_batch(x, "translation", -2, fill=[0.0])
    assert up[0, 0, 0, 3] == 1.0
    # 90 degrees counter-clockwise about the centre (3.5, 3.5): (row 2, col 3) -> (row 3, col 5)
    rot = transform_batch(x, "rotation", 90, fill=[0.0])
    assert rot[0, 0, 3, 5] == pytest.approx(1.0) and rot.sum() == pytest.approx(1.0)
    assert torch.equal(transform_batch(x, "scale", 1.0, fill=[0.0]), x)
    with pytest.raises(ValueError):
        transform_batch(x, "shear", 1.0, fill=[0.0])


def test_remove_layers_rebuilds_the_next_layer():
    model = create_model("alexnet_2012", num_classes=10, in_chans=1, width=0.25, pool_size=2, init="pytorch")
    slim, rebuilt = remove_layers(model, ["features.conv3", "features.relu3", "features.conv4", "features.relu4"],
                                  input_size=(1, 99, 99))
    assert rebuilt == ["features.conv5"]
    conv2, conv5 = slim.get_submodule("features.conv2"), slim.get_submodule("features.conv5")
    assert conv5.in_channels == conv2.out_channels == 64 and conv5.out_channels == 64
    # conv5 (two towers: groups=2) now reads 64 maps: 64 * 32 * 9 + 64 parameters.
    assert sum(p.numel() for p in conv5.parameters()) == 64 * 32 * 9 + 64
    assert slim(torch.randn(2, 1, 99, 99)).shape == (2, 10)
    assert model.get_submodule("features.conv3") is not None  # the original keeps its layers


@pytest.mark.parametrize("name", NAMES)
def test_full_scale_configs_name_real_models_and_recipes(name):
    """`--scale full` is for a GPU and never runs here; its configs must still name zoo models and
    recipes that exist and build at the data's size."""
    from cnnlab.models import list_models
    from cnnlab.training import get_recipe

    cfg = get_experiment(name).config("full")
    assert cfg.data == "cifar10"
    get_recipe(cfg.train.recipe)
    models = [getattr(cfg, f) for f in ("model", "residual", "plain") if isinstance(getattr(cfg, f, None), str)]
    models += [m for f in ("plain", "residual") if isinstance(getattr(cfg, f, None), tuple) for m in getattr(cfg, f)]
    assert models and set(models) <= set(list_models())
    size = getattr(cfg, "input_size", None) or (3, 32, 32)  # CIFAR-10 as it is
    for m in models:
        with torch.device("meta"):
            net = create_model(m, num_classes=10, in_chans=size[0], **dict(cfg.model_options))
            assert net(torch.empty(1, *size)).shape == (1, 10)


def test_lesion_reorders_blocks_and_measures_residual_norms(tiny_runs):
    # Veit et al. Fig. 5b and the residual branches' size (cnnlab.experiments.surgery)
    results, _ = tiny_runs["lesion"]
    assert {r["swaps"] for r in results["reorder"]} == {1, 2}
    assert all(-1 <= r["tau"] <= 1 for r in results["reorder"])
    assert all(r["tau"] < 1 for r in results["reorder"] if r["swaps"] == 1)  # one swap always moves two blocks
    assert len(results["residual_norms"]) == results["residual"]["num_blocks"]
    assert all(r["residual_over_shortcut"] > 0 for r in results["residual_norms"])
    descriptions = " ".join(c["description"] for c in results["criteria"])
    assert "Kendall's tau" in descriptions and "small corrections" in descriptions


# ---------------------------------------------------------------------------------------------
# Multi-seed verdicts of degradation and lesion
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["degradation", "lesion"])
def test_seeds_below_two_is_a_config_error_naming_the_experiment(name):
    import dataclasses

    from cnnlab.errors import ConfigError

    for bad in (1, 0, 2.0, True):
        with pytest.raises(ConfigError, match=f"^{name}: seeds"):
            dataclasses.replace(get_experiment(name).config("tiny"), seeds=bad)
    assert get_experiment(name).config("quick").seeds >= 3


def test_lesion_quick_trains_the_nets_of_degradation_quick():
    # `cnnlab experiment all` trains ResNet-20 and plain-20 once for both: same data, size and spec.
    les, deg = get_experiment("lesion").config("quick"), get_experiment("degradation").config("quick")
    assert (les.data, les.input_size, les.train, les.model_options) == (deg.data, deg.input_size, deg.train,
                                                                        deg.model_options)
    assert les.residual in deg.residual and les.plain in deg.plain


def test_lesion_bound_criterion_on_crafted_numbers():
    from cnnlab.experiments.lesion import bound_criterion

    # drops of 15-17 points against a bound of 5: far beyond 2 standard errors the wrong way
    c = bound_criterion("at most 5 points", "drop", [0.15, 0.16, 0.17], 0.05, expect="less")
    assert not c.passed and c.status == "" and "+11.00 +- 0.58 points" in c.finding
    # 0.2 +- 0.5 around a bound of 1: within noise, said so, not passed
    c = bound_criterion("ratio below 1", "ratio", [0.2, 1.5, 0.9], 1.0, expect="less", scale=1.0, unit="")
    assert not c.passed and c.status == "within noise"
    # a gradient-weighted length of ~2.5 blocks against n/2 = 4.5: met
    c = bound_criterion("below n/2", "length", [2.4, 2.6, 2.5], 4.5, expect="less", scale=1.0, unit=" blocks")
    assert c.passed and "-2.00 +- 0.06 blocks" in c.finding
    # correlations expected above 0
    assert bound_criterion("r > 0", "r", [0.8, 0.9, 0.7], 0.0, expect="greater", scale=1.0, unit="").passed


def test_lesion_summary_of_one_seed_on_crafted_measurements():
    from cnnlab.experiments.lesion import summarise

    raw = dict(
        num_blocks=3, baseline_acc=0.9, plain_baseline_acc=0.8,
        delete_one=[dict(acc=0.8, downsampling=False), dict(acc=0.5, downsampling=True), dict(acc=0.7, downsampling=False)],
        plain_delete=[dict(acc=0.1), dict(acc=0.2)],
        delete_k=[dict(k=1, mean_acc=0.7), dict(k=2, mean_acc=0.4), dict(k=3, mean_acc=0.3)],
        # paths C(3, k) = 1, 3, 3, 1 carrying 4, 2, 1, 1: mass 4, 6, 3, 1, mean length (0 + 6 + 6 + 3) / 14
        path_lengths=[dict(k=k, paths=p, mean_grad_norm=g) for k, p, g in zip(range(4), (1, 3, 3, 1), (4, 2, 1, 1))],
        reorder=[dict(swaps=1, tau=0.6, acc=0.7), dict(swaps=1, tau=0.8, acc=0.8), dict(swaps=2, tau=0.2, acc=0.4)],
        norms=[dict(residual_over_shortcut=v, downsampling=d) for v, d in ((0.3, False), (2.0, True), (0.5, False))],
    )  # fmt: skip
    s = summarise(raw, chance=0.1)
    assert s["mean_drop_non_downsampling"] == pytest.approx(0.15) and s["mean_drop_downsampling"] == pytest.approx(0.4)
    assert s["plain_mean_acc_after_delete"] == pytest.approx(0.15)
    assert s["largest_step"] == pytest.approx(0.3) and s["total_decline"] == pytest.approx(0.6)
    assert s["largest_step_fraction"] == pytest.approx(0.5)
    assert s["gradient_weighted_mean_length"] == pytest.approx(15 / 14)
    assert s["one_swap_acc"] == pytest.approx(0.75) and s["one_swap_loss_fraction"] == pytest.approx(0.15 / 0.8)
    assert s["reorder_tau_acc_r"] > 0.9 and s["median_residual_ratio"] == 0.5  # of the two same-shape blocks: upper
    # no decline at all counts as the least smooth (the whole decline in one step), not as a division by 0
    flat = dict(raw, delete_k=[dict(k=k, mean_acc=0.9) for k in (1, 2, 3)])
    assert summarise(flat, chance=0.1)["largest_step_fraction"] == 1.0


def test_degradation_comparisons_on_crafted_errors():
    from cnnlab.experiments.degradation import degradation_criteria, depth_comparisons

    cfg = get_experiment("degradation").config("quick")
    models = {
        "plain20": dict(final_train_error=[0.013, 0.015, 0.011], mean_final_train_error=0.013),
        "plain56": dict(final_train_error=[0.40, 0.35, 0.42], mean_final_train_error=0.39),
        "resnet20": dict(final_train_error=[0.007, 0.008, 0.006], mean_final_train_error=0.007),
        "resnet56": dict(final_train_error=[0.03, 0.002, 0.011], mean_final_train_error=0.0143),
    }
    comp = depth_comparisons(models, cfg)
    assert comp["plain_deep_vs_shallow"].verdict == "met"
    assert comp["residual_deep_vs_shallow"].verdict == "within noise"  # +0.7 +- 0.8 points
    assert comp["plain_gap_vs_residual_gap"].verdict == "met"
    assert comp["plain_gap_vs_residual_gap"].a == pytest.approx((0.387, 0.335, 0.409))
    crit = degradation_criteria(models, cfg, comp)
    assert [c.passed for c in crit] == [True, False, True] and crit[1].status == "within noise"


def test_train_zoo_arm_gives_each_seed_its_own_initialisation(monkeypatch):
    from cnnlab.data import load_dataset
    from cnnlab.experiments import ExperimentContext
    from cnnlab.experiments.arms import train_zoo_arm
    from cnnlab.training.spec import TrainSpec

    built = []

    def fake_train(self, label, build, data, spec, *, key=None, **_):  # records what would be trained
        built.append((self.seed, label, key, build()))
        return built[-1]

    monkeypatch.setattr(ExperimentContext, "train", fake_train)
    ctx = ExperimentContext(experiment="x", scale="tiny", seed=5, progress=False)
    data = load_dataset("synthetic", shape=(1, 16, 16), n=16, seed=5)
    train_zoo_arm(ctx, "net", "resnet20", data, TrainSpec(recipe="resnet_cifar"), seeds=3, options={"widths": (4, 8, 16)})
    assert [(s, lbl, k) for s, lbl, k, _ in built] == [(s, f"net (seed {s})", {"model": "resnet20", "widths": (4, 8, 16)})
                                                      for s in (5, 6, 7)]
    weights = [m.conv1.weight for *_, m in built]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    # the first seed's network is the run's own: what ctx.create_model builds
    assert torch.equal(weights[0], ctx.create_model("resnet20", data, widths=(4, 8, 16)).conv1.weight)
