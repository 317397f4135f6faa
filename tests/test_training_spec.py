"""``fit(model, data, RunSpec(...))``: the grouped form trains exactly as the keyword form, and refuses
keyword options given beside a RunSpec (they would be silently ignored)."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError
from cnnlab.training import RunOptions, RunSpec, fit, get_recipe


def _data():
    return load_dataset("synthetic", input_size=(1, 32, 32), shape=(1, 32, 32), n_train=96, n_test=16, seed=0)


def test_runspec_form_trains_bitwise_as_the_keyword_form():
    data = _data()
    torch.manual_seed(0)
    a = fit(cnnlab.create_model("lenet5"), data, "lenet", epochs=2, batch_size=32, progress=False,
            precision="fp32", deterministic=True)
    torch.manual_seed(0)
    spec = RunSpec(get_recipe("lenet").replace(batch_size=32), RunOptions(epochs=2, progress=False, deterministic=True),
                   precision="fp32")
    b = fit(cnnlab.create_model("lenet5"), data, spec)
    assert a.step_losses == b.step_losses and len(a.step_losses) == 2 * 3
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_keyword_options_beside_a_runspec_are_refused():
    with pytest.raises(ConfigError, match="'epochs'"):
        fit(cnnlab.create_model("lenet5"), _data(), RunSpec(get_recipe("lenet")), epochs=3)
