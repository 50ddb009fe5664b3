"""Tests for czsl_models.data.dataset: the three dataset layouts, synthetic shapes and safe zip import."""

from __future__ import annotations

import io
import itertools
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from czsl_models.data import (
    CompositionDataset,
    DatasetError,
    Sample,
    ZipImportReport,
    detect_layout,
    hold_out_unseen_pairs,
    import_zip,
    load_dataset,
)

SPLIT = "compositional-split-natural"


def write_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG") -> None:
    """Write a real, tiny image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), colour).save(path, format=fmt)


def image_bytes(fmt: str = "PNG", colour: tuple[int, int, int] = (10, 120, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format=fmt)
    return buffer.getvalue()


def write_czsl(root: Path, pairs: dict[str, list[str]], records: list[dict], split_name: str = SPLIT) -> None:
    """Write a dataset in the czsl layout, with a real image for every record."""
    for phase, lines in pairs.items():
        path = root / split_name / f"{phase}_pairs.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    for record in records:
        write_image(root / "images" / record["image"], fmt="JPEG" if record["image"].endswith(".jpg") else "PNG")
    torch.save(records, root / f"metadata_{split_name}.t7")


ZAPPOS_PAIRS = {
    "train": ["Canvas Sandals", "Faux.Leather Boots.Ankle", "Suede Shoes.Flats", "Suede Sandals", "Canvas Boots.Ankle"],
    "val": ["Canvas Sandals", "Faux.Leather Sandals", "Suede Boots.Ankle"],
    "test": ["Faux.Leather Boots.Ankle", "Suede Boots.Ankle", "Canvas Shoes.Flats"],
}


def record(image: str, attr: str, obj: str, phase: str) -> dict:
    return {"image": image, "attr": attr, "obj": obj, "set": phase}


ZAPPOS_RECORDS = [
    record("Sandals/Canvas/1.jpg", "Canvas", "Sandals", "train"),
    record("Sandals/Canvas/2.png", "Canvas", "Sandals", "val"),
    record("Boots.Ankle/Faux.Leather/1.jpg", "Faux.Leather", "Boots.Ankle", "train"),
    record("Boots.Ankle/Faux.Leather/2.jpg", "Faux.Leather", "Boots.Ankle", "test"),
    record("Shoes.Flats/Suede/1.jpg", "Suede", "Shoes.Flats", "train"),
    record("Sandals/Suede/1.jpg", "Suede", "Sandals", "train"),
    record("Boots.Ankle/Canvas/1.jpg", "Canvas", "Boots.Ankle", "train"),
    record("Sandals/Faux.Leather/1.jpg", "Faux.Leather", "Sandals", "val"),
    # The pair "Suede Boots.Ankle" is listed for val and for test: `set` alone decides.
    record("Boots.Ankle/Suede/1.jpg", "Suede", "Boots.Ankle", "val"),
    record("Boots.Ankle/Suede/2.jpg", "Suede", "Boots.Ankle", "val"),
    record("Boots.Ankle/Suede/3.jpg", "Suede", "Boots.Ankle", "test"),
    record("Shoes.Flats/Canvas/1.jpg", "Canvas", "Shoes.Flats", "test"),
    # Dropped: not available, and a train record whose pair is only a test pair.
    record("Sandals/Canvas/3.jpg", "Canvas", "Sandals", "NA"),
    record("Sandals/Canvas/4.jpg", "NA", "Sandals", "train"),
    record("Shoes.Flats/Canvas/2.jpg", "Canvas", "Shoes.Flats", "train"),
]


@pytest.fixture
def zappos(tmp_path: Path) -> Path:
    root = tmp_path / "ut-zap50k"
    write_czsl(root, ZAPPOS_PAIRS, ZAPPOS_RECORDS)
    return root


def split_images(dataset: CompositionDataset, phase: str) -> list[str]:
    return [sample.image for sample in dataset.splits[phase]]


# ----------------------------------------------------------------------------- czsl layout


def test_czsl_vocabulary_uses_display_names_and_keeps_raw_names(zappos: Path) -> None:
    dataset = load_dataset(zappos)
    assert dataset.layout == "czsl" and dataset.name == "ut-zap50k"
    assert dataset.states == ["canvas", "faux leather", "suede"]
    assert dataset.raw_states == ["Canvas", "Faux.Leather", "Suede"]
    assert dataset.objects == ["boots ankle", "sandals", "shoes flats"]
    assert dataset.raw_objects == ["Boots.Ankle", "Sandals", "Shoes.Flats"]
    assert ("faux leather", "boots ankle") in dataset.train_pairs


def test_czsl_image_membership_follows_set_only(zappos: Path) -> None:
    dataset = load_dataset(zappos)
    assert split_images(dataset, "val") == [
        "images/Sandals/Canvas/2.png",
        "images/Sandals/Faux.Leather/1.jpg",
        "images/Boots.Ankle/Suede/1.jpg",
        "images/Boots.Ankle/Suede/2.jpg",
    ]
    assert split_images(dataset, "test") == [
        "images/Boots.Ankle/Faux.Leather/2.jpg",
        "images/Boots.Ankle/Suede/3.jpg",
        "images/Shoes.Flats/Canvas/1.jpg",
    ]
    assert len(dataset.splits["train"]) == 5
    assert "images/Shoes.Flats/Canvas/2.jpg" not in split_images(dataset, "train")
    assert dataset.dropped == {"not_available": 2, "pair_not_in_split": 1}
    assert dataset.splits["val"][2] == Sample("images/Boots.Ankle/Suede/1.jpg", "suede", "boots ankle")


def test_czsl_candidate_pairs_masks_and_summary(zappos: Path) -> None:
    dataset = load_dataset(zappos)
    closed = dataset.candidate_pairs("test")
    assert closed == [
        ("canvas", "boots ankle"), ("canvas", "sandals"), ("canvas", "shoes flats"),
        ("faux leather", "boots ankle"), ("faux leather", "sandals"),
        ("suede", "boots ankle"), ("suede", "sandals"), ("suede", "shoes flats"),
    ]
    open_world = dataset.candidate_pairs("test", open_world=True)
    assert open_world == list(itertools.product(dataset.states, dataset.objects)) and len(open_world) == 9
    seen = dataset.seen_mask(closed)
    assert seen.dtype == bool and seen.tolist() == [True, True, False, True, False, False, True, True]
    # test phase: train pairs plus the three test pairs; "faux leather sandals" is val-only.
    assert dataset.phase_mask(closed, "test").tolist() == [True, True, True, True, False, True, True, True]
    assert dataset.phase_mask(closed, "val").tolist() == [True, True, False, True, True, True, True, True]
    assert dataset.unseen_pairs("val") == [("faux leather", "sandals"), ("suede", "boots ankle")]
    summary = dataset.summary()
    assert summary["states"] == 3 and summary["objects"] == 3
    assert summary["closed_world_pairs"] == 8 and summary["open_world_pairs"] == 9
    assert (summary["val_pairs_seen"], summary["val_pairs_unseen"]) == (1, 2)
    assert (summary["test_pairs_seen"], summary["test_pairs_unseen"]) == (1, 2)
    assert (summary["train_images"], summary["val_images"], summary["test_images"]) == (5, 4, 3)
    assert summary["test_images_unseen"] == 2
    with pytest.raises(DatasetError, match="unknown phase"):
        dataset.candidate_pairs("validation")


def test_czsl_load_image_is_rgb(zappos: Path) -> None:
    dataset = load_dataset(zappos)
    image = dataset.load_image(dataset.splits["val"][0])
    assert image.mode == "RGB" and image.size == (8, 6)
    with pytest.raises(DatasetError, match="not found"):
        dataset.load_image(Sample("images/missing.jpg", "canvas", "sandals"))


def test_czsl_open_world_order_follows_sorted_raw_names(tmp_path: Path) -> None:
    pairs = {"train": ["wet dog", "dry cat", "ancient wall"], "val": ["wet cat"], "test": ["dry dog"]}
    write_czsl(tmp_path / "ds", pairs, [record("a.png", "wet", "dog", "train")])
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.states == ["ancient", "dry", "wet"] and dataset.objects == ["cat", "dog", "wall"]
    assert dataset.candidate_pairs(open_world=True)[:4] == [
        ("ancient", "cat"), ("ancient", "dog"), ("ancient", "wall"), ("dry", "cat"),
    ]


def test_czsl_display_names_that_clash_fall_back_to_raw_names(tmp_path: Path) -> None:
    pairs = {"train": ["Faux.Fur boot", "Faux_Fur shoe", "Faux_Fur boot"], "val": ["Faux.Fur shoe"], "test": []}
    write_czsl(tmp_path / "ds", pairs, [])
    assert load_dataset(tmp_path / "ds").states == ["Faux.Fur", "Faux_Fur"]
    (tmp_path / "ds" / SPLIT / "test_pairs.txt").write_text("faux.fur boot\n")
    with pytest.raises(DatasetError, match="differ only in case"):
        load_dataset(tmp_path / "ds")


def test_czsl_split_name_variant(tmp_path: Path) -> None:
    root = tmp_path / "mit-states"
    write_czsl(root, ZAPPOS_PAIRS, ZAPPOS_RECORDS[:4], split_name="compositional-split")
    write_czsl(root, ZAPPOS_PAIRS, ZAPPOS_RECORDS, split_name=SPLIT)
    assert len(load_dataset(root).splits["train"]) == 5
    assert len(load_dataset(root, split_name="compositional-split").splits["train"]) == 2
    with pytest.raises(DatasetError, match="missing metadata"):
        load_dataset(root, split_name="no-such-split")


class NotARecord:
    """A class instance: pickling it into metadata must not run on load."""

    def __init__(self) -> None:
        self.image = "x.jpg"


def test_czsl_metadata_with_pickled_object_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_czsl(root, ZAPPOS_PAIRS, [])
    torch.save([NotARecord()], root / f"metadata_{SPLIT}.t7")
    with pytest.raises(DatasetError, match="arbitrary pickled objects are refused") as refused:
        load_dataset(root)
    assert "weights_only" not in str(refused.value), "torch's advice to unpickle anyway is not repeated"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"image": "a.jpg"}, "must hold a list"),
        ([{"image": "a.jpg", "attr": "Canvas", "obj": "Sandals"}], "lacks a text 'set'"),
        ([record("../../etc/passwd", "Canvas", "Sandals", "train")], "unsafe image path"),
        ([record("a.jpg", "Canvas", "Sandals", "holdout")], "unknown set"),
    ],
)
def test_czsl_bad_metadata_gives_clear_errors(tmp_path: Path, metadata: object, message: str) -> None:
    root = tmp_path / "ds"
    write_czsl(root, ZAPPOS_PAIRS, [])
    torch.save(metadata, root / f"metadata_{SPLIT}.t7")
    with pytest.raises(DatasetError, match=message):
        load_dataset(root)


def test_czsl_bad_pair_line_names_file_and_line(zappos: Path) -> None:
    (zappos / SPLIT / "test_pairs.txt").write_text("Canvas Sandals\nthree word line\n")
    with pytest.raises(DatasetError, match=r"test_pairs.txt:2"):
        load_dataset(zappos)


# ----------------------------------------------------------------------------- image folders

FOLDER_STATES = ["red", "green", "old_rusty", "wet"]
FOLDER_OBJECTS = ["apple", "bike", "dog"]


def write_image_folder(root: Path, images_per_pair: int = 5) -> None:
    for state, obj in itertools.product(FOLDER_STATES, FOLDER_OBJECTS):
        for k in range(images_per_pair):
            write_image(root / f"{state} {obj}" / f"{k}.{'jpg' if k % 2 else 'png'}", fmt="JPEG" if k % 2 else "PNG")
    (root / "red apple" / "notes.txt").write_text("not an image")


def test_image_folder_without_split_file_holds_out_unseen_pairs(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_image_folder(root)
    dataset = load_dataset(root)
    assert dataset.layout == "image-folder"
    assert dataset.states == ["green", "old rusty", "red", "wet"]
    assert dataset.objects == ["apple", "bike", "dog"]
    train = set(dataset.train_pairs)
    assert {s for s, _ in train} == set(dataset.states) and {o for _, o in train} == set(dataset.objects)
    val_unseen, test_unseen = dataset.unseen_pairs("val"), dataset.unseen_pairs("test")
    assert val_unseen and test_unseen and not set(val_unseen) & set(test_unseen)
    assert len(train) + len(val_unseen) + len(test_unseen) == 12
    all_images = sorted(image for phase in ("train", "val", "test") for image in split_images(dataset, phase))
    assert len(all_images) == len(set(all_images)) == 60  # a partition of every image, notes.txt left out
    for pair in val_unseen:
        assert sum((s.state, s.object) == pair for s in dataset.splits["val"]) == 5
    seen_val = [s for s in dataset.splits["val"] if (s.state, s.object) in train]
    seen_test = [s for s in dataset.splits["test"] if (s.state, s.object) in train]
    seen_total = 5 * len(train)
    assert len(seen_val) == round(0.1 * seen_total) and len(seen_test) == round(0.1 * seen_total)
    image = dataset.load_image(dataset.splits["train"][0])
    assert image.mode == "RGB"


def test_image_folder_split_is_reproducible_and_seeded(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_image_folder(root)
    first, again = load_dataset(root), load_dataset(root, seed=0)
    assert first.splits == again.splits and first.test_pairs == again.test_pairs
    others = [load_dataset(root, seed=seed) for seed in range(1, 6)]
    assert any(other.test_pairs != first.test_pairs for other in others)


def test_hold_out_keeps_every_state_and_object_in_train() -> None:
    pairs = [(s, o) for s, o in itertools.product("abcde", "xyz")]
    for seed in range(20):
        train, val, test = hold_out_unseen_pairs(pairs, 0.4, seed)
        assert {s for s, _ in train} == set("abcde") and {o for _, o in train} == set("xyz")
        assert len(val) + len(test) == 6 and sorted(train + val + test) == sorted(pairs)
    with pytest.raises(DatasetError, match="cannot hold out"):
        hold_out_unseen_pairs([("a", "x"), ("b", "y")], 0.2, 0)


def test_image_folder_with_split_json_and_explicit_pair(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for folder in ["red apple", "green apple", "red green pepper", "green pear"]:
        for k in range(10):
            write_image(root / folder / f"{k}.png")
    (root / "split.json").write_text(
        '{"train": ["red apple", "green apple", "green pear"],'
        ' "val": ["red apple", ["red", "green pepper"]],'
        ' "test": ["green pear", ["red", "green pepper"]]}'
    )
    dataset = load_dataset(root)
    assert dataset.objects == ["apple", "green pepper", "pear"]
    assert dataset.states == ["green", "red"]
    assert dataset.val_pairs == [("red", "apple"), ("red", "green pepper")]
    assert dataset.unseen_pairs("test") == [("red", "green pepper")]
    pepper = [s for phase in ("val", "test") for s in dataset.splits[phase] if s.object == "green pepper"]
    assert len(pepper) == 10 and not any(s.object == "green pepper" for s in dataset.splits["train"])
    assert not any(s.object == "pear" for s in dataset.splits["val"])
    assert len([s for s in dataset.splits["train"] if s.object == "pear"]) == 9


def test_image_folder_with_split_txt(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for folder in ["wet dog", "dry dog", "wet cat", "dry cat"]:
        write_image(root / folder / "a.png")
    (root / "split.txt").write_text("# pairs\ntrain: wet dog\ntrain: dry cat\nval: dry | dog\ntest: wet cat\n")
    dataset = load_dataset(root)
    assert dataset.train_pairs == [("dry", "cat"), ("wet", "dog")]
    assert split_images(dataset, "test") == ["wet cat/a.png"]
    (root / "split.txt").write_text("train: wet dog\ntest: wet cat\n")
    with pytest.raises(DatasetError, match="does not list the folder"):
        load_dataset(root)
    (root / "split.txt").write_text("train: wet dog\ntrain: dry cat\nval: dry dog\ntest: wet cat\ntest: wet bird\n")
    with pytest.raises(DatasetError, match="without an image folder: wet bird"):
        load_dataset(root)


def test_detect_layout_and_unknown_options(tmp_path: Path, zappos: Path) -> None:
    assert detect_layout(zappos) == "czsl"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a dataset"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="unknown option"):
        load_dataset(zappos, images_per_pair=3)


# ----------------------------------------------------------------------------- synthetic shapes


def test_synthetic_shapes_are_deterministic_and_split_with_unseen_pairs() -> None:
    dataset = load_dataset("synthetic:shapes")
    again = load_dataset("synthetic:shapes?seed=0")
    assert dataset.layout == "synthetic" and dataset.root is None
    assert len(dataset.states) == 8 and len(dataset.objects) == 5
    assert dataset.states == sorted(dataset.states) and "striped" in dataset.states and "star" in dataset.objects
    assert dataset.splits == again.splits
    sample = dataset.splits["test"][0]
    first = np.asarray(dataset.load_image(sample))
    assert first.shape == (64, 64, 3)
    assert np.array_equal(first, np.asarray(again.load_image(sample)))
    assert not np.array_equal(first, np.asarray(dataset.load_image(dataset.splits["test"][1])))
    train = set(dataset.train_pairs)
    assert {s for s, _ in train} == set(dataset.states) and {o for _, o in train} == set(dataset.objects)
    assert dataset.unseen_pairs("val") and dataset.unseen_pairs("test")
    total = sum(len(samples) for samples in dataset.splits.values())
    assert total == 40 * 20  # 20 images per pair by default


def test_synthetic_options_from_query_and_keywords() -> None:
    dataset = load_dataset("synthetic:shapes?images_per_pair=2&image_size=32&seed=3", num_states=3, num_objects=4)
    assert len(dataset.states) == 3 and len(dataset.objects) == 4
    assert sum(len(samples) for samples in dataset.splits.values()) == 24
    assert dataset.load_image(dataset.splits["train"][0]).size == (32, 32)
    other_seed = load_dataset("synthetic:shapes", images_per_pair=2, image_size=32, seed=4, num_states=3, num_objects=4)
    image = dataset.splits["train"][0]
    assert not np.array_equal(np.asarray(dataset.load_image(image)), np.asarray(other_seed.load_image(image)))
    with pytest.raises(DatasetError, match="unknown option"):
        load_dataset("synthetic:shapes?colour=red")
    with pytest.raises(DatasetError, match="not a valid int"):
        load_dataset("synthetic:shapes?images_per_pair=many")
    with pytest.raises(DatasetError, match="images_per_pair"):
        load_dataset("synthetic:shapes", images_per_pair=0)
    with pytest.raises(DatasetError, match="unknown synthetic dataset"):
        load_dataset("synthetic:digits")


# ----------------------------------------------------------------------------- zip import


def make_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return path


def image_folder_entries(prefix: str = "") -> list[tuple[str, bytes]]:
    return [
        (f"{prefix}{state} {obj}/{k}.png", image_bytes(colour=(40 * k, 80, 20)))
        for state, obj in itertools.product(["red", "green", "blue"], ["apple", "pear"])
        for k in range(3)
    ]


def tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_import_zip_unwraps_top_folder_and_skips_non_images(tmp_path: Path) -> None:
    entries = image_folder_entries("my dataset/") + [
        ("my dataset/readme.docx", b"PK not really"),
        ("my dataset/red apple/fake.jpg", b"this is text"),
        ("my dataset/split-notes.txt", b"kept: metadata files are allowed"),
        ("__MACOSX/my dataset/._0.png", b"resource fork"),
    ]
    archive = make_zip(tmp_path / "upload.zip", entries)
    report = import_zip(archive, tmp_path / "datasets" / "fruit")
    assert isinstance(report, ZipImportReport)
    assert report == ZipImportReport(tmp_path / "datasets" / "fruit", images=18, skipped_non_images=3, layout="image-folder")
    assert (tmp_path / "datasets" / "fruit" / "red apple" / "0.png").is_file()
    assert (tmp_path / "datasets" / "fruit" / "split-notes.txt").is_file()
    assert not (tmp_path / "datasets" / "fruit" / "red apple" / "fake.jpg").exists()
    assert [path.name for path in (tmp_path / "datasets").iterdir()] == ["fruit"]  # no staging folder left
    assert len(load_dataset(report.target).states) == 3


def test_import_zip_of_czsl_layout(tmp_path: Path, zappos: Path) -> None:
    entries = [(str(path.relative_to(zappos)), path.read_bytes()) for path in sorted(zappos.rglob("*")) if path.is_file()]
    report = import_zip(make_zip(tmp_path / "zap.zip", entries), tmp_path / "imported")
    assert report.layout == "czsl" and report.images == len(ZAPPOS_RECORDS)
    assert load_dataset(report.target).summary()["val_images"] == 4


def symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("red apple/link.png")
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


@pytest.mark.parametrize(
    ("bad_entry", "message"),
    [
        (("../evil.png", image_bytes()), "unsafe path"),
        (("red apple/../../evil.png", image_bytes()), "unsafe path"),
        (("..\\evil.png", image_bytes()), "unsafe path"),
        (("/abs/evil.png", image_bytes()), "unsafe path"),
        (("C:/evil.png", image_bytes()), "unsafe path"),
        ((symlink_entry(), b"../../../etc/passwd"), "symbolic link"),
    ],
)
def test_import_zip_rejects_unsafe_entries(tmp_path: Path, bad_entry: tuple, message: str) -> None:
    archive = make_zip(tmp_path / "bad.zip", image_folder_entries() + [bad_entry])
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    with pytest.raises(DatasetError, match=message):
        import_zip(archive, datasets / "target")
    assert tree(tmp_path) == ["bad.zip", "datasets"]


def test_import_zip_rejects_bomb_by_declared_size_before_extracting(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", image_folder_entries() + [("red apple/zeros.png", bytes(5_000_000))])
    assert archive.stat().st_size < 100_000
    with pytest.raises(DatasetError, match="unpacks to 5,00"):
        import_zip(archive, tmp_path / "target", max_total_bytes=1_000_000)
    with pytest.raises(DatasetError, match="limit per file"):
        import_zip(archive, tmp_path / "target", max_file_bytes=1_000_000)
    assert tree(tmp_path) == ["bomb.zip"]


def test_import_zip_rejects_member_larger_than_declared(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "liar.zip", image_folder_entries() + [("red apple/zeros.png", bytes(3_000_000))])
    data = bytearray(archive.read_bytes())
    # Declare 100 bytes for the zero-filled member in both its local and its central header.
    local = data.rfind(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, 100)
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 100)
    archive.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="damaged|more bytes than it declares"):
        import_zip(archive, tmp_path / "target", max_total_bytes=1_000_000)
    assert tree(tmp_path) == ["liar.zip"]


def test_import_zip_rejects_too_many_files(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "many.zip", image_folder_entries())
    with pytest.raises(DatasetError, match="18 files; the limit is 10"):
        import_zip(archive, tmp_path / "target", max_files=10)
    assert tree(tmp_path) == ["many.zip"]


def test_import_zip_rejects_corrupt_and_truncated_zips(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(DatasetError, match="not a readable zip"):
        import_zip(garbage, tmp_path / "a")
    good = make_zip(tmp_path / "good.zip", image_folder_entries(), compression=zipfile.ZIP_STORED)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DatasetError, match="not a readable zip"):
        import_zip(truncated, tmp_path / "b")
    corrupted = bytearray(good.read_bytes())
    corrupted[200:260] = bytes(60)  # inside the first member's data: the CRC check fails
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(corrupted))
    with pytest.raises(DatasetError, match="damaged"):
        import_zip(damaged, tmp_path / "c")
    assert tree(tmp_path) == ["damaged.zip", "garbage.zip", "good.zip", "truncated.zip"]


def test_import_zip_without_dataset_leaves_nothing(tmp_path: Path) -> None:
    loose = make_zip(tmp_path / "loose.zip", [("a.png", image_bytes()), ("b.png", image_bytes())])
    with pytest.raises(DatasetError, match="does not hold a usable dataset"):
        import_zip(loose, tmp_path / "target")
    only_text = make_zip(tmp_path / "text.zip", [("notes.txt", b"hello"), ("x.exe", b"MZ")])
    with pytest.raises(DatasetError, match="no image files"):
        import_zip(only_text, tmp_path / "target")
    assert tree(tmp_path) == ["loose.zip", "text.zip"]


def test_import_zip_never_changes_an_existing_folder(tmp_path: Path) -> None:
    target = tmp_path / "fruit"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    good = make_zip(tmp_path / "good.zip", image_folder_entries())
    with pytest.raises(DatasetError, match="already exists"):
        import_zip(good, target)
    bad = make_zip(tmp_path / "bad.zip", image_folder_entries() + [("../evil.png", image_bytes())])
    with pytest.raises(DatasetError):
        import_zip(bad, target)
    assert tree(tmp_path) == ["bad.zip", "fruit", "fruit/keep.txt", "good.zip"]
    assert (target / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert import_zip(good, empty).images == 18
