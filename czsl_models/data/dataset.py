"""The dataset type every source loads into: samples, splits, vocabulary, seen pairs."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

Pair = tuple[str, str]


PHASES = ("train", "val", "test")
DEFAULT_SPLIT_NAME = "compositional-split-natural"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
METADATA_EXTENSIONS = frozenset({".txt", ".t7", ".json"})
SPLIT_FILE_NAMES = ("split.json", "split.txt")
SYNTHETIC_PREFIX = "synthetic:"
# Files that archivers and file browsers add; never part of a dataset.
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
JUNK_FOLDERS = frozenset({"__macosx"})
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


def sorted_vocabulary(raws: Iterable[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """Sorted raw names, their display names, and the raw -> display map."""
    raw_sorted = sorted(set(raws))
    shown = _display_names(raw_sorted)
    return raw_sorted, shown, dict(zip(raw_sorted, shown))

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


def distribute_images(
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


def held_out_split(
    images_by_pair: dict[Pair, list[str]], unseen_fraction: float, seed: int
) -> tuple[list[Pair], list[Pair], list[Pair], dict[str, list[Sample]]]:
    """Seeded unseen pairs plus an 80/10/10 image split of the seen pairs."""
    train, val_unseen, test_unseen = hold_out_unseen_pairs(list(images_by_pair), unseen_fraction, seed)
    phases_by_pair: dict[Pair, tuple[str, ...]] = {pair: ("train", "val", "test") for pair in train}
    phases_by_pair.update({pair: ("val",) for pair in val_unseen})
    phases_by_pair.update({pair: ("test",) for pair in test_unseen})
    splits = distribute_images(images_by_pair, phases_by_pair, seed)
    val_pairs = sorted({(s.state, s.object) for s in splits["val"]})
    test_pairs = sorted({(s.state, s.object) for s in splits["test"]})
    return train, val_pairs, test_pairs, splits
