"""Shared fixtures: everything offline, on the tiny random backbone and real example photos."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("CZSL_DEVICE", "cpu")

from pathlib import Path

import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="session")
def tiny_backbone():
    """The shared tiny random OpenCLIP backbone."""
    from czsl_models.backbone import get_backbone

    return get_backbone("tiny")


@pytest.fixture(scope="session")
def example_paths() -> list[Path]:
    """The real example photos."""
    paths = sorted(EXAMPLES.glob("*.jpg"))
    assert len(paths) >= 4
    return paths


@pytest.fixture(scope="session")
def example_images(example_paths) -> list[Image.Image]:
    """The example photos as RGB images."""
    return [Image.open(path).convert("RGB") for path in example_paths]
