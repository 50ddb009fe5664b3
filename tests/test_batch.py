"""Batch prediction: model.predict batches a long list internally; files, folders and zips stream through a model
in bounded batches into CSV or JSON lines, with unreadable files reported, never fatal."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from czsl_models import Vocabulary, load_model
from czsl_models.inference.batch import COLUMNS, PredictionWriter, find_images, output_kind, predict_sources

STATES, OBJECTS = "sleeping, striped, hot", "cat, coffee, rocket"


@pytest.fixture(scope="module")
def model():
    """MSCI (untrained) on the tiny backbone."""
    return load_model("msci", backbone="tiny")


@pytest.fixture()
def photo_folder(tmp_path, example_paths) -> Path:
    """Two photos, one in a subfolder, a text file posing as a photo, a truncated JPEG, a note, and a zip with
    two photos and a broken one."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    shutil.copy(example_paths[0], folder / "a.jpg")
    shutil.copy(example_paths[1], folder / "more" / "b.JPG")
    (folder / "fake.png").write_text("not a photo")
    (folder / "cut.jpg").write_bytes(example_paths[2].read_bytes()[:600])
    (folder / "notes.txt").write_text("ignored: not a photo suffix")
    with zipfile.ZipFile(folder / "album.zip", "w") as archive:
        archive.write(example_paths[2], "trip/c.jpg")
        archive.write(example_paths[3], "d.jpg")
        archive.writestr("broken.jpg", b"\xff\xd8 nonsense")
        archive.writestr("readme.txt", "skipped")
    return folder


def test_predict_batches_a_long_list_internally(model, example_images, monkeypatch):
    vocab = Vocabulary.build(STATES, OBJECTS)
    images = (example_images * 2)[:7]
    whole = model.predict(images, vocab, top_k=4, batch_size=32)
    seen_batches: list[int] = []
    preprocess = model.backbone.preprocess_images
    monkeypatch.setattr(model.backbone, "preprocess_images",
                        lambda batch: seen_batches.append(len(batch)) or preprocess(batch))
    chunked = model.predict(images, vocab, top_k=4, batch_size=3)
    assert seen_batches == [3, 3, 1]
    assert len(chunked) == 7
    for one, other in zip(whole, chunked):
        assert [(r.state, r.object) for r in one.ranking] == [(r.state, r.object) for r in other.ranking]
        np.testing.assert_allclose(one.scores, other.scores, atol=1e-4)


def test_find_images_walks_folders_and_zips(photo_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    sources, problems = find_images([photo_folder, tmp_path / "missing", tmp_path / "empty"])
    names = [source.name for source in sources]
    assert {Path(name).name for name in names} == {"a.jpg", "b.JPG", "fake.png", "cut.jpg", "c.jpg", "d.jpg",
                                                   "broken.jpg"}
    assert f"{photo_folder / 'album.zip'}/trip/c.jpg" in names
    assert [(path, reason.split(" (")[0]) for path, reason in problems] == [
        (str(tmp_path / "missing"), "no such file or folder"), (str(tmp_path / "empty"), "no photos in this folder")]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_folder_with_bad_files_gives_one_row_per_image_and_rank(model, photo_folder, suffix):
    sources, _ = find_images([photo_folder])
    handle = io.StringIO()
    writer = PredictionWriter(handle, output_kind(f"preds{suffix}"), "msci", "", "tiny")
    summary = predict_sources(model, sources, Vocabulary.build(STATES, OBJECTS), writer, batch_size=2, top_k=3,
                              progress=False)
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(handle.getvalue())))
        assert tuple(rows[0]) == COLUMNS
    else:
        rows = [json.loads(line) for line in handle.getvalue().splitlines()]
    good = [row for row in rows if not row["error"]]
    bad = {Path(row["image"]).name: row["error"] for row in rows if row["error"]}
    assert summary.predicted == 4 and len(good) == 4 * 3 == summary.rows - 3
    assert set(bad) == {"fake.png", "cut.jpg", "broken.jpg"}
    assert "not an image" in bad["fake.png"] and "broken.jpg" in bad["broken.jpg"]
    assert sorted(Path(name).name for name, _ in summary.unreadable) == sorted(bad)
    by_image: dict[str, list[int]] = {}
    for row in good:
        by_image.setdefault(Path(row["image"]).name, []).append(int(row["rank"]))
        assert (row["model"], row["checkpoint"], row["backbone"]) == ("msci", "", "tiny")
    assert by_image == {name: [1, 2, 3] for name in ("a.jpg", "b.JPG", "c.jpg", "d.jpg")}


def test_batch_rows_match_single_predictions(model, photo_folder, example_paths):
    from PIL import Image

    vocab = Vocabulary.build(STATES, OBJECTS)
    sources, _ = find_images([photo_folder / "a.jpg"])
    handle = io.StringIO()
    predict_sources(model, sources, vocab, PredictionWriter(handle, ".csv", "msci", "", "tiny"), top_k=5,
                    progress=False)
    rows = list(csv.DictReader(io.StringIO(handle.getvalue())))
    single = model.predict(Image.open(example_paths[0]), vocab, top_k=5)[0]
    assert [(row["state"], row["object"]) for row in rows] == [(r.state, r.object) for r in single.ranking]


def test_output_must_be_csv_or_jsonl():
    assert output_kind("out/preds.JSONL") == ".jsonl"
    with pytest.raises(ValueError, match=".csv or .jsonl"):
        output_kind("preds.xlsx")


def test_cli_predict_writes_a_folder_to_csv_and_reports_bad_files(photo_folder, tmp_path, capsys):
    from czsl_models.cli import main

    output = tmp_path / "out" / "preds.csv"
    assert main(["predict", str(photo_folder), str(tmp_path / "missing.jpg"), "--output", str(output),
                 "--backbone", "tiny", "--model", "msci", "--states", STATES, "--objects", OBJECTS, "--top-k", "2",
                 "--batch-size", "3"]) == 0
    summary = capsys.readouterr().err
    assert "4 photos predicted" in summary and "4 could not be read" in summary
    assert "fake.png" in summary and "missing.jpg: no such file or folder" in summary
    rows = list(csv.DictReader(output.open()))
    assert len([row for row in rows if not row["error"]]) == 4 * 2 and len(rows) == 4 * 2 + 4
    assert {row["backbone"] for row in rows} == {"tiny"} and {row["model"] for row in rows} == {"msci"}


def test_cli_predict_needs_output_for_a_folder_and_a_known_format(photo_folder, tmp_path, capsys):
    from czsl_models.cli import main

    assert main(["predict", str(photo_folder), "--backbone", "tiny"]) == 2
    assert "add --output preds.csv" in capsys.readouterr().err
    assert main(["predict", str(photo_folder), "--backbone", "tiny", "--output", str(tmp_path / "p.txt")]) == 2
    assert ".csv or .jsonl" in capsys.readouterr().err
    assert not (tmp_path / "p.txt").exists()
