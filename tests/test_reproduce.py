"""Tests for `reproduce`: download → paper-preset training → closed/open-world test → metrics.json → card → push."""

from __future__ import annotations

import json

import pytest

from benchmark_mirror import Mirror, build_archives, pin_tiny_feasibility
from hub_cards import checked_card
from czsl_models.hub import reproduce as reproduce_module
from czsl_models.hub.reproduce import ReproduceError, ReproduceOptions, reproduce
from czsl_models.hub.reproduction_card import backbone_hub_repo, render_reproduction_card

HEADLINE = ("best_seen", "best_unseen", "best_hm", "AUC")


def quiet(_: str) -> None:
    pass


@pytest.fixture()
def mirror(tmp_path, monkeypatch):
    build_archives(tmp_path / "mirror")
    pin_tiny_feasibility(monkeypatch, tmp_path / "mirror")
    server = Mirror(tmp_path / "mirror")
    yield server
    server.close()


def options(tmp_path, mirror, **changes) -> ReproduceOptions:
    values = dict(model="msci", dataset="mit-states", root=str(tmp_path / "data"), mirror=mirror.url, backbone="tiny",
                  epochs=1, out=str(tmp_path / "msci-mit-states"), eval_batch_size=4, num_workers=0)
    values.update(changes)
    return ReproduceOptions(**values)


def test_reproduce_end_to_end_then_nothing_to_redo(tmp_path, mirror):
    from czsl_models.models.checkpoints import load_model

    out = reproduce(options(tmp_path, mirror), log=quiet)
    assert (tmp_path / "data" / "mit-states" / "DOWNLOAD.json").is_file()
    document = json.loads((out / "metrics.json").read_text())
    for world in ("closed_world", "open_world"):
        assert all(0.0 <= document[world][key] <= 1.0 for key in HEADLINE)
    # The released feasibility file at the released config's fixed threshold, with the released weights per world.
    assert document["open_world"]["feasibility_threshold"] == 0.36183673469387756
    assert document["open_world"]["feasibility_source"].startswith("released file feasibility_mit-states.pt")
    assert (tmp_path / "data" / "mit-states" / "feasibility_mit-states.pt").is_file()
    assert document["closed_world"]["score_weights"] == [0.1, 0.9, 0.9]
    assert document["open_world"]["score_weights"] == [0.3, 0.7, 0.7]
    run = document["reproduction"]
    assert run["recipe"]["mixed_precision"] == "no (float32)" and run["recipe"]["keep_eval_mode_after_validation"]
    assert run["recipe"]["model_options"]["variant"] == "released"
    assert run["preset"] == "paper" and run["recipe"]["epochs"] == 1 and run["recipe_epochs"] == 20
    assert run["recipe"]["model_options"].get("use_adapters") is True and run["train_seconds"] > 0
    assert [a["file"] for a in run["archives"]] == ["release_dataset.zip", "compositional_split_natural.tar.gz"]

    card = checked_card((out / "README.md").read_text(), "msci", base_model=None)  # tiny: on no Hub repo
    assert card.data.datasets is None and "mit-states" in card.data.tags  # MIT-States has no Hub copy used here
    results = {(r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert len(results) == 8
    for world in ("closed_world", "open_world"):
        for key in HEADLINE:
            assert results[(world.replace("_", "-"), key.lower())] == round(100 * document[world][key], 2)
    assert "| paper | 50.2 | 53.4 | 39.9 | 22.8 | 21.2 | 7.9 |" in card.text
    assert "Trained for 1 epochs instead of the recipe's 20" in card.text and "`tiny`" in card.text

    model = load_model(checkpoint=out)
    assert model.name == "msci" and int(model.training_steps.item()) == document["training_steps"] > 0

    # A second run finds everything done: no training, no evaluation, the same metrics.
    weights_time = (out / "model.safetensors").stat().st_mtime_ns
    messages: list[str] = []
    reproduce(options(tmp_path, mirror), log=messages.append)
    assert (out / "model.safetensors").stat().st_mtime_ns == weights_time
    assert any("already evaluated" in m for m in messages) and any("already installed" in m for m in messages)
    again = json.loads((out / "metrics.json").read_text())
    assert again["closed_world"] == document["closed_world"] and again["open_world"] == document["open_world"]


def test_reproduce_resumes_after_an_interruption(tmp_path, mirror, monkeypatch):
    real_evaluate = reproduce_module._evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reproduce_module, "_evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reproduce(options(tmp_path, mirror), log=quiet)
    out = tmp_path / "msci-mit-states"
    steps = json.loads((out / "metrics.json").read_text())["training_steps"]
    weights_time = (out / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(reproduce_module, "_evaluate", real_evaluate)
    reproduce(options(tmp_path, mirror), log=quiet)  # training is not repeated; the evaluation is done now
    document = json.loads((out / "metrics.json").read_text())
    assert document["training_steps"] == steps and "open_world" in document
    assert (out / "model.safetensors").stat().st_mtime_ns == weights_time
    # Asking for more epochs continues the same run and evaluates the new checkpoint.
    reproduce(options(tmp_path, mirror, epochs=2), log=quiet)
    longer = json.loads((out / "metrics.json").read_text())
    assert longer["reproduction"]["recipe"]["epochs"] == 2 and longer["reproduction"]["evaluated_steps"] == longer["training_steps"]
    state = json.loads((out / "reproduce.json").read_text())
    assert state["train_seconds"] >= document["reproduction"]["train_seconds"]


def test_a_stop_request_ends_training_and_the_next_run_resumes_it(tmp_path, mirror):
    import threading
    import warnings

    stop = threading.Event()
    stop.set()  # as Ctrl-C does: training ends after its current step, with its state saved
    with pytest.raises(ReproduceError, match="run the same command again to resume"):
        reproduce(options(tmp_path, mirror), log=quiet, stop=stop)
    out = tmp_path / "msci-mit-states"
    assert not (out / "model.safetensors").exists() and (out / "training_state").is_dir()
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reproduce(options(tmp_path, mirror), log=messages.append)
    document = json.loads((out / "metrics.json").read_text())
    assert document["training_steps"] == 1 and "open_world" in document
    # Resumed at the epoch's end, the schedule steps from its saved position: not the out-of-order call torch warns of.
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]


def test_push_uses_the_given_token_and_uploads_the_card(tmp_path, mirror, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id))
            return f"https://huggingface.co/{repo_id}"

        def create_commit(self, repo_id, operations, **kwargs):
            calls.append(("upload", repo_id, sorted(op.path_in_repo for op in operations)))
            readme = next(op.path_or_fileobj for op in operations if op.path_in_repo == "README.md")
            checked_card(readme.decode(), "msci", base_model=None)

    # The whole session is offline: publishing refuses plainly.
    with pytest.raises(ReproduceError, match="HF_HUB_OFFLINE"):
        reproduce(options(tmp_path, mirror, push="someone/msci-mit-states", token="hf_x"), log=quiet)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    reproduce(options(tmp_path, mirror, push="someone/msci-mit-states", token="hf_x"), log=quiet)
    assert calls == [("token", "hf_x"), ("create", "someone/msci-mit-states"),
                     ("upload", "someone/msci-mit-states", ["README.md", "config.json", "metrics.json", "model.safetensors"])]
    assert 'load_model(checkpoint="someone/msci-mit-states")' in (tmp_path / "msci-mit-states" / "README.md").read_text()


def test_command_line(tmp_path, mirror, capsys):
    from czsl_models.cli import main

    arguments = ["reproduce", "refiner", "cgqa", "--root", str(tmp_path / "data"), "--mirror", mirror.url,
                 "--backbone", "tiny", "--epochs", "1", "--out", str(tmp_path / "refiner-cgqa"), "--num-workers", "0"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "closed world: best_seen" in out and "open world:" in out
    text = (tmp_path / "refiner-cgqa" / "README.md").read_text()
    assert "publishes no code and no full text" in text and "| paper |" not in text
    assert "datasets:\n- nihalnayak/cgqa" in text
    card = checked_card(text, "refiner", base_model=None)
    assert {r.dataset_type for r in card.data.eval_results} == {"nihalnayak/cgqa"}


def test_card_names_the_papers_backbone_and_departures():
    assert backbone_hub_repo("ViT-L-14-quickgelu:openai") == "timm/vit_large_patch14_clip_224.openai"
    assert backbone_hub_repo("hf-hub:org/clip") == "org/clip" and backbone_hub_repo("tiny") is None
    metrics = {key: 0.5 for key in HEADLINE}
    document = {"closed_world": metrics, "open_world": {**metrics, "feasibility_threshold": 0.25}, "epoch": 3,
                "training_steps": 90, "reproduction": {
                    "model": "svip", "dataset": "ut-zappos", "backbone": "ViT-L-14-quickgelu:openai", "recipe": {"epochs": 15},
                    "recipe_epochs": 15, "epochs_overridden": False, "train_seconds": 9000, "hardware": "NVIDIA H100"}}
    text = render_reproduction_card(document)
    assert "base_model: timm/vit_large_patch14_clip_224.openai" in text
    assert "publishes no CZSL numbers" in text and "2.5 h on NVIDIA H100" in text
    assert "instead of the paper's" not in text and "feasibility below 0.2500" in text


def test_dry_run_prints_the_whole_resolved_released_recipe_and_touches_nothing(tmp_path, monkeypatch, capsys):
    from czsl_models.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "msci", "ut-zappos", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    recipe, options, evaluation = plan["recipe"], plan["model_options"], plan["evaluation"]
    # The released UT-Zappos config (config/msci/ut-zappos.yml) and train_base.py's behaviour.
    assert (recipe["optimizer"], recipe["lr"], recipe["weight_decay"], recipe["epochs"], recipe["batch_size"],
            recipe["lr_step"], recipe["lr_gamma"]) == ("adamw", 2.5e-4, 1e-5, 15, 48, 5, 0.5)
    assert recipe["keep_eval_mode_after_validation"] is True and recipe["mixed_precision"] == "no"
    assert (options["variant"], options["init_scale"], options["aggregated_layers"], options["use_adapters"],
            options["adapter_bottleneck"]) == ("released", 0.1, 3, True, 64)
    assert not [key for key, value in options.items() if value is None], "every model value is resolved"
    world = evaluation["open_world"]
    assert world["feasibility_threshold"] == 0.4631293780949651 and world["score_weights"] == [1.0, 1.0, 1.0]
    assert "feasibility_ut-zappos.pt" in world["feasibility_source"]
    assert evaluation["closed_world"]["score_weights"] == [1.0, 1.0, 1.0]
    assert not list(tmp_path.iterdir()), "a dry run downloads, trains and writes nothing"
