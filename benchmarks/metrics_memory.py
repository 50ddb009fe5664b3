"""Peak memory and time of the streaming CZSL evaluator on the open-world C-GQA size.

Random float32 scores for 5,098 test images x 278,362 pairs (5,592 seen) arrive in chunks of
rows, as a model produces them; the full matrix (5.7 GB, what the reference evaluator holds,
per copy) never exists. Peak memory is measured with tracemalloc (NumPy reports its buffers to
it), as the peak of traced allocations above the level before the run, so it counts the score
chunks themselves and the evaluator's state and temporaries, not the interpreter or imports;
the process's peak RSS (getrusage) is printed beside it, with its growth over the level after
imports (the package imports torch, which alone holds a few hundred MB).

    python benchmarks/metrics_memory.py            # full C-GQA open-world size
    python benchmarks/metrics_memory.py --quick    # a small size, a few seconds
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from czsl_models.evaluation import StreamingEvaluator  # noqa: E402

CGQA_OPEN_WORLD = {"images": 5098, "states": 413, "objects": 674, "seen_pairs": 5592}
QUICK = {"images": 600, "states": 60, "objects": 80, "seen_pairs": 500}


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(images: int, states: int, objects: int, seen_pairs: int, chunk_rows: int, seed: int) -> None:
    """Stream random chunks through the evaluator and print memory and time."""
    rng = np.random.default_rng(seed)
    num_pairs = states * objects
    pair_states, pair_objects = np.divmod(np.arange(num_pairs), objects)
    seen = np.zeros(num_pairs, dtype=bool)
    seen[rng.choice(num_pairs, seen_pairs, replace=False)] = True
    seen_pair_ids, unseen_pair_ids = np.flatnonzero(seen), np.flatnonzero(~seen)
    # Half the images show a seen pair, half an unseen one; the true pair gets a boost so that
    # many images are right and the bias list has its full ~21 points.
    labels = np.where(
        np.arange(images) % 2 == 0, rng.choice(seen_pair_ids, images), rng.choice(unseen_pair_ids, images)
    )
    full_matrix_bytes = images * num_pairs * np.dtype(np.float32).itemsize

    start_rss_mib = peak_rss_mib()
    tracemalloc.start()
    baseline, _ = tracemalloc.get_traced_memory()
    generate_seconds = evaluate_seconds = 0.0
    evaluator = StreamingEvaluator(pair_states, pair_objects, seen)
    for start in range(0, images, chunk_rows):
        chunk_labels = labels[start : start + chunk_rows]
        begin = time.perf_counter()
        scores = rng.standard_normal((chunk_labels.shape[0], num_pairs), dtype=np.float32)
        scores[np.arange(chunk_labels.shape[0]), chunk_labels] += np.float32(4.5)
        generate_seconds += time.perf_counter() - begin
        begin = time.perf_counter()
        evaluator.update(scores, chunk_labels)
        evaluate_seconds += time.perf_counter() - begin
        del scores
    begin = time.perf_counter()
    metrics = evaluator.compute()
    compute_seconds = time.perf_counter() - begin
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    peak_bytes = peak - baseline
    chunk_bytes = chunk_rows * num_pairs * np.dtype(np.float32).itemsize
    print(f"{images:,} images x {num_pairs:,} pairs ({seen_pairs:,} seen), float32, chunks of {chunk_rows} rows")
    print(f"full score matrix (one copy, as the reference holds it): {full_matrix_bytes / 2**20:,.1f} MiB")
    print(f"one chunk of scores:                                    {chunk_bytes / 2**20:,.1f} MiB")
    print(f"peak traced memory (tracemalloc, above baseline):       {peak_bytes / 2**20:,.1f} MiB")
    rss_mib = peak_rss_mib()
    print(
        f"process peak RSS (getrusage ru_maxrss):                 {rss_mib:,.1f} MiB "
        f"(+{rss_mib - start_rss_mib:,.1f} MiB over the {start_rss_mib:,.1f} MiB after imports)"
    )
    print(
        f"peak / full matrix: {peak_bytes / full_matrix_bytes:.4f}   "
        f"peak / one chunk: {peak_bytes / chunk_bytes:.2f}"
    )
    print(
        f"time: update {evaluate_seconds:.2f} s, compute {compute_seconds:.3f} s "
        f"(random score generation {generate_seconds:.2f} s; update / generation = "
        f"{evaluate_seconds / generate_seconds:.2f})"
    )
    print(
        f"metrics: best seen {metrics.best_seen:.4f}, best unseen {metrics.best_unseen:.4f}, "
        f"HM {metrics.best_hm:.4f}, AUC {metrics.AUC:.4f}, {len(metrics.biasterm)} biases"
    )


def main() -> None:
    """Parse the size and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small size instead of open-world C-GQA")
    parser.add_argument("--chunk-rows", type=int, default=64, help="images per chunk of scores")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(**(QUICK if args.quick else CGQA_OPEN_WORLD), chunk_rows=args.chunk_rows, seed=args.seed)


if __name__ == "__main__":
    main()
