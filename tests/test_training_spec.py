"""One run description: ``fit(model, data, TrainSpec(...))`` trains the same whether the recipe is
named or given as a Recipe, refuses anything else in one line, and the spec a run stores in
config.json gives back the run's recipe (a custom Recipe included)."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError
from cnnlab.training import TrainSpec, fit, get_recipe, spec_from_config


def _data():
    return load_dataset("synthetic", input_size=(1, 32, 32), shape=(1, 32, 32), n_train=96, n_test=16, seed=0)


def test_a_named_recipe_and_the_same_recipe_object_train_bitwise_alike():
    data = _data()
    torch.manual_seed(0)
    a = fit(cnnlab.create_model("lenet5"), data, TrainSpec(recipe="lenet", batch_size=32, epochs=2, precision="fp32",
                                                           deterministic=True), progress=False)
    torch.manual_seed(0)
    b = fit(cnnlab.create_model("lenet5"), data,
            TrainSpec(recipe=get_recipe("lenet").replace(batch_size=32), epochs=2, precision="fp32",
                      deterministic=True), progress=False)
    assert a.step_losses == b.step_losses and len(a.step_losses) == 2 * 3
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


@pytest.mark.parametrize("bad", ["lenet", None, {"recipe": "lenet"}])
def test_fit_takes_only_a_trainspec(bad):
    with pytest.raises(ConfigError, match="TrainSpec"):
        fit(cnnlab.create_model("lenet5"), _data(), bad)


def test_overrides_as_pairs_become_a_mapping_and_describe_names_each_once():
    spec = TrainSpec(recipe="lenet", epochs=3, overrides=(("lr", 0.05), ("flip", False)))
    assert spec.overrides == {"lr": 0.05, "flip": False}
    assert spec.resolve().lr == 0.05 and spec.resolve().flip is False
    more = spec.replace(overrides={"lr": 0.01})
    assert more.overrides == {"lr": 0.01, "flip": False}
    assert more.describe() == "recipe `lenet`, 3 epochs, lr=0.01, flip=False"
    assert TrainSpec(recipe="lenet", overrides=(("lr", 0.05), ("lr", 0.1))).overrides == {"lr": 0.1}  # the last wins


def test_a_custom_recipe_is_stored_in_config_json_and_read_back(tmp_path):
    recipe = get_recipe("lenet").replace(batch_size=32, lr=0.02, momentum=0.5)
    spec = TrainSpec(model="lenet5", recipe=recipe, max_steps=2, precision="fp32")
    fit(cnnlab.create_model("lenet5"), _data(), spec, run_dir=tmp_path / "run", progress=False)
    again = spec_from_config(tmp_path / "run")
    assert again.resolve() == recipe and again.max_steps == 2


def test_bad_spec_fields_name_the_field():
    with pytest.raises(ConfigError, match="epochs"):
        TrainSpec(recipe="lenet", epochs=0)
    with pytest.raises(ConfigError, match="task_options"):
        TrainSpec(recipe="lenet", task_options=["beta"])
    with pytest.raises(ConfigError, match="give recipe"):
        TrainSpec().resolve()
