"""``cnnlab filters`` and ``cnnlab convolve``: good input writes the pictures, bad input is one line, exit 2."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def image(tmp_path):
    """A 40x48 picture: a bright square on a gradient (colour)."""
    y, x = np.mgrid[0:40, 0:48]
    rgb = np.stack([x / 47, y / 39, np.full_like(x, 0.3, dtype=float)], -1)
    rgb[10:30, 14:34] = 1.0
    path = tmp_path / "square.png"
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    return path


def test_filters_writes_a_grid_for_each_bank(image, tmp_path, capsys):
    for bank in ("lecture", "sobel", "gabor"):
        code, out, err = run(["filters", str(image), "--bank", bank, "--out", str(tmp_path / "grid")], capsys)
        assert code == 0, err
        png = tmp_path / "grid" / f"filters_{bank}.png"
        assert png.read_bytes()[:8] == PNG and f"saved to {png}" in out
    assert "sharpen" in out or "gabor 0deg 4px" in out
    code, out, _ = run(["filters", str(image), "--out", str(tmp_path / "grid"), "--force"], capsys)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith(("identity", "sharpen"))}
    assert " 1 " in lines["identity"] and " 2 " in lines["sharpen"]  # separable rank column
    code, out, _ = run(["filters", str(image), "--bank", "sobel", "--out", str(tmp_path / "pics" / "edges.png")], capsys)
    assert code == 0 and (tmp_path / "pics" / "edges.png").read_bytes()[:8] == PNG


def test_filters_refuses_to_overwrite_without_force(image, tmp_path, capsys):
    out_dir = tmp_path / "g"
    assert run(["filters", str(image), "--out", str(out_dir)], capsys)[0] == 0
    before = (out_dir / "filters_lecture.png").read_bytes()
    code, _, err = run(["filters", str(image), "--out", str(out_dir)], capsys)
    assert code == 2 and "exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert (out_dir / "filters_lecture.png").read_bytes() == before
    assert run(["filters", str(image), "--out", str(out_dir), "--force"], capsys)[0] == 0


def test_convolve_sharpen_matches_the_library(image, tmp_path, capsys):
    out = tmp_path / "sharp.png"
    code, text, err = run(["convolve", str(image), "--kernel", "[[0,-1,0],[-1,5,-1],[0,-1,0]]", "--out", str(out)],
                          capsys)
    assert code == 0, err
    assert "3x3 kernel (sum 1)" in text
    got = np.asarray(Image.open(out), dtype=float) / 255
    src = np.asarray(Image.open(image), dtype=float) / 255
    assert got.shape == src.shape
    # inside the flat bright square the sharpen kernel (sum 1) leaves the value unchanged
    np.testing.assert_allclose(got[15:25, 19:29], 1.0)
    # on the square's left edge the gradient side is pushed darker (5 x value - 4 neighbours)
    assert got[20, 13, 2] < src[20, 13, 2]
    # identity kernel: the image back
    out2 = tmp_path / "same.png"
    assert run(["convolve", str(image), "--kernel", "[[0,0,0],[0,1,0],[0,0,0]]", "--out", str(out2)], capsys)[0] == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out2)), np.asarray(Image.open(image)))


@pytest.mark.parametrize(
    "kernel, message",
    [
        ("[[0,-1,0],[-1,5,-1]", "not a JSON list"),
        ("[[1,2],[3]]", "rows have different lengths"),
        ("[]", "non-empty list"),
        ('[[1,"a"]]', "finite number"),
        ("[[1, NaN]]", "finite number"),
        ("5", "non-empty list"),
    ],
)
def test_convolve_malformed_kernel_is_one_line_exit_2(image, tmp_path, capsys, kernel, message):
    code, _, err = run(["convolve", str(image), "--kernel", kernel, "--out", str(tmp_path / "o.png")], capsys)
    assert code == 2 and message in err and "--kernel" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_bad_images_are_one_line_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.png"
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a picture\n")
    for argv, message in (
        (["filters", str(missing), "--out", str(tmp_path / "d")], "nope.png does not exist"),
        (["filters", str(not_image), "--out", str(tmp_path / "d")], "cannot read image"),
        (["convolve", str(not_image), "--kernel", "[[1]]", "--out", str(tmp_path / "x.png")], "cannot read image"),
        (["convolve", str(missing), "--kernel", "[[1]]", "--out", str(tmp_path / "x.png")], "nope.png does not exist"),
        (["filters", str(missing), "--bank", "nope"], "invalid choice"),
    ):
        code, _, err = run(argv, capsys)
        assert code == 2 and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists() and not (tmp_path / "x.png").exists()
