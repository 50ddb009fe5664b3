"""Image folders: '<state> <object>/' folders of images, with an optional split file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .dataset import (
    IMAGE_EXTENSIONS,
    JUNK_FOLDERS,
    PHASES,
    SPLIT_FILE_NAMES,
    CompositionDataset,
    DatasetError,
    display_name,
    distribute_images,
    held_out_split,
)

Pair = tuple[str, str]


def _split_folder_name(name: str) -> Pair | None:
    """('state words', 'object') from "state words object", or from "state_object" without spaces."""
    words = name.split()
    if len(words) >= 2:
        return " ".join(words[:-1]), words[-1]
    state, separator, obj = name.rpartition("_")
    if separator and state.strip("_") and obj:
        return state, obj
    return None


def _pair_from_split_entry(entry: Any, where: str) -> Pair:
    if isinstance(entry, str):
        pair = _split_folder_name(entry.strip())
    elif isinstance(entry, (list, tuple)) and len(entry) == 2 and all(isinstance(w, str) for w in entry):
        pair = (entry[0].strip(), entry[1].strip()) if entry[0].strip() and entry[1].strip() else None
    else:
        pair = None
    if pair is None:
        raise DatasetError(f"{where}: cannot read the pair {entry!r}; write 'state object' or [state, object]")
    return display_name(pair[0]), display_name(pair[1])


def _read_split_file(root: Path) -> tuple[Path, dict[str, list[Pair]]] | None:
    """The pairs listed per phase in split.json / split.txt, or None when there is none."""
    found = [root / name for name in SPLIT_FILE_NAMES if (root / name).is_file()]
    if not found:
        return None
    if len(found) > 1:
        raise DatasetError(f"{root} has both split.json and split.txt; keep one")
    path = found[0]
    entries: dict[str, list[Any]] = {phase: [] for phase in PHASES}
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            content = json.loads(text)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path.name} is not valid JSON: {error}") from None
        if not isinstance(content, dict) or set(content) - set(PHASES) or not all(
            isinstance(content.get(phase, []), list) for phase in PHASES
        ):
            raise DatasetError(f'{path.name} must look like {{"train": [...], "val": [...], "test": [...]}}')
        entries = {phase: list(content.get(phase, [])) for phase in PHASES}
    else:
        for line_number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            phase, colon, rest = line.partition(":")
            if not colon or phase.strip() not in PHASES:
                raise DatasetError(f"{path.name}:{line_number}: expected 'train|val|test: state object'")
            state, bar, obj = rest.partition("|")
            entries[phase.strip()].append([state, obj] if bar else rest)
    pairs = {
        phase: [_pair_from_split_entry(entry, f"{path.name} ({phase})") for entry in phase_entries]
        for phase, phase_entries in entries.items()
    }
    if not pairs["train"] or not pairs["test"]:
        raise DatasetError(f"{path.name} must list train and test pairs")
    return path, pairs


def _pair_folders(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """Map each folder key ("state object" as displayed) to the folder and its image files."""
    folders: dict[str, tuple[Path, list[str]]] = {}
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith((".", "_")) or folder.name.lower() in JUNK_FOLDERS:
            continue
        images = sorted(
            f"{folder.name}/{file.name}"
            for file in folder.iterdir()
            if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS and not file.name.startswith(".")
        )
        if not images:
            continue
        key = display_name(folder.name)
        if key in folders:
            raise DatasetError(f"folders {folders[key][0].name!r} and {folder.name!r} name the same pair")
        folders[key] = (folder, images)
    return folders


def load_image_folder(
    root: str | Path,
    seed: int = 0,
    unseen_fraction: float = 0.2,
) -> CompositionDataset:
    """Load `<root>/<state> <object>/*.jpg` folders, split by a split file or by seeded held-out pairs."""
    root = Path(root)
    folders = _pair_folders(root)
    if not folders:
        raise DatasetError(f"{root} has no '<state> <object>' folders with images in them")
    split_file = _read_split_file(root)
    listed: dict[Pair, tuple[str, ...]] = {}
    pair_of_key: dict[str, Pair] = {}
    if split_file is not None:
        path, listed_pairs = split_file
        for phase in PHASES:
            for pair in listed_pairs[phase]:
                listed[pair] = tuple(dict.fromkeys((*listed.get(pair, ()), phase)))
                key = f"{pair[0]} {pair[1]}"
                if pair_of_key.setdefault(key, pair) != pair:
                    raise DatasetError(f"{path.name} splits {key!r} into two different pairs")
        unlisted = sorted(folders[key][0].name for key in folders if key not in pair_of_key)
        if unlisted:
            raise DatasetError(f"{path.name} does not list the folder(s): {', '.join(unlisted[:10])}")
        missing = sorted(key for key in pair_of_key if key not in folders)
        if missing:
            raise DatasetError(f"{path.name} lists pairs without an image folder: {', '.join(missing[:10])}")
    images_by_pair: dict[Pair, list[str]] = {}
    for key, (folder, images) in folders.items():
        pair = pair_of_key.get(key)
        if pair is None:
            split = _split_folder_name(folder.name)
            if split is None:
                raise DatasetError(f"folder {folder.name!r} is not named '<state> <object>'")
            pair = (display_name(split[0]), display_name(split[1]))
        images_by_pair[pair] = images
    if split_file is not None:
        splits = distribute_images(images_by_pair, listed, seed)
        train_pairs, val_pairs, test_pairs = (
            [pair for pair, phases in listed.items() if phase in phases] for phase in PHASES
        )
    else:
        train_pairs, val_pairs, test_pairs, splits = held_out_split(images_by_pair, unseen_fraction, seed)
    all_pairs = list(images_by_pair)
    return CompositionDataset(
        name=root.resolve().name,
        root=root,
        states=sorted({state for state, _ in all_pairs}),
        objects=sorted({obj for _, obj in all_pairs}),
        train_pairs=train_pairs,
        val_pairs=val_pairs,
        test_pairs=test_pairs,
        splits=splits,
        layout="image-folder",
        exif_orientation=True,
    )
