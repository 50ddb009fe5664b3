"""Latency of N concurrent predictions through the served app (tiny backbone), each from its own
gradio_client session, as a public Space sees them (SPACE_ID set, so every visitor is kept apart): prints
one prediction's time alone ("single", the median of three), p50 / p95 / max seconds of the concurrent ones,
p95 / single, the machine load and its CPU.

    python benchmarks/concurrent_predictions.py [--requests 30] [--model msci] [--local]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CZSL_DEVICE", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the sorted values lie (nearest rank)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


def predict_input_count(demo) -> int:
    """How many inputs the app's /predict event takes (the same script then measures older versions too)."""
    return next(len(fn.inputs) for fn in demo.fns.values() if fn.api_name == "predict")


def main() -> None:
    """Serve the app, fire the predictions at once, print the latency distribution."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--model", default="msci")
    parser.add_argument("--local", action="store_true", help="serve as on your own machine (no SPACE_ID)")
    args = parser.parse_args()
    if not args.local:
        os.environ.setdefault("SPACE_ID", "benchmark/czsl-demo")
        os.environ.pop("HF_TOKEN", None)
    import torch
    from gradio_client import Client, handle_file

    from czsl_models.inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES
    from czsl_models.ui import create_app, launch_options
    from czsl_models.ui.inputs import WORLD_OPEN

    with tempfile.TemporaryDirectory() as root:
        os.environ["CZSL_WEIGHTS_DIR"] = str(Path(root) / "weights")
        os.environ["CZSL_DATA_DIR"] = str(Path(root) / "datasets")
        demo, _ = create_app("tiny")
        demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                    **launch_options())
        url = demo.local_url
        photos = sorted((ROOT / "examples").glob("*.jpg"))
        # The Predict button's inputs; any after the nine the page shows (its remembered answer) start empty.
        extra = [""] * (predict_input_count(demo) - 9)
        clients = [Client(url, verbose=False, httpx_kwargs={"timeout": 300}) for _ in range(args.requests)]

        def one(index: int) -> float:
            started = time.perf_counter()
            clients[index].predict(handle_file(str(photos[index % len(photos)])), args.model, "", DEFAULT_STATES,
                                   DEFAULT_OBJECTS, WORLD_OPEN, "", 5, 0.0, *extra, api_name="/predict")
            return time.perf_counter() - started

        one(0)  # warm-up: the first call fills the text-feature cache
        single = statistics.median(one(0) for _ in range(3))
        load_before = os.getloadavg()[0]
        with ThreadPoolExecutor(max_workers=args.requests) as pool:
            seconds = list(pool.map(one, range(args.requests)))
        demo.close()
    print(f"single: {single:.2f} s; {args.requests} concurrent /predict ({args.model}, tiny backbone): p50 {statistics.median(seconds):.2f} s, "
          f"p95 {percentile(seconds, 0.95):.2f} s ({percentile(seconds, 0.95) / single:.1f}x single), "
          f"max {max(seconds):.2f} s; "
          f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          f"({torch.backends.cpu.get_cpu_capability()}), {'local' if args.local else 'as a Space'}")


if __name__ == "__main__":
    main()
