"""Epoch time of the "fast" training preset (heads on cached backbone outputs) against the uncached
path (the same training, encoding every image every epoch), on the same data: the ratio.

Usage:
    python benchmarks/train_cache_speed.py            # random ViT-L/14, a few minutes on 2 CPU cores
    python benchmarks/train_cache_speed.py --quick    # tiny backbone, seconds

Both runs go through `czsl_models.training.train` with identical settings, except that the uncached one
sets `use_feature_cache=False`. An epoch's time runs from the end of the previous epoch (after its
validation) to its last optimiser step, so it counts data loading, the vision pass (uncached only)
and the head's forward and backward, and leaves out validation and the one-time cache build (shown
apart, with the number of epochs after which the cache has paid for itself). The first epoch of each
run is a warm-up; the median of the others is reported, as wall-clock and as process CPU time (the
latter is steadier on a machine shared with other jobs). Cached features are float32 here, so both
runs see the same numbers and their losses should agree to rounding (printed as a check).

What the ratio depends on: every step re-encodes the training prompts through the text tower (their
context is learned), a fixed cost per step (~0.9 CPU-s for 13 prompts on ViT-L/14), so the ratio
grows with the batch size; the default batch (one step of 22 images) sits below the published 48-64.
Threads: one by default. On a 2-core machine shared with other jobs, two threads made the head's
many small operations up to 7x slower (threads spin-waiting on a busy core) while the backbone's
large ones lost far less, which distorted the ratio between runs from 3x to 8x; with one thread it
was stable at 16x. Pass --threads to choose.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CZSL_DEVICE", "cpu")  # a CPU benchmark, even where CUDA exists
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from czsl_models.backbones import get_backbone  # noqa: E402
from czsl_models.training import TrainConfig, train  # noqa: E402

VIT_L = "random:ViT-L-14-quickgelu"
TARGET_RATIO = 10.0


class EpochClock:
    """A training callback that times each epoch's steps (wall and CPU), leaving validation out."""

    def __init__(self) -> None:
        self.created = time.perf_counter()
        self.setup = 0.0  # from the call to train() to the first step: loading, model, cache build
        self.mark = (0.0, 0.0)
        self.last_step = (0.0, 0.0)
        self.epochs: list[tuple[float, float]] = []
        self.losses: list[float] = []

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def on_start(self, total_steps: int) -> None:
        self.mark = self.now()
        self.setup = self.mark[0] - self.created

    def on_step(self, step: int, loss: float) -> None:
        self.last_step = self.now()
        self.losses.append(loss)

    def on_epoch(self, epoch: int, metrics: dict) -> None:
        self.epochs.append((self.last_step[0] - self.mark[0], self.last_step[1] - self.mark[1]))
        self.mark = self.now()

    def on_end(self, result) -> None:
        pass


def run(model: str, backbone: str, dataset: str, epochs: int, batch_size: int, cached: bool, work: Path) -> dict:
    """One training run; its per-epoch times, losses and the cache build time."""
    clock = EpochClock()
    config = TrainConfig(model=model, dataset=dataset, backbone=backbone, out=str(work / ("cached" if cached else "uncached")),
                         epochs=epochs, batch_size=batch_size, lr=1e-4, use_feature_cache=cached, cache_dtype="float32",
                         cache_dir=str(work / "cache"), eval_batch_size=batch_size, test_at_end=False, num_workers=0)
    train(config, callback=clock)
    timed = clock.epochs[1:] or clock.epochs
    cache_bytes = sum(p.stat().st_size for p in (work / "cache").rglob("*.npy")) if cached else 0
    return {"wall": statistics.median(t for t, _ in timed), "cpu": statistics.median(c for _, c in timed),
            "losses": clock.losses, "setup": clock.setup, "cache_bytes": cache_bytes}


def main(argv: list[str] | None = None) -> dict:
    """Run both paths and print the table; returns the measured numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny backbone, seconds")
    parser.add_argument("--model", default="msci", choices=("msci", "refiner"), help="a model that trains from cache")
    parser.add_argument("--backbone", default=None, help=f"backbone spec (default {VIT_L}; --quick: tiny)")
    parser.add_argument("--images-per-pair", type=int, default=None,
                        help="synthetic images per pair, 3x3 pairs (default 4: 22 training images; --quick: 2)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run, the first a warm-up (default 2; --quick: 3)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per step (default 24, i.e. one step an epoch, near the published 48-64; --quick: 6)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see above)")
    args = parser.parse_args(argv)
    backbone = args.backbone or ("tiny" if args.quick else VIT_L)
    args.images_per_pair = args.images_per_pair or (2 if args.quick else 4)
    args.epochs = args.epochs or (3 if args.quick else 2)
    args.batch_size = args.batch_size or (6 if args.quick else 24)
    torch.set_num_threads(args.threads)
    dataset = f"synthetic:shapes?num_states=3&num_objects=3&images_per_pair={args.images_per_pair}"
    get_backbone(backbone)  # loaded once, before either run's setup is timed
    with tempfile.TemporaryDirectory(prefix="czsl-train-bench-") as folder:
        work = Path(folder)
        uncached = run(args.model, backbone, dataset, args.epochs, args.batch_size, cached=False, work=work)
        cached = run(args.model, backbone, dataset, args.epochs, args.batch_size, cached=True, work=work)
    ratio_wall = uncached["wall"] / cached["wall"]
    ratio_cpu = uncached["cpu"] / cached["cpu"]
    # Both runs set up the same way; the cached one also builds the cache (train and val images).
    build = max(cached["setup"] - uncached["setup"], 0.0)
    print(f"model {args.model}, backbone {backbone}, {dataset}, batch {args.batch_size}, {args.threads} threads, "
          f"median of epochs 2..{args.epochs}")
    print(f"{'path':<10} {'epoch wall s':>13} {'epoch CPU s':>12}")
    print(f"{'uncached':<10} {uncached['wall']:>13.3f} {uncached['cpu']:>12.3f}")
    print(f"{'fast':<10} {cached['wall']:>13.3f} {cached['cpu']:>12.3f}")
    print(f"ratio (uncached / fast): wall {ratio_wall:.1f}x, CPU {ratio_cpu:.1f}x (target >= {TARGET_RATIO:.0f}x)")
    print(f"one-time cache build ~{build:.1f} s, {cached['cache_bytes'] / 2**20:.1f} MiB on disk (float32); "
          f"paid back after ~{build / max(uncached['wall'] - cached['wall'], 1e-9):.1f} epochs")
    gap = max(abs(a - b) for a, b in zip(uncached["losses"], cached["losses"]))
    print(f"same data check: largest per-step loss difference between the paths {gap:.2e}")
    return {"ratio_wall": ratio_wall, "ratio_cpu": ratio_cpu, "loss_gap": gap, "cache_build": build,
            "uncached": uncached, "cached": cached}


if __name__ == "__main__":
    main()
