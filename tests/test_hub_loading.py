"""Loading published checkpoints: revision, token, cache_dir, local_files_only, and the host's listed checkpoints.

The Hugging Face cache is laid out by hand (refs/<name> -> commit, snapshots/<commit>/<files>), so nothing
here touches the network; the session runs with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from czsl_models.models.checkpoints import CheckpointError, load_model

MAIN, V1 = "1" * 40, "2" * 40


def save_checkpoint(folder: Path, model_type: str, states: list[str], metrics: dict | None = None) -> None:
    model = load_model(model_type, backbone="tiny", train_states=states, train_objects=["apple", "bread"],
                       train_pairs=[[states[0], "apple"], [states[-1], "bread"]])
    model.save_pretrained(folder)
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


def cache_repo(cache: Path, repo_id: str, revisions: dict[str, tuple[str, str, list[str], dict | None]]) -> None:
    """revisions: ref name -> (commit, model type, states, metrics.json content)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for ref, (commit, model_type, states, metrics) in revisions.items():
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        save_checkpoint(repo / "snapshots" / commit, model_type, states, metrics)


REPRODUCED = {"closed_world": {"best_seen": 0.5, "best_unseen": 0.534, "best_hm": 0.399, "AUC": 0.228},
              "open_world": {"best_hm": 0.21, "AUC": 0.08}, "reproduction": {"dataset": "mit-states"}}


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache_repo(cache, "someone/msci-mit-states", {"main": (MAIN, "msci", ["old", "sliced", "whole"], REPRODUCED),
                                                   "v1": (V1, "msci", ["old", "new"], None)})
    cache_repo(cache, "someone/refiner-shapes", {"main": (MAIN, "refiner", ["red", "blue"],
                                                          {"phase": "test", "dataset": "synthetic:shapes",
                                                           "best_hm": 0.25, "AUC": 0.125})})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_load_model_honours_revision_and_names_the_model_itself(hub_cache):
    main = load_model(checkpoint="someone/msci-mit-states")
    assert main.name == "msci" and main.train_states == ["old", "sliced", "whole"]
    tagged = load_model(checkpoint="someone/msci-mit-states", revision="v1")
    assert tagged.train_states == ["old", "new"]
    assert load_model(checkpoint="someone/msci-mit-states", revision=V1).train_states == ["old", "new"]
    with pytest.raises(CheckpointError, match="revision v9"):
        load_model(checkpoint="someone/msci-mit-states", revision="v9")
    with pytest.raises(CheckpointError, match="refiner checkpoint, not msci"):
        load_model("msci", checkpoint="someone/refiner-shapes")


def test_cache_dir_token_and_local_files_only_reach_the_hub_download(hub_cache, tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(CheckpointError, match="not in the local cache"):
        load_model(checkpoint="someone/msci-mit-states")
    model = load_model(checkpoint="someone/msci-mit-states", revision="v1", cache_dir=hub_cache, local_files_only=True)
    assert model.train_states == ["old", "new"]
    seen = {}
    real = huggingface_hub.snapshot_download

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording)
    load_model(checkpoint="someone/msci-mit-states", token="hf_reader", cache_dir=hub_cache, local_files_only=True)
    assert seen["token"] == "hf_reader" and seen["local_files_only"] is True and seen["cache_dir"] == hub_cache


def test_from_pretrained_honours_revision(hub_cache, tmp_path):
    from czsl_models.models.base import CompositionModel
    from czsl_models.models.registry import model_class

    msci = model_class("msci")
    assert msci.from_pretrained("someone/msci-mit-states", revision="v1").train_states == ["old", "new"]
    assert msci.from_pretrained("someone/msci-mit-states").train_states == ["old", "sliced", "whole"]
    loaded = CompositionModel.from_pretrained("someone/refiner-shapes", local_files_only=True)
    assert loaded.name == "refiner"
    folder = tmp_path / "local"
    save_checkpoint(folder, "msci", ["a", "b"])
    with pytest.raises(CheckpointError, match="revision applies to Hub repos only"):
        msci.from_pretrained(folder, revision="v1")


def test_predict_with_a_hub_checkpoint_needs_no_model_option(hub_cache, example_paths, capsys):
    from czsl_models.cli import main

    assert main(["predict", str(example_paths[0]), "--checkpoint", "someone/refiner-shapes", "--json",
                 "--states", "red, blue", "--objects", "apple, bread"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "refiner"
    assert main(["predict", str(example_paths[0]), "--checkpoint", "someone/msci-mit-states", "--revision", "v1",
                 "--states", "old, new", "--objects", "apple"]) == 0
    assert "MSCI" in capsys.readouterr().out


def test_host_listed_checkpoints_are_fetched_with_a_log_line_each(hub_cache, caplog):
    from czsl_models.hub.hosted import fetch_hosted_checkpoints, parse_checkpoint_list

    assert parse_checkpoint_list(" a/b , c/d@v1,,") == [("a/b", None), ("c/d", "v1")]
    lines: list[str] = []
    hosted = fetch_hosted_checkpoints("someone/msci-mit-states, someone/missing, someone/msci-mit-states@v1",
                                      log=lines.append)
    assert [c.revision for c in hosted] == [None, "v1"] and [c.model_type for c in hosted] == ["msci", "msci"]
    assert lines[0] == "Fetching checkpoint 1 of 3: someone/msci-mit-states"
    assert any("Skipping checkpoint someone/missing" in r.getMessage() for r in caplog.records)
    assert hosted[0].label == "MSCI trained on mit-states (HM 39.9, AUC 22.8), someone/msci-mit-states"
    assert hosted[1].label == "MSCI, someone/msci-mit-states@v1"
    refiner = fetch_hosted_checkpoints("someone/refiner-shapes", log=lines.append)[0]
    assert "trained on synthetic:shapes (HM 25.0, AUC 12.5)" in refiner.label


def test_the_app_offers_host_checkpoints_first(hub_cache, tiny_backbone):
    from czsl_models.hub.hosted import fetch_hosted_checkpoints
    from czsl_models.ui.state import UNTRAINED, AppState

    hosted = fetch_hosted_checkpoints("someone/refiner-shapes, someone/msci-mit-states", log=lambda _: None)
    state = AppState(tiny_backbone, hosted=hosted)
    assert state.default_model_name() == "refiner"
    choices = state.checkpoint_choices("msci")
    assert choices[0][1] == UNTRAINED and choices[1] == (hosted[1].label, str(hosted[1].path))
    assert state.newest_checkpoint("refiner") == str(hosted[0].path)
    assert state.get_model("refiner", state.newest_checkpoint("refiner")).train_states == ["red", "blue"]
    other = AppState(tiny_backbone, hosted=[h for h in hosted if h.model_type == "msci"])
    other.backbone_spec  # noqa: B018 (the checkpoints were trained on "tiny", which this app runs)
    assert other.default_model_name() == "msci"


def test_create_app_opens_predict_on_the_first_host_checkpoint(hub_cache, monkeypatch):
    import gradio as gr

    from czsl_models.ui import create_app

    demo, state = create_app("tiny", checkpoints="someone/refiner-shapes,someone/msci-mit-states")
    try:
        components = list(demo.blocks.values())
        model_menu = next(c for c in components if getattr(c, "elem_id", None) == "predict-model")
        assert model_menu.value == "refiner"
        weights_menus = [c for c in components if isinstance(c, gr.Dropdown) and c.label == "Trained weights"]
        assert weights_menus[0].value == str(state.hosted[0].path)
        labels = [label for label, _ in weights_menus[0].choices]
        assert any(label.startswith("Refiner (reconstruction) trained on synthetic:shapes (HM 25.0") for label in labels)
    finally:
        demo.close()
