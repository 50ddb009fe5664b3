"""The czsl layout of MIT-States, UT-Zappos and C-GQA: images/, split pair files, metadata .t7."""

from __future__ import annotations

import re
from pathlib import Path

from .dataset import (
    DEFAULT_SPLIT_NAME,
    PHASES,
    CompositionDataset,
    DatasetError,
    Sample,
    sorted_vocabulary,
)

Pair = tuple[str, str]
MAX_PAIRS_PER_FILE = 200_000  # C-GQA's open world has about 280,000 pairs, but its pair files list under 10,000
MAX_PAIR_LINE_CHARS = 1_000


def _read_pair_file(path: Path) -> list[Pair]:
    """Read one "state object" pair per non-empty line."""
    if not path.is_file():
        raise DatasetError(f"missing pair file {path}")
    pairs: list[Pair] = []
    # Streamed and bounded: a file of millions of tiny lines would otherwise take gigabytes as Python objects.
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            if len(line) > MAX_PAIR_LINE_CHARS:
                raise DatasetError(f"{path.name}:{line_number}: a line of {len(line):,} characters is not a pair")
            words = line.split()
            if not words:
                continue
            if len(words) != 2:
                raise DatasetError(f"{path.name}:{line_number}: expected 'state object', got {line.strip()[:80]!r}")
            if len(pairs) >= MAX_PAIRS_PER_FILE:
                raise DatasetError(f"{path.name} lists more than {MAX_PAIRS_PER_FILE:,} pairs")
            pairs.append((words[0], words[1]))
    return pairs


def _load_metadata(path: Path) -> list[dict[str, str]]:
    """Read czsl metadata without unpickling arbitrary objects."""
    import torch  # only this layout needs torch; keep `import czsl_models.data.dataset` light

    try:
        records = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises UnpicklingError, RuntimeError, EOFError, ...; its advice to unpickle is wrong here
        raise DatasetError(
            f"cannot read metadata {path.name}: it must be a torch.save'd list of plain records "
            f"(arbitrary pickled objects are refused for safety)."
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
    raw_states, states, state_shown = sorted_vocabulary(state for state, _ in all_raw_pairs)
    raw_objects, objects, object_shown = sorted_vocabulary(obj for _, obj in all_raw_pairs)
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
