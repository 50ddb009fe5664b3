"""One entry point for every dataset source: synthetic specs, czsl folders, image folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl

from .czsl import load_czsl_dataset
from .dataset import (
    DEFAULT_SPLIT_NAME,
    IMAGE_EXTENSIONS,
    SYNTHETIC_PREFIX,
    CompositionDataset,
    DatasetError,
)
from .folders import load_image_folder
from .shapes import load_synthetic_shapes

Pair = tuple[str, str]


_SYNTHETIC_LOADERS: dict[str, Callable[..., CompositionDataset]] = {"shapes": load_synthetic_shapes}
_OPTION_TYPES: dict[str, dict[str, type]] = {
    "synthetic": {"images_per_pair": int, "seed": int, "image_size": int, "num_states": int,
                  "num_objects": int, "unseen_fraction": float, "noise": float},
    "czsl": {"split_name": str},
    "image-folder": {"seed": int, "unseen_fraction": float},
}


def _typed_options(layout: str, options: dict[str, Any]) -> dict[str, Any]:
    """Options checked by name and converted to their types (query strings arrive as text)."""
    types = _OPTION_TYPES[layout]
    unknown = sorted(set(options) - set(types))
    if unknown:
        raise DatasetError(f"unknown option(s) {', '.join(unknown)} for a {layout} dataset; known: {', '.join(types)}")
    typed = {}
    for key, value in options.items():
        try:
            if types[key] is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            typed[key] = types[key](value)
        except (TypeError, ValueError):
            raise DatasetError(f"option {key}={value!r} is not a valid {types[key].__name__}") from None
    return typed


def has_image_subfolder(root: Path) -> bool:
    return any(
        folder.is_dir()
        and not folder.name.startswith((".", "_"))
        and any(f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir())
        for folder in root.iterdir()
    )


def detect_layout(path: str | Path) -> str:
    """'czsl' when a metadata_<split>.t7 file is present, 'image-folder' when folders hold images."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if any(root.glob("metadata_*.t7")):
        return "czsl"
    if has_image_subfolder(root):
        return "image-folder"
    raise DatasetError(
        f"{root} is not a dataset: expected either the czsl layout (images/, {DEFAULT_SPLIT_NAME}/, "
        f"metadata_{DEFAULT_SPLIT_NAME}.t7) or '<state> <object>' folders of images"
    )


def _czsl_split_name(root: Path, requested: str | None) -> str:
    if requested is not None or (root / f"metadata_{DEFAULT_SPLIT_NAME}.t7").is_file():
        return requested or DEFAULT_SPLIT_NAME
    available = sorted(p.name[len("metadata_") : -len(".t7")] for p in root.glob("metadata_*.t7"))
    if len(available) == 1:
        return available[0]
    raise DatasetError(f"{root} holds several splits ({', '.join(available)}); choose one with split_name")


def load_dataset(spec: str | Path, **options: Any) -> CompositionDataset:
    """Load "synthetic:shapes[?k=v&...]", a czsl-layout folder or an image folder (auto-detected)."""
    if isinstance(spec, str) and spec.startswith(SYNTHETIC_PREFIX):
        kind, _, query = spec[len(SYNTHETIC_PREFIX):].partition("?")
        if kind not in _SYNTHETIC_LOADERS:
            raise DatasetError(f"unknown synthetic dataset {kind!r}; available: {', '.join(_SYNTHETIC_LOADERS)}")
        try:
            query_options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=True)) if query else {}
        except ValueError:
            raise DatasetError(f"cannot read the options in {spec!r}; write them as ?key=value&key=value") from None
        # Keyword arguments win over the query string.
        return _SYNTHETIC_LOADERS[kind](**_typed_options("synthetic", {**query_options, **options}))
    root = Path(spec).expanduser()
    layout = detect_layout(root)
    typed = _typed_options(layout, options)
    if layout == "czsl":
        return load_czsl_dataset(root, _czsl_split_name(root, typed.get("split_name")))
    return load_image_folder(root, **typed)
