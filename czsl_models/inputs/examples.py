"""Files shipped with the package: the example photos and their licences."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # czsl_models/


def examples_dir() -> Path:
    """The example photos: inside an installed package (czsl_models/examples), else the repository's examples/."""
    installed = _PACKAGE / "examples"
    return installed if installed.is_dir() else _PACKAGE.parent / "examples"


def example_photo_paths() -> list[Path]:
    """The example photos (JPEG and PNG), sorted by name."""
    folder = examples_dir()
    return sorted([*folder.glob("*.jpg"), *folder.glob("*.png")])
