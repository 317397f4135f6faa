"""The training engine, recipes and schedules.

Schedules are checked against the numbers the papers print (He et al. 2016 §4.2: 0.1, /10 at 32k
and 48k, stop at 64k; warm-up at 0.01 for ~400 iterations for ResNet-110; Larsson et al. 2017:
0.02, /10 each time the remaining epochs halve), not against the code's own tables.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.data import DataBundle, TensorPair, load_dataset
from cnnlab.errors import ConfigError, TrainingError, UnknownNameError
from cnnlab.training import TrainSpec, evaluate, evaluate_mc_dropout, fit, get_recipe, list_recipes
from cnnlab.viz.run_pictures import RunPictures
from cnnlab.training import checkpoint as ck
from cnnlab.training.callbacks import RESULT_KEYS
from cnnlab.training.schedules import LRSchedule, Plateau, cosine_lr, linear_warmup, resolve_schedule


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _schedule(name: str, steps_per_epoch: int, epochs: int | None = None) -> LRSchedule:
    recipe = get_recipe(name)
    return LRSchedule(recipe, resolve_schedule(recipe, steps_per_epoch=steps_per_epoch, epochs=epochs))


# ------------------------------------------------------------------------------------- schedules


def test_resnet_cifar_schedule_matches_he_2016():
    # CIFAR-10: 50,000 images, batch 128 -> 391 updates per epoch.
    s = _schedule("resnet_cifar", 391)
    assert s.resolved.total_steps == 64_000  # "terminate training at 64k iterations"
    assert s.resolved.epochs == math.ceil(64_000 / 391)
    for step, lr in ((0, 0.1), (31_999, 0.1), (32_000, 0.01), (47_999, 0.01), (48_000, 0.001), (63_999, 0.001)):
        assert s(step) == pytest.approx(lr), step
    r = get_recipe("resnet_cifar")
    assert (r.momentum, r.weight_decay, r.batch_size, r.crop_padding, r.flip) == (0.9, 1e-4, 128, 4, True)


def test_resnet110_warmup_then_paper_schedule():
    s = _schedule("resnet110_cifar", 391)
    assert [s(k) for k in (0, 200, 399)] == pytest.approx([0.01] * 3)  # "0.01 ... about 400 iterations"
    assert s(400) == pytest.approx(0.1)  # "then go back to 0.1"
    assert s(32_000) == pytest.approx(0.01) and s(48_000) == pytest.approx(0.001)


def test_epochs_override_scales_iteration_milestones():
    s = _schedule("resnet_cifar", 391, epochs=10)
    assert s.resolved.total_steps == 3910
    assert s.resolved.milestones == (1955, round(48_000 * 3910 / 64_000))  # still 1/2 and 3/4 of the run
    assert "scaled" in s.resolved.note
    assert s(1954) == pytest.approx(0.1) and s(1955) == pytest.approx(0.01)


def test_fractalnet_schedule_halving_remaining_epochs():
    s = _schedule("fractalnet", 500)  # 50,000 images, batch 100
    assert s.resolved.total_steps == 400 * 500  # 400 epochs
    expected = {0: 0.02, 199: 0.02, 200: 0.002, 300: 2e-4, 350: 2e-5, 375: 2e-6, 399: 2e-6}
    for epoch, lr in expected.items():
        assert s(epoch * 500) == pytest.approx(lr), epoch


def test_paper_hyperparameters():
    alex, vgg, rn = get_recipe("alexnet"), get_recipe("vgg"), get_recipe("resnet_imagenet")
    assert (alex.lr, alex.momentum, alex.weight_decay, alex.batch_size, alex.schedule, alex.dropout) == \
        (0.01, 0.9, 5e-4, 128, "plateau", 0.5)
    assert alex.flip and alex.crop_padding > 0 and alex.pca_lighting == 0.1
    assert (vgg.lr, vgg.momentum, vgg.weight_decay, vgg.batch_size, vgg.schedule) == (0.01, 0.9, 5e-4, 256, "plateau")
    assert vgg.scale_jitter
    assert (rn.lr, rn.momentum, rn.weight_decay, rn.batch_size) == (0.1, 0.9, 1e-4, 256)
    s = _schedule("resnet_imagenet", 5005)  # torchvision: /10 every 30 epochs
    assert s(30 * 5005 - 1) == pytest.approx(0.1) and s(30 * 5005) == pytest.approx(0.01)
    assert s(60 * 5005) == pytest.approx(0.001)
    frac = get_recipe("fractalnet")
    assert (frac.lr, frac.momentum, frac.batch_size, frac.epochs) == (0.02, 0.9, 100, 400)


def test_plateau_divides_after_patience_and_roundtrips():
    p = Plateau(gamma=0.1, patience=2, threshold=1e-3)
    drops = [p.update(acc, epoch=e) for e, acc in enumerate([0.5, 0.6, 0.6, 0.6, 0.6, 0.7], 1)]
    assert drops == [False, False, False, False, True, False] and p.factor == pytest.approx(0.1)
    q = Plateau(gamma=0.1, patience=2)
    q.load_state_dict(p.state_dict())
    assert q.state_dict() == p.state_dict()


def test_pure_functions():
    assert cosine_lr(50, base_lr=1.0, total_steps=100) == pytest.approx(0.5)
    assert cosine_lr(100, base_lr=1.0, total_steps=100) == pytest.approx(0.0)
    assert linear_warmup(5, 1.0, warmup_steps=10) == pytest.approx(0.5)
    assert linear_warmup(10, 1.0, warmup_steps=10) == 1.0


def test_every_model_default_recipe_exists_and_recipe_errors():
    for name in cnnlab.list_models():
        get_recipe(cnnlab.model_info(name).recipe)
    assert {"lenet", "alexnet", "vgg", "resnet_imagenet", "resnet_cifar", "fractalnet"} <= set(list_recipes())
    # He et al. §4.2: lr 0.01 for the first ~400 updates of ResNet-110 (and 1202, "trained as described
    # above"), then the 0.1 schedule; the shallower CIFAR nets start at 0.1 at once.
    for name in ("resnet110", "resnet1202", "plain110"):
        r = get_recipe(cnnlab.model_info(name).recipe)
        assert (r.warmup_steps, r.warmup_lr, r.warmup, r.lr) == (400, 0.01, "constant", 0.1), name
    assert get_recipe(cnnlab.model_info("resnet56").recipe).warmup_steps == 0
    with pytest.raises(UnknownNameError, match="resnet_cifar"):
        get_recipe("resnet_cifr")
    with pytest.raises(ConfigError, match="unknown field 'lrr'.*lr"):
        get_recipe("lenet").replace(lrr=0.1)
    with pytest.raises(ConfigError, match="momentum"):
        get_recipe("lenet").replace(momentum=-1)
    # --set epochs=N on a recipe in iterations keeps the milestones at the same fraction
    r = get_recipe("resnet_cifar").replace(epochs=10)
    assert r.iterations is None and r.milestones == pytest.approx((5.0, 7.5)) and r.milestone_unit == "epoch"


# ------------------------------------------------------------------------------------- engine


def _tiny_bundle(n_train: int = 256, n_test: int = 64, seed: int = 0) -> DataBundle:
    return load_dataset("synthetic", input_size=(1, 32, 32), seed=seed, shape=(1, 32, 32), n_train=n_train,
                        n_test=n_test)


def test_one_batch_overfits_to_zero_error():
    data = load_dataset("mnist-5k", input_size=(1, 32, 32))
    batch = TensorPair(data.train.x[:32], data.train.y[:32])
    one = DataBundle(**{**data.__dict__, "train": batch, "val": batch, "test": batch})
    torch.manual_seed(0)
    model = cnnlab.create_model("lenet5_relu")
    result = fit(model, one, TrainSpec(recipe="lenet", epochs=25, precision="fp32", overrides=dict(optimizer="adam", lr=3e-3, batch_size=32, translate=0, schedule="constant",
                                label_smoothing=0.0)), progress=False)
    assert result.train_acc == 1.0 and result.test_acc == 1.0
    assert result.history[-1]["train_loss"] < 0.01
    assert result.step_losses[0] > 2.0  # it started from chance (ln 10 = 2.3)
    assert not result.model.training and next(result.model.parameters()).device.type == "cpu"


def test_run_folder_files_and_results(tmp_path):
    data = _tiny_bundle()
    torch.manual_seed(0)
    out = tmp_path / "run"
    result = fit(cnnlab.create_model("lenet5"), data, TrainSpec(recipe="lenet", epochs=2, model="lenet5", precision="fp32", checkpoint_every=5), progress=False, run_dir=out, callbacks=[RunPictures()])  # training writes numbers; viz draws the pictures
    for f in ("config.json", "metrics.csv", "steps.csv", "curves.png", "results.json", "model.safetensors"):
        assert (out / f).is_file(), f
    res = json.loads((out / "results.json").read_text())
    assert set(RESULT_KEYS) <= set(res)
    assert res["model"] == "lenet5" and res["data"] == "synthetic" and res["epochs"] == 2
    assert 0.0 <= res["test_acc"] <= 1.0 and res["test_acc"] == result.test_acc
    assert res["images_per_second"] > 0 and res["seconds"] > 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch,step,lr,train_loss,train_acc,train_top5,val_loss,val_acc")
    assert "test_acc" not in lines[0]  # per-epoch test columns only with test_every_epoch
    assert len((out / "steps.csv").read_text().splitlines()) == 1 + 2 * 4  # 232 / 64 -> 4 updates an epoch
    weights = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(weights[k], v) for k, v in result.model.state_dict().items() if k in weights)
    manifest = ck.read_manifest(out / "checkpoints")
    assert {"last", "best"} <= set(manifest) and manifest["last"]["step"] == 8
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["recipe"]["name"] == "lenet" and cfg["data"]["notes"] and cfg["versions"]["torch"] == torch.__version__
    assert (cfg["data"]["train_size"], cfg["data"]["val_size"], cfg["data"]["test_size"]) == (232, 24, 64)
    assert cfg["data"]["val_fraction"] == 0.1 and cfg["data"]["class_names"] == [str(c) for c in range(10)]
    assert cfg["selection"]["split"] == "val" and cfg["seed"] == 0
    with pytest.raises(ConfigError, match="already holds a run"):
        fit(cnnlab.create_model("lenet5"), data, TrainSpec(recipe="lenet", epochs=1), progress=False, run_dir=out)


class NanAt:
    """A test callback: the loss of update ``k`` becomes NaN."""

    def __init__(self, k: int) -> None:
        self.k = k

    def on_loss(self, trainer, step, loss):
        return loss * float("nan") if step == self.k else None


def test_nan_loss_stops_within_one_step_and_keeps_checkpoints(tmp_path):
    data = _tiny_bundle()
    out = tmp_path / "run"
    torch.manual_seed(0)
    model = cnnlab.create_model("lenet5")
    with pytest.raises(TrainingError, match=r"loss became nan at update 6 \(epoch 2, batch 2"):
        # update 6: epoch 2 (4 updates an epoch)
        fit(model, data, TrainSpec(recipe="lenet", epochs=3, precision="fp32"), progress=False, run_dir=out, callbacks=[NanAt(6)])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    manifest = ck.read_manifest(out / "checkpoints")
    assert manifest["last"]["step"] == 4 and manifest["best"]["step"] == 4
    for tag in ("last", "best"):
        state, train_state = ck.load_checkpoint(out / "checkpoints", tag)
        assert all(torch.isfinite(t).all() for t in state.values())
    assert not (out / "results.json").exists() and not (out / "model.safetensors").exists()
    assert len((out / "steps.csv").read_text().splitlines()) == 1 + 5  # updates 1..5, not the NaN one


def test_auxiliary_losses_are_weighted():
    from cnnlab.models.base import ModelOutput
    from cnnlab.training.tasks import get_task

    logits, aux = torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    ce = torch.nn.functional.cross_entropy
    loss, _ = get_task("classification", label_smoothing=0.0).loss(ModelOutput(logits, (aux, aux), (0.3, 0.3)),
                                                                    torch.zeros(4), y)
    assert loss.item() == pytest.approx((ce(logits, y) + 0.6 * ce(aux, y)).item())


def test_evaluate_tta_and_mc_dropout():
    data = _tiny_bundle(n_train=64, n_test=50)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(1024, 10))
    plain = evaluate(model, data.test, batch_size=16, precision="fp32")
    logits = model.eval()(data.test.x)
    assert plain["acc"] == pytest.approx((logits.argmax(1) == data.test.y).float().mean().item())
    assert plain["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, data.test.y).item(), rel=1e-5)
    flip = evaluate(model, data.test, precision="fp32", tta="flip")
    probs = (model(data.test.x).softmax(1) + model(data.test.x.flip(-1)).softmax(1)) / 2
    assert flip["acc"] == pytest.approx((probs.argmax(1) == data.test.y).float().mean().item())
    mc = evaluate_mc_dropout(model, data.test, samples=4, precision="fp32")
    assert mc["dropout_modules"] == 1 and 0 <= mc["acc"] <= 1
    assert mc["loss"] != pytest.approx(plain["loss"])  # stochastic passes differ from weight scaling
    assert not model.training
    with pytest.raises(ConfigError, match="no nn.Dropout"):
        evaluate_mc_dropout(cnnlab.create_model("lenet5"), data.test, samples=2)


# --- precision "auto": bf16 only where the CPU computes it natively


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads the kernel's CPU flags")
def test_cpu_bf16_detection_follows_the_kernels_cpu_flags():
    # oneDNN's own check says yes on any AVX-512 CPU, where bf16 is emulated and slower than fp32;
    # the kernel's flags are the outside truth.
    from cnnlab.training.device import cpu_has_bf16, resolve_precision

    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert cpu_has_bf16() is native
    assert resolve_precision("auto", torch.device("cpu")).name == ("bf16" if native else "fp32")


def test_lenet5_relu_learns_in_the_first_epoch_of_the_lenet_recipe():
    # With LeCun's tanh-sized bound under ReLU the net sat at chance (10%) for 7 epochs of this recipe.
    data = load_dataset("mnist-5k", input_size=(1, 32, 32))
    torch.manual_seed(0)
    result = fit(cnnlab.create_model("lenet5_relu"), data, TrainSpec(recipe="lenet", epochs=1, precision="fp32"), progress=False)
    assert result.test_acc > 0.5
    # the paper's lenet5 keeps LeCun et al.'s Appendix C: uniform in +-2.4 / fan-in
    c5 = cnnlab.create_model("lenet5").c5[0].weight
    assert c5.abs().max() <= 2.4 / (16 * 25) and c5.abs().max() > 0.9 * 2.4 / (16 * 25)
