"""The backbone precision setting: what `auto` picks, one shared backbone per precision, where the choice is
recorded, how far bfloat16 drifts from float32, and explanations that come from the pass that scored."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from czsl_models import load_model
from czsl_models.backbones import get_backbone
from czsl_models.backbones import precision as precision_module
from czsl_models.backbones.precision import (BackbonePrecisionError, requested_backbone_precision,
                                             resolve_backbone_precision, using_backbone_precision)
from czsl_models.inputs.vocab import Vocabulary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _drift import centred_cosine, example_photos, score_drift  # noqa: E402

VOCAB = Vocabulary.build("sliced, whole, rotten, wet, old", "apple, bread, dog, clock, rocket, coin")
MODELS = ("clip", "msci", "refiner", "svip")


@pytest.mark.parametrize("native, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_picks_bfloat16_only_where_the_cpu_has_it_natively(monkeypatch, native, expected):
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda device: native)
    monkeypatch.delenv("CZSL_BACKBONE_PRECISION", raising=False)
    assert resolve_backbone_precision("cpu") == expected
    assert resolve_backbone_precision("cpu", "float32") == "float32"  # float32 can always be forced
    assert resolve_backbone_precision("cpu", "bfloat16") == "bfloat16"


def test_precision_names_are_checked_and_the_environment_and_context_are_read(monkeypatch):
    monkeypatch.setenv("CZSL_BACKBONE_PRECISION", "BFloat16")
    assert requested_backbone_precision() == "bfloat16"
    with using_backbone_precision("float32"):
        assert requested_backbone_precision() == "float32"
        assert requested_backbone_precision("int8") == "int8"  # an explicit argument wins
    assert requested_backbone_precision() == "bfloat16"
    with pytest.raises(BackbonePrecisionError, match="one of auto, float32"):
        requested_backbone_precision("double")
    with pytest.raises(BackbonePrecisionError, match="only on CUDA"):
        resolve_backbone_precision("cpu", "float16")


def test_one_shared_backbone_per_precision_and_the_text_tower_stays_float32():
    full = get_backbone("tiny", "cpu", "float32")
    half = get_backbone("tiny", "cpu", "bfloat16")
    assert half is not full and get_backbone("tiny", "cpu", "bfloat16") is half
    assert full.precision == "float32" and half.precision == "bfloat16"
    assert {p.dtype for p in half.model.visual.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in full.model.visual.parameters()} == {torch.float32}
    assert half.model.token_embedding.weight.dtype == torch.float32
    assert torch.equal(half.encode_prompts(["a photo of a dog"]), full.encode_prompts(["a photo of a dog"]))
    # every model loaded in one precision shares that precision's backbone
    msci = load_model("msci", backbone="tiny", backbone_precision="bfloat16")
    svip = load_model("svip", backbone="tiny", backbone_precision="bfloat16")
    assert msci.backbone is svip.backbone is half


def test_the_precision_in_use_is_recorded_in_predictions_and_the_api_summary(example_images):
    from czsl_models.inference.summary import prediction_summary

    for name in ("float32", "bfloat16"):
        model = load_model("clip", backbone="tiny", backbone_precision=name)
        prediction = model.predict(example_images[0], VOCAB)[0]
        assert prediction.backbone_precision == name
        assert prediction.to_dict()["backbone_precision"] == name
        assert prediction_summary(prediction)["backbone_precision"] == name


def test_predict_and_evaluate_commands_take_and_report_the_precision(capsys, example_paths):
    from czsl_models.cli import main

    assert main(["predict", str(example_paths[0]), "--backbone", "tiny", "--backbone-precision", "bfloat16",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backbone_precision"] == "bfloat16"
    assert main(["evaluate", "--dataset", "synthetic:shapes?images_per_pair=2&image_size=32", "--backbone", "tiny",
                 "--backbone-precision", "float32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["backbone_precision"] == "float32"
    assert main(["predict", str(example_paths[0]), "--backbone", "tiny", "--backbone-precision", "float16"]) != 0
    assert "only on CUDA" in capsys.readouterr().err


def test_the_app_takes_the_precision_as_a_launch_option(monkeypatch):
    from czsl_models.ui.about import runtime_text
    from czsl_models.ui.launch import parse_args

    monkeypatch.delenv("CZSL_BACKBONE_PRECISION", raising=False)
    assert parse_args(["--backbone-precision", "Float32"]).backbone_precision == "float32"
    monkeypatch.setenv("CZSL_BACKBONE_PRECISION", "bfloat16")
    assert parse_args([]).backbone_precision == "bfloat16"
    with pytest.raises(SystemExit):
        parse_args(["--backbone-precision", "double"])
    assert "bfloat16" in runtime_text("tiny", "cpu", "bfloat16")


def test_app_models_use_the_precision_of_the_apps_backbone(monkeypatch):
    from czsl_models.ui.state import UNTRAINED, AppState

    monkeypatch.setenv("CZSL_BACKBONE_PRECISION", "float32")  # the app's own backbone decides, not the env
    state = AppState(get_backbone("tiny", "cpu", "bfloat16"))
    assert state.get_model("msci", UNTRAINED).backbone is state.backbone


@pytest.mark.parametrize("name", MODELS)
def test_bfloat16_keeps_top1_and_scores_of_every_model_on_the_example_photos(name):
    reference = load_model(name, backbone="tiny", backbone_precision="float32")
    candidate = load_model(name, backbone="tiny", backbone_precision="bfloat16")
    agreement, cosine = score_drift(reference, candidate, example_photos(), VOCAB)
    assert agreement >= 0.99 and cosine >= 0.999


def test_centred_cosine_sees_what_a_common_offset_hides():
    first = np.array([30.0, 30.5, 29.0, 31.0])
    swapped = np.array([30.0, 29.0, 30.5, 31.0])
    assert centred_cosine(first, first + 5) == pytest.approx(1.0)
    assert centred_cosine(first, swapped) < 0.5 < float(first @ swapped / np.linalg.norm(first) / np.linalg.norm(swapped))


@pytest.mark.parametrize("name", ["clip", "msci"])
def test_czsl_metrics_on_shapes_move_less_than_a_hundredth_in_bfloat16(name):
    from czsl_models.data import load_dataset
    from czsl_models.evaluation.evaluate import evaluate_model

    dataset = load_dataset("synthetic:shapes?images_per_pair=4")
    for open_world in (False, True):
        full = evaluate_model(load_model(name, backbone="tiny", backbone_precision="float32"), dataset,
                              open_world=open_world, num_workers=0).to_dict()
        half = evaluate_model(load_model(name, backbone="tiny", backbone_precision="bfloat16"), dataset,
                              open_world=open_world, num_workers=0).to_dict()
        assert abs(full["AUC"] - half["AUC"]) <= 0.01, (open_world, full["AUC"], half["AUC"])
        assert abs(full["best_hm"] - half["best_hm"]) <= 0.01


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "int8"])
def test_explanations_come_from_the_pass_that_scored(example_images, precision):
    from czsl_models.models.svip_patches import teacher_super_patch_scores, top_mask

    for name in MODELS:
        model = load_model(name, backbone="tiny", backbone_precision=precision)
        for prediction in model.predict(example_images[:2], VOCAB, top_k=3):
            parts = prediction.explanations["score_parts"]
            total = parts["composition"] + parts["state_times_object"]
            np.testing.assert_allclose(total, [item.score for item in prediction.ranking], rtol=1e-5, atol=1e-5)
    svip = load_model("svip", backbone="tiny", backbone_precision=precision)
    pixels = svip.backbone.preprocess_images(example_images[:2])
    with torch.no_grad():
        visual = svip.encode_images(pixels, explain=True)
        replay = svip.backbone.encode_image(pixels, layers=(svip.backbone.num_layers,), attention=True)
    # the teacher map, the kept patches and the CLS feature the scores use are all one pass's
    assert torch.equal(visual.cls, replay.cls)
    assert torch.equal(visual.teacher_scores, teacher_super_patch_scores(replay.attentions, svip.grid))
    assert torch.equal(visual.kept, top_mask(visual.teacher_scores, svip.num_kept))
    predicted = svip.predict(example_images[:2], VOCAB)
    with torch.no_grad():
        scores = svip.pair_scores(svip.branch_logits(visual, VOCAB, explain=True, pixels=pixels), VOCAB)
    np.testing.assert_array_equal(scores.numpy(), np.stack([p.scores for p in predicted]))
