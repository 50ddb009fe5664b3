"""The app in headless Chromium: one click on an example gives a ranking and an explanation; Recognise
works with another model; the page is saved as a screenshot (and as docs/screenshot.png when
UPDATE_SCREENSHOT=1)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import served_app

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOT_LIMIT_BYTES = 300_000

if not Path(CHROMIUM).exists() and os.environ.get("CZSL_REQUIRE_BROWSER") != "1":
    pytest.skip("Chromium is not installed (CZSL_REQUIRE_BROWSER=1 makes this a failure)", allow_module_level=True)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app on the tiny backbone, served on 127.0.0.1."""
    with served_app(tmp_path_factory.mktemp("browser-app")) as (_, _, url):
        yield url


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def save_screenshot(page, target: Path) -> Path:
    """A full-page screenshot, reduced to a palette PNG so it stays small enough for the README."""
    raw = target.with_suffix(".raw.png")
    page.screenshot(path=str(raw), full_page=True)
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    raw.unlink()
    return target


def test_one_click_on_an_example_gives_an_explained_prediction(app_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(app_url)
    page.wait_for_selector("#predict-button", timeout=60_000)
    assert "predictions are random" in page.locator("#backbone-banner").inner_text()

    page.locator("#predict-examples").get_by_text("chelsea", exact=True).click()
    caption = page.locator("#predict-caption-0")
    caption.wait_for(state="visible", timeout=60_000)
    ranking = page.locator("#predict-ranking").inner_text()
    assert "%" in ranking and len(ranking.split()) >= 3, ranking
    assert "Local details or the big picture?" in caption.inner_text()
    assert page.locator("#predict-visual-0 img").count() == 1
    assert "no trained checkpoint yet" in page.locator("#predict-note").inner_text()
    screenshot = save_screenshot(page, tmp_path / "predict.png")

    # Recognise with another model: SVIP's kept and replaced patches replace MSCI's charts.
    page.locator("#predict-model input").click()
    page.get_by_role("option", name="SVIP").click()
    page.locator("#predict-button").click()
    page.wait_for_function(
        "() => (document.querySelector('#predict-caption-0')?.innerText || '').includes('Which parts of the photo')",
        timeout=60_000)
    assert "The evidence for each answer" in page.locator("#predict-caption-1").inner_text()
    assert not errors, errors

    assert Image.open(screenshot).size[0] >= 1280
    assert screenshot.stat().st_size < SCREENSHOT_LIMIT_BYTES
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(screenshot, ROOT / "docs" / "screenshot.png")
    page.close()
