"""How far each faster backbone precision drifts from float32: every model on the real photos in examples/
with fixed vocabularies, printing top-1 agreement and the lowest centred score cosine per model, precision
and vocabulary (one JSON object each), and whether `auto`'s choice keeps top-1 agreement >= 99% and cosine
>= 0.999.

    python benchmarks/precision_drift.py                                  # ViT-L/14 architecture, random weights
    python benchmarks/precision_drift.py --backbone ViT-L-14-quickgelu:openai   # the released weights (cached)
    python benchmarks/precision_drift.py --quick                          # tiny backbone, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CZSL_DEVICE", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from _drift import FULL_BACKBONE, MODELS, example_photos, score_drift  # noqa: E402
MIN_AGREEMENT, MIN_COSINE = 0.99, 0.999
# Fixed word lists: the app's default and one naming what the example photos show.
VOCABULARIES = {
    "default": None,
    "examples": ("old, new, shiny, dark, round, hot, flying, sleeping, black, blurry",
                 "coin, clock, cat, horse, coffee, rocket, person, cup"),
}


def main(argv: list[str] | None = None) -> int:
    """Print the drift table; exit 1 when `auto` breaks the bound."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=FULL_BACKBONE, help=f"default {FULL_BACKBONE}")
    parser.add_argument("--quick", action="store_true", help="the tiny backbone")
    parser.add_argument("--precisions", default="bfloat16,int8", help="compared with float32 (default bfloat16,int8)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from czsl_models import load_model
    from czsl_models.backbones.precision import resolve_backbone_precision
    from czsl_models.inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES
    from czsl_models.inputs.vocab import Vocabulary

    spec = "tiny" if args.quick else args.backbone
    auto = resolve_backbone_precision("cpu", "auto")
    vocabularies = {name: Vocabulary.build(*(words or (DEFAULT_STATES, DEFAULT_OBJECTS)))
                    for name, words in VOCABULARIES.items()}
    photos = example_photos()
    failures = 0
    for model_name in MODELS:
        reference = load_model(model_name, backbone=spec, backbone_precision="float32")
        for precision in [name.strip() for name in args.precisions.split(",") if name.strip()]:
            candidate = load_model(model_name, backbone=spec, backbone_precision=precision)
            for vocab_name, vocab in vocabularies.items():
                agreement, cosine = score_drift(reference, candidate, photos, vocab)
                bounded = agreement >= MIN_AGREEMENT and cosine >= MIN_COSINE
                failures += int(precision == auto and not bounded)
                print(json.dumps({"model": model_name, "precision": precision, "auto": precision == auto,
                                  "vocabulary": vocab_name, "photos": len(photos), "pairs": vocab.num_pairs,
                                  "top1_agreement": round(agreement, 4), "cosine": round(cosine, 6),
                                  "within_bound": bounded, "backbone": spec,
                                  "cpu_capability": torch.backends.cpu.get_cpu_capability()}), flush=True)
    print(f"auto ({auto}) {'keeps' if not failures else 'BREAKS'} top-1 agreement >= {MIN_AGREEMENT:.0%} and "
          f"cosine >= {MIN_COSINE} on every model and vocabulary")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
