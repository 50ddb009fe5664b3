"""The published training augmentation and its per-image seeds."""

from __future__ import annotations

from typing import Callable


def _normalize_stats(preprocess) -> tuple[list[float], list[float]]:
    from torchvision import transforms

    for step in getattr(preprocess, "transforms", []):
        if isinstance(step, transforms.Normalize):
            return list(step.mean), list(step.std)
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    return list(OPENAI_DATASET_MEAN), list(OPENAI_DATASET_STD)


def training_augmentation(backbone) -> Callable:
    """The published training transform (CSP/Troika/MSCI): random resized crop (bicubic), horizontal
    flip, then the backbone's normalisation."""
    from torchvision import transforms

    mean, std = _normalize_stats(backbone.preprocess)
    return transforms.Compose([
        transforms.RandomResizedCrop(backbone.image_size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
