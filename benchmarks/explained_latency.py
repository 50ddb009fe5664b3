"""Seconds for one explained prediction as the app computes it (photo read, backbone pass, head, every
explanation picture rendered), per model, with the image backbone in float32 and in the `auto` precision,
alternated in one run; plus how far `auto` drifts from float32 on the real example photos.

Prints one JSON object per model: model, precision (what `auto` chose here), seconds_float32, seconds_auto,
speedup, top1_agreement (share of example photos whose top composition is the same), cosine (the lowest,
over the photos, cosine between the mean-centred score vectors of all pairs: stricter than raw scores, whose
common offset makes any two vectors look alike), cpu_capability, threads and the load average, and the
process CPU seconds of both (steadier than wall time when other processes share the cores). The default
backbone is the real ViT-L/14 architecture with random weights (no download); its timing is that of the
released weights, its drift only indicative (benchmarks/precision_drift.py, --backbone, for real weights).

    python benchmarks/explained_latency.py                  # ViT-L/14, random weights, a few minutes on 2 cores
    python benchmarks/explained_latency.py --quick          # tiny backbone, seconds
    python benchmarks/explained_latency.py --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CZSL_DEVICE", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from _drift import FULL_BACKBONE, MODELS, example_photos, score_drift  # noqa: E402


def explained_prediction(state, model: str, photo: str) -> tuple[float, float]:
    """(wall, process CPU) seconds of the app's Predict computation on one photo: what the visitor waits for."""
    from czsl_models.inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES
    from czsl_models.ui.inputs import WORLD_OPEN
    from czsl_models.ui.predict import predict_photo
    from czsl_models.ui.state import UNTRAINED

    started, cpu = time.perf_counter(), time.process_time()
    result = predict_photo(state, photo, model, UNTRAINED, DEFAULT_STATES, DEFAULT_OBJECTS, WORLD_OPEN, "", 5, 0.0)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if not result.visuals:
        raise RuntimeError(f"{model}: the app built no explanation picture")
    return seconds, cpu


def main(argv: list[str] | None = None) -> list[dict]:
    """Time every model in both precisions, alternating, and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=FULL_BACKBONE, help=f"default {FULL_BACKBONE}")
    parser.add_argument("--quick", action="store_true", help="the tiny backbone")
    parser.add_argument("--repeats", type=int, default=3, help="timed predictions per model and precision")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma separated (default all four)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from czsl_models.backbones import get_backbone
    from czsl_models.inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES
    from czsl_models.inputs.vocab import Vocabulary
    from czsl_models.ui.state import UNTRAINED, AppState

    spec = "tiny" if args.quick else args.backbone
    states = {name: AppState(get_backbone(spec, "cpu", name)) for name in ("float32", "auto")}
    chosen = states["auto"].backbone.precision
    photos = example_photos()
    vocab = Vocabulary.build(DEFAULT_STATES, DEFAULT_OBJECTS)
    capability = torch.backends.cpu.get_cpu_capability()
    rows = []
    for model in [name.strip() for name in args.models.split(",") if name.strip()]:
        for state in states.values():  # warm-up: loads the model, encodes the words once
            explained_prediction(state, model, photos[0])
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in states}
        for repeat in range(args.repeats):
            for name, state in states.items():  # alternated, so load changes hit both alike
                times[name].append(explained_prediction(state, model, photos[repeat % len(photos)]))
        reference = states["float32"].get_model(model, UNTRAINED)
        candidate = states["auto"].get_model(model, UNTRAINED)
        agreement, cosine = score_drift(reference, candidate, photos, vocab)
        seconds = {name: statistics.median(wall for wall, _ in values) for name, values in times.items()}
        cpu = {name: statistics.median(used for _, used in values) for name, values in times.items()}
        row = {"model": model, "precision": chosen, "seconds_float32": round(seconds["float32"], 3),
               "seconds_auto": round(seconds["auto"], 3), "speedup": round(seconds["float32"] / seconds["auto"], 2),
               "cpu_seconds_float32": round(cpu["float32"], 3), "cpu_seconds_auto": round(cpu["auto"], 3),
               "cpu_speedup": round(cpu["float32"] / cpu["auto"], 2), "top1_agreement": round(agreement, 4), "cosine": round(cosine, 6), "cpu_capability": capability,
               "backbone": spec, "threads": torch.get_num_threads(), "load_average": round(os.getloadavg()[0], 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
