"""Helpers shared by the benchmark scripts: timing, vocabularies, memory."""

from __future__ import annotations

import os
import resource
import statistics
import time
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def median_time(function: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of function over repeats, after warm-up calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_vocabulary_text(num_pairs: int) -> tuple[str, str]:
    """States and objects whose open world has about num_pairs pairs (real English-like words)."""
    states = max(1, int(round(num_pairs ** 0.5 * 0.6)))
    objects = max(1, -(-num_pairs // states))
    state_words = ", ".join(f"state{i} sliced" if i % 3 == 0 else f"state{i}" for i in range(states))
    object_words = ", ".join(f"object{i}" for i in range(objects))
    return state_words, object_words


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
