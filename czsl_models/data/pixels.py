"""Images of a split as batches of pixel tensors, decoded by workers when it pays."""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import torch

from .dataset import CompositionDataset, Sample


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """A seed per (run seed, epoch, image): augmentation is the same whatever the workers or the resume point."""
    digest = hashlib.sha256(f"augment|{seed}|{epoch}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class PixelSamples(torch.utils.data.Dataset):
    """Images of a split as pixel tensors; items are (epoch, index) keys so augmentation is seeded."""

    def __init__(self, dataset: CompositionDataset, samples: Sequence[Sample], transform: Callable,
                 augment: bool = False, seed: int = 0) -> None:
        self.dataset = dataset
        self.samples = list(samples)
        self.transform = transform
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[torch.Tensor, int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image = self.dataset.load_image(self.samples[index])
        if not self.augment:
            return self.transform(image), index
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(augmentation_seed(self.seed, epoch, index))
            return self.transform(image), index


def _collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, list[int]]:
    return torch.stack([pixels for pixels, _ in items]), [index for _, index in items]


def pixel_batches(samples: PixelSamples, batches: Sequence[Sequence[tuple[int, int] | int]],
                  num_workers: int = 0):
    """An iterable of (pixels, indices) for the given batches of keys, decoded by workers if asked."""
    return torch.utils.data.DataLoader(samples, batch_sampler=[list(batch) for batch in batches],
                                       num_workers=num_workers, collate_fn=_collate,
                                       persistent_workers=False, pin_memory=False)


def default_num_workers(num_images: int, device: torch.device) -> int:
    """Decoding workers: none for small sets or on CPU (the model needs the cores), a few on GPU."""
    import os

    if device.type == "cpu" or num_images < 256:
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))
