"""Tests for `download`: the four archives' layouts served from a local mirror, and every way it can go wrong."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from benchmark_mirror import MIT_RECORDS, Mirror, build_archives, pin_tiny_feasibility, write_tar_gz, write_zip
from czsl_models.data import download as download_module
from czsl_models.data import fetch as fetch_module
from czsl_models.data.dataset import DatasetError
from czsl_models.data.download import RECORD_NAME, install_benchmark
from czsl_models.data.fetch import FetchPolicy
from czsl_models.data.sources import load_dataset

QUICK = FetchPolicy(timeout_s=10, retries=0, backoff_s=0, progress=False)


def quiet(_: str) -> None:
    pass


@pytest.fixture()
def mirror(tmp_path, monkeypatch):
    folder = tmp_path / "mirror"
    build_archives(folder)
    pin_tiny_feasibility(monkeypatch, folder)  # `download` also installs the released feasibility file
    server = Mirror(folder)
    yield server
    server.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(root: Path) -> list[str]:
    """Anything an install leaves besides finished datasets: staging folders and downloads."""
    hidden = sorted(p.name for p in root.iterdir() if p.name.startswith(".") and p.name != ".downloads")
    downloads = root / ".downloads"
    return hidden + (sorted(p.name for p in downloads.iterdir()) if downloads.exists() else [])


def install(name: str, root: Path, mirror: Mirror, **options):
    return install_benchmark(name, root=root, mirror=mirror.url, policy=options.pop("policy", QUICK), log=quiet, **options)


def test_mit_states_from_a_mirror(tmp_path, mirror):
    root = tmp_path / "data"
    report = install("mit-states", root, mirror)
    target = root / "mit-states"
    assert report.target == target and not report.already_installed
    dataset = load_dataset(target)
    assert dataset.summary()["train_images"] == 5 and dataset.summary()["test_images"] == 3
    # Folder names with spaces become underscores, as the metadata names them.
    assert (target / "images" / "ancient_building" / "image_1.jpg").is_file()
    assert not (target / "images" / "ancient building").exists()
    assert not (target / "release_dataset").exists() and not (target / "adj_ants.csv").exists()
    record = json.loads((target / RECORD_NAME).read_text())
    served = mirror.server.folder
    assert {a["file"]: (a["sha256"], a["size"]) for a in record["archives"]} == {
        name: (sha256(served / name), (served / name).stat().st_size)
        for name in ("release_dataset.zip", "compositional_split_natural.tar.gz")}
    # A tiny sample cannot match the published statistics, and the report says so plainly.
    assert record["matches_published"] is False
    assert ("states", 3, 115) in report.differences
    assert "do NOT match the published statistics" in report.describe("MIT-States")
    assert leftovers(root) == []


def test_second_run_is_a_no_op(tmp_path, mirror):
    root = tmp_path / "data"
    install("mit-states", root, mirror)
    before = len(mirror.requests)
    stamp = (root / "mit-states" / RECORD_NAME).stat().st_mtime_ns
    again = install("mit-states", root, mirror)
    assert again.already_installed and len(mirror.requests) == before
    assert (root / "mit-states" / RECORD_NAME).stat().st_mtime_ns == stamp
    assert "already installed" in again.describe("MIT-States")


def test_ut_zappos_is_reorganised_from_raw_paths(tmp_path, mirror):
    root = tmp_path / "data"
    install("ut-zappos", root, mirror)
    target = root / "ut-zappos"
    dataset = load_dataset(target)
    assert "faux leather" not in dataset.states and "leather" in dataset.states and "boots ankle" in dataset.objects
    raw = {r["image"]: r["_image"] for r in torch.load(target / "metadata_compositional-split-natural.t7", weights_only=True)}
    with zipfile.ZipFile(mirror.server.folder / "ut-zap50k-images.zip") as archive:
        for image, raw_path in raw.items():
            assert (target / "images" / image).read_bytes() == archive.read(f"ut-zap50k-images/{raw_path}")
    assert not (target / "_images").exists() and not (target / "ut-zap50k-images").exists()


def test_ut_zappos_copies_where_links_are_refused(tmp_path, mirror, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError("links not supported")

    monkeypatch.setattr(download_module.os, "link", refuse)
    install("ut-zappos", tmp_path / "data", mirror)
    assert (tmp_path / "data" / "ut-zappos" / "images" / "Canvas_Sandals" / "100.1.jpg").is_file()


def test_cgqa_from_a_mirror(tmp_path, mirror):
    install("cgqa", tmp_path / "data", mirror)
    dataset = load_dataset(tmp_path / "data" / "cgqa")
    assert dataset.summary()["val_pairs_unseen"] == 1 and len(dataset.splits["test"]) == 2


def test_cgqa_through_the_hugging_face_cache(tmp_path, mirror, monkeypatch):
    # A Hub cache laid out by hand, as hf_hub_download leaves it; the Hub itself is never reached (offline).
    commit = "a" * 40
    repo = tmp_path / "hub" / "datasets--nihalnayak--cgqa"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(mirror.server.folder / "cgqa.zip", repo / "snapshots" / commit / "cgqa.zip")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("CZSL_DATA_MIRROR", raising=False)
    report = install_benchmark("cgqa", root=tmp_path / "data", policy=QUICK, log=quiet)
    assert report.archives[0]["source"] == "hf://datasets/nihalnayak/cgqa/cgqa.zip"
    assert (repo / "snapshots" / commit / "cgqa.zip").is_file()  # the Hub cache is left alone
    assert load_dataset(tmp_path / "data" / "cgqa").summary()["train_images"] == 4


def test_cgqa_offline_without_a_cache_says_what_to_do(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("CZSL_DATA_MIRROR", raising=False)
    with pytest.raises(DatasetError, match="--mirror or --from-files"):
        install_benchmark("cgqa", root=tmp_path / "data", policy=QUICK, log=quiet)
    assert not (tmp_path / "data" / "cgqa").exists()


def test_from_files_leaves_the_users_archives(tmp_path, mirror):
    report = install_benchmark("mit-states", root=tmp_path / "data", from_files=mirror.server.folder, policy=QUICK, log=quiet)
    assert (mirror.server.folder / "release_dataset.zip").is_file() and mirror.requests == []
    assert report.archives[0]["source"] == str(mirror.server.folder / "release_dataset.zip")


def test_mirror_from_the_environment(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("CZSL_DATA_MIRROR", mirror.url + "/")
    monkeypatch.setenv("CZSL_DATA_DIR", str(tmp_path / "env-root"))
    install_benchmark("cgqa", policy=QUICK, log=quiet)
    assert (tmp_path / "env-root" / "cgqa" / RECORD_NAME).is_file()
    assert ("GET", "cgqa.zip", None) in mirror.requests


@pytest.mark.parametrize("archive", ["release_dataset.zip", "compositional_split_natural.tar.gz"])
def test_truncated_archive_fails_naming_it_and_leaves_nothing(tmp_path, mirror, archive):
    path = mirror.server.folder / archive
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as error:
        install("mit-states", root, mirror)
    message = str(error.value)
    assert archive in message and "\n" not in message and ("truncated" in message or "damaged" in message)
    assert not (root / "mit-states").exists() and leftovers(root) == []


def test_missing_image_fails_naming_it(tmp_path):
    folder = tmp_path / "mirror"
    archives = build_archives(folder)
    # The metadata lists image_99.jpg, which the images archive does not hold.
    extra = [*MIT_RECORDS, {"image": "old_car/image_99.jpg", "attr": "old", "obj": "car", "set": "train"}]
    listed = build_archives(tmp_path / "with-extra", mit_records=extra)
    shutil.copy(listed["compositional_split_natural.tar.gz"], archives["compositional_split_natural.tar.gz"])
    server = Mirror(folder)
    try:
        with pytest.raises(DatasetError, match=r"images/old_car/image_99\.jpg .*missing from release_dataset\.zip"):
            install("mit-states", tmp_path / "data", server)
    finally:
        server.close()
    assert not (tmp_path / "data" / "mit-states").exists() and leftovers(tmp_path / "data") == []


def test_damaged_image_fails_naming_it(tmp_path, mirror):

    path = mirror.server.folder / "release_dataset.zip"
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    files["release_dataset/images/new car/image_8.jpg"] = b"\xff\xd8 not really a jpeg"
    write_zip(path, files)
    with pytest.raises(DatasetError, match=r"images/new_car/image_8\.jpg from release_dataset\.zip is not a readable image"):
        install("mit-states", tmp_path / "data", mirror)


def test_changed_mirror_file_is_refused(tmp_path, mirror):
    root = tmp_path / "data"
    install("mit-states", root, mirror)
    recorded = json.loads((root / "mit-states" / RECORD_NAME).read_text())["archives"]
    # The mirror now serves a different split archive than the one mit-states was installed from.
    build_archives(tmp_path / "changed", note="re-packed")
    shutil.copy(tmp_path / "changed" / "compositional_split_natural.tar.gz", mirror.server.folder)
    with pytest.raises(DatasetError) as error:
        install("ut-zappos", root, mirror)
    message = str(error.value)
    assert "compositional_split_natural.tar.gz" in message and "sha256" in message and "changed" in message
    assert not (root / "ut-zappos").exists()
    with pytest.raises(DatasetError, match="sha256"):
        install("mit-states", root, mirror, force=True)
    assert json.loads((root / "mit-states" / RECORD_NAME).read_text())["archives"] == recorded  # untouched
    install("ut-zappos", root, mirror, accept_changed=True)
    assert (root / "ut-zappos" / RECORD_NAME).is_file()


def test_interrupted_download_resumes_with_range(tmp_path, mirror):
    mirror.drop_once("release_dataset.zip", 700)
    policy = FetchPolicy(timeout_s=10, retries=2, backoff_s=0, progress=False)
    install("mit-states", tmp_path / "data", mirror, policy=policy)
    gets = [r for r in mirror.requests if r[0] == "GET" and r[1] == "release_dataset.zip"]
    assert gets == [("GET", "release_dataset.zip", None), ("GET", "release_dataset.zip", "bytes=700-")]
    recorded = json.loads((tmp_path / "data" / "mit-states" / RECORD_NAME).read_text())["archives"][0]
    assert recorded["sha256"] == sha256(mirror.server.folder / "release_dataset.zip")


def test_interrupted_run_resumes_on_the_next_run(tmp_path, mirror):
    root = tmp_path / "data"
    mirror.drop_once("release_dataset.zip", 500)
    with pytest.raises(DatasetError, match="run the command again to resume"):
        install("mit-states", root, mirror)
    assert (root / ".downloads" / "release_dataset.zip.part").stat().st_size == 500
    assert not (root / "mit-states").exists()
    install("mit-states", root, mirror)
    assert ("GET", "release_dataset.zip", "bytes=500-") in mirror.requests
    assert load_dataset(root / "mit-states").summary()["val_images"] == 2 and leftovers(root) == []


def test_resume_starts_over_when_the_file_changed_meanwhile(tmp_path, mirror):

    root = tmp_path / "data"
    mirror.drop_once("cgqa.zip", 400)
    with pytest.raises(DatasetError):
        install("cgqa", root, mirror)
    path = mirror.server.folder / "cgqa.zip"
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    write_zip(path, {"cgqa/README.txt": b"a new release", **files})  # new bytes, so a new ETag
    install("cgqa", root, mirror)
    gets = [r for r in mirror.requests if r[0] == "GET"]
    assert gets[-1] == ("GET", "cgqa.zip", "bytes=400-")  # asked to resume; the server sent the new file whole
    recorded = json.loads((root / "cgqa" / RECORD_NAME).read_text())["archives"][0]
    assert recorded["sha256"] == sha256(path) and recorded["size"] == path.stat().st_size


def test_full_disk_is_refused_before_downloading(tmp_path, mirror, monkeypatch):
    real = shutil.disk_usage

    def small_quota(path):
        return type(real(path))(total=10_000, used=9_000, free=1_000)

    monkeypatch.setattr(fetch_module.shutil, "disk_usage", small_quota)
    with pytest.raises(DatasetError, match=r"installing MIT-States needs .* but only 1\.0 KB are free"):
        install("mit-states", tmp_path / "data", mirror)
    assert [r for r in mirror.requests if r[0] == "GET"] == []
    assert not (tmp_path / "data" / "mit-states").exists()


def test_unsafe_paths_and_links_are_refused(tmp_path, mirror):
    write_zip(mirror.server.folder / "release_dataset.zip", {"release_dataset/images/../../../evil.jpg": b"x"})
    with pytest.raises(DatasetError, match="unsafe path"):
        install("mit-states", tmp_path / "a", mirror)
    assert not (tmp_path / "evil.jpg").exists()
    import io
    import tarfile

    with tarfile.open(mirror.server.folder / "compositional_split_natural.tar.gz", "w:gz") as archive:
        link = tarfile.TarInfo("mit-states/metadata_compositional-split-natural.t7")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
        archive.addfile(tarfile.TarInfo("mit-states/x"), io.BytesIO(b""))
    with pytest.raises(DatasetError, match="holds a link"):
        install("mit-states", tmp_path / "b", mirror)


def test_existing_folder_not_made_by_download_is_kept(tmp_path, mirror):
    (tmp_path / "data" / "mit-states").mkdir(parents=True)
    (tmp_path / "data" / "mit-states" / "mine.txt").write_text("keep")
    with pytest.raises(DatasetError, match="--force"):
        install("mit-states", tmp_path / "data", mirror)
    assert (tmp_path / "data" / "mit-states" / "mine.txt").read_text() == "keep"


def test_command_line(tmp_path, mirror, capsys):
    from czsl_models.cli import main

    arguments = ["download", "cgqa", "--root", str(tmp_path / "data"), "--mirror", mirror.url, "--no-progress"]
    assert main(arguments) == 0
    assert "C-GQA installed in" in capsys.readouterr().out
    assert main(arguments) == 0
    assert "already installed" in capsys.readouterr().out
    assert main(["download", "cgqa", "--root", str(tmp_path / "other"), "--mirror", mirror.url + "/missing",
                 "--no-progress", "--retries", "0"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # progress lines come before it
    assert error.startswith("error: cannot download cgqa.zip") and "404" in error
