"""How far a model whose backbone runs in another precision drifts from its float32 twin on the example photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# The real ViT-L/14 architecture with random weights (runs offline), and every model the app serves.
FULL_BACKBONE = "random:ViT-L-14-quickgelu"
MODELS = ("clip", "msci", "refiner", "svip")


def example_photos() -> list[str]:
    """The real photos shipped in examples/ (the drawn shapes left out), as paths."""
    photos = sorted(str(path) for path in (ROOT / "examples").glob("*.jpg"))
    photos += sorted(str(path) for path in (ROOT / "examples").glob("*.png")
                     if not path.name.startswith(("dotted", "striped")))
    return photos


def centred_cosine(first: np.ndarray, second: np.ndarray) -> float:
    """Cosine between two score vectors after removing each one's mean (a common offset says nothing)."""
    a = first.astype(np.float64) - first.mean()
    b = second.astype(np.float64) - second.mean()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else float(np.array_equal(first, second))


@torch.no_grad()
def score_drift(reference, candidate, photos: list[str], vocab) -> tuple[float, float]:
    """(top-1 agreement, lowest centred score cosine) of candidate against reference over the photos."""
    from czsl_models.inputs.images import load_image

    images = [load_image(path) for path in photos]
    expected = reference.predict(images, vocab, top_k=1)
    got = candidate.predict(images, vocab, top_k=1)
    agree = [int(np.argmax(e.scores)) == int(np.argmax(g.scores)) for e, g in zip(expected, got)]
    cosines = [centred_cosine(e.scores, g.scores) for e, g in zip(expected, got)]
    return float(np.mean(agree)), float(min(cosines))
