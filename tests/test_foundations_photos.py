"""Real photographs in the foundations: ``skimage:NAME`` wherever an image file is taken (``cnnlab filters``,
``convolve``, ``pyramid``), and the pyramids and translation equivariance measured on one.

The expectations come from scikit-image itself (its photographs' documented shapes, its own
``pyramid_gaussian``) and from SciPy's filtering, not from cnnlab.
"""

from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest
from PIL import Image

from cli_helpers import one_line, run_cli
from cnnlab.errors import DatasetError, UnknownNameError
from cnnlab.foundations import (
    PHOTOS,
    equivariance_error,
    gaussian_pyramid,
    image_stem,
    laplacian_pyramid,
    load_image,
    reconstruct_laplacian,
)
from cnnlab.foundations.filters import pyr_down

PNG = b"\x89PNG\r\n\x1a\n"

needs_skimage = pytest.mark.skipif(importlib.util.find_spec("skimage") is None,
                                   reason="scikit-image is not installed (pip install scikit-image)")


@pytest.fixture(scope="module")
def chelsea_grey():
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image is not installed (pip install scikit-image)")
    return load_image("skimage:chelsea", grey=True)


# --- loading -------------------------------------------------------------------------------------


@needs_skimage
def test_skimage_chelsea_is_the_300x451_colour_photograph():
    import skimage.data

    rgb = load_image("skimage:chelsea", grey=False)
    assert rgb.shape == (300, 451, 3)  # scikit-image's documentation: "Chelsea the cat", (300, 451, 3)
    np.testing.assert_array_equal(rgb, skimage.data.chelsea() / 255.0)
    grey = load_image("skimage:chelsea")
    assert grey.shape == (300, 451)
    # a photograph, not a drawing: hundreds of grey levels and real contrast
    assert len(np.unique(grey)) > 150 and grey.std() > 0.1
    assert load_image("skimage:chelsea", max_side=100).shape == (67, 100)  # 300 * 100 / 451 = 66.5


@needs_skimage
@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_every_listed_photograph_ships_with_scikit_image_as_described(name):
    import skimage.data

    pixels = getattr(skimage.data, name)()  # no download: the test machines have no network
    h, w = map(int, re.search(r"(\d+)x(\d+)", PHOTOS[name]).groups())
    assert pixels.shape[:2] == (h, w), PHOTOS[name]
    assert (pixels.ndim == 3) == ("colour" in PHOTOS[name])
    assert load_image(f"skimage:{name}", max_side=64).shape[:2] == tuple(round(s * 64 / max(h, w)) for s in (h, w))


def test_an_unknown_photograph_names_the_valid_ones():
    with pytest.raises(UnknownNameError) as info:
        load_image("skimage:chelse")
    message = str(info.value)
    assert "'skimage:chelse'" in message and "did you mean skimage:chelsea" in message
    assert all(name in message for name in PHOTOS) and "\n" not in message


def test_without_scikit_image_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # `import skimage.data` now raises ImportError
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(DatasetError, match=r"skimage:chelsea needs scikit-image.*pip install scikit-image"):
        load_image("skimage:chelsea")


def test_output_names_come_from_the_photograph_name():
    assert image_stem("skimage:chelsea") == "chelsea"
    assert image_stem("pics/cat.photo.png") == "cat.photo"


# --- the CLI ---------------------------------------------------------------------------------------


@needs_skimage
def test_filters_and_pyramid_write_a_png_for_a_photograph(tmp_path, capsys):
    rc, out, err = run_cli(["filters", "skimage:chelsea", "--bank", "sobel", "--max-side", "96",
                            "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    assert (tmp_path / "filters_sobel.png").read_bytes()[:8] == PNG and "96x64 pixels" in out
    rc, out, err = run_cli(["pyramid", "skimage:chelsea", "--max-side", "96", "--out", str(tmp_path)], capsys)
    assert rc == 0, err
    png = tmp_path / "chelsea_pyramid.png"
    assert png.read_bytes()[:8] == PNG and f"saved to {png}" in out
    sizes = re.findall(r"^\d +(\d+x\d+) ", out, flags=re.M)
    assert sizes == ["64x96", "32x48", "16x24", "8x12"]
    error = float(re.search(r"reconstructs the image to (\S+) ", out).group(1))
    assert error < 1e-12


@needs_skimage
def test_convolve_names_its_output_after_the_photograph(tmp_path, capsys, monkeypatch):
    import skimage.data

    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(["convolve", "skimage:chelsea", "--kernel", "[[0,0,0],[0,1,0],[0,0,0]]"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chelsea_convolved.png"]
    # the identity kernel gives the photograph back, pixel for pixel
    np.testing.assert_array_equal(np.asarray(Image.open("chelsea_convolved.png")), skimage.data.chelsea())
    rc, _, err = run_cli(["convolve", "skimage:chelsea", "--kernel", "[[1]]"], capsys)
    one_line(rc, err, "chelsea_convolved.png exists", "--force")


@needs_skimage
def test_pyramid_never_overwrites_without_force(tmp_path, capsys):
    out = tmp_path / "pyr.png"
    argv = ["pyramid", "skimage:coins", "--levels", "3", "--max-side", "64", "--out", str(out)]
    assert run_cli(argv, capsys)[0] == 0
    before = out.read_bytes()
    rc, _, err = run_cli([*argv[:-2], "--grey", "--out", str(out)], capsys)
    one_line(rc, err, f"output {out} exists", "--force")
    assert out.read_bytes() == before
    assert run_cli([*argv, "--force"], capsys)[0] == 0


@pytest.mark.parametrize("command", [["filters"], ["convolve", "--kernel", "[[1]]"], ["pyramid"]])
def test_an_unknown_photograph_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli([command[0], "skimage:cat_picture", *command[1:]], capsys)
    one_line(rc, err, "unknown photograph 'skimage:cat_picture'", "chelsea", "astronaut")
    assert list(tmp_path.iterdir()) == []


def test_bad_pyramid_arguments_are_one_line(tmp_path, capsys):
    for argv, needle in ((["--levels", "1"], "--levels must be at least 2"),
                         (["--max-side", "4"], "--max-side must be at least 8")):
        rc, _, err = run_cli(["pyramid", "skimage:chelsea", "--out", str(tmp_path / "p.png"), *argv], capsys)
        one_line(rc, err, needle)
    assert list(tmp_path.iterdir()) == []


# --- pyramids and equivariance on the photograph -------------------------------------------------------


def test_pyramid_levels_halve_like_scikit_images(chelsea_grey):
    from skimage.transform import pyramid_gaussian

    ours = [g.shape for g in gaussian_pyramid(chelsea_grey, 5)]
    theirs = [g.shape for g in pyramid_gaussian(chelsea_grey, max_layer=4, downscale=2)]
    assert ours == theirs == [(300, 451), (150, 226), (75, 113), (38, 57), (19, 29)]
    assert [b.shape for b in laplacian_pyramid(chelsea_grey, 5)] == ours


def test_a_pyramid_step_is_the_binomial_blur_then_every_other_pixel(chelsea_grey):
    from scipy import ndimage

    taps = np.array([1, 4, 6, 4, 1]) / 16
    # NumPy's "reflect" padding (the edge pixel not repeated) is SciPy's "mirror"
    expected = ndimage.convolve(chelsea_grey, np.outer(taps, taps), mode="mirror")[::2, ::2]
    np.testing.assert_allclose(pyr_down(chelsea_grey), expected, atol=1e-12)


@needs_skimage
def test_the_laplacian_pyramid_gives_the_colour_photograph_back():
    rgb = load_image("skimage:chelsea", grey=False)
    bands = laplacian_pyramid(rgb, 4)
    assert [b.shape for b in bands] == [(300, 451, 3), (150, 226, 3), (75, 113, 3), (38, 57, 3)]
    np.testing.assert_allclose(reconstruct_laplacian(bands), rgb, atol=1e-12)
    # the band-pass levels hold the detail, not the picture: far less energy than the photograph
    assert np.abs(bands[0]).mean() < 0.1 * rgb.mean()
    # colour is filtered channel by channel
    np.testing.assert_allclose(pyr_down(rgb)[..., 1], pyr_down(rgb[..., 1]), atol=0)


def test_blurring_before_subsampling_nearly_halves_the_change_a_one_pixel_shift_makes(chelsea_grey):
    x = chelsea_grey[:, :450][None, None]  # even width: on the torus the stride-2 grid closes up
    subsample = lambda v: v[..., ::2, ::2]  # noqa: E731
    pyramid_step = lambda v: pyr_down(v[0, 0], boundary="circular")[None, None]  # noqa: E731
    for f in (subsample, pyramid_step):
        assert equivariance_error(f, x, pixels=2, reduction=2) < 1e-12
    aliased = equivariance_error(subsample, x, pixels=1, reduction=2)
    blurred = equivariance_error(pyramid_step, x, pixels=1, reduction=2)
    assert aliased > 0.05 and blurred < 0.6 * aliased
