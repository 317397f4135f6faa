"""The zoo's contract, generated from ``cnnlab.list_models()``: every family any helper registers
is checked here without family-specific code (except the cheap configurations in ``CHEAP``).

Every model, with a non-default ``num_classes`` where it matters:
- builds under ``torch.device("meta")`` (all tensors meta, parameters fp32) and as a real fp32 CPU
  module, without changing the default dtype (fp32) or device (CPU);
- ``forward`` returns a Tensor of shape (2, num_classes) in train and in eval mode ((2, num_classes,
  H, W) per-pixel logits for models registered with ``task="segmentation"``), and
  ``forward_train`` a ModelOutput whose auxiliary logits have that shape and one weight each;
- builds and runs with a non-default ``in_chans``;
- traces with ``torch.fx.symbolic_trace``, and the traced module computes what the model computes;
- every ``feature_info`` module exists in ``named_modules()`` and outputs ``num_chs`` channels;
  reductions never decrease, and no map is larger than ``side / reduction`` allows;
- an unknown name raises UnknownNameError suggesting the right one, an unknown config field a
  ConfigError naming it.

Where the model runs: small-input models (side <= 64) for real at full size; big ImageNet models
whose family has a cheap configuration in ``CHEAP`` for real at that configuration and their own
input size. There, a backward pass of the ``forward_train`` loss (main + weighted auxiliary losses)
must give every parameter a non-None, finite gradient. The other big models (``META_ONLY``, listed
explicitly) run on the meta device: shapes, and a meta backward that checks every parameter gets a
gradient but cannot check finiteness; they are also built for real at full size (no forward).
Meta forwards cost more CPU than small real ones (meta kernels run in Python), hence real wherever
it is cheap.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor

from cnnlab import ConfigError, UnknownNameError, create_model, list_models, model_info
from cnnlab.models.base import Classifier, ModelOutput

# Autoencoders and VAEs reconstruct images instead of classifying them: their contract is checked by
# tests/test_zoo_autoencoders.py, generated from the same registry (gan: tests/test_gan.py). Detectors
# and captioners return boxes and words: tests/test_detection.py and tests/test_captioning.py.
GENERATIVE_TASKS = ("reconstruction", "vae", "gan", "detection", "captioning")
MODELS = [n for n in list_models() if model_info(n).task not in GENERATIVE_TASKS]
SMALL_SIDE = 64  # inputs up to 64x64 (MNIST, CIFAR, ...) run for real at full size

# Reduced-width configurations under which a big ImageNet family runs a real forward/backward at
# its own input size in a fraction of a second on a CPU. A family with such an option adds its line.
CHEAP: dict[str, dict] = {
    "alexnet": dict(width=1 / 16),  # convs of 4-64 maps, FC6/FC7 of 256
    "vgg": dict(width=1 / 16),  # convs of 4-32 maps, FC6/FC7 of 256
    # ImageNet ResNets at 1/8 of the stage widths (ResNeXt at 1/4, so its 32 groups keep a channel each).
    "resnet": dict(widths=(8, 16, 32, 64)),
    "plain": dict(widths=(8, 16, 32, 64)),
    "senet": dict(widths=(8, 16, 32, 64)),
    "resnext": dict(widths=(16, 32, 64, 128)),
    "fcn": dict(width=1 / 16),  # VGG-16 convs of 4-32 maps, FC6/FC7 of 256
    "dilated": dict(width=1 / 16),
    "efficientnet_lite": dict(width=0.1, depth=0.1),  # 8-channel stages, one block each (fixed stem/head)
}


def _is_small(name: str) -> bool:
    return max(model_info(name).input_size[1:]) <= SMALL_SIDE


REAL = [n for n in MODELS if _is_small(n) or model_info(n).family in CHEAP]
META_ONLY = [n for n in MODELS if n not in REAL]


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """These tensors are tiny: a second OpenMP thread costs more in hand-offs than it saves, and
    spins when the machine is loaded. The thread count is restored for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(name: str) -> dict:
    return {} if _is_small(name) else CHEAP.get(model_info(name).family, {})


def _num_classes(name: str) -> int:
    return model_info(name).num_classes + 3  # not the default: the builder must honour it


def _build(name: str, **kwargs) -> Classifier:
    """A real model (REAL, at its cheap configuration) or a meta one (META_ONLY)."""
    if name in REAL:
        return create_model(name, **_config(name), **kwargs)
    with torch.device("meta"):
        return create_model(name, **kwargs)


@functools.cache
def _shared(name: str) -> Classifier:
    """One build per model for the tests that only run forwards; each sets the mode it needs."""
    return _build(name, num_classes=_num_classes(name))


def _input(name: str, *, batch: int = 2, in_chans: int | None = None) -> Tensor:
    c, h, w = model_info(name).input_size
    shape = (batch, in_chans or c, h, w)
    if name in REAL:
        return torch.randn(shape, generator=torch.Generator().manual_seed(0))
    return torch.empty(shape, device="meta")


def _logits_shape(name: str, num_classes: int) -> tuple[int, ...]:
    """(2, K) for a classifier; (2, K, H, W) per-pixel logits at the input's size for segmentation."""
    if model_info(name).task == "segmentation":
        return (2, num_classes, *model_info(name).input_size[1:])
    return (2, num_classes)


def _target(name: str, num_classes: int, *, device: str = "cpu") -> Tensor:
    shape = _logits_shape(name, num_classes)[:1] + _logits_shape(name, num_classes)[2:]
    if device == "meta":
        return torch.zeros(shape, dtype=torch.long, device="meta")
    return torch.randint(0, num_classes, shape, generator=torch.Generator().manual_seed(0))


def _check_output(out: ModelOutput, name: str, num_classes: int) -> None:
    assert isinstance(out, ModelOutput)
    assert type(out.logits) is Tensor and tuple(out.logits.shape) == _logits_shape(name, num_classes)
    assert len(out.aux_logits) == len(out.aux_weights)
    for aux in out.aux_logits:
        assert type(aux) is Tensor and tuple(aux.shape) == _logits_shape(name, num_classes)


def _loss(out: ModelOutput, target: Tensor) -> Tensor:
    loss = F.cross_entropy(out.logits, target)
    for weight, aux in zip(out.aux_weights, out.aux_logits, strict=True):
        loss = loss + weight * F.cross_entropy(aux, target)
    return loss


def _check_fp32_cpu(model: torch.nn.Module) -> None:
    assert torch.get_default_dtype() == torch.float32, "create_model changed the default dtype"
    assert torch.get_default_device().type == "cpu", "create_model changed the default device"
    assert all(t.device.type == "cpu" for t in list(model.parameters()) + list(model.buffers()))
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_builds_on_meta_device(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
    assert isinstance(model, Classifier)
    params = list(model.parameters())
    assert params, f"{name} has no parameters"
    assert all(t.is_meta for t in params + list(model.buffers()))
    assert all(p.dtype == torch.float32 for p in params)


@pytest.mark.parametrize("name", MODELS)
def test_builds_as_real_fp32_cpu_module(name: str) -> None:
    # REAL models are checked as built (cheap configuration for big ones); META_ONLY ones are
    # built for real here at full size.
    model = _shared(name) if name in REAL else create_model(name)
    assert isinstance(model, Classifier)
    _check_fp32_cpu(model)


@pytest.mark.parametrize("name", MODELS)
def test_forward_returns_logits_in_train_and_eval(name: str) -> None:
    # ``forward_train`` is checked by the backward tests, which every model goes through.
    model, x, num_classes = _shared(name), _input(name), _num_classes(name)
    with torch.no_grad():
        for training in (True, False):
            model.train(training)
            logits = model(x)
            # One return type whatever the mode (no GoogLeNet-style tuple in training).
            assert type(logits) is Tensor, f"forward returned {type(logits).__name__} (training={training})"
            assert tuple(logits.shape) == _logits_shape(name, num_classes)


@pytest.mark.parametrize("name", MODELS)
def test_non_default_in_chans(name: str) -> None:
    in_chans = 1 if model_info(name).in_chans != 1 else 3
    model = _build(name, in_chans=in_chans).eval()
    with torch.no_grad():
        assert tuple(model(_input(name, in_chans=in_chans)).shape) == _logits_shape(name, model_info(name).num_classes)


@pytest.mark.parametrize("name", MODELS)
def test_fx_symbolic_trace(name: str) -> None:
    model, x = _shared(name).eval(), _input(name)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        got = traced(x)
        if name in REAL:
            torch.testing.assert_close(got, model(x), rtol=0, atol=0)
    assert tuple(got.shape) == _logits_shape(name, _num_classes(name))


@pytest.mark.parametrize("name", MODELS)
def test_feature_info(name: str) -> None:
    model = _shared(name).eval()
    modules = dict(model.named_modules())
    assert model.feature_info, f"{name} has an empty feature_info"
    outputs: dict[str, Tensor] = {}
    handles = []
    for info in model.feature_info:
        assert set(info) >= {"module", "num_chs", "reduction"}
        assert info["module"] in modules, f"feature_info names {info['module']!r}, not in named_modules()"

        def hook(module, args, output, key=info["module"]):
            outputs[key] = output

        handles.append(modules[info["module"]].register_forward_hook(hook))
    x = _input(name)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    reductions = [info["reduction"] for info in model.feature_info]
    assert reductions == sorted(reductions), f"reductions decrease: {reductions}"
    for info in model.feature_info:
        out = outputs[info["module"]]
        assert type(out) is Tensor and out.dim() == 4, f"{info['module']} gives no feature map"
        assert out.shape[1] == info["num_chs"], f"{info['module']}: {out.shape[1]} channels, says {info['num_chs']}"
        # ``reduction`` is the product of strides so far; valid convolutions may shrink the map
        # further, but a map larger than side / reduction means the claimed reduction is too big.
        # FCN's conv1_1 pads by 100 (Long et al. 2015): its maps are larger by design, and it says so
        side = x.shape[-1] + 2 * info.get("input_padding", 0)
        assert out.shape[-1] <= math.ceil(side / info["reduction"]) + 1, (
            f"{info['module']}: {out.shape[-1]}x{out.shape[-1]} map from {x.shape[-1]}, "
            f"says reduction {info['reduction']}"
        )


@pytest.mark.parametrize("name", REAL)
def test_backward_gives_every_parameter_a_finite_gradient(name: str) -> None:
    model, x, num_classes = _shared(name).train(), _input(name), _num_classes(name)
    model.zero_grad(set_to_none=True)
    target = _target(name, num_classes)
    out = model.forward_train(x)
    _check_output(out, name, num_classes)
    _loss(out, target).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", META_ONLY)
def test_meta_backward_reaches_every_parameter(name: str) -> None:
    num_classes = _num_classes(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes).train()
    out = model.forward_train(_input(name))
    _check_output(out, name, num_classes)
    _loss(out, _target(name, num_classes, device="meta")).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"


@pytest.mark.parametrize("name", MODELS)
def test_unknown_name_suggests_the_closest(name: str) -> None:
    typo = name + "x"
    assert typo not in MODELS, f"{typo} is registered: pick another typo"
    with pytest.raises(UnknownNameError) as err:
        create_model(typo)
    message = str(err.value)
    assert "did you mean " in message
    suggestions = message.split("did you mean ", 1)[1].split("?", 1)[0].split(", ")
    assert name in suggestions, f"{typo!r} suggests {suggestions}"


@pytest.mark.parametrize("name", MODELS)
def test_unknown_config_field_is_a_config_error(name: str) -> None:
    with torch.device("meta"), pytest.raises(ConfigError, match="no_such_option"):
        create_model(name, no_such_option=1)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])  # 0 is timm's "no classifier" (test_timm_conventions)
def test_bad_num_classes(bad) -> None:
    with torch.device("meta"), pytest.raises(ConfigError, match="num_classes"):
        create_model(MODELS[0], num_classes=bad)
