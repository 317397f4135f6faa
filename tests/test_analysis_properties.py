"""Property tests: on random stacks of convolutions (with dilation, strides, groups, non-square
kernels), poolings, residual and multi-branch (Inception-like) blocks, the analyzer's output shapes,
parameters and MACs equal a real forward pass, the textbook formulas and ``FlopCounterMode``, and
its receptive fields equal a brute-force measurement of the gradient's support."""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.analysis import analyze

# 20 examples keep the suite inside its time budget; CNNLAB_HYPOTHESIS_EXAMPLES=500 for a deeper run
SETTINGS = dict(max_examples=int(os.environ.get("CNNLAB_HYPOTHESIS_EXAMPLES", 20)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ---------------------------------------------------------------- stacks as data
def _out(n: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    """PyTorch's output size (Conv2d / MaxPool2d / AvgPool2d documentation)."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


@st.composite
def layer_specs(draw, cin: int, ceil: bool):
    kind = draw(st.sampled_from(["conv", "conv", "max", "avg", "res", "branch"]))
    if kind == "conv":
        k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        out = draw(st.integers(1, 4))
        groups = cin if (out % cin == 0 and draw(st.booleans())) else 1
        return dict(kind="conv", k=k, s=s, p=p, d=d, out=out, groups=groups, bias=draw(st.booleans()))
    if kind in ("max", "avg"):
        k = draw(st.integers(1, 3))
        return dict(kind=kind, k=k, s=draw(st.integers(1, 3)), p=draw(st.integers(0, k // 2)),
                    d=draw(st.integers(1, 2)) if kind == "max" else 1, ceil=ceil and draw(st.booleans()))
    if kind == "res":
        return dict(kind="res", k=draw(st.sampled_from([1, 3, 5])), d=draw(st.integers(1, 2)))
    ks = draw(st.lists(st.sampled_from([1, 3, 5]), min_size=2, max_size=3))
    return dict(kind="branch", ks=ks, outs=[draw(st.integers(1, 3)) for _ in ks], pool=draw(st.booleans()))


@st.composite
def stacks(draw, ceil: bool = True):
    c = draw(st.integers(1, 3))
    size = (c, draw(st.integers(10, 40)), draw(st.integers(10, 40)))
    specs, cin = [], c
    for _ in range(draw(st.integers(1, 4))):
        spec = draw(layer_specs(cin, ceil))
        specs.append(spec)
        cin = spec["out"] if spec["kind"] == "conv" else (
            sum(spec["outs"]) + (cin if spec["pool"] else 0) if spec["kind"] == "branch" else cin)
    return size, specs


def expected_shapes(size: tuple[int, int, int], specs: list[dict]) -> list[tuple[int, int, int]] | None:
    """Each layer's (C, H, W) by the documented formulas; None if some size drops below 1."""
    c, h, w = size
    shapes = []
    for sp in specs:
        if sp["kind"] == "conv":
            c = sp["out"]
            h = _out(h, sp["k"][0], sp["s"][0], sp["p"][0], sp["d"][0])
            w = _out(w, sp["k"][1], sp["s"][1], sp["p"][1], sp["d"][1])
        elif sp["kind"] in ("max", "avg"):
            h = _out(h, sp["k"], sp["s"], sp["p"], sp["d"], sp["ceil"])
            w = _out(w, sp["k"], sp["s"], sp["p"], sp["d"], sp["ceil"])
        elif sp["kind"] == "branch":
            c = sum(sp["outs"]) + (c if sp["pool"] else 0)
        if h < 1 or w < 1:
            return None
        shapes.append((c, h, w))
    return shapes


class Residual(nn.Module):
    def __init__(self, c: int, k: int, d: int, conv=None) -> None:
        super().__init__()
        self.conv = conv or nn.Conv2d(c, c, k, padding=d * (k - 1) // 2, dilation=d)

    def forward(self, x):
        return x + self.conv(x)


class Branches(nn.Module):
    def __init__(self, convs: list[nn.Module], pool: nn.Module | None, combine: str) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.pool = pool
        self.combine = combine

    def forward(self, x):
        outs = [conv(x) for conv in self.convs] + ([self.pool(x)] if self.pool is not None else [])
        return torch.cat(outs, 1) if self.combine == "cat" else sum(outs)


def build(size: tuple[int, int, int], specs: list[dict]) -> nn.Sequential:
    layers, c = [], size[0]
    for sp in specs:
        if sp["kind"] == "conv":
            layers.append(nn.Conv2d(c, sp["out"], sp["k"], sp["s"], sp["p"], sp["d"], sp["groups"], sp["bias"]))
            c = sp["out"]
        elif sp["kind"] == "max":
            layers.append(nn.MaxPool2d(sp["k"], sp["s"], sp["p"], sp["d"], ceil_mode=sp["ceil"]))
        elif sp["kind"] == "avg":
            layers.append(nn.AvgPool2d(sp["k"], sp["s"], sp["p"], ceil_mode=sp["ceil"]))
        elif sp["kind"] == "res":
            layers.append(Residual(c, sp["k"], sp["d"]))
        else:
            convs = [nn.Conv2d(c, o, k, padding=k // 2) for k, o in zip(sp["ks"], sp["outs"])]
            layers.append(Branches(convs, nn.MaxPool2d(3, 1, 1) if sp["pool"] else None, "cat"))
            c = sum(sp["outs"]) + (c if sp["pool"] else 0)
    return nn.Sequential(*layers)


def build_surrogate(specs: list[dict]) -> nn.Sequential:
    """One channel, all-ones kernels, every pooling replaced by a sum over the same window.

    A receptive field is the set of pixels that can change a unit. The gradient of a max pool goes
    to one pixel per window (input-dependent), so we measure on a network where each window sums
    instead; ones everywhere leave no cancellations, so the gradient is non-zero exactly on the field.
    """

    def ones(k, s=1, p=0, d=1) -> nn.Conv2d:
        conv = nn.Conv2d(1, 1, k, s, p, d, bias=False).double()
        nn.init.ones_(conv.weight)
        return conv

    layers = []
    for sp in specs:
        if sp["kind"] == "conv":
            layers.append(ones(sp["k"], sp["s"], sp["p"], sp["d"]))
        elif sp["kind"] in ("max", "avg"):
            layers.append(ones(sp["k"], sp["s"], sp["p"], sp["d"]))
        elif sp["kind"] == "res":
            layers.append(Residual(1, sp["k"], sp["d"], conv=ones(sp["k"], 1, sp["d"] * (sp["k"] - 1) // 2, sp["d"])))
        else:
            layers.append(Branches([ones(k, 1, k // 2) for k in sp["ks"]], ones(3, 1, 1) if sp["pool"] else None,
                                   "sum"))
    return nn.Sequential(*layers)


def conv_macs(spec: dict, cin: int, shape: tuple[int, int, int], batch: int) -> int:
    """Textbook MACs: every output value costs (C_in / groups) k_h k_w multiply-accumulates."""
    c, h, w = shape
    return batch * c * h * w * (cin // spec["groups"]) * spec["k"][0] * spec["k"][1]


# ---------------------------------------------------------------- properties
@settings(**SETTINGS)
@given(stacks(), st.integers(1, 2))
def test_shapes_params_and_macs_equal_a_real_forward_and_flopcountermode(stack, batch):
    size, specs = stack
    shapes = expected_shapes(size, specs)
    if shapes is None:
        model = build(size, specs)
        with pytest.raises(ValueError, match=r"layer '\d+"):
            analyze(model, size, batch_size=batch)
        return
    torch.manual_seed(0)
    model = build(size, specs).eval()
    a = analyze(model, size, batch_size=batch)

    outputs, leaf = {}, {n: m for n, m in model.named_modules() if next(m.children(), None) is None}
    for name, m in leaf.items():
        m.register_forward_hook(lambda mod, i, o, name=name: outputs.setdefault(name, o.shape) and None)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        y = model(torch.randn(batch, *size))
    per_module = {k.partition(".")[2]: sum(v.values()) for k, v in fc.get_flop_counts().items()}

    rows = {r.name: r for r in a.layers}
    for name, shape in outputs.items():  # every leaf module: same shape, params, FLOPs
        assert rows[name].output_shape == tuple(shape), name
        assert rows[name].params == sum(p.numel() for p in leaf[name].parameters()), name
        assert rows[name].flops == per_module.get(name, 0) == 2 * rows[name].macs, name
    top = a.fold(1).layers
    assert [r.output_shape for r in top] == [(batch, *s) for s in shapes]  # the formulas
    assert top[-1].output_shape == tuple(y.shape)
    cin = size[0]
    for spec, row, shape in zip(specs, top, shapes):
        if spec["kind"] == "conv":
            assert row.macs == conv_macs(spec, cin, shape, batch)
        elif spec["kind"] in ("max", "avg"):
            assert row.macs == 0
        cin = shape[0]
    assert a.total.flops == fc.get_total_flops()
    assert a.total.params == sum(p.numel() for p in model.parameters())


@settings(**SETTINGS)
@given(stacks(ceil=False))
def test_receptive_field_equals_the_support_of_the_gradient(stack):
    size, specs = stack
    assume(expected_shapes(size, specs) is not None)
    a = analyze(build(size, specs), size)
    last = a.layers[-1]
    rf, jump, start = last.receptive_field, last.jump, last.start
    assert a.total.receptive_field == rf
    # measure on an input large enough that a central unit's whole field lies inside it
    n = int(3 * max(rf) + 4 * max(jump) + 64)
    surrogate = build_surrogate(specs)
    x = torch.ones(1, 1, n, n, dtype=torch.float64, requires_grad=True)
    y = surrogate(x)
    u = (y.shape[-2] // 2, y.shape[-1] // 2)
    y[0, 0, u[0], u[1]].backward()
    support = x.grad[0, 0] != 0
    for axis in range(2):
        hit = support.any(dim=1 - axis).nonzero().flatten()
        lo = start[axis] - rf[axis] / 2 + u[axis] * jump[axis]
        assert 0 < lo and lo + rf[axis] < n  # the field is inside the measured image
        assert (hit.min().item(), hit.max().item() + 1) == (lo, lo + rf[axis]), (axis, specs)


@settings(**SETTINGS)
@given(stacks(), st.integers(1, 6))
def test_a_kernel_larger_than_its_input_is_named(stack, extra):
    size, specs = stack
    shapes = expected_shapes(size, specs)
    assume(shapes is not None)
    c, h, w = shapes[-1]
    model = build(size, specs)
    bad = len(model)
    model.append(nn.Conv2d(c, 2, (h + extra, 1)))  # no padding: taller than its input
    with pytest.raises(ValueError, match=rf"layer '{bad}' \(Conv2d\).*Kernel size can't be greater"):
        analyze(model, size)


@settings(**SETTINGS)
@given(stacks(), st.sampled_from(["out_channels", "in_channels"]))
def test_non_positive_channels_are_named(stack, field):
    size, specs = stack
    shapes = expected_shapes(size, specs)
    assume(shapes is not None)
    model = build(size, specs)
    c = shapes[-1][0]
    bad = len(model)
    with pytest.warns(UserWarning, match="zero-element"):
        model.append(nn.Conv2d(c, 0, 1) if field == "out_channels" else nn.Conv2d(0, 2, 1))
    with pytest.raises(ValueError, match=rf"layer '{bad}' \(Conv2d\) has {field}=0"):
        analyze(model, size)
