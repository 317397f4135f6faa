"""``cnnlab explore`` in a real browser: Playwright drives Debian's Chromium (the system one, no download).
A digit drawn with the mouse gets the class that ``cnnlab predict`` gives the canvas's pixels; clicking a
unit shows its map and its receptive field on the input; a corrupt upload is answered with a message; the
page is not blank at desktop and phone widths and logs no console error."""

from __future__ import annotations

import base64
import io
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from cnnlab.explore import load_explorers, make_server
from cnnlab.export import Predictor
from test_explore import make_run

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

TIMEOUT_MS = 90_000  # a wait on a machine busy with other jobs; an idle one answers in well under a second
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: `apt-get install -y chromium` (.ci/run installs it "
                                                "when it runs as root)"),
    pytest.mark.skipif(sync_playwright is None, reason="needs Playwright for Python: pip install 'cnnlab[test]'"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("explore-browser") / "run")
    server = make_server(load_explorers(runs=[str(run)], log=lambda m: None), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser, server.url, run
        browser.close()
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(site):
    """A fresh page of the explorer at desktop width, with its console errors collected in ``page.errors``."""
    browser, url, _ = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url)
    settle(page)
    yield page
    page.close()


def settle(page) -> None:  # noqa: ANN001
    """Wait until the page shows the answers for its latest input (its script has started: it counts them)."""
    page.wait_for_selector("body[data-requested]", state="attached")
    n = page.locator("body").get_attribute("data-requested")
    page.wait_for_selector(f'body[data-done="{n}"][data-state="idle"]', state="attached")


def draw_seven(page) -> None:  # noqa: ANN001
    box = page.locator("#canvas").bounding_box()
    x, y, s = box["x"], box["y"], box["width"] / 280

    def at(px: float, py: float) -> tuple[float, float]:
        return x + px * s, y + py * s

    page.mouse.move(*at(75, 70))
    page.mouse.down()
    page.mouse.move(*at(205, 70), steps=8)
    page.mouse.move(*at(125, 225), steps=8)
    page.mouse.up()
    settle(page)


def canvas_pixels(page) -> Image.Image:  # noqa: ANN001
    url = page.evaluate("() => document.getElementById('canvas').toDataURL('image/png')")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_a_drawn_digit_gets_the_class_cnnlab_predict_gives_the_canvas_pixels(page, site):
    draw_seven(page)
    image = canvas_pixels(page)
    ink = np.asarray(image.convert("L"))
    assert ink.max() == 255 and ink.min() == 0 and 0.03 < (ink > 127).mean() < 0.3  # white strokes on black
    expected = Predictor.from_run(site[2], backend="eager", cache=False).predict(image, top_k=5)[0].top
    rows = page.locator("ol.top li")
    assert rows.count() == 5
    assert [rows.nth(i).get_attribute("data-index") for i in range(5)] == [str(i) for _, i, _ in expected]
    assert rows.first.locator(".p").inner_text() == f"{100 * expected[0][2]:.1f}%"
    assert not page.errors


def test_clicking_a_unit_shows_its_map_and_its_receptive_field_on_the_input(page):
    draw_seven(page)
    page.locator('canvas.fmap[data-layer="c3"][data-unit="4"]').click()
    page.wait_for_selector(".unit:not([hidden]) canvas.unit-map")
    page.wait_for_selector("figure.patch")
    size = page.evaluate("() => { var c = document.querySelector('canvas.unit-map'); return [c.width, c.height]; }")
    assert size == [10, 10]  # C3's maps are 10x10
    box = page.locator(".rf-box")
    assert box.count() == 1
    style = box.get_attribute("style")
    # C3's field is 14 px of the 32 px input: 43.75% wide unless clipped at the border.
    width = float(style.split("width:")[1].split("%")[0])
    assert 0 < width <= 43.75 + 1e-6
    assert page.locator("figure.patch").count() == 9
    assert "c3, unit 4" in page.locator(".unit-title").inner_text()
    # A top patch's image, clicked, becomes the input: the unit's strongest value is then its top value.
    first = page.locator("figure.patch").first
    index, value = first.locator("figcaption").inner_text().lstrip("#").split(": ")
    first.click()
    page.wait_for_selector(f'#input-note:has-text("image #{index} ")')
    settle(page)
    strongest = float(page.locator(".unit-caption").inner_text().split("strongest ")[1].split()[0])
    assert strongest == pytest.approx(float(value), abs=0.01)  # uint8 pixels and 2 decimals in the caption
    assert not page.errors


def test_a_corrupt_upload_shows_the_servers_message(page):
    page.set_input_files("#upload", files=[{"name": "broken.png", "mimeType": "image/png",
                                            "buffer": b"\x89PNG\r\n\x1a\n this is not an image"}])
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert "broken.png" in message.inner_text() and "not an image" in message.inner_text()
    draw_seven(page)  # the page goes on: drawing again gives classes and clears the message
    assert message.is_hidden() and page.locator("ol.top li").count() == 5
    # Chromium logs the 400 itself; the page's script raised nothing.
    assert [e for e in page.errors if "status of 400" not in e] == []


@pytest.mark.parametrize("width, height", [(1280, 900), (390, 844)])
def test_screenshots_at_desktop_and_phone_widths_show_the_page_without_console_errors(site, tmp_path, width, height):
    browser, url, _ = site
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url)
        settle(page)
        draw_seven(page)
        page.locator('canvas.fmap[data-layer="c1"][data-unit="0"]').click()
        page.wait_for_selector(".rf-box")
        page.locator(".why-go").click()
        page.wait_for_selector('.why-caption:has-text("for class")')
        shot = tmp_path / f"explore-{width}.png"
        page.screenshot(path=str(shot))
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert pixels.shape == (height, width) and pixels.std() > 10
        overflow = page.evaluate("() => document.documentElement.scrollWidth")
        assert overflow <= width, f"the page is {overflow} px wide at a {width} px window"
    finally:
        page.close()
    assert not errors, errors
