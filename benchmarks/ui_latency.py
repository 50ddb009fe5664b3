"""Page to first answer and click to answer, in headless Chromium, for two checkouts of the app measured in
one run (rounds alternate between them, so both see the same machine load).

    python benchmarks/ui_latency.py --before PATH_TO_OTHER_CHECKOUT [--after .] [--rounds 5] [--backbone tiny]

Page to first answer: from navigation until the answered example's headline is on screen. Click to answer: from
pressing Recognise (each time with other words) until the new answer card replaces the old one; click to its
picture: until the first picture of why is the new answer's. Prints medians and after/before ratios."""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
WORD_LISTS = ("wet, dry", "old, new, shiny", "sleeping, sitting, standing, hot")
SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from czsl_models.ui import create_app, launch_options
demo, state = create_app({backbone!r})
demo.launch(server_name="127.0.0.1", server_port={port}, prevent_thread_lock=True, quiet=True, **launch_options())
print("READY", flush=True)
while True:
    time.sleep(3600)
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(root: Path, backbone: str) -> tuple[subprocess.Popen, str]:
    """The app of one checkout in its own process, with empty weights and caches; returns it and its URL."""
    port = free_port()
    scratch = Path(tempfile.mkdtemp(prefix="czsl-latency-"))
    env = {**os.environ, "CZSL_WEIGHTS_DIR": str(scratch / "weights"), "CZSL_DATA_DIR": str(scratch / "data"),
           "CZSL_CACHE_DIR": str(scratch / "cache"), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(root), backbone=backbone, port=port)],
                               cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if "READY" in line:
            break
    return process, f"http://127.0.0.1:{port}/"


def page_to_first_answer(browser, url: str) -> float:
    """Seconds from navigation to the first answer's headline."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("#predict-answer .czsl-headline", timeout=120_000)
    seconds = time.perf_counter() - started
    page.close()
    return seconds


PICTURE_REPLACED = """(old) => { const img = document.querySelector('#predict-visual-0 img');
  return img && img.src && img.src !== old && img.complete
    && !document.querySelector('#predict-explain')?.classList.contains('czsl-drawing'); }"""


def click_to_answer(browser, url: str, clicks: int) -> tuple[list[float], list[float]]:
    """Seconds from pressing Recognise to the new answer card, and to its new picture of why, `clicks` times on
    one page."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url)
    page.wait_for_selector("#predict-answer .czsl-headline", timeout=120_000)
    # The same model on both sides (a checkout may open on another): the CLIP baseline.
    if page.locator("#predict-model input").input_value() != "CLIP baseline":
        page.locator("#predict-model input").click()
        page.get_by_role("option", name="CLIP baseline").click()
        page.wait_for_function("() => (document.querySelector('#predict-note')?.innerText || '')"
                               ".includes('CLIP baseline')", timeout=120_000)
    times, picture_times = [], []
    for click in range(clicks):
        # Other words each time: an identical answer would leave the page's HTML as it was, with nothing to wait for.
        page.locator("#predict-states textarea").fill(WORD_LISTS[click % len(WORD_LISTS)])
        page.evaluate("document.querySelector('#predict-answer .czsl-answer').dataset.old = '1'")
        # Only where the picture is on show (an older checkout may keep it collapsed, and then never draws it).
        old_picture = page.evaluate("(() => { const i = document.querySelector('#predict-visual-0 img');"
                                    " return i && i.offsetParent ? i.src : ''; })()")
        started = time.perf_counter()
        page.locator("#predict-button").click()
        page.wait_for_function("() => { const a = document.querySelector('#predict-answer .czsl-answer');"
                               " return a && !a.dataset.old; }", timeout=120_000, polling=10)
        times.append(time.perf_counter() - started)
        if old_picture:
            page.wait_for_function(PICTURE_REPLACED, arg=old_picture, timeout=120_000, polling=10)
            picture_times.append(time.perf_counter() - started)
    page.close()
    return times, picture_times


def main() -> None:
    """Serve both checkouts, alternate the measurements, print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the checkout to compare against")
    parser.add_argument("--after", type=Path, default=ROOT, help="the checkout measured (default: this one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    servers = {name: start_server(path.resolve(), args.backbone) for name, path in
               (("before", args.before), ("after", args.after))}
    results = {name: {"load": [], "click": [], "picture": []} for name in servers}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            for name, (_, url) in servers.items():  # warm-up: first model load and text features
                page_to_first_answer(browser, url)
            for _ in range(args.rounds):
                for name, (_, url) in servers.items():
                    results[name]["load"].append(page_to_first_answer(browser, url))
                    answers, pictures = click_to_answer(browser, url, 3)
                    results[name]["click"] += answers
                    results[name]["picture"] += pictures
            browser.close()
    finally:
        for process, _ in servers.values():
            process.terminate()
    import torch

    print(f"{os.cpu_count()} CPUs ({torch.backends.cpu.get_cpu_capability()}), load average "
          f"{os.getloadavg()[0]:.2f}, {args.rounds} rounds, medians")
    for what, label in (("load", "page to first answer"), ("click", "click to answer"),
                        ("picture", "click to its picture of why")):
        if not all(results[name][what] for name in ("before", "after")):
            shown = {name: f"{statistics.median(results[name][what]):.2f} s" if results[name][what] else "not shown"
                     for name in ("before", "after")}
            print(f"{label}: before {shown['before']}, after {shown['after']}")
            continue
        before, after = (statistics.median(results[name][what]) for name in ("before", "after"))
        print(f"{label}: before {before:.2f} s, after {after:.2f} s, after/before {after / before:.2f}")


if __name__ == "__main__":
    main()
