"""The published training augmentation and its per-image seeds."""

from __future__ import annotations

from typing import Any, Callable


def _normalize_stats(preprocess) -> tuple[list[float], list[float]]:
    from torchvision import transforms

    for step in getattr(preprocess, "transforms", []):
        if isinstance(step, transforms.Normalize):
            return list(step.mean), list(step.std)
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    return list(OPENAI_DATASET_MEAN), list(OPENAI_DATASET_STD)


def training_augmentation(backbone) -> Callable:
    """The released training transform of the CLIP-based models (MSCI `dataset.py`, CSP
    `datasets/composition_dataset.py`): Resize (bicubic) -> CenterCrop -> RandomHorizontalFlip ->
    RandomPerspective -> RandomRotation(5) -> the backbone's normalisation. Their RandomResizedCrop
    belongs to their ImageNet-backbone branch only; it would crop away the size and context cues
    that states need."""
    from torchvision import transforms

    mean, std = _normalize_stats(backbone.preprocess)
    size = backbone.image_size
    # An int resizes the shorter side (aspect kept) as released; a (h, w) pair would squash the photo.
    side = size if isinstance(size, int) else min(size)
    return transforms.Compose([
        transforms.Resize(side, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(size),
        transforms.RandomHorizontalFlip(),
        transforms.RandomPerspective(),
        transforms.RandomRotation(degrees=5),
        transforms.Lambda(_rgb),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def _rgb(image):
    """RGB after the geometric steps (as released); a picklable function for data-loader workers."""
    return image.convert("RGB")


def training_transform(preset: str, backbone) -> Any:
    """The training images' transform: the released augmentation under "paper", the backbone's own
    preprocessing (no augmentation, so backbone outputs can be cached) under "fast"."""
    return training_augmentation(backbone) if preset == "paper" else backbone.preprocess
