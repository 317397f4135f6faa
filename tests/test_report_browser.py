"""`cnnlab report` pages in a real browser: headless Chromium (Debian's `chromium`, which `.ci/run`
installs) renders them; the DOM holds the key numbers and the hostile class name as text, the page
is not blank at desktop and phone widths, and the console shows no JavaScript error."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from cnnlab.viz.html_report import write_report
from test_report_html import XSS, make_run

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: `apt-get install -y chromium` "
                                                         "(.ci/run installs it when it runs as root)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-extensions", "--enable-logging=stderr", "--v=0"]


def chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    make_run(root / "lenet5-run")
    make_run(root / "other-run", finished=False)
    index, *_ = write_report(root)
    return index, root / "lenet5-run" / "report.html"


def test_dom_has_the_numbers_and_shows_the_script_class_name_as_text(pages):
    _, run_page = pages
    done = chromium("--dump-dom", run_page.as_uri())
    dom = done.stdout
    assert "95.12%" in dom and "60,850" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and XSS not in dom
    assert dom.count("<script") == 1  # the page's own table sorter, nothing injected


@pytest.mark.parametrize("width, height", [(1280, 900), (390, 844)])
def test_pages_are_not_blank_at_desktop_and_phone_widths(pages, tmp_path, width, height):
    for page in pages:
        shot = tmp_path / f"{page.parent.name}-{width}.png"
        chromium(f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri())
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert pixels.shape == (height, width)
        assert pixels.std() > 10, f"{page} looks blank at {width}px"


def test_console_shows_no_javascript_error(pages):
    for page in pages:
        log = chromium("--dump-dom", page.as_uri()).stderr
        errors = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
        assert not errors, errors
