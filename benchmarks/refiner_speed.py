"""Per-image inference time of Refiner against the `clip` baseline, and Refiner's trainable parameters.

Per-image time = vision pass + head. Refiner's vision pass is the `clip` model's plus one token
projection (it asks for the last block's tokens), so the ViT pass is timed once, the projection on
its own, and the heads (interleaved) once per vocabulary size P: on a shared CPU two 10-second ViT
passes differ by 10 % from run to run, far more than the projection costs. Text features are per vocabulary and cached
(not per image), so random unit vectors are placed in each model's text cache: encoding 28,175
prompts with ViT-L's text tower would take many minutes on CPU and is the same for both models.
The Refiner head's cost does not depend on the values of its weights (nothing is skipped at λ = 0).
Times are the fastest of the repeats (other processes on a shared CPU only ever add time); the
ratio of medians is printed beside it as a check on the noise.

    python benchmarks/refiner_speed.py            # ViT-L-14 architecture (random weights), CPU, ~5 min
    python benchmarks/refiner_speed.py --quick    # tiny backbone, seconds
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from _common import fill_text_cache, open_world_vocabulary  # noqa: E402

from czsl_models.models.base import CompositionModel, VisualRequest  # noqa: E402
from czsl_models.models.checkpoints import load_model  # noqa: E402

FULL_BACKBONE = "random:ViT-L-14-quickgelu"
MIT_STATES_WORDS = 115 + 245


def interleaved_timings(tasks: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """(fastest, median) seconds of each task, after one warm-up each, alternating tasks every repeat."""
    for task in tasks.values():
        task()
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            times[name].append(time.perf_counter() - start)
    return {name: (min(values), statistics.median(values)) for name, values in times.items()}


def parameter_table(model: CompositionModel) -> list[tuple[str, int]]:
    """Trainable parameters per top-level part of the model."""
    counts: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            part = name.split(".")[0]
            counts[part] = counts.get(part, 0) + parameter.numel()
    return sorted(counts.items(), key=lambda item: -item[1])


def main() -> None:
    """Print the per-image time table and the trainable parameter count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny backbone, P = 100 and 2,000, a few seconds")
    parser.add_argument("--pairs", type=int, nargs="+", default=None, help="vocabulary sizes (default 100 2000 28175)")
    parser.add_argument("--batch", type=int, default=1, help="images per pass (default 1, as in the app)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats of the vision pass (default 5)")
    parser.add_argument("--head-repeats", type=int, default=None, help="timed repeats of each head (default 9)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = "tiny" if args.quick else FULL_BACKBONE
    pair_counts = args.pairs or ([100, 2000] if args.quick else [100, 2000, 28175])
    repeats = args.repeats or (2 if args.quick else 5)
    head_repeats = args.head_repeats or (3 if args.quick else 9)

    clip = load_model("clip", backbone=backbone).eval()
    refiner = load_model("refiner", backbone=backbone).eval()
    models = {"clip": clip, "refiner": refiner}
    pixels = torch.randn(args.batch, 3, *clip.backbone.image_size, generator=torch.Generator().manual_seed(0))
    pixels = pixels.to(clip.backbone.device)
    print(f"backbone {backbone}, device {clip.backbone.device}, {torch.get_num_threads()} threads, batch {args.batch}")

    assert clip.visual_request() == VisualRequest()
    assert refiner.visual_request() == VisualRequest(layers=(refiner.backbone.num_layers,))
    last_block = torch.randn(args.batch, 1 + clip.backbone.num_patches, clip.backbone.width).to(clip.backbone.device)
    with torch.no_grad():
        vit = interleaved_timings({"vit": lambda: clip.encode_images(pixels)}, repeats)["vit"]
        projection = interleaved_timings({"projection": lambda: refiner.backbone.project_tokens(last_block)},
                                         10 * head_repeats)["projection"]
        vision = {"clip": vit, "refiner": tuple(a + b for a, b in zip(vit, projection))}
        visual = {name: model.encode_images(pixels) for name, model in models.items()}
        rows = []
        for count in pair_counts:
            vocab = open_world_vocabulary(count)
            for model in models.values():
                fill_text_cache(model, vocab)
            heads = {name: (lambda m=model, v=visual[name]: m.pair_scores(m.branch_logits(v, vocab), vocab))
                     for name, model in models.items()}
            heads["refiner+explain"] = lambda: refiner.pair_scores(
                refiner.branch_logits(visual["refiner"], vocab, explain=True), vocab)
            head = interleaved_timings(heads, head_repeats)
            per_image = {name: [(vision[name.split("+")[0]][i] + head[name][i]) / args.batch for i in (0, 1)]
                         for name in heads}
            rows.append((count, per_image, {name: head[name][0] / args.batch for name in heads}))

    print(f"vision pass per image (fastest): {1e3 * vit[0] / args.batch:.1f} ms; Refiner's extra token projection "
          f"{1e3 * projection[0] / args.batch:.2f} ms")
    print(f"{'P':>7} | {'clip ms/img':>11} | {'refiner ms/img':>14} | {'ratio':>6} | {'ratio of medians':>16} | "
          f"{'ratio+explain':>13} | {'clip head ms':>12} | {'refiner head ms':>15}")
    print("-" * 120)
    for count, per_image, head_time in rows:
        clip_time, refiner_time = per_image["clip"][0], per_image["refiner"][0]
        print(f"{count:>7,} | {1e3 * clip_time:>11.1f} | {1e3 * refiner_time:>14.1f} | {refiner_time / clip_time:>6.3f} | "
              f"{per_image['refiner'][1] / per_image['clip'][1]:>16.3f} | "
              f"{per_image['refiner+explain'][0] / clip_time:>13.3f} | {1e3 * head_time['clip']:>12.1f} | "
              f"{1e3 * head_time['refiner']:>15.1f}")

    print(f"\nRefiner trainable parameters (no training vocabulary): {refiner.num_trainable_parameters():,}")
    for part, count in parameter_table(refiner):
        print(f"  {part:<20} {count:>12,}")
    offsets = MIT_STATES_WORDS * refiner.backbone.text_width
    print(f"  + per-word prompt offsets with MIT-States' {MIT_STATES_WORDS} words: {offsets:,} "
          f"(total {refiner.num_trainable_parameters() + offsets:,})")
    # Linux reports kilobytes; includes the backbone's own weights.
    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
