"""Regenerate the README's screenshots: the Predict tab on first load (an example already answered) on a
laptop (1280 px) and the first screen of a phone (390 x 844), and the Compare tab, in headless Chromium.

    python docs/make_screenshots.py [--backbone SPEC] [--out docs] [--chromium PATH]

With the default backbone the answers are real; offline it falls back to the random test backbone and
the screenshots then show the app's demo-mode stamp."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
VIEWPORTS = {"screenshot.png": {"width": 1280, "height": 800}, "screenshot-phone.png": {"width": 390, "height": 844},
             "screenshot-compare.png": {"width": 1280, "height": 800}}
HEIGHT_LIMIT = {"screenshot.png": 900, "screenshot-phone.png": 844,  # the phone's first screen, as a visitor sees it
                "screenshot-compare.png": 900}


def default_chromium() -> str:
    """Debian's chromium (or chromium-browser) on PATH."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def save_palette_png(raw: Path, target: Path, colours: int = 160) -> Path:
    """A screenshot reduced to a palette PNG, small enough to keep in the repository."""
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    raw.unlink()
    return target


def shoot(url: str, out: Path, chromium: str) -> list[Path]:
    """Open the app at each viewport, wait for the first answer and save the screenshots."""
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for name, viewport in VIEWPORTS.items():
                page = browser.new_page(viewport=viewport, device_scale_factor=1)
                page.goto(url)
                page.wait_for_selector("#predict-answer .czsl-headline", timeout=120_000)
                page.wait_for_function("() => document.querySelector('#predict-visual-0 img')?.complete",
                                       timeout=60_000)
                if name == "screenshot-compare.png":
                    page.locator("#predict-compare").click()
                    page.wait_for_function("() => (document.querySelector('#compare-headline')?.innerText || '')"
                                           ".includes('best guess')", timeout=120_000)
                page.wait_for_timeout(800)  # let the images finish painting
                raw = out / (name + ".raw.png")
                height = min(HEIGHT_LIMIT[name], page.evaluate("document.documentElement.scrollHeight"))
                page.screenshot(path=str(raw), clip={"x": 0, "y": 0, "width": viewport["width"], "height": height},
                                full_page=True)
                written.append(save_palette_png(raw, out / name))
                page.close()
        finally:
            browser.close()
    return written


def main() -> None:
    """Serve the app on a free port, take the screenshots, stop the app."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None, help="backbone spec (default: the app's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs (default docs/)")
    parser.add_argument("--chromium", default=default_chromium(), help="Chromium executable")
    args = parser.parse_args()
    os.environ.setdefault("CZSL_WEIGHTS_DIR", tempfile.mkdtemp(prefix="czsl-screens-"))  # no local checkpoints
    from czsl_models.ui import create_app, launch_options

    demo, state = create_app(args.backbone)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for path in shoot(f"http://127.0.0.1:{port}/", args.out, args.chromium):
            print(path)
    finally:
        demo.close()


if __name__ == "__main__":
    main()
