"""Composition datasets: the czsl layout, image folders, synthetic shapes, and safe zip import.

Three layouts load into one `CompositionDataset`:

* **czsl** (MIT-States, UT-Zappos, C-GQA)::

      <root>/images/...                                      paths as in the metadata
      <root>/<split>/{train,val,test}_pairs.txt               one "state object" per line
      <root>/metadata_<split>.t7                              torch.save'd list of dicts

  with ``<split>`` = ``compositional-split-natural`` unless ``split_name`` says otherwise.
  Image membership comes only from each record's ``set``; ``NA`` records and records whose
  pair is not in the pair file of their own set are dropped (and counted in ``dropped``).

* **image folder**: ``<root>/<state> <object>/<image files>``. The last word of a folder name
  is the object and the words before it are the state; underscores and dots read as spaces,
  so ``old_rusty bike`` is ("old rusty", "bike") and a folder name without spaces splits at
  its last underscore (``sliced_apple``). An optional ``split.json`` or ``split.txt`` lists
  the train / val / test pairs and can name the split of a multi-word object explicitly::

      split.json   {"train": ["red apple", ["old", "rusty bike"]], "val": [...], "test": [...]}
      split.txt    train: red apple
                   test: old | rusty bike

  Without a split file, a seeded fraction of the pairs is held out as unseen (half for val,
  half for test) while every state and object keeps a training pair, and the images of the
  seen pairs are split 80/10/10.

* **synthetic**: ``synthetic:shapes[?images_per_pair=5&seed=0&...]``, coloured / textured /
  sized shapes drawn on the fly from their index (nothing is written to disk).

Names are shown lowercased with ``.`` and ``_`` read as spaces (UT-Zappos ``Faux.Leather`` is
"faux leather"); the raw names are kept for matching metadata. States and objects follow
the sorted order of their raw names, the order of the published open-world tensors.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image, ImageDraw, ImageOps

Pair = tuple[str, str]

PHASES = ("train", "val", "test")
DEFAULT_SPLIT_NAME = "compositional-split-natural"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
METADATA_EXTENSIONS = frozenset({".txt", ".t7", ".json"})
SPLIT_FILE_NAMES = ("split.json", "split.txt")
SYNTHETIC_PREFIX = "synthetic:"
# Files that archivers and file browsers add; never part of a dataset.
_JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_JUNK_FOLDERS = frozenset({"__macosx"})
_IMAGE_SPLIT_WEIGHTS = {"train": 0.8, "val": 0.1, "test": 0.1}


class DatasetError(ValueError):
    """A dataset or archive that cannot be used, with a message meant for the user."""


@dataclass(frozen=True)
class Sample:
    """One image and its composition label."""

    image: str  # path relative to the dataset root, or "synthetic:<index>"
    state: str  # display name
    object: str  # display name


@dataclass
class CompositionDataset:
    """States, objects, pair splits and labelled images of one compositional dataset."""

    name: str
    root: Path | None
    states: list[str]
    objects: list[str]
    train_pairs: list[Pair]
    val_pairs: list[Pair]
    test_pairs: list[Pair]
    splits: dict[str, list[Sample]]
    layout: str = "czsl"
    raw_states: list[str] = field(default_factory=list)  # parallel to `states`
    raw_objects: list[str] = field(default_factory=list)  # parallel to `objects`
    dropped: dict[str, int] = field(default_factory=dict)  # metadata records left out, by reason
    image_renderer: Callable[[int], Image.Image] | None = field(default=None, repr=False, compare=False)
    exif_orientation: bool = False  # rotate by EXIF (user photos); the czsl reference does not

    def __post_init__(self) -> None:
        self.raw_states = list(self.raw_states) or list(self.states)
        self.raw_objects = list(self.raw_objects) or list(self.objects)
        for kind, names, raws in (("state", self.states, self.raw_states), ("object", self.objects, self.raw_objects)):
            if len(set(names)) != len(names):
                raise DatasetError(f"duplicate {kind} names in {self.name}")
            if len(raws) != len(names):
                raise DatasetError(f"{kind} raw names do not match the display names in {self.name}")
        self._state_rank = {name: index for index, name in enumerate(self.states)}
        self._object_rank = {name: index for index, name in enumerate(self.objects)}
        self.train_pairs = self._sorted_pairs(self.train_pairs)
        self.val_pairs = self._sorted_pairs(self.val_pairs)
        self.test_pairs = self._sorted_pairs(self.test_pairs)
        self.splits = {phase: list(self.splits.get(phase, [])) for phase in PHASES}
        for phase, samples in self.splits.items():
            for sample in samples:
                self._check_pair((sample.state, sample.object), f"{phase} image {sample.image}")
        self._closed_world_pairs = self._sorted_pairs(
            set(self.train_pairs) | set(self.val_pairs) | set(self.test_pairs)
        )

    def _check_pair(self, pair: Pair, where: str) -> None:
        if pair[0] not in self._state_rank or pair[1] not in self._object_rank:
            raise DatasetError(f"{where}: pair {pair[0]!r} {pair[1]!r} is outside the vocabulary of {self.name}")

    def _sorted_pairs(self, pairs: Iterable[Pair]) -> list[Pair]:
        unique = {(state, obj) for state, obj in pairs}
        for pair in unique:
            self._check_pair(pair, "pair list")
        return sorted(unique, key=lambda pair: (self._state_rank[pair[0]], self._object_rank[pair[1]]))

    def load_image(self, sample: Sample) -> Image.Image:
        """Return the sample's image as RGB."""
        if self.image_renderer is not None and sample.image.startswith(SYNTHETIC_PREFIX):
            index = sample.image[len(SYNTHETIC_PREFIX):]
            if not index.isdigit():
                raise DatasetError(f"not a synthetic image name: {sample.image!r}")
            return self.image_renderer(int(index))
        if self.root is None:
            raise DatasetError(f"{self.name} has no root folder to read {sample.image} from")
        path = self.root / sample.image
        try:
            with Image.open(path) as image:
                image = ImageOps.exif_transpose(image) if self.exif_orientation else image
                return image.convert("RGB")
        except FileNotFoundError:
            raise DatasetError(f"image not found: {path}") from None
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise DatasetError(f"cannot read image {path}: {error}") from None

    def candidate_pairs(self, phase: str = "test", open_world: bool = False) -> list[Pair]:
        """Pairs to score: the union of the split pairs (closed world) or every state × object."""
        _check_phase(phase)
        if open_world:
            return list(itertools.product(self.states, self.objects))
        return list(self._closed_world_pairs)

    def phase_mask(self, pairs: Sequence[Pair], phase: str) -> np.ndarray:
        """True for pairs in train ∪ phase: the closed-world candidates of that phase."""
        _check_phase(phase)
        allowed = set(self.train_pairs) | set(self.pairs_of(phase))
        return np.array([tuple(pair) in allowed for pair in pairs], dtype=bool)

    def seen_mask(self, pairs: Sequence[Pair]) -> np.ndarray:
        """True for pairs seen in training."""
        seen = set(self.train_pairs)
        return np.array([tuple(pair) in seen for pair in pairs], dtype=bool)

    def pairs_of(self, phase: str) -> list[Pair]:
        """The pairs listed for a phase."""
        _check_phase(phase)
        return {"train": self.train_pairs, "val": self.val_pairs, "test": self.test_pairs}[phase]

    def unseen_pairs(self, phase: str) -> list[Pair]:
        """The pairs of a phase that are not training pairs."""
        seen = set(self.train_pairs)
        return [pair for pair in self.pairs_of(phase) if pair not in seen]

    def summary(self) -> dict[str, Any]:
        """Counts of states, objects, pairs and images, for the UI and the CLI."""
        seen = set(self.train_pairs)
        counts: dict[str, Any] = {
            "name": self.name,
            "layout": self.layout,
            "root": str(self.root) if self.root is not None else None,
            "states": len(self.states),
            "objects": len(self.objects),
            "closed_world_pairs": len(self._closed_world_pairs),
            "open_world_pairs": len(self.states) * len(self.objects),
            "train_pairs": len(self.train_pairs),
        }
        for phase in ("val", "test"):
            unseen = len(self.unseen_pairs(phase))
            counts[f"{phase}_pairs_seen"] = len(self.pairs_of(phase)) - unseen
            counts[f"{phase}_pairs_unseen"] = unseen
        for phase in PHASES:
            samples = self.splits[phase]
            counts[f"{phase}_images"] = len(samples)
            if phase != "train":
                counts[f"{phase}_images_unseen"] = sum((s.state, s.object) not in seen for s in samples)
        if self.dropped:
            counts["dropped_records"] = dict(self.dropped)
        return counts


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise DatasetError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")


# ----------------------------------------------------------------------------- names


def display_name(raw: str) -> str:
    """How a raw dataset name is shown: lowercase, with '.' and '_' read as spaces."""
    return " ".join(raw.replace(".", " ").replace("_", " ").split()).lower()


def _display_names(raws: Sequence[str]) -> list[str]:
    """Display names parallel to `raws`; raw names are kept where two would look the same."""
    shown = [display_name(raw) or raw for raw in raws]
    clashes = {name for name in shown if shown.count(name) > 1}
    names = [raw if name in clashes else name for raw, name in zip(raws, shown)]
    folded = [name.casefold() for name in names]
    if len(set(folded)) != len(folded):  # vocabularies treat names case-insensitively
        twins = sorted(name for name, key in zip(names, folded) if folded.count(key) > 1)
        raise DatasetError(f"names that differ only in case cannot be told apart: {', '.join(twins[:6])}")
    return names


def _vocabulary(raws: Iterable[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """Sorted raw names, their display names, and the raw -> display map."""
    raw_sorted = sorted(set(raws))
    shown = _display_names(raw_sorted)
    return raw_sorted, shown, dict(zip(raw_sorted, shown))


# ----------------------------------------------------------------------------- czsl layout


def _read_pair_file(path: Path) -> list[Pair]:
    """Read one "state object" pair per non-empty line."""
    if not path.is_file():
        raise DatasetError(f"missing pair file {path}")
    pairs: list[Pair] = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if len(words) != 2:
            raise DatasetError(f"{path}:{line_number}: expected 'state object', got {line.strip()!r}")
        pairs.append((words[0], words[1]))
    return pairs


def _load_metadata(path: Path) -> list[dict[str, str]]:
    """Read czsl metadata without unpickling arbitrary objects."""
    import torch  # only this layout needs torch; keep `import czsl_models.data.dataset` light

    try:
        records = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise DatasetError(
            f"cannot read metadata {path.name}: it must be a torch.save'd list of plain records "
            f"(arbitrary pickled objects are refused for safety). Details: {str(error).splitlines()[0]}"
        ) from None
    if not isinstance(records, list):
        raise DatasetError(f"metadata {path.name} must hold a list of records, not {type(records).__name__}")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DatasetError(f"metadata {path.name}: record {index} is not a dict")
        for key in ("image", "attr", "obj", "set"):
            if not isinstance(record.get(key), str):
                raise DatasetError(f"metadata {path.name}: record {index} lacks a text {key!r}")
    return records


def _safe_relative_path(name: str, where: str) -> str:
    """Reject absolute paths and '..' so metadata cannot point outside the dataset."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\x00" in name:
        raise DatasetError(f"{where}: unsafe image path {name!r}")
    return "/".join(part for part in parts if part not in ("", "."))


def load_czsl_dataset(root: str | Path, split_name: str = DEFAULT_SPLIT_NAME) -> CompositionDataset:
    """Load a dataset in the czsl layout (MIT-States, UT-Zappos, C-GQA)."""
    root = Path(root)
    split_dir = root / split_name
    metadata_path = root / f"metadata_{split_name}.t7"
    if not metadata_path.is_file():
        available = sorted(p.name[len("metadata_") : -len(".t7")] for p in root.glob("metadata_*.t7"))
        raise DatasetError(
            f"missing metadata file {metadata_path}"
            + (f"; available splits: {', '.join(available)}" if available else "")
        )
    raw_pairs = {phase: _read_pair_file(split_dir / f"{phase}_pairs.txt") for phase in PHASES}
    all_raw_pairs = [pair for pairs in raw_pairs.values() for pair in pairs]
    raw_states, states, state_shown = _vocabulary(state for state, _ in all_raw_pairs)
    raw_objects, objects, object_shown = _vocabulary(obj for _, obj in all_raw_pairs)
    pair_sets = {phase: set(pairs) for phase, pairs in raw_pairs.items()}

    splits: dict[str, list[Sample]] = {phase: [] for phase in PHASES}
    dropped = {"not_available": 0, "pair_not_in_split": 0}
    for index, record in enumerate(_load_metadata(metadata_path)):
        phase, pair = record["set"], (record["attr"], record["obj"])
        if "NA" in (phase, *pair):
            dropped["not_available"] += 1
            continue
        if phase not in pair_sets:
            raise DatasetError(f"metadata {metadata_path.name}: record {index} has unknown set {phase!r}")
        if pair not in pair_sets[phase]:
            dropped["pair_not_in_split"] += 1
            continue
        image = _safe_relative_path(record["image"], f"metadata {metadata_path.name} record {index}")
        splits[phase].append(Sample(f"images/{image}", state_shown[pair[0]], object_shown[pair[1]]))

    def shown(pairs: list[Pair]) -> list[Pair]:
        return [(state_shown[state], object_shown[obj]) for state, obj in pairs]

    return CompositionDataset(
        name=root.resolve().name,
        root=root,
        states=states,
        objects=objects,
        train_pairs=shown(raw_pairs["train"]),
        val_pairs=shown(raw_pairs["val"]),
        test_pairs=shown(raw_pairs["test"]),
        splits=splits,
        layout="czsl",
        raw_states=raw_states,
        raw_objects=raw_objects,
        dropped=dropped,
    )


# ----------------------------------------------------------------------------- split helpers


def hold_out_unseen_pairs(
    pairs: Sequence[Pair], unseen_fraction: float, seed: int
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Split pairs into (train, val unseen, test unseen), every state and object keeping a train pair."""
    ordered = sorted(set(pairs))
    wanted = round(unseen_fraction * len(ordered))
    if unseen_fraction > 0:
        wanted = max(wanted, 2)  # one unseen pair for val and one for test, when possible
    state_count = {state: 0 for state, _ in ordered}
    object_count = {obj: 0 for _, obj in ordered}
    for state, obj in ordered:
        state_count[state] += 1
        object_count[obj] += 1
    held_out: list[Pair] = []
    for index in np.random.default_rng(seed).permutation(len(ordered)):
        if len(held_out) >= wanted:
            break
        state, obj = ordered[index]
        if state_count[state] > 1 and object_count[obj] > 1:
            held_out.append((state, obj))
            state_count[state] -= 1
            object_count[obj] -= 1
    if unseen_fraction > 0 and not held_out:
        raise DatasetError(
            "cannot hold out any unseen pair: every state and object must keep a training pair. "
            "Add pairs that share states and objects, or give a split file."
        )
    held = set(held_out)
    train = [pair for pair in ordered if pair not in held]
    return train, sorted(held_out[1::2]), sorted(held_out[0::2])


def _distribute_images(
    images_by_pair: dict[Pair, list[str]], phases_by_pair: dict[Pair, tuple[str, ...]], seed: int
) -> dict[str, list[Sample]]:
    """Divide each pair's images among its phases, 80/10/10 renormalised, reproducibly."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[Sample]] = {phase: [] for phase in PHASES}
    expected = {phase: 0.0 for phase in PHASES}
    assigned = {phase: 0 for phase in PHASES}
    pairs = sorted(images_by_pair)
    # Running totals (not per-pair rounding) so small pairs still add up to 80/10/10 overall;
    # a seeded pair order decides which pairs give the odd image to val or test.
    for pair_index in rng.permutation(len(pairs)):
        pair = pairs[pair_index]
        images = sorted(images_by_pair[pair])
        images = [images[i] for i in rng.permutation(len(images))]
        phases = phases_by_pair[pair]
        total_weight = sum(_IMAGE_SPLIT_WEIGHTS[phase] for phase in phases)
        remaining = len(images)
        counts = {}
        for phase in phases[1:]:  # the first phase (train when present) takes what is left
            expected[phase] += len(images) * _IMAGE_SPLIT_WEIGHTS[phase] / total_weight
            count = max(0, min(math.floor(expected[phase] + 0.5) - assigned[phase], remaining - 1))
            counts[phase] = count
            assigned[phase] += count
            remaining -= count
        counts[phases[0]] = remaining
        start = 0
        for phase in phases:
            for image in images[start : start + counts[phase]]:
                splits[phase].append(Sample(image, pair[0], pair[1]))
            start += counts[phase]
    for samples in splits.values():
        samples.sort(key=lambda sample: sample.image)
    return splits


def _held_out_split(
    images_by_pair: dict[Pair, list[str]], unseen_fraction: float, seed: int
) -> tuple[list[Pair], list[Pair], list[Pair], dict[str, list[Sample]]]:
    """Seeded unseen pairs plus an 80/10/10 image split of the seen pairs."""
    train, val_unseen, test_unseen = hold_out_unseen_pairs(list(images_by_pair), unseen_fraction, seed)
    phases_by_pair: dict[Pair, tuple[str, ...]] = {pair: ("train", "val", "test") for pair in train}
    phases_by_pair.update({pair: ("val",) for pair in val_unseen})
    phases_by_pair.update({pair: ("test",) for pair in test_unseen})
    splits = _distribute_images(images_by_pair, phases_by_pair, seed)
    val_pairs = sorted({(s.state, s.object) for s in splits["val"]})
    test_pairs = sorted({(s.state, s.object) for s in splits["test"]})
    return train, val_pairs, test_pairs, splits


# ----------------------------------------------------------------------------- image folders


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
        if not folder.is_dir() or folder.name.startswith((".", "_")) or folder.name.lower() in _JUNK_FOLDERS:
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
        splits = _distribute_images(images_by_pair, listed, seed)
        train_pairs, val_pairs, test_pairs = (
            [pair for pair, phases in listed.items() if phase in phases] for phase in PHASES
        )
    else:
        train_pairs, val_pairs, test_pairs, splits = _held_out_split(images_by_pair, unseen_fraction, seed)
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


# ----------------------------------------------------------------------------- synthetic shapes

# The first eight states and five objects are the defaults; the rest widen the vocabulary.
SYNTHETIC_STATES = ("red", "green", "blue", "yellow", "striped", "dotted", "small", "large", "purple", "outlined")
SYNTHETIC_OBJECTS = ("circle", "square", "triangle", "star", "hexagon", "cross")
_COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (45, 85, 215),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
}
_NEUTRAL = (75, 75, 75)
_SIZE_FRACTION = {"small": 0.15, "large": 0.44}
_DEFAULT_SIZE_FRACTION = 0.29


def _shape_outline(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    """Polygon vertices of a shape centred at (cx, cy) with outer radius `radius`."""
    if shape == "circle":
        corners = 48
        radii = [radius] * corners
    elif shape == "star":
        corners = 10
        radii = [radius if i % 2 == 0 else radius * 0.45 for i in range(corners)]
    elif shape == "cross":
        # A plus sign: 12 corners on alternating outer and inner radii at fixed angles.
        arm = 0.34
        unit = [(arm, 1), (-arm, 1), (-arm, arm), (-1, arm), (-1, -arm), (-arm, -arm),
                (-arm, -1), (arm, -1), (arm, -arm), (1, -arm), (1, arm), (arm, arm)]
        cos, sin = math.cos(angle), math.sin(angle)
        return [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in unit]
    else:
        corners = {"square": 4, "triangle": 3, "hexagon": 6}[shape]
        radii = [radius] * corners
    return [
        (cx + r * math.cos(angle + 2 * math.pi * i / corners), cy + r * math.sin(angle + 2 * math.pi * i / corners))
        for i, r in enumerate(radii)
    ]


def _fill_layer(state: str, size: int, rng: np.random.Generator) -> Image.Image:
    """The paint a shape is filled with: a jittered colour, stripes, dots or plain grey."""
    if state in _COLOURS:
        colour = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in _COLOURS[state])
        return Image.new("RGB", (size, size), colour)
    if state not in ("striped", "dotted"):
        return Image.new("RGB", (size, size), _NEUTRAL)
    layer = Image.new("RGB", (size, size), (185, 185, 185))
    draw = ImageDraw.Draw(layer)
    spacing = max(size / 8, 4)
    if state == "striped":
        angle = rng.uniform(0, math.pi)
        direction, normal = (math.cos(angle), math.sin(angle)), (-math.sin(angle), math.cos(angle))
        centre, reach = size / 2, size
        offset = rng.uniform(0, spacing)
        for step in range(-int(reach / spacing) - 1, int(reach / spacing) + 2):
            t = step * spacing + offset
            x, y = centre + t * normal[0], centre + t * normal[1]
            start = (x - reach * direction[0], y - reach * direction[1])
            end = (x + reach * direction[0], y + reach * direction[1])
            draw.line(
                [start, end],
                fill=(30, 30, 30),
                width=max(int(spacing * 0.45), 2),
            )
    else:
        dot = spacing * 0.22
        dx, dy = rng.uniform(0, spacing, size=2)
        for x in np.arange(dx - spacing, size + spacing, spacing):
            for y in np.arange(dy - spacing, size + spacing, spacing):
                draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=(30, 30, 30))
    return layer


@dataclass(frozen=True)
class ShapesRenderer:
    """Draws synthetic image `index` deterministically from (seed, index); picklable for data loaders."""

    pairs: tuple[Pair, ...]  # product(states, objects); image i shows pairs[i // images_per_pair]
    images_per_pair: int
    seed: int
    image_size: int
    noise: float

    def __call__(self, index: int) -> Image.Image:
        """Render one RGB image."""
        if not 0 <= index < len(self.pairs) * self.images_per_pair:
            raise DatasetError(f"synthetic image {index} does not exist")
        state, shape = self.pairs[index // self.images_per_pair]
        rng = np.random.default_rng([self.seed, index])
        size = self.image_size * 2  # draw at twice the size, then downsample for smooth edges
        background = tuple(int(v) for v in rng.integers(228, 256, size=3))
        canvas = Image.new("RGB", (size, size), background)
        radius = _SIZE_FRACTION.get(state, _DEFAULT_SIZE_FRACTION) * size * rng.uniform(0.9, 1.1)
        margin = min(radius * 1.05, size / 2)
        cx, cy = rng.uniform(margin, size - margin, size=2)
        outline = _shape_outline(shape, cx, cy, radius, rng.uniform(0, 2 * math.pi))
        mask = Image.new("L", (size, size), 0)
        if state == "outlined":
            closed_outline = [*outline, outline[0], outline[1]]
            ImageDraw.Draw(mask).line(closed_outline, fill=255, width=max(size // 28, 2), joint="curve")
        else:
            ImageDraw.Draw(mask).polygon(outline, fill=255)
        canvas.paste(_fill_layer(state, size, rng), mask=mask)
        canvas = canvas.resize((self.image_size, self.image_size), Image.Resampling.LANCZOS)
        if self.noise > 0:
            noise = rng.normal(0.0, self.noise, (self.image_size, self.image_size, 3))
            pixels = np.asarray(canvas, dtype=np.float32) + noise
            canvas = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
        return canvas


def load_synthetic_shapes(
    images_per_pair: int = 5,
    seed: int = 0,
    image_size: int = 64,
    num_states: int = 8,
    num_objects: int = 5,
    unseen_fraction: float = 0.2,
    noise: float = 6.0,
) -> CompositionDataset:
    """A small compositional dataset of coloured, textured and sized shapes drawn on the fly."""
    checks = [
        (1 <= images_per_pair <= 10_000, "images_per_pair must be between 1 and 10000"),
        (16 <= image_size <= 1024, "image_size must be between 16 and 1024"),
        (2 <= num_states <= len(SYNTHETIC_STATES), f"num_states must be between 2 and {len(SYNTHETIC_STATES)}"),
        (2 <= num_objects <= len(SYNTHETIC_OBJECTS), f"num_objects must be between 2 and {len(SYNTHETIC_OBJECTS)}"),
        (0 <= unseen_fraction <= 0.8, "unseen_fraction must be between 0 and 0.8"),
        (0 <= noise <= 100, "noise must be between 0 and 100"),
    ]
    for ok, message in checks:
        if not ok:
            raise DatasetError(message)
    states = sorted(SYNTHETIC_STATES[:num_states])
    objects = sorted(SYNTHETIC_OBJECTS[:num_objects])
    pairs = tuple(itertools.product(states, objects))
    images_by_pair = {
        pair: [f"{SYNTHETIC_PREFIX}{p * images_per_pair + k}" for k in range(images_per_pair)]
        for p, pair in enumerate(pairs)
    }
    train_pairs, val_pairs, test_pairs, splits = _held_out_split(images_by_pair, unseen_fraction, seed)
    for samples in splits.values():  # numeric order rather than the string order of "synthetic:<i>"
        samples.sort(key=lambda sample: int(sample.image[len(SYNTHETIC_PREFIX):]))
    return CompositionDataset(
        name="synthetic:shapes",
        root=None,
        states=states,
        objects=objects,
        train_pairs=train_pairs,
        val_pairs=val_pairs,
        test_pairs=test_pairs,
        splits=splits,
        layout="synthetic",
        image_renderer=ShapesRenderer(pairs, images_per_pair, seed, image_size, float(noise)),
    )


# ----------------------------------------------------------------------------- entry point

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


def _has_image_subfolder(root: Path) -> bool:
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
    if _has_image_subfolder(root):
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


# ----------------------------------------------------------------------------- zip import


@dataclass(frozen=True)
class ZipImportReport:
    """What an import wrote and what it left out."""

    target: Path
    images: int
    skipped_non_images: int
    layout: str


def _archive_parts(name: str) -> tuple[str, ...]:
    """The path parts of an archive member, refusing anything that could land outside the target."""
    normalised = name.replace("\\", "/")
    parts = tuple(part for part in normalised.split("/") if part not in ("", "."))
    if (
        normalised.startswith("/")
        or re.match(r"^[A-Za-z]:", normalised)
        or ".." in parts
        or "\x00" in name
        or any(re.match(r"^[A-Za-z]:", part) for part in parts)  # drive letters, also "C:evil"
        or not parts
    ):
        raise DatasetError(f"the zip holds an unsafe path {name!r}; nothing was imported")
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def _is_junk(parts: tuple[str, ...]) -> bool:
    return parts[0].lower() in _JUNK_FOLDERS or parts[-1].lower() in _JUNK_NAMES or parts[-1].startswith("._")


def _plan_extraction(
    infos: list[zipfile.ZipInfo], max_total_bytes: int, max_files: int, max_file_bytes: int
) -> tuple[list[tuple[zipfile.ZipInfo, tuple[str, ...]]], int]:
    """Check every member against the limits before anything is written; return what to extract."""
    files = [info for info in infos if not info.is_dir()]
    if len(files) > max_files:
        raise DatasetError(f"the zip holds {len(files):,} files; the limit is {max_files:,}")
    declared_total = sum(info.file_size for info in files)
    if declared_total > max_total_bytes:
        raise DatasetError(
            f"the zip unpacks to {declared_total:,} bytes; the limit is {max_total_bytes:,} bytes"
        )
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    skipped = 0
    seen: set[str] = set()
    for info in infos:
        parts = _archive_parts(info.filename)
        if _is_symlink(info):
            raise DatasetError(f"the zip holds a symbolic link {info.filename!r}; nothing was imported")
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise DatasetError(f"the zip is password-protected ({info.filename!r}); export it without a password")
        if info.file_size > max_file_bytes:
            raise DatasetError(
                f"{info.filename!r} unpacks to {info.file_size:,} bytes; the limit per file is {max_file_bytes:,}"
            )
        key = "/".join(parts).lower()  # case-insensitive, so no file overwrites another on any system
        if key in seen:
            raise DatasetError(f"the zip holds {info.filename!r} twice")
        seen.add(key)
        suffix = Path(parts[-1]).suffix.lower()
        if _is_junk(parts) or suffix not in IMAGE_EXTENSIONS | METADATA_EXTENSIONS:
            skipped += 1
            continue
        plan.append((info, parts))
    return plan, skipped


def _check_free_space(folder: Path, needed: int) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise DatasetError(f"the zip unpacks to {needed:,} bytes but only {free:,} bytes are free")


def _extract_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, budget: int
) -> int:
    """Copy one member, stopping as soon as it exceeds its declared size or the remaining budget."""
    written = 0
    limit = min(info.file_size, budget)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as source, open(destination, "xb") as target:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise DatasetError(f"{info.filename!r} unpacks to more bytes than it declares; the zip is refused")
            target.write(chunk)
    return written


def _is_readable_image(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.verify()
        return True
    except Exception:  # Pillow raises many types for broken files; any of them means "not an image"
        return False


def _content_root(staging: Path) -> Path:
    """The staging folder, or its single top folder when the dataset sits one level down."""
    entries = [entry for entry in staging.iterdir()]
    if len(entries) != 1 or not entries[0].is_dir():
        return staging
    if any(staging.glob("metadata_*.t7")) or _has_image_subfolder(staging):
        return staging  # e.g. a zip holding just "red apple/": that folder is a pair, not a wrapper
    return entries[0]


def import_zip(
    zip_path: str | Path,
    target_dir: str | Path,
    *,
    max_total_bytes: int = 2_000_000_000,
    max_files: int = 200_000,
    max_file_bytes: int = 200_000_000,
) -> ZipImportReport:
    """Unpack a user's dataset zip into a new folder safely, or raise DatasetError and write nothing."""
    zip_path, target = Path(zip_path), Path(target_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DatasetError(f"{target} already exists; choose another name or remove it first")
    try:
        archive = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise DatasetError(f"zip file not found: {zip_path}") from None
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise DatasetError(f"{zip_path.name} is not a readable zip file ({error})") from None
    with archive:
        plan, skipped = _plan_extraction(archive.infolist(), max_total_bytes, max_files, max_file_bytes)
        if not any(Path(parts[-1]).suffix.lower() in IMAGE_EXTENSIONS for _, parts in plan):
            raise DatasetError(f"{zip_path.name} holds no image files")
        _check_free_space(target.parent, sum(info.file_size for info, _ in plan))
        target.parent.mkdir(parents=True, exist_ok=True)
        # Unpack next to the target (same file system, so the final rename is atomic) and only
        # rename on success: a failed import leaves nothing behind.
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.importing-", dir=target.parent))
        try:
            staging_resolved = staging.resolve()
            images, written_total = 0, 0
            for info, parts in plan:
                destination = staging.joinpath(*parts)
                if not destination.resolve().is_relative_to(staging_resolved):
                    raise DatasetError(f"the zip holds an unsafe path {info.filename!r}; nothing was imported")
                try:
                    written_total += _extract_member(archive, info, destination, max_total_bytes - written_total)
                except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as error:
                    message = f"{zip_path.name} is damaged or unsupported ({info.filename}: {error})"
                    raise DatasetError(message) from None
                except OSError as error:
                    raise DatasetError(f"cannot unpack {info.filename!r}: {error}") from None
                if destination.suffix.lower() in IMAGE_EXTENSIONS:
                    if _is_readable_image(destination):
                        images += 1
                    else:
                        destination.unlink()
                        skipped += 1
            if images == 0:
                raise DatasetError(f"{zip_path.name} holds no readable images")
            content = _content_root(staging)
            try:
                layout = load_dataset(content).layout
            except DatasetError as error:
                raise DatasetError(f"the zip does not hold a usable dataset: {error}") from None
            if target.exists():
                target.rmdir()  # checked empty above; rmdir refuses if anything appeared since
            os.rename(content, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return ZipImportReport(target=target, images=images, skipped_non_images=skipped, layout=layout)
