"""Per-image `predict` time of SVIP against the `clip` baseline, for each way SVIP selects patches.

Configurations (all with explanations, as `predict` always builds them):
  svip untrained        e = 0: one vision pass, with attention maps for the teacher's selection
  svip PatchCls         trained (e != 0, PatchCls trained): one contextualised pass, no attention maps
  svip PatchCls + map   as above with `explain_teacher_map`: an extra unedited pass with attention maps
  svip teacher          e != 0 but PatchCls untrained: unedited pass with attention, then contextualised pass
"Trained" here means non-zero weights put in place (the cost does not depend on their values).
Text features are per vocabulary and cached, not per image, so random unit vectors are put in each
model's text cache (encoding 2,000 prompts with ViT-L's text tower takes minutes on CPU and is the
same for both models). Models are timed interleaved after a warm-up; the table gives medians of
wall time and of this process's CPU time (steadier when other processes share the machine).

    python benchmarks/svip_speed.py            # ViT-L-14 architecture (random weights), CPU, a few minutes
    python benchmarks/svip_speed.py --quick    # tiny backbone, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from _common import fill_text_cache, open_world_vocabulary  # noqa: E402

from czsl_models.models.base import CompositionModel  # noqa: E402
from czsl_models.models.checkpoints import load_model  # noqa: E402

FULL_BACKBONE = "random:ViT-L-14-quickgelu"
TARGET_RATIO = 1.5  # the bound for PatchCls selection


def trained_svip(backbone: str, patchcls_trained: bool, teacher_map: bool = False) -> CompositionModel:
    """An SVIP model with a non-zero context embedding and beta, selecting with PatchCls or the teacher."""
    model = load_model("svip", backbone=backbone).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.context_embedding.copy_(0.02 * torch.randn(model.context_embedding.shape, generator=generator))
        model.beta.fill_(0.1)
        model.patchcls_steps.fill_(1 if patchcls_trained else 0)
        # PatchCls selects only once validated above the switch threshold.
        model.patchcls_agreement.fill_(1.0 if patchcls_trained else -1.0)
    model.explain_teacher_map = teacher_map
    return model


def interleaved_times(tasks: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each task per repeat, alternating tasks every repeat."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            wall, cpu = time.perf_counter(), time.process_time()
            task()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def random_photos(count: int, size: int, seed: int = 0) -> list[Image.Image]:
    """Noise images (the cost does not depend on the content)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB") for _ in range(count)]


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print the per-image time table; returns the median ratios to clip."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny backbone, P = 200, seconds")
    parser.add_argument("--pairs", type=int, default=None, help="vocabulary size P (default 2000; 200 with --quick)")
    parser.add_argument("--batch", type=int, default=1, help="images per predict call (default 1, as in the app)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; 2 with --quick)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone = "tiny" if args.quick else FULL_BACKBONE
    pairs = args.pairs or (200 if args.quick else 2000)
    repeats = args.repeats or (2 if args.quick else 3)

    vocab = open_world_vocabulary(pairs)
    models: dict[str, CompositionModel] = {
        "clip": load_model("clip", backbone=backbone).eval(),
        "svip untrained": load_model("svip", backbone=backbone).eval(),
        "svip PatchCls": trained_svip(backbone, patchcls_trained=True),
        "svip PatchCls + map": trained_svip(backbone, patchcls_trained=True, teacher_map=True),
        "svip teacher": trained_svip(backbone, patchcls_trained=False),
    }
    for model in models.values():
        fill_text_cache(model, vocab)
    clip = models["clip"]
    photos = random_photos(args.batch, clip.backbone.image_size[0])
    print(f"backbone {backbone}, device {clip.backbone.device}, {torch.get_num_threads()} threads, "
          f"P = {vocab.num_pairs:,} pairs, batch {args.batch}, {repeats} timed repeats")
    selections = {}
    for name, model in models.items():  # also the warm-up

        explanation = model.predict(photos, vocab)[0].explanations
        selections[name] = explanation.get("selection", "-") + (" +map" if "teacher_map" in explanation else "")
    times = interleaved_times({name: (lambda m=model: m.predict(photos, vocab)) for name, model in models.items()},
                              repeats)
    medians = {name: statistics.median(wall for wall, _ in values) / args.batch for name, values in times.items()}
    # On a shared machine other processes inflate wall time; this process's CPU time much less so.
    cpu = {name: statistics.median(used for _, used in values) / args.batch for name, values in times.items()}
    ratios = {name: medians[name] / medians["clip"] for name in models}
    cpu_ratios = {name: cpu[name] / cpu["clip"] for name in models}
    print(f"{'model':<20} | {'selection':<16} | {'wall ms':>9} | {'ratio':>6} | {'CPU ms':>9} | {'ratio':>6}")
    print("-" * 82)
    for name in models:
        print(f"{name:<20} | {selections[name]:<16} | {1e3 * medians[name]:>9.1f} | {ratios[name]:>6.3f} | "
              f"{1e3 * cpu[name]:>9.1f} | {cpu_ratios[name]:>6.3f}")
    worst = max(ratios["svip PatchCls"], cpu_ratios["svip PatchCls"])
    verdict = "within" if worst <= TARGET_RATIO else "ABOVE"
    print(f"\nSVIP with PatchCls selection: {ratios['svip PatchCls']:.3f}x clip (wall), "
          f"{cpu_ratios['svip PatchCls']:.3f}x (CPU time), {verdict} the {TARGET_RATIO}x target.")
    return ratios


if __name__ == "__main__":
    main()
