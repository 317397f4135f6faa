"""The autoencoders' and VAEs' contract, generated from the registry (tests/test_zoo.py checks the
classifiers): every model of the "autoencoder" and "vae" families

- builds on the meta device and as a real fp32 CPU module, with a non-default ``in_chans`` too;
- ``forward`` returns pixels in [0, 1] of the input's shape, in train and eval mode; ``forward_train``
  returns AEOutput / VAEOutput, whose loss gives every parameter a finite gradient;
- traces with torch.fx (the traced module computes what the model computes, in eval mode);
- ``feature_info`` modules exist and output ``num_chs`` channels;
- unknown config fields and bad values raise ConfigError naming the field;
- the analyzer counts the parameters and multiply-adds worked out by hand for vae_conv and ae_conv.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.fx
import torch.nn.functional as F

from cnnlab import ConfigError, UnknownNameError, analyze, create_model, list_models, model_info
from cnnlab.models.zoo.autoencoders import AEOutput, VAEOutput
from cnnlab.training.elbo import elbo_terms

MODELS = [n for n in list_models() if model_info(n).task in ("reconstruction", "vae")]


def test_the_lecture_walk_is_registered_with_its_tasks():
    assert set(MODELS) == {"ae_linear", "ae_mlp", "ae_conv", "dae_conv", "vae_mlp", "vae_conv"}
    assert {model_info(n).task for n in MODELS if n.startswith("vae")} == {"vae"}


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def _model(name: str):
    return create_model(name)


def _input(name: str, in_chans: int | None = None) -> torch.Tensor:
    c, h, w = model_info(name).input_size
    return torch.randn((2, in_chans or c, h, w), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", MODELS)
def test_builds_on_meta_and_as_fp32_cpu(name: str) -> None:
    with torch.device("meta"):
        meta = create_model(name)
    assert all(p.is_meta and p.dtype == torch.float32 for p in meta.parameters())
    model = _model(name)
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize("name", MODELS)
def test_forward_returns_pixels_of_the_input_shape(name: str) -> None:
    model, x = _model(name), _input(name)
    with torch.no_grad():
        for training in (True, False):
            out = model.train(training)(x)
            assert type(out) is torch.Tensor and out.shape == x.shape
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("name", MODELS)
def test_non_default_in_chans(name: str) -> None:
    model = create_model(name, in_chans=3).eval()
    with torch.no_grad():
        assert model(_input(name, in_chans=3)).shape == (2, 3, 28, 28)


@pytest.mark.parametrize("name", MODELS)
def test_training_loss_reaches_every_parameter(name: str) -> None:
    model, x = _model(name).train(), _input(name)
    target = torch.sigmoid(x)  # pixels in [0, 1]
    model.zero_grad(set_to_none=True)
    out = model.forward_train(x)
    if model_info(name).task == "vae":
        assert isinstance(out, VAEOutput) and out.mu.shape == out.logvar.shape == out.z.shape
        loss = elbo_terms(model, x, target).neg_elbo.mean()
    else:
        assert isinstance(out, AEOutput) and out.logits.shape == x.shape
        loss = F.binary_cross_entropy_with_logits(out.logits, target)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", MODELS)
def test_fx_symbolic_trace(name: str) -> None:
    model, x = _model(name).eval(), _input(name)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS)
def test_feature_info(name: str) -> None:
    model = _model(name).eval()
    modules = dict(model.named_modules())
    outputs = {}
    handles = [modules[i["module"]].register_forward_hook(lambda m, a, o, k=i["module"]: outputs.__setitem__(k, o))
               for i in model.feature_info]  # fmt: skip
    try:
        with torch.no_grad():
            model(_input(name))
    finally:
        for h in handles:
            h.remove()
    for info in model.feature_info:
        assert outputs[info["module"]].shape[1] == info["num_chs"]
        assert outputs[info["module"]].shape[-1] == 28 // info["reduction"]


@pytest.mark.parametrize("name", MODELS)
def test_unknown_names_and_fields(name: str) -> None:
    with pytest.raises(UnknownNameError, match=name):
        create_model(name + "x")
    with torch.device("meta"), pytest.raises(ConfigError, match="no_such_option"):
        create_model(name, no_such_option=1)


@pytest.mark.parametrize("name, config, field", [
    ("vae_conv", dict(latent_dim=0), "latent_dim"),
    ("vae_mlp", dict(likelihood="poisson"), "likelihood"),
    ("vae_mlp", dict(output="identity"), "output"),  # an unbounded mean needs the Gaussian likelihood
    ("vae_conv", dict(beta=-1.0), "beta"),
    ("vae_conv", dict(image_size=(30, 30)), "image_size"),  # not divisible by 4
    ("ae_conv", dict(channels=()), "channels"),
    ("ae_conv", dict(noise="salt"), "noise"),
    ("dae_conv", dict(noise="masking", noise_level=1.0), "noise_level"),
    ("dae_conv", dict(noise="none"), "noise"),
    ("ae_mlp", dict(activation="gelu"), "activation"),
])  # fmt: skip
def test_bad_config_values_name_the_field(name: str, config: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        create_model(name, **config)


def test_denoising_corrupts_only_in_training_mode():
    dae, x = create_model("dae_conv"), _input("dae_conv")
    with torch.no_grad():
        dae.train()
        assert not torch.equal(dae(x), dae(x))  # fresh noise each call
        dae.eval()
        torch.testing.assert_close(dae(x), dae(x), rtol=0, atol=0)
        masking = create_model("dae_conv", noise="masking", noise_level=0.25).train()
        kept = masking.corrupt(torch.ones(1, 1, 100, 100))
    assert 0.7 < float(kept.mean()) < 0.8  # about a quarter of the pixels masked


def test_analyzer_counts_match_the_hand_arithmetic():
    # vae_conv at 1x28x28: conv1 4x4x1->32 (14x14), conv2 4x4x32->64 (7x7), fc_mu and fc_logvar
    # 3136->16, decoder fc 16->3136, up1 4x4 64->32 (7x7 -> 14x14), up2 4x4 32->1 (14x14 -> 28x28).
    params = (16 * 32 + 32) + (16 * 32 * 64 + 64) + 2 * (3136 * 16 + 16) + (16 * 3136 + 3136) \
        + (16 * 64 * 32 + 32) + (16 * 32 + 1)
    # A transposed convolution's multiply-adds: input positions x C_in x C_out x k^2.
    macs = 14 * 14 * 32 * 16 + 7 * 7 * 64 * 32 * 16 + 2 * 3136 * 16 + 16 * 3136 + 7 * 7 * 64 * 32 * 16 \
        + 14 * 14 * 32 * 16
    a = analyze("vae_conv")
    assert (a.total.params, a.total.macs) == (params, macs)
    assert sum(p.numel() for p in create_model("vae_conv").parameters()) == params
    # ae_conv: conv3 1->16 and 16->8 at 28 and 14, up 2x2 8->16 (7x7 in) and 16->16 (14x14 in), conv3 16->1.
    macs = 28 * 28 * 9 * 16 + 14 * 14 * 9 * 16 * 8 + 7 * 7 * 8 * 16 * 4 + 14 * 14 * 16 * 16 * 4 + 28 * 28 * 9 * 16
    assert analyze("ae_conv").total.macs == macs
