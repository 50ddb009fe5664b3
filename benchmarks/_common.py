"""Helpers shared by the benchmark scripts: timing, vocabularies, memory."""

from __future__ import annotations

import math
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


def pair_grid(pairs: int) -> tuple[int, int]:
    """States x objects giving exactly `pairs`: MIT-States' 115 x 245 for 28,175, else a near-square factorisation."""
    if pairs == 115 * 245:
        return 115, 245
    states = max(d for d in range(1, math.isqrt(pairs) + 1) if pairs % d == 0)
    return states, pairs // states


def open_world_vocabulary(pairs: int):
    """An open-world Vocabulary of exactly `pairs` pairs with synthetic words."""
    from czsl_models.inputs.vocab import Vocabulary

    states, objects = pair_grid(pairs)
    return Vocabulary.build([f"state{i}" for i in range(states)], [f"object{j}" for j in range(objects)],
                            max_words=max(states, objects), max_pairs=max(pairs, 1))


def fill_text_cache(model, vocab, seed: int = 0) -> None:
    """Put random unit text features under the keys the model will look up, as after a first encoding:
    encoding tens of thousands of prompts with a random ViT-L text tower would dominate the run, and real
    use caches them anyway."""
    import torch

    from czsl_models.models.prompts import BRANCHES

    generator = torch.Generator().manual_seed(seed)
    sizes = {"pair": vocab.num_pairs, "state": len(vocab.states), "object": len(vocab.objects)}
    for branch in BRANCHES:
        features = torch.randn(sizes[branch], model.backbone.embed_dim, generator=generator)
        features = torch.nn.functional.normalize(features, dim=-1).to(model.backbone.device)
        model.backbone.text_cache.put(model.prompts.cache_key(vocab, branch), features)
