"""The model interface, the CLIP baseline, predictions and the checkpoint format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from czsl_models import CheckpointError, Vocabulary, list_models, load_model
from czsl_models.models.base import CompositionModel
from czsl_models.models.checkpoints import list_local_checkpoints
from czsl_models.models.registry import register_model


class LearnedPromptProbe(CompositionModel):
    """The CLIP scorer with learnable prompts: exercises the checkpoint format on real parameters."""

    name = "probe-learned-prompts"


@pytest.fixture(scope="module", autouse=True)
def registered_probe():
    """Register the probe for this module only, so other tests see just the real models."""
    from czsl_models.models import registry

    register_model(LearnedPromptProbe)
    yield
    registry._REGISTRY.pop(LearnedPromptProbe.name, None)


VOCAB = Vocabulary.build("sleeping, sitting, shiny, hot, striped", "cat, coffee, astronaut, rocket")


def test_list_models_starts_with_the_baseline():
    assert list_models()[0] == "clip"


def test_clip_scores_are_the_three_branch_formula(tiny_backbone, example_images):
    model = load_model("clip", backbone="tiny")
    predictions = model.predict(example_images, VOCAB, top_k=VOCAB.num_pairs)
    pixels = tiny_backbone.preprocess_images(example_images)
    with torch.no_grad():
        image = F.normalize(tiny_backbone.model.encode_image(pixels), dim=-1)

        def text(prompts):
            return F.normalize(tiny_backbone.model.encode_text(tiny_backbone.tokenizer(prompts)), dim=-1)

        pair = 100 * image @ text([f"a photo of {s} {o}" for s, o in VOCAB.pair_names()]).T
        state = (100 * image @ text([f"a photo of {s}" for s in VOCAB.states]).T).softmax(-1)
        obj = (100 * image @ text([f"a photo of {o}" for o in VOCAB.objects]).T).softmax(-1)
    expected = pair + state[:, VOCAB.pair_states] * obj[:, VOCAB.pair_objects]
    for b, prediction in enumerate(predictions):
        assert np.abs(prediction.scores - expected[b].numpy()).max() < 1e-4
        scores = [r.score for r in prediction.ranking]
        assert scores == sorted(scores, reverse=True) and len(scores) == VOCAB.num_pairs
        assert not prediction.trained
        assert abs(sum(p for _, p in prediction.states) - 1) < 1e-5
        parts = prediction.explanations["score_parts"]
        assert np.allclose(parts["composition"] + parts["state_times_object"], scores, atol=1e-4)


def test_batch_of_one_equals_batch(example_images):
    model = load_model("clip", backbone="tiny")
    batch = model.predict(example_images, VOCAB)
    for image, expected in zip(example_images, batch):
        single = model.predict(image, VOCAB)[0]
        assert np.allclose(single.scores, expected.scores, atol=1e-5)


def test_bias_moves_unseen_pairs(example_images):
    model = load_model("clip", backbone="tiny")
    vocab = VOCAB.with_seen([("sleeping", "cat")])
    plain = model.predict(example_images[0], vocab, top_k=3)[0]
    biased = model.predict(example_images[0], vocab, top_k=3, bias=1000.0)[0]
    assert all(not r.seen for r in biased.ranking)
    seen = vocab.seen_mask
    assert np.allclose(biased.scores[~seen] - plain.scores[~seen], 1000.0, atol=1e-2)


def _trained_probe():
    model = load_model("probe-learned-prompts", backbone="tiny", train_states=["sleeping", "hot"],
                       train_objects=["cat", "coffee"], train_pairs=[["sleeping", "cat"], ["hot", "coffee"]])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        model.training_steps += 3
    return model


def test_save_then_load_gives_identical_predictions(tmp_path, example_images):
    model = _trained_probe()
    model.save_pretrained(tmp_path / "probe")
    config = json.loads((tmp_path / "probe" / "config.json").read_text())
    assert config["model_type"] == "probe-learned-prompts" and config["backbone"] == "tiny"
    assert config["train_states"] == ["sleeping", "hot"]
    assert (tmp_path / "probe" / "README.md").read_text().count("sleeping") >= 1
    loaded = load_model("probe-learned-prompts", checkpoint=tmp_path / "probe")
    assert loaded.is_trained
    before = model.predict(example_images, VOCAB)
    after = loaded.predict(example_images, VOCAB)
    for a, b in zip(before, after):
        assert np.array_equal(a.scores, b.scores)
    listed = list_local_checkpoints(tmp_path)
    assert [info.model_type for info in listed] == ["probe-learned-prompts"]


def test_saved_weights_never_hold_the_backbone(tmp_path):
    from safetensors.torch import load_file

    _trained_probe().save_pretrained(tmp_path / "probe")
    keys = load_file(str(tmp_path / "probe" / "model.safetensors")).keys()
    assert keys and not any(key.startswith(("backbone", "model.visual", "visual")) for key in keys)
    assert all(key.startswith(("prompts.", "training_steps")) for key in keys)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_safetensors_gives_a_clear_error(tmp_path, damage):
    folder = tmp_path / "probe"
    _trained_probe().save_pretrained(folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00\x01not safetensors" * 10, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model("probe-learned-prompts", checkpoint=folder)


def test_mismatched_weights_are_described(tmp_path):
    folder = tmp_path / "probe"
    _trained_probe().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["train_states"] = ["sleeping"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_model("probe-learned-prompts", checkpoint=folder)


def test_checkpoint_errors(tmp_path):
    folder = tmp_path / "probe"
    _trained_probe().save_pretrained(folder)
    with pytest.raises(CheckpointError, match="not clip"):
        load_model("clip", checkpoint=folder)
    with pytest.raises(CheckpointError, match="trained on backbone tiny"):
        load_model("probe-learned-prompts", checkpoint=folder, backbone="random:ViT-B-32")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model("clip", checkpoint=tmp_path)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(None, checkpoint=folder)
    with pytest.raises(CheckpointError, match="Unknown model"):
        load_model("nope")


def test_hub_checkpoint_offline_fails_clearly():
    with pytest.raises(CheckpointError, match="not in the local cache"):
        load_model("msci", checkpoint="someone/czsl-msci-not-cached")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, example_images):
    import czsl_models.models.base as base

    folder = tmp_path / "probe"
    model = _trained_probe()
    model.save_pretrained(folder)
    before = (folder / "model.safetensors").read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken_save)
    with torch.no_grad():
        model.prompts.context.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(folder)
    assert (folder / "model.safetensors").read_bytes() == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert base.CHECKPOINT_FORMAT_VERSION == json.loads((folder / "config.json").read_text())["format_version"]


def test_checkpoint_files_get_ordinary_permissions(tmp_path):
    _trained_probe().save_pretrained(tmp_path / "probe")
    for name in ("model.safetensors", "config.json", "README.md"):
        assert (tmp_path / "probe" / name).stat().st_mode & 0o777 == 0o644
