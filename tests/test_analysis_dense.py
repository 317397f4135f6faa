"""The analyzer on the layers of dense prediction: transposed ("deconvolution") and dilated
convolutions, in random stacks. Output shapes equal a real forward pass and PyTorch's documented
formula, MACs equal ``FlopCounterMode`` and the textbook count, and receptive fields equal the
gradient's support measured by brute force: a transposed convolution's field varies with the output
unit (``o mod stride``): the analyzer reports the largest, and ``start + o * jump`` is the centre of
the fields averaged over the phases. Layers after a transposed convolution (a fractional jump) are
approximate: which input units a window reaches then depends on its phase, which the analyzer's
(rf, jump, start) does not carry; no test claims exactness there.
"""

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

SETTINGS = dict(max_examples=int(os.environ.get("CNNLAB_HYPOTHESIS_EXAMPLES", 12)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@st.composite
def dense_stacks(draw, last_tconv_only: bool = False):
    specs = []
    n = draw(st.integers(1, 4))
    for i in range(n):
        k, d = draw(st.integers(1, 5)), draw(st.integers(1, 3))
        s = draw(st.integers(1, 3))
        if (i == n - 1 or not last_tconv_only) and draw(st.booleans()):
            p = draw(st.integers(0, d * (k - 1)))
            op = draw(st.integers(0, max(s, d) - 1))
            specs.append(dict(kind="tconv", k=k, s=s, p=p, d=d, op=op, out=draw(st.integers(1, 3))))
        else:
            specs.append(dict(kind="conv", k=k, s=s, p=draw(st.integers(0, 3)), d=d, op=0, out=draw(st.integers(1, 3))))
    return (draw(st.integers(1, 3)), draw(st.integers(8, 24)), draw(st.integers(8, 24))), specs


def out_size(n: int, sp: dict) -> int:
    """PyTorch's documented output sizes (Conv2d, ConvTranspose2d)."""
    k, s, p, d = sp["k"], sp["s"], sp["p"], sp["d"]
    if sp["kind"] == "tconv":
        return (n - 1) * s - 2 * p + d * (k - 1) + sp["op"] + 1
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def build(c: int, specs: list[dict], *, ones: bool = False) -> nn.Sequential:
    layers = []
    for sp in specs:
        cin, cout = (1, 1) if ones else (c, sp["out"])
        if sp["kind"] == "tconv":
            layer = nn.ConvTranspose2d(cin, cout, sp["k"], sp["s"], sp["p"], sp["op"], dilation=sp["d"])
        else:
            layer = nn.Conv2d(cin, cout, sp["k"], sp["s"], sp["p"], sp["d"])
        if ones:  # all-ones kernels, no bias: the gradient is non-zero exactly on the field
            layer = layer.double()
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        layers.append(layer)
        c = sp["out"]
    return nn.Sequential(*layers)


def shapes_of(size: tuple[int, int, int], specs: list[dict]) -> list[tuple[int, int, int]] | None:
    _, h, w = size
    out = []
    for sp in specs:
        h, w = out_size(h, sp), out_size(w, sp)
        if h < 1 or w < 1:
            return None
        out.append((sp["out"], h, w))
    return out


@settings(**SETTINGS)
@given(dense_stacks(), st.integers(1, 2))
def test_shapes_and_macs_equal_a_forward_the_formulas_and_flopcountermode(stack, batch):
    size, specs = stack
    shapes = shapes_of(size, specs)
    assume(shapes is not None)
    model = build(size[0], specs).eval()
    a = analyze(model, size, batch_size=batch)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        y = model(torch.randn(batch, *size))
    assert [r.output_shape for r in a.layers] == [(batch, *s) for s in shapes]
    assert a.layers[-1].output_shape == tuple(y.shape)
    assert a.total.flops == fc.get_total_flops()
    # textbook MACs: a convolution costs C_in k^2 per output value; a transposed convolution
    # multiplies each input value by the whole C_out x k x k kernel
    h, w = size[1:]
    cin = size[0]
    for sp, row, (cout, oh, ow) in zip(specs, a.layers, shapes):
        positions = h * w if sp["kind"] == "tconv" else oh * ow
        assert row.macs == batch * positions * cin * cout * sp["k"] ** 2, sp
        h, w, cin = oh, ow, cout


def _field_widths(size, specs):
    """Brute force: the hull of the gradient's support, along the width axis, for one output unit of
    each phase, with the analyzer's (rf, jump, start)."""
    last = analyze(build(size[0], specs), size).layers[-1]
    rf, jump, start = last.receptive_field, last.jump, last.start
    n = int(3 * max(rf) + 4 * max(1, max(jump)) + 40)
    surrogate = build(1, specs, ones=True)
    x = torch.ones(1, 1, n, n, dtype=torch.float64, requires_grad=True)
    y = surrogate(x)
    centre = y.shape[-1] // 2
    period = math.lcm(*[sp["s"] for sp in specs if sp["kind"] == "tconv"] or [1])
    widths, mids, centres = [], [], []
    for u in range(centre, centre + period):  # one unit of each phase along the width axis
        x.grad = None
        y[0, 0, :, u].sum().backward(retain_graph=True)  # the whole column: no row is a hole
        hit = (x.grad[0, 0] != 0).any(dim=0).nonzero().flatten()
        if hit.numel() == 0:  # a hole of a transposed convolution with kernel < stride: sees nothing
            continue
        lo, hi = hit.min().item(), hit.max().item() + 1
        widths.append(hi - lo)
        mids.append((lo + hi) / 2)
        centres.append(start[1] + u * jump[1])
    return rf[1], widths, mids, centres, period


@settings(**SETTINGS)
@given(dense_stacks(last_tconv_only=True))
def test_receptive_fields_equal_the_gradient_support_of_every_unit(stack):
    # convolutions (strided, dilated) and a transposed convolution at the end: exact
    size, specs = stack
    assume(shapes_of(size, specs) is not None)
    rf, widths, mids, centres, period = _field_widths(size, specs)
    assert widths and max(widths) == rf, (widths, rf, specs)
    if len(widths) == period:  # on average over the phases, the fields sit where the analyzer says
        assert sum(mids) / period == pytest.approx(sum(centres) / period), (mids, centres, specs)


def test_fcn_upsampling_layers_by_hand():
    # FCN-32s's upscore: 64x64 kernel, stride 32, on a 7x7 map of 21 scores
    up = nn.ConvTranspose2d(21, 21, 64, stride=32, bias=False)
    a = analyze(up, (21, 7, 7))
    row = a.layers[0]
    assert row.output_shape == (1, 21, 6 * 32 + 64, 6 * 32 + 64)
    assert row.macs == 7 * 7 * 21 * 21 * 64 * 64  # each input value times the whole kernel
    assert row.receptive_field == (2, 2) and row.jump == (1 / 32, 1 / 32)  # ceil(64 / 32) input units
