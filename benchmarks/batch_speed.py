"""Images per second of batch prediction (`python -m czsl_models predict FOLDER --output ...`) by batch size.

The whole pipeline is timed: reading and decoding the photos, preprocessing, the backbone pass, the head and
writing the CSV. The photos are copies of the example photos in a temporary folder; the model is the `clip`
baseline (every model's cost is dominated by the same backbone pass). Batch sizes are timed in rounds, each
round visiting every size once, and the best round per size is kept (other processes on a shared CPU only ever
add time); the machine's load average is printed before and after.

    nice -n 5 python benchmarks/batch_speed.py            # ViT-L-14 architecture (random weights), CPU, ~5 min
    python benchmarks/batch_speed.py --quick              # tiny backbone, seconds
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from czsl_models.inference.batch import PredictionWriter, find_images, predict_sources  # noqa: E402
from czsl_models.inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES  # noqa: E402
from czsl_models.models.checkpoints import load_model  # noqa: E402
from czsl_models.inputs.examples import example_photo_paths  # noqa: E402
from czsl_models.inputs.vocab import Vocabulary  # noqa: E402

FULL_BACKBONE = "random:ViT-L-14-quickgelu"


def photo_folder(count: int) -> Path:
    """A temporary folder of count photos (copies of the example photos)."""
    folder = Path(tempfile.mkdtemp(prefix="czsl-batch-"))
    photos = example_photo_paths()
    for index in range(count):
        source = photos[index % len(photos)]
        shutil.copy(source, folder / f"{index:04d}{source.suffix}")
    return folder


def images_per_second(model, sources, vocab, batch_size: int) -> float:
    """One pass over every photo at this batch size, writing CSV rows to memory."""
    writer = PredictionWriter(io.StringIO(), ".csv", model.name, "", model.backbone.name)
    started = time.perf_counter()
    summary = predict_sources(model, sources, vocab, writer, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - started
    assert summary.predicted == len(sources) and not summary.unreadable
    return len(sources) / seconds


def main() -> None:
    """Time each batch size and print images/s and the ratio to batch size 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny backbone (seconds)")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-sizes", default="1,2,4,8,16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = "tiny" if args.quick else FULL_BACKBONE
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    model = load_model("clip", backbone=backbone)
    vocab = Vocabulary.build(DEFAULT_STATES, DEFAULT_OBJECTS)
    folder = photo_folder(args.images)
    sources, _ = find_images([folder])
    print(f"backbone {backbone}, {len(sources)} photos, {vocab.num_pairs} pairs, torch threads {args.threads}, "
          f"load average before {os.getloadavg()[0]:.2f}")
    model.predict(load_first(sources), vocab)  # text features and one-time set-up, outside the timings
    best = {size: 0.0 for size in sizes}
    for round_index in range(args.rounds):
        for size in sizes:
            rate = images_per_second(model, sources, vocab, size)
            best[size] = max(best[size], rate)
            print(f"  round {round_index + 1}, batch {size:>3}: {rate:6.3f} images/s")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    print("batch size | images/s (best round) | vs batch 1")
    for size in sizes:
        print(f"{size:>10} | {best[size]:21.3f} | {best[size] / best[sizes[0]]:9.2f}x")
    shutil.rmtree(folder)


def load_first(sources):
    """The first photo, opened (for the warm-up call)."""
    from czsl_models.inputs.images import load_image

    return load_image(sources[0].path)


if __name__ == "__main__":
    main()
