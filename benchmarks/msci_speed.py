"""MSCI vs the CLIP baseline on one backbone: per-image inference time (ratio) for P candidate pairs,
peak memory at the MIT-States open world (28,175 pairs), and the trainable parameter count of the
ViT-L/14 configuration next to the published ~26.7 M.

Usage: python benchmarks/msci_speed.py [--quick] [--adapters] [--repeats N]

Times are `model.predict(image, vocab)` on one 224 px image (batch 1, explanations included), the
median of interleaved runs after a warm-up, on CPU with 2 threads. On a machine shared with other
jobs, two steadier estimates are shown beside the median ratio: the ratio of the best runs
(interference only ever adds time) and the ratio of the best process CPU times (with --threads 1
this counts the work done and hardly depends on other jobs). Text features are cached per
vocabulary in real use, so each model's cache is filled with random unit vectors beforehand rather
than spending many minutes encoding 28k prompts with a random-weight text tower. λ1, λ2 are set to
0.1 (the released code's initial value); the head does the same work whatever their values.

MSCI is timed twice in the same run, with the same weights: with its row head at the default
precision (`auto`: bfloat16 where the CPU has it natively, see czsl_models/backbones/precision.py) and
pinned to float32. The backbone and the final scores are float32 in both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("CZSL_DEVICE", "cpu")  # a CPU benchmark, even where CUDA exists
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from czsl_models import load_model  # noqa: E402
from czsl_models.backbones import get_backbone  # noqa: E402
from czsl_models.models.base import CompositionModel  # noqa: E402
from _common import fill_text_cache, open_world_vocabulary  # noqa: E402

VIT_L = "random:ViT-L-14-quickgelu"
MIT_STATES_WORDS = (115, 245)
PUBLISHED_PARAMETERS_M = {"adapters": 6.3, "aggregators": 4.7, "two stages": 14.2, "disentanglers": 1.2, "total": 26.7}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny backbone, P = 100 and 2,000, seconds")
    parser.add_argument("--backbone", default=None, help=f"backbone spec (default {VIT_L}; --quick: tiny)")
    parser.add_argument("--pairs", type=int, nargs="+", default=None, help="P values (default 100 2000 28175)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per model and P (default 3; --quick: 2)")
    parser.add_argument("--adapters", action="store_true", help="time MSCI with AdaptFormer adapters (the paper preset)")
    parser.add_argument("--memory-pairs", type=int, default=28175, help="P of the peak-memory run (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.backbone = args.backbone or "tiny"
        args.pairs = args.pairs or [100, 2000]
        args.repeats = args.repeats or 2
        args.memory_pairs = 0
    args.backbone = args.backbone or VIT_L
    args.pairs = args.pairs or [100, 2000, 28175]
    args.repeats = args.repeats or 3
    return args


def build_msci(backbone: str, adapters: bool) -> CompositionModel:
    """An MSCI with the MIT-States training vocabulary size, λ at 0.1."""
    states, objects = MIT_STATES_WORDS
    msci = load_model("msci", backbone=backbone, train_states=[f"state{i}" for i in range(states)],
                      train_objects=[f"object{j}" for j in range(objects)], use_adapters=adapters)
    with torch.no_grad():
        msci.local_scale.fill_(0.1)
        msci.global_scale.fill_(0.1)
    return msci.eval()


def build_models(backbone: str, adapters: bool) -> dict[str, CompositionModel]:
    """The CLIP baseline, MSCI at the default head precision ('auto', whatever the environment says)
    and, where that is not float32, the same MSCI in float32."""
    msci = build_msci(backbone, adapters)
    msci.head_precision = "auto"
    models = {"clip": load_model("clip", backbone=backbone).eval(), f"msci {msci.head_precision_in_use()}": msci}
    if "msci float32" not in models:
        float32 = build_msci(backbone, adapters)
        float32.load_state_dict(msci.state_dict())
        float32.head_precision = "float32"
        models["msci float32"] = float32
    return models


def test_image(size: int, seed: int = 0) -> Image.Image:
    """A random RGB image."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def time_predictions(models: dict[str, CompositionModel], pair_counts: list[int], repeats: int,
                     image: Image.Image) -> list[dict]:
    """Median per-image predict() time of each model for each P, runs interleaved between models."""
    rows = []
    for pairs in pair_counts:
        vocab = open_world_vocabulary(pairs)
        for model in models.values():
            fill_text_cache(model, vocab)
            model.predict(image, vocab)  # warm-up (allocator, kernels)
        wall: dict[str, list[float]] = {name: [] for name in models}
        cpu: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(repeats):
            for name, model in models.items():
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                model.predict(image, vocab)
                wall[name].append(time.perf_counter() - start_wall)
                cpu[name].append(time.process_time() - start_cpu)
        # "ratio" etc. are the default MSCI's (the first after clip); every model's are under "models".
        row: dict = {"pairs": pairs, "models": {}}
        for name in models:
            row["models"][name] = {"median_s": statistics.median(wall[name]), "best_s": min(wall[name]),
                                   "ratio": statistics.median(wall[name]) / statistics.median(wall["clip"]),
                                   "best_ratio": min(wall[name]) / min(wall["clip"]),
                                   "cpu_ratio": min(cpu[name]) / min(cpu["clip"])}
        default = row["models"][next(name for name in models if name != "clip")]
        row.update(ratio=default["ratio"], best_ratio=default["best_ratio"], cpu_ratio=default["cpu_ratio"])
        rows.append(row)
        for name, numbers in row["models"].items():
            print(f"{pairs:>8,}  {name:<14}  {numbers['median_s']:>8.3f}  {numbers['ratio']:>12.2f}  "
                  f"{numbers['best_ratio']:>10.2f}  {numbers['cpu_ratio']:>14.2f}", flush=True)
    return rows


def parameter_breakdown(model: CompositionModel) -> dict[str, int]:
    """Trainable parameters per component."""
    groups = {"adapters": ("adapters",), "aggregators": ("low_aggregator", "high_aggregator"),
              "two stages": ("local_stage", "global_stage", "local_norm", "global_norm"),
              "gate and lambdas": ("gate", "local_scale", "global_scale"),
              "disentanglers": ("state_disentangler", "object_disentangler"), "prompts": ("prompts",)}
    counts = {group: 0 for group in groups}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        group = next(g for g, prefixes in groups.items() if name.split(".")[0] in prefixes)
        counts[group] += parameter.numel()
    counts["total"] = sum(counts.values())
    return counts


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(model_name: str, backbone: str, pairs: int, threads: int) -> dict:
    """In a fresh process: peak RSS while loading, and during one prediction over `pairs` pairs."""
    torch.set_num_threads(threads)
    get_backbone(backbone, device="cpu")
    model = load_model("clip", backbone=backbone).eval() if model_name == "clip" else build_msci(backbone, False)
    vocab = open_world_vocabulary(pairs)
    fill_text_cache(model, vocab)
    load_peak = _peak_rss_bytes()
    reset = _reset_peak_rss()
    model.predict(test_image(224), vocab)
    return {"model": model_name, "load_peak_bytes": load_peak,
            "predict_peak_bytes": _peak_rss_bytes() if reset else None, "process_peak_bytes": _peak_rss_bytes()}


def measure_memory(args: argparse.Namespace) -> list[dict]:
    """Run memory_child for each model in its own process (so peaks do not mix)."""
    results = []
    for name in ("clip", "msci"):
        command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name, "--backbone", args.backbone,
                   "--memory-pairs", str(args.memory_pairs), "--threads", str(args.threads)]
        output = subprocess.run(command, check=True, capture_output=True, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    return results


def run_benchmark(args: argparse.Namespace) -> dict:
    """Timings, parameter counts and (unless skipped) peak memory; prints a report and returns it."""
    torch.set_num_threads(args.threads)
    backbone = get_backbone(args.backbone, device="cpu")
    report: dict = {"backbone": backbone.name, "threads": args.threads, "adapters": args.adapters}
    if args.memory_pairs:
        print(f"peak memory, P = {args.memory_pairs:,} (fresh process each; RSS, GiB):", flush=True)
        report["memory"] = measure_memory(args)
        for row in report["memory"]:
            predict = row["predict_peak_bytes"]
            print(f"  {row['model']:<5} loading {row['load_peak_bytes'] / 2**30:.2f}   "
                  f"predicting {'n/a' if predict is None else f'{predict / 2**30:.2f}'}   "
                  f"process peak {row['process_peak_bytes'] / 2**30:.2f}", flush=True)
    models = build_models(args.backbone, args.adapters)
    counts = parameter_breakdown(build_msci(args.backbone, adapters=True))
    report["parameters"] = counts
    report["trainable_parameters"] = counts["total"]
    print(f"trainable parameters with adapters ({backbone.name}, {MIT_STATES_WORDS[0]} states x "
          f"{MIT_STATES_WORDS[1]} objects), millions (published):")
    for group, count in counts.items():
        published = PUBLISHED_PARAMETERS_M.get(group)
        print(f"  {group:<17} {count / 1e6:7.2f}" + (f"   ({published})" if published is not None else ""))
    print(f"per-image predict() time, {backbone.name}, CPU, {args.threads} thread(s), batch 1, "
          f"median of {args.repeats} runs{', MSCI with adapters' if args.adapters else ''}:")
    print("ratios are to clip; 'msci bfloat16' / 'msci float32': the row head's precision")
    print(f"{'pairs':>8}  {'model':<14}  {'median s':>8}  {'ratio median':>12}  {'ratio best':>10}  "
          f"{'ratio CPU time':>14}", flush=True)
    report["timings"] = time_predictions(models, args.pairs, args.repeats, test_image(224))
    report["precision"] = precision_agreement(models, open_world_vocabulary(max(args.pairs)))
    return report


def precision_agreement(models: dict[str, CompositionModel], vocab) -> dict | None:
    """How far the default head precision moves MSCI's scores from float32, on the example photos,
    next to how far the refinement moves them from clip (λ at 0.1); None where the default is float32."""
    if len(models) < 3:
        return None
    photos = [Image.open(path).convert("RGB") for path in sorted((REPO_ROOT / "examples").glob("*.jpg"))]
    scores = {name: np.stack([p.scores for p in model.predict(photos, vocab)]) for name, model in models.items()}
    default = next(name for name in models if name != "clip")
    rankings = {name: [np.argsort(-row)[:5] for row in scores[name]] for name in (default, "msci float32")}
    result = {"default": default, "photos": len(photos), "pairs": vocab.num_pairs,
              "max_score_difference": float(np.abs(scores[default] - scores["msci float32"]).max()),
              "max_refinement_change": float(np.abs(scores["msci float32"] - scores["clip"]).max()),
              "same_top1": sum(int(a[0] == b[0]) for a, b in zip(*rankings.values())),
              "same_top5_sets": sum(int(set(a) == set(b)) for a, b in zip(*rankings.values()))}
    print(f"{default} vs msci float32 on {len(photos)} example photos, P = {vocab.num_pairs:,}: max score difference "
          f"{result['max_score_difference']:.4f} (the refinement itself moves scores by up to "
          f"{result['max_refinement_change']:.2f}); same top-1 {result['same_top1']}/{len(photos)}, "
          f"same top-5 {result['same_top5_sets']}/{len(photos)}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.backbone, args.memory_pairs, args.threads)))
        return 0
    run_benchmark(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
