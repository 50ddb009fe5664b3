"""Per-image inference time of Refiner against the `clip` baseline, and Refiner's trainable parameters.

Per-image time = vision pass + head. The two parts are timed separately, interleaving the models
(median of repeats), because the vision pass does not depend on the vocabulary: it is timed once
per model, and the heads once per vocabulary size P. Text features are per vocabulary and cached
(not per image), so random unit vectors are placed in each model's text cache: encoding 28,175
prompts with ViT-L's text tower would take many minutes on CPU and is the same for both models.
The Refiner head's cost does not depend on the values of its weights (nothing is skipped at λ = 0).

    python benchmarks/refiner_speed.py            # ViT-L-14 architecture (random weights), CPU, ~4 min
    python benchmarks/refiner_speed.py --quick    # tiny backbone, seconds
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from czsl_models.models.base import CompositionModel  # noqa: E402
from czsl_models.models.prompts import BRANCHES  # noqa: E402
from czsl_models.registry import load_model  # noqa: E402
from czsl_models.vocab import Vocabulary  # noqa: E402

FULL_BACKBONE = "random:ViT-L-14-quickgelu"
# (states, objects) per vocabulary size; 115 x 245 = 28,175 is MIT-States' open world.
GRIDS = {100: (10, 10), 2000: (40, 50), 28175: (115, 245)}
MIT_STATES_WORDS = 115 + 245


def vocabulary_of_size(pairs: int) -> Vocabulary:
    """An open-world vocabulary of exactly `pairs` pairs (near-square grid unless listed in GRIDS)."""
    states, objects = GRIDS.get(pairs, (0, 0))
    if states * objects != pairs:
        states = max(d for d in range(1, math.isqrt(pairs) + 1) if pairs % d == 0)
        objects = pairs // states
    return Vocabulary.build([f"state{i}" for i in range(states)], [f"object{j}" for j in range(objects)],
                            max_words=max(states, objects), max_pairs=pairs)


def fill_text_cache(model: CompositionModel, vocab: Vocabulary, seed: int = 0) -> None:
    """Put random unit text features in the model's cache for every branch (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    sizes = {"pair": vocab.num_pairs, "state": len(vocab.states), "object": len(vocab.objects)}
    for branch in BRANCHES:
        features = torch.randn(sizes[branch], model.backbone.embed_dim, generator=generator)
        features = torch.nn.functional.normalize(features, dim=-1).to(model.backbone.device)
        model.backbone.text_cache.put(model.prompts.cache_key(vocab, branch), features)


def interleaved_medians(tasks: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each task, after one warm-up each, alternating tasks every repeat."""
    for task in tasks.values():
        task()
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


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
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats of each vision pass (default 3)")
    parser.add_argument("--head-repeats", type=int, default=None, help="timed repeats of each head (default 7)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = "tiny" if args.quick else FULL_BACKBONE
    pair_counts = args.pairs or ([100, 2000] if args.quick else [100, 2000, 28175])
    repeats = args.repeats or (2 if args.quick else 3)
    head_repeats = args.head_repeats or (3 if args.quick else 7)

    clip = load_model("clip", backbone=backbone).eval()
    refiner = load_model("refiner", backbone=backbone).eval()
    models = {"clip": clip, "refiner": refiner}
    pixels = torch.randn(args.batch, 3, *clip.backbone.image_size, generator=torch.Generator().manual_seed(0))
    pixels = pixels.to(clip.backbone.device)
    print(f"backbone {backbone}, device {clip.backbone.device}, {torch.get_num_threads()} threads, batch {args.batch}")

    with torch.no_grad():
        vision = interleaved_medians({name: (lambda m=model: m.encode_images(pixels)) for name, model in models.items()},
                                     repeats)
        visual = {name: model.encode_images(pixels) for name, model in models.items()}
        rows = []
        for count in pair_counts:
            vocab = vocabulary_of_size(count)
            for model in models.values():
                fill_text_cache(model, vocab)
            heads = {name: (lambda m=model, v=visual[name]: m.pair_scores(m.branch_logits(v, vocab), vocab))
                     for name, model in models.items()}
            heads["refiner+explain"] = lambda: refiner.pair_scores(
                refiner.branch_logits(visual["refiner"], vocab, explain=True), vocab)
            head = interleaved_medians(heads, head_repeats)
            clip_time = (vision["clip"] + head["clip"]) / args.batch
            refiner_time = (vision["refiner"] + head["refiner"]) / args.batch
            explain_time = (vision["refiner"] + head["refiner+explain"]) / args.batch
            rows.append((count, clip_time, refiner_time, refiner_time / clip_time, explain_time / clip_time,
                         head["refiner"] / args.batch))

    print(f"vision pass per image: clip {1e3 * vision['clip'] / args.batch:.1f} ms, "
          f"refiner {1e3 * vision['refiner'] / args.batch:.1f} ms (also projects the last block's tokens)")
    print(f"{'P':>7} | {'clip ms/img':>11} | {'refiner ms/img':>14} | {'ratio':>6} | {'ratio+explain':>13} | {'refiner head ms':>15}")
    print("-" * 82)
    for count, clip_time, refiner_time, ratio, explain_ratio, head_time in rows:
        print(f"{count:>7,} | {1e3 * clip_time:>11.1f} | {1e3 * refiner_time:>14.1f} | {ratio:>6.3f} | "
              f"{explain_ratio:>13.3f} | {1e3 * head_time:>15.1f}")

    print(f"\nRefiner trainable parameters (no training vocabulary): {refiner.num_trainable_parameters():,}")
    for part, count in parameter_table(refiner):
        print(f"  {part:<20} {count:>12,}")
    offsets = MIT_STATES_WORDS * refiner.backbone.text_width
    print(f"  + per-word prompt offsets with MIT-States' {MIT_STATES_WORDS} words: {offsets:,} "
          f"(total {refiner.num_trainable_parameters() + offsets:,})")


if __name__ == "__main__":
    main()
