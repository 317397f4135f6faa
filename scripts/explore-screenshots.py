"""The screenshots of docs/explore.md, and the time from lifting the pen to the page's new answers.

    cnnlab train lenet5 --out runs/lenet5-docs
    cnnlab train lenet5_relu --epochs 3 --out runs/lenet5-relu-docs
    python scripts/explore-screenshots.py runs/lenet5-docs runs/lenet5-relu-docs docs/

Needs Playwright for Python and a Chromium (`--chromium`, default /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import io
import threading
import time

from PIL import Image
from playwright.sync_api import sync_playwright

from cnnlab.explore import load_explorers, make_server


def serve(runs: list[str]):  # noqa: ANN201
    server = make_server(load_explorers(runs=runs, log=print), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def settle(page) -> None:  # noqa: ANN001
    page.wait_for_selector("body[data-requested]", state="attached")
    n = page.locator("body").get_attribute("data-requested")
    page.wait_for_selector(f'body[data-done="{n}"][data-state="idle"]', state="attached")


def draw_seven(page) -> float:  # noqa: ANN001
    """Draw a 7; the seconds from lifting the pen to the answers for it."""
    box = page.locator("#canvas").bounding_box()
    x, y, s = box["x"], box["y"], box["width"] / 280
    page.mouse.move(x + 80 * s, y + 75 * s)
    page.mouse.down()
    page.mouse.move(x + 200 * s, y + 75 * s, steps=8)
    page.mouse.move(x + 130 * s, y + 215 * s, steps=8)
    start = time.perf_counter()
    page.mouse.up()
    settle(page)
    return time.perf_counter() - start


def save(path: str, png: bytes, width: int) -> None:
    """A small PNG: scaled to ``width`` and reduced to 128 colours."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    img.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("other")
    ap.add_argument("out")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        server = serve([args.run])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server.url)
        settle(page)
        times = [draw_seven(page)]
        for _ in range(4):
            page.locator("#clear").click()
            settle(page)
            times.append(draw_seven(page))
        print("pen lifted to answers shown (s):", " ".join(f"{t:.3f}" for t in times))
        print("top class:", page.locator("ol.top li").first.get_attribute("data-class"))
        page.locator('canvas.fmap[data-layer="c3"][data-unit="1"]').click()
        page.wait_for_selector("figure.patch")
        page.select_option(".why-method", "gradcam")
        page.locator(".why-go").click()
        page.wait_for_selector('.why-caption:has-text("for class")')
        page.locator("details.steps summary").click()
        save(f"{args.out}/explore-desktop.png", page.screenshot(full_page=True), 960)
        page.set_viewport_size({"width": 390, "height": 844})
        time.sleep(0.3)
        save(f"{args.out}/explore-phone.png", page.screenshot(), 390)
        server.shutdown()
        server = serve([args.run, args.other])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server.url)
        settle(page)
        draw_seven(page)
        save(f"{args.out}/explore-compare.png", page.screenshot(clip={"x": 0, "y": 0, "width": 1280, "height": 760}), 960)
        browser.close()


if __name__ == "__main__":
    main()
