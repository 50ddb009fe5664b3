"""Training precision: one optimisation step of MSCI (released variant, adapters: the reproduction recipe's
model) in float32, as the released code trains, against bfloat16 autocast, the project's faster switch
(`--mixed-precision bf16`). Both in the same run, interleaved, on the device that runs it (CUDA when
present, else the CPU), with the step's peak GPU memory where there is one.

    python benchmarks/training_precision.py                               # ViT-B-16 with random weights
    python benchmarks/training_precision.py --backbone random:ViT-L-14-quickgelu --batch 48   # the paper's size
    python benchmarks/training_precision.py --backbone tiny --steps 2     # a quick check

Random weights are enough: the arithmetic, not the values, decides the time.
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from czsl_models import Vocabulary, load_model  # noqa: E402

STATES = [f"state{i}" for i in range(16)]
OBJECTS = [f"object{i}" for i in range(12)]


def one_step(model, optimizer, pixels, vocab, targets, dtype: torch.dtype | None) -> float:
    """Seconds for forward, loss, backward and the optimiser step (synchronised on CUDA)."""
    device = pixels.device
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        logits = model(pixels, vocab)
        loss, _ = model.loss(logits, *targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    """Median step time in float32 and in bf16 autocast, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="random:ViT-B-16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.environ.setdefault("CZSL_DEVICE", device.type)
    torch.manual_seed(0)
    vocab = Vocabulary.build(", ".join(STATES), ", ".join(OBJECTS))
    model = load_model("msci", backbone=args.backbone, train_states=STATES, train_objects=OBJECTS,
                       train_pairs=[[s, o] for s, o in zip(STATES, OBJECTS)], variant="released", use_adapters=True,
                       preset="ut-zappos").to(device).train()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-5, weight_decay=1e-5)
    pixels = torch.randn(args.batch, 3, *model.backbone.image_size, device=device)
    pair_index = {pair: i for i, pair in enumerate(vocab.pairs)}
    targets = (torch.tensor([pair_index[(i % 12, i % 12)] for i in range(args.batch)], device=device),
               torch.tensor([i % 12 for i in range(args.batch)], device=device),
               torch.tensor([i % 12 for i in range(args.batch)], device=device))
    modes = {"float32": None, "bf16": torch.bfloat16}
    times: dict[str, list[float]] = {name: [] for name in modes}
    peak: dict[str, float] = {}
    for name, dtype in modes.items():  # warm-up
        one_step(model, optimizer, pixels, vocab, targets, dtype)
    for _ in range(args.steps):
        for name, dtype in modes.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            times[name].append(one_step(model, optimizer, pixels, vocab, targets, dtype))
            if device.type == "cuda":
                peak[name] = torch.cuda.max_memory_allocated() / 2**30
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else
              f"CPU ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)",
              "backbone": args.backbone, "batch": args.batch, "steps": args.steps,
              "seconds_per_step": {k: round(v, 4) for k, v in median.items()},
              "bf16_speedup": round(median["float32"] / median["bf16"], 3),
              "peak_gib": {k: round(v, 2) for k, v in peak.items()} or None,
              "load": round(os.getloadavg()[0], 2)}
    print(f"{result['device']}, {args.backbone}, batch {args.batch}: float32 {median['float32']:.3f} s/step, "
          f"bf16 autocast {median['bf16']:.3f} s/step, speed-up {result['bf16_speedup']:.2f}x (load {result['load']})")
    if args.json:
        print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
