"""The released feasibility files: download (mirror, resumable, sha256-pinned), loading, and their use in the
open-world evaluation of the benchmark recipe."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch

from test_evaluation import reference_metrics

from benchmark_mirror import Mirror, TINY_PRIMITIVES, build_archives, feasibility_values, pin_tiny_feasibility
from czsl_models.data.dataset import DatasetError
from czsl_models.data.feasibility_files import (
    RELEASED_FEASIBILITY,
    install_feasibility,
    load_released_feasibility,
)
from czsl_models.data.fetch import FetchPolicy

QUICK = FetchPolicy(timeout_s=10, retries=0, backoff_s=0, progress=False)


def quiet(_: str) -> None:
    pass


@pytest.fixture()
def mirror(tmp_path):
    build_archives(tmp_path / "mirror")
    server = Mirror(tmp_path / "mirror")
    yield server
    server.close()


def test_pins_are_the_released_files():
    """Sizes and sha256 of data/feasibility_{ut-zappos,mit-states,cgqa}.pt in ltpwy/MSCI (and Troika)."""
    expected = {"ut-zappos": (1_515, "6b5c9b142a4003d785e053386fbbc2607e8b740acdd67ac8891eb90b45a05f64", 192),
                "mit-states": (113_387, "19b78b8bdca50fcd2ce9dd04d31526cc0e9f7c20f51f54f171e7d28bf3c7257a", 28_175),
                "cgqa": (1_114_155, "6ff96ff8700e78f9446258682034995453429d48430fd9131cf45107048175f7", 278_362)}
    assert {name: (r.size, r.sha256, r.pairs) for name, r in RELEASED_FEASIBILITY.items()} == expected
    assert RELEASED_FEASIBILITY["cgqa"].file_name == "feasibility_cgqa.pt"
    assert RELEASED_FEASIBILITY["mit-states"].urls[0].endswith("/MSCI/code/data/feasibility_mit-states.pt")


def test_other_bytes_are_refused_by_the_real_pins(tmp_path, mirror):
    """The mirror serves a file in the released format under the released name, but not the released bytes."""
    target = tmp_path / "data" / "ut-zappos"
    with pytest.raises(DatasetError, match="not the released feasibility file"):
        install_feasibility("ut-zappos", target, mirror=mirror.url, policy=QUICK, log=quiet)
    assert not (target / "feasibility_ut-zappos.pt").exists()
    assert not list((tmp_path / "data" / ".downloads").glob("*"))  # discarded: fetched afresh next time
    # a wrong file already in place is not trusted either
    target.mkdir(parents=True)
    shutil.copy(mirror.server.folder / "feasibility_ut-zappos.pt", target / "feasibility_ut-zappos.pt")
    with pytest.raises(DatasetError, match="sha256"):
        install_feasibility("ut-zappos", target, from_files=mirror.server.folder, policy=QUICK, log=quiet)


def test_installs_from_the_mirror_by_the_same_name_then_is_a_no_op(tmp_path, mirror, monkeypatch):
    pin_tiny_feasibility(monkeypatch, mirror.server.folder)
    target = tmp_path / "data" / "mit-states"
    path = install_feasibility("mit-states", target, mirror=mirror.url, policy=QUICK, log=quiet)
    assert path == target / "feasibility_mit-states.pt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == RELEASED_FEASIBILITY["mit-states"].sha256
    assert ("GET", "feasibility_mit-states.pt", None) in mirror.requests
    before = len(mirror.requests)
    install_feasibility("mit-states", target, mirror=mirror.url, policy=QUICK, log=quiet)
    assert len(mirror.requests) == before


def test_interrupted_download_resumes(tmp_path, mirror, monkeypatch):
    pin_tiny_feasibility(monkeypatch, mirror.server.folder)
    target = tmp_path / "data" / "ut-zappos"
    mirror.drop_once("feasibility_ut-zappos.pt", after_bytes=300)
    with pytest.raises(DatasetError, match="resume"):
        install_feasibility("ut-zappos", target, mirror=mirror.url, policy=QUICK, log=quiet)
    assert (tmp_path / "data" / ".downloads" / "feasibility_ut-zappos.pt.part").stat().st_size == 300
    install_feasibility("ut-zappos", target, mirror=mirror.url, policy=QUICK, log=quiet)
    assert ("GET", "feasibility_ut-zappos.pt", "bytes=300-") in mirror.requests
    assert (target / "feasibility_ut-zappos.pt").is_file()


def test_download_command_installs_the_feasibility_file(tmp_path, mirror, monkeypatch, capsys):
    from czsl_models.cli import main

    pin_tiny_feasibility(monkeypatch, mirror.server.folder)
    assert main(["download", "cgqa", "--root", str(tmp_path / "data"), "--mirror", mirror.url, "--no-progress",
                 "--retries", "0"]) == 0
    assert "feasibility" in capsys.readouterr().out
    path = tmp_path / "data" / "cgqa" / "feasibility_cgqa.pt"
    states, objects = TINY_PRIMITIVES["cgqa"]
    table = load_released_feasibility(path, len(states), len(objects))
    np.testing.assert_array_equal(table.reshape(-1), feasibility_values("cgqa").double().numpy())


def test_loading_checks_the_format(tmp_path):
    path = tmp_path / "f.pt"
    torch.save({"feasibility": torch.rand(6)}, path)
    assert load_released_feasibility(path, 2, 3).shape == (2, 3)
    with pytest.raises(DatasetError, match="6 feasibility values"):
        load_released_feasibility(path, 3, 3)
    torch.save({"scores": torch.rand(6)}, path)
    with pytest.raises(DatasetError, match="no float tensor"):
        load_released_feasibility(path, 2, 3)
    path.write_bytes(b"not a torch file")
    with pytest.raises(DatasetError, match="not a readable"):
        load_released_feasibility(path, 2, 3)


def test_open_world_masks_with_the_released_scores(tmp_path, mirror, monkeypatch):
    """evaluate_model with a released table masks exactly the unseen pairs below the threshold: equal to the
    reference evaluator on scores with those pairs set to -inf."""
    from czsl_models import load_model
    from czsl_models.data.download import install_benchmark
    from czsl_models.data.sources import load_dataset
    from czsl_models.evaluation.evaluate import evaluate_model, evaluation_setup, pair_table_values

    pin_tiny_feasibility(monkeypatch, mirror.server.folder)
    install_benchmark("mit-states", root=tmp_path / "data", mirror=mirror.url, policy=QUICK, log=quiet)
    dataset = load_dataset(tmp_path / "data" / "mit-states")
    path = install_feasibility("mit-states", tmp_path / "data" / "mit-states", mirror=mirror.url, policy=QUICK, log=quiet)
    table = load_released_feasibility(path, len(dataset.states), len(dataset.objects))
    assert list(dataset.states) == TINY_PRIMITIVES["mit-states"][0]  # the released files' sorted order
    model = load_model("clip", backbone="tiny")
    threshold = float(np.median(table))
    got = evaluate_model(model, dataset, phase="test", open_world=True, feasibility_threshold=threshold,
                         feasibility_table=table, batch_size=4, num_workers=0).to_dict()
    setup = evaluation_setup(dataset, "test", open_world=True)
    feasibility = pair_table_values(table, setup.vocab, dataset)
    states, objects = setup.vocab.pair_states, setup.vocab.pair_objects
    assert all(feasibility[i] == table[states[i], objects[i]] for i in range(len(feasibility)))
    # the reference evaluator on the full score matrix, with the released rule's kept pairs
    with torch.no_grad():
        from czsl_models.data.pixels import PixelSamples

        samples = PixelSamples(dataset, setup.samples, model.backbone.preprocess)
        images = torch.stack([samples[i][0] for i in range(len(setup.samples))])
        scores = model.pair_scores(model(images, setup.vocab), setup.vocab).float().numpy()
    seen = setup.evaluator.seen
    keep = seen | (feasibility >= threshold)  # released: mask = (feasibility >= threshold) + seen_mask
    assert not keep.all() and keep[~seen].any()
    assert_matches_reference(got, reference_metrics(scores, setup.labels, states, objects, seen, keep))


def assert_matches_reference(got: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert np.allclose(got[key], value, rtol=0, atol=1e-6), (key, got[key], value)
