"""The global batches of an epoch, drawn from (seed, epoch), and each process's share of a batch."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence


def mix_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts (the same parts give the same seed on every machine)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


MIN_IMAGES_PER_PROCESS = 2  # BatchNorm in train mode (the disentanglers') cannot train on one image


def epoch_batches(num_images: int, batch_size: int, seed: int, epoch: int, processes: int = 1) -> list[list[int]]:
    """The global batches of an epoch: a permutation drawn from (seed, epoch), cut into batches. A final
    batch too small to give each of the processes two images joins the batch before it: BatchNorm cannot
    train on one image, so such a step would fail or train a function inference never uses."""
    import torch

    generator = torch.Generator().manual_seed(mix_seed("order", seed, epoch))
    order = torch.randperm(num_images, generator=generator).tolist()
    batches = [order[start:start + batch_size] for start in range(0, num_images, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < MIN_IMAGES_PER_PROCESS * processes:
        batches[-2].extend(batches.pop())
    return batches


def check_batch_split(batch_size: int, num_images: int, processes: int) -> None:
    """Raise TrainError when a step would hand a process fewer than two images (BatchNorm needs two)."""
    from .config import TrainError

    needed = MIN_IMAGES_PER_PROCESS * processes
    if batch_size < needed or num_images < needed:
        raise TrainError(f"{processes} process(es) need at least {needed} images per step (two each, for BatchNorm); "
                         f"the batch size is {batch_size} and the training split has {num_images} images.")


def shard_batch(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """This process's part of a global batch; a batch smaller than the number of processes is
    completed by wrapping around it, so no process ever gets an empty batch."""
    items = list(batch)
    while len(items) < world:
        items += list(batch)[: world - len(items)]
    return items[rank::world]
