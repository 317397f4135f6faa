"""The lectures' worked examples, with their numbers: lecture 003's 5x5 convolution and filter table,
lecture 002's output-size quiz and parameter counts, lecture 001's Toeplitz view, parameter sharing,
separable and chained filters, pyramids and translation equivariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.foundations import (
    CLASSIC_FILTERS,
    LECTURE_FILTERS,
    LocallyConnected2d,
    best_separable,
    circular_conv2d,
    compose_kernels,
    connection_params,
    conv2d_forward,
    conv_matrix,
    conv_output_size,
    equivariance_error,
    filter2d,
    gabor_bank,
    gaussian_pyramid,
    kernel_rank,
    laplacian_pyramid,
    log_kernel,
    maxpool2d_forward,
    reconstruct_laplacian,
    separable_multiplications,
    shift,
)


# --- lecture 003: "Convolution" slide: a 5x5 binary image and a 3x3 filter --------------------------
def test_lecture_003_worked_convolution():
    image = np.array([[1, 1, 1, 0, 0],
                      [0, 1, 1, 1, 0],
                      [0, 0, 1, 1, 1],
                      [0, 0, 1, 1, 0],
                      [0, 1, 1, 0, 0]], dtype=float)  # fmt: skip
    kernel = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=float)
    # the slide's feature map (the figure it reproduces shows the 3x3 "convolved feature" 4 3 4 / 2 4 3 / 2 3 4)
    expected = np.array([[4, 3, 4], [2, 4, 3], [2, 3, 4]], dtype=float)
    np.testing.assert_array_equal(conv2d_forward(image[None, None], kernel[None, None])[0, 0], expected)
    # top-left unit by hand: the 1s of the kernel pick image[0,0], [0,2], [1,1], [2,0], [2,2] = 1+1+1+0+1
    assert image[0, 0] + image[0, 2] + image[1, 1] + image[2, 0] + image[2, 2] == 4


def test_lecture_003_filter_table():
    rng = np.random.default_rng(0)
    img = rng.random((12, 12))
    inner = (slice(1, -1), slice(1, -1))  # away from the zero-padded border
    np.testing.assert_allclose(filter2d(img, LECTURE_FILTERS["identity"]), img, atol=0)
    # sharpen = identity + (-1) x the 4-neighbour Laplacian: 2 img - blur-like neighbours
    lap = filter2d(img, LECTURE_FILTERS["edge (4-neighbour)"])
    np.testing.assert_allclose(filter2d(img, LECTURE_FILTERS["sharpen"])[inner], (img - lap)[inner], atol=1e-12)
    # blurs keep a constant image constant (kernels sum to 1); edge detectors send it to 0
    flat = np.full((8, 8), 0.7)
    for name in ("box blur", "gaussian blur"):
        assert LECTURE_FILTERS[name].sum() == pytest.approx(1.0)
        np.testing.assert_allclose(filter2d(flat, LECTURE_FILTERS[name])[inner], 0.7)
    for name in ("edge (diagonal)", "edge (4-neighbour)", "edge (8-neighbour)"):
        np.testing.assert_allclose(filter2d(flat, LECTURE_FILTERS[name])[inner], 0.0, atol=1e-12)
    assert LECTURE_FILTERS["gaussian blur"][1, 1] == 4 / 16 and LECTURE_FILTERS["box blur"][0, 0] == 1 / 9
    assert list(LECTURE_FILTERS) == ["identity", "edge (diagonal)", "edge (4-neighbour)", "edge (8-neighbour)",
                                     "sharpen", "box blur", "gaussian blur"]


def test_filter2d_is_conv2d_with_same_padding():
    rng = np.random.default_rng(5)
    img = rng.normal(size=(9, 12))
    for k in (rng.normal(size=(3, 3)), rng.normal(size=(5, 3)), rng.normal(size=(1, 7))):
        want = F.conv2d(torch.tensor(img[None, None]), torch.tensor(k[None, None]), padding="same")[0, 0]
        np.testing.assert_allclose(filter2d(img, k), want.numpy(), rtol=1e-12, atol=1e-12)


def test_derivative_filters_find_edges_in_their_direction():
    step = np.zeros((9, 9))
    step[:, 5:] = 1.0  # a vertical edge
    inner = (slice(1, -1), slice(1, -1))
    assert np.abs(filter2d(step, CLASSIC_FILTERS["sobel x"])[inner]).max() == 4  # 1 + 2 + 1
    assert np.abs(filter2d(step, CLASSIC_FILTERS["sobel y"])[inner]).max() == 0
    assert np.abs(filter2d(step, CLASSIC_FILTERS["prewitt x"])[inner]).max() == 3
    assert log_kernel().sum() == pytest.approx(0.0, abs=1e-12)
    bank = gabor_bank(orientations=4, wavelengths=(6.0,))
    stripes = np.cos(2 * np.pi * np.arange(31) / 6.0)[None, :].repeat(31, 0)  # vertical stripes, period 6
    energy = {name: np.abs(filter2d(stripes, k)[8:-8, 8:-8]).mean() for name, k in bank.items()}
    assert max(energy, key=energy.get) == "gabor 0deg 6px"  # the grating that varies along x


# --- lecture 002: output volume sizes (N - F + 2P) / S + 1 and parameter counts -----------------------
@pytest.mark.parametrize(
    "n, f, stride, pad, expected",
    [
        (227, 11, 4, 0, 55),  # AlexNet CONV1: (227 - 11) / 4 + 1 = 55
        (55, 3, 2, 0, 27),  # POOL1: (55 - 3) / 2 + 1 = 27
        (27, 5, 1, 2, 27),  # CONV2: 256 5x5 filters at stride 1, pad 2
        (27, 3, 2, 0, 13),  # POOL2
        (13, 3, 1, 1, 13),  # CONV3, CONV4, CONV5: 3x3 at stride 1, pad 1
        (13, 3, 2, 0, 6),  # POOL3: [6x6x256]
        (224, 3, 1, 1, 224),  # VGG CONV3: padding keeps the resolution
        (224, 2, 2, 0, 112),  # VGG 2x2 MAX POOL stride 2
        (224, 7, 2, 3, 112),  # ZFNet CONV1 7x7 stride 2 (pad 3 as in ResNet's stem)
        (32, 5, 1, 0, 28),  # LeNet-5 C1: 5x5 filters at stride 1
        (28, 2, 2, 0, 14),  # LeNet-5 S2: 2x2 at stride 2
    ],
)
def test_output_size_formula_lecture_002(n, f, stride, pad, expected):
    assert conv_output_size(n, f, stride=stride, padding=pad) == expected
    y = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, f, f), stride=stride, padding=pad)
    assert y.shape[-1] == expected  # and PyTorch agrees


def test_dilation_output_size_and_lecture_001_receptive_fields():
    # dilated 3x3 kernels span 3, 5, 9 pixels at dilation 1, 2, 4 (Yu & Koltun's stack: fields 3, 7, 15)
    spans = [conv_output_size(9, 3, dilation=d) for d in (1, 2, 4)]
    assert spans == [7, 5, 1]
    assert 3 + (5 - 1) + (9 - 1) == 15


def test_parameter_counts_lecture_002():
    conv1 = connection_params((3, 227, 227), 96, 11, stride=4)
    assert conv1.output_shape == (96, 55, 55)
    assert conv1.convolutional == (11 * 11 * 3) * 96 == 34_848  # "35K"
    assert conv1.locally_connected == 34_848 * 55 * 55 == 105_415_200  # without sharing: 3,025x more
    assert conv1.fully_connected == (3 * 227 * 227) * (96 * 55 * 55) == 44_892_064_800
    vgg = [((3, 224, 224), 64, 1_728), ((64, 224, 224), 64, 36_864), ((64, 112, 112), 128, 73_728),
           ((128, 112, 112), 128, 147_456), ((256, 28, 28), 512, 1_179_648), ((512, 14, 14), 512, 2_359_296)]  # fmt: skip
    for shape, out, weights in vgg:  # the VGG-16 walk-through's "params: (3*3*C)*C'"
        assert connection_params(shape, out, 3, padding=1).convolutional == weights
    # lecture 002: three 3x3 layers 3 * (3^2 C^2) against one 7x7 layer 7^2 C^2
    c = 64
    three = 3 * connection_params((c, 56, 56), c, 3, padding=1).convolutional
    assert three == 27 * c * c < connection_params((c, 56, 56), c, 7, padding=3).convolutional == 49 * c * c


def test_parameters_per_filter_lecture_001():
    # "How many parameters does each filter have?" M x N x C^(l): 3x3 on a colour image = 27 of (a) 9 (b) 27 ...
    layer = connection_params((3, 32, 32), 96, 3, padding=1)
    assert layer.convolutional // 96 == 3 * 3 * 3 == 27
    rows = {name: n for name, n, _ in layer.rows()}
    assert rows["convolutional (shared)"] < rows["locally connected (unshared)"] < rows["fully connected"]


def test_locally_connected2d_params_and_equality_with_shared_weights():
    torch.manual_seed(0)
    lc = LocallyConnected2d(3, 5, 3, (7, 8), stride=2, padding=1)
    count = connection_params((3, 7, 8), 5, 3, stride=2, padding=1, bias=True).locally_connected
    assert sum(p.numel() for p in lc.parameters()) == count == (3 * 3 * 3) * (5 * 4 * 4) + 5 * 4 * 4
    conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1).double()
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    shared = LocallyConnected2d.from_conv(conv, (7, 8)).double()
    torch.testing.assert_close(shared(x), conv(x), rtol=1e-12, atol=1e-12)
    lc.double()
    assert not torch.allclose(lc(x)[..., 0, 0], lc(torch.roll(x, 2, -1))[..., 0, 1])  # not shared: not equivariant
    with pytest.raises(ValueError, match="built for"):
        lc(torch.zeros(1, 3, 8, 8, dtype=torch.float64))


# --- lecture 001: convolution as a (doubly block) Toeplitz matrix -----------------------------------
@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 1, 1)])
def test_toeplitz_matrix_equals_conv2d(stride, padding, dilation):
    rng = np.random.default_rng(stride + padding)
    w, x = rng.normal(size=(4, 3, 3, 3)), rng.normal(size=(3, 7, 9))
    m = conv_matrix(w, (7, 9), stride=stride, padding=padding, dilation=dilation)
    y = F.conv2d(torch.tensor(x[None]), torch.tensor(w), stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_allclose(m @ x.ravel(), y.numpy().ravel(), rtol=1e-12, atol=1e-12)


def test_toeplitz_matrix_is_doubly_block_toeplitz():
    k = np.arange(1.0, 10.0).reshape(3, 3)
    h, w = 5, 6
    m = conv_matrix(k, (h, w))  # (3*4) x (5*6): blocks of (4 outputs) x (6 inputs) per (output row, input row)
    oh, ow = 3, 4
    blocks = m.reshape(oh, ow, h, w).transpose(0, 2, 1, 3)  # [output row, input row] -> ow x w block
    for p in range(oh):
        for r in range(h):
            block = blocks[p, r]
            # the block depends only on r - p (block Toeplitz) and is the kernel row r - p sliding (Toeplitz)
            np.testing.assert_array_equal(block, blocks[0, r - p] if 0 <= r - p < h else 0)
            for i in range(1, ow):
                np.testing.assert_array_equal(block[i, 1:], block[i - 1, :-1])
            if 0 <= r - p < 3:
                np.testing.assert_array_equal(block[0, :3], k[r - p])
    assert np.count_nonzero(m) == 9 * oh * ow  # each output unit has the kernel's 9 weights, nothing else


# --- lecture 001: separable and chained filters ----------------------------------------------------
def test_separable_filters_rank_and_savings():
    sobel = best_separable(CLASSIC_FILTERS["sobel x"])
    assert kernel_rank(CLASSIC_FILTERS["sobel x"]) == 1 and sobel.error == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(sobel.vertical / sobel.vertical[0], [1, 2, 1])  # smoothing down the column
    np.testing.assert_allclose(sobel.horizontal / sobel.horizontal[0], [1, 0, -1])  # derivative along the row
    for name in ("gaussian blur", "box blur", "edge (diagonal)"):
        assert kernel_rank(LECTURE_FILTERS[name]) == 1
    for name in ("edge (4-neighbour)", "edge (8-neighbour)", "sharpen"):
        assert kernel_rank(LECTURE_FILTERS[name]) == 2
    # lecture 001: "9 coefficients, but only 6 degrees of freedom": a 3x1 then a 1x3 pass
    assert separable_multiplications(3, 3) == (9, 6)
    assert separable_multiplications(7, 7, out_h=100, out_w=100) == (490_000, 140_000)
    # two 1-D passes give the 2-D result for a rank-1 kernel
    img = np.random.default_rng(1).random((10, 11))
    g = LECTURE_FILTERS["gaussian blur"]
    two_pass = filter2d(filter2d(img, best_separable(g).vertical[:, None]), best_separable(g).horizontal[None, :])
    np.testing.assert_allclose(two_pass, filter2d(img, g), atol=1e-12)


def test_best_separable_is_optimal_eckart_young():
    k = LECTURE_FILTERS["edge (8-neighbour)"]
    approx = best_separable(k)
    s = np.linalg.svd(k, compute_uv=False)
    assert approx.error == pytest.approx(np.sqrt((s[1:] ** 2).sum()))
    assert approx.error == pytest.approx(np.linalg.norm(k - approx.kernel))
    rng = np.random.default_rng(0)
    for _ in range(200):  # no random rank-1 kernel near the optimum does better
        v = approx.vertical + 0.1 * rng.normal(size=3)
        h = approx.horizontal + 0.1 * rng.normal(size=3)
        assert np.linalg.norm(k - np.outer(v, h)) >= approx.error - 1e-12


def test_two_chained_3x3_are_one_5x5_with_18_degrees_of_freedom():
    rng = np.random.default_rng(2)
    k1, k2 = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    k = compose_kernels(k1, k2)
    assert k.shape == (5, 5)  # "25 coefficients, but only 18 degrees of freedom"
    x = rng.normal(size=(1, 1, 12, 12))
    chained = conv2d_forward(conv2d_forward(x, k1[None, None]), k2[None, None])
    np.testing.assert_allclose(chained, conv2d_forward(x, k[None, None]), atol=1e-12)
    # the 5x5 kernels reachable by two 3x3 span at most 18 dimensions: the Jacobian of (k1, k2) -> k
    jac = np.zeros((25, 18))
    for i in range(18):
        e = np.zeros(18)
        e[i] = 1e-6
        a, b = (np.concatenate([k1.ravel(), k2.ravel()]) + e).reshape(2, 3, 3)
        jac[:, i] = (compose_kernels(a, b) - k).ravel() / 1e-6
    assert np.linalg.matrix_rank(jac, tol=1e-4) == 17  # 18 minus the scale shared between k1 and k2


# --- pyramids ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (17, 9)])
def test_laplacian_pyramid_reconstructs_exactly(shape):
    img = np.random.default_rng(0).random(shape)
    pyr = laplacian_pyramid(img, 4)
    assert [p.shape for p in gaussian_pyramid(img, 4)] == [p.shape for p in pyr]
    assert pyr[1].shape == ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
    np.testing.assert_allclose(reconstruct_laplacian(pyr), img, rtol=0, atol=1e-12)
    assert min(np.abs(band).mean() for band in pyr[:-1]) > 1e-3  # the bands carry detail (not all zero)


def test_gaussian_pyramid_low_passes():
    rng = np.random.default_rng(0)
    noise = rng.random((64, 64))
    smooth = np.outer(np.sin(np.linspace(0, np.pi, 64)), np.sin(np.linspace(0, np.pi, 64)))
    band = lambda img: np.abs(laplacian_pyramid(img, 2)[0][4:-4, 4:-4]).mean()  # noqa: E731
    assert band(smooth) < 0.02 * band(noise)  # fine detail lives in L0; a smooth image has almost none
    g = gaussian_pyramid(noise, 3)
    assert g[1].std() < noise.std() and g[2].std() < g[1].std()


# --- translation equivariance ------------------------------------------------------------------------
def test_circular_conv_is_exactly_equivariant_and_stride_is_not():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 3, 16, 16)), rng.normal(size=(4, 3, 3, 3))
    for s in (1, 3, 7):
        np.testing.assert_allclose(circular_conv2d(shift(x, 0, s), w), shift(circular_conv2d(x, w), 0, s),
                                   rtol=0, atol=1e-12)
    assert equivariance_error(lambda v: circular_conv2d(v, w), x) < 1e-14
    # stride 2: a 2-pixel shift moves the output by one sample exactly; a 1-pixel shift cannot be matched
    strided = lambda v: circular_conv2d(v, w, stride=2)  # noqa: E731
    assert equivariance_error(strided, x, pixels=2, reduction=2) < 1e-14
    assert equivariance_error(strided, x, pixels=1, reduction=2) > 0.3
    pool = lambda v: maxpool2d_forward(v, 2)  # noqa: E731
    assert equivariance_error(pool, x, pixels=2, reduction=2) == 0.0
    assert equivariance_error(pool, x, pixels=1, reduction=2) > 0.1
    # zero padding breaks exact equivariance at the border
    assert equivariance_error(lambda v: conv2d_forward(v, w, padding=1), x) > 1e-3
