"""Tests for the Refiner reconstruction: CLIP equality when untrained, gradients, explanations,
checkpoints, batch sizes, chunked text fusion and the speed benchmark's quick mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from czsl_models.models.layers import fit_heads
from czsl_models.models.refiner import QUERY_GROUPS, Refiner
from czsl_models.models.checkpoints import load_model
from czsl_models.inputs.vocab import Vocabulary

STATES = "sliced, whole, rotten, wet, shiny, old"
OBJECTS = "apple, cat, car, cup, rocket"
TRAIN_PAIRS = [["sliced", "apple"], ["wet", "cat"], ["shiny", "car"], ["old", "cup"], ["whole", "rocket"]]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.build(STATES, OBJECTS, seen_pairs=[tuple(p) for p in TRAIN_PAIRS])


@pytest.fixture(scope="module")
def clip_model(tiny_backbone):
    return load_model("clip", backbone="tiny")


def make_refiner(**overrides) -> Refiner:
    """A tiny Refiner with this file's training vocabulary."""
    torch.manual_seed(0)
    return load_model("refiner", backbone="tiny", train_states=[s.strip() for s in STATES.split(",")],
                      train_objects=[o.strip() for o in OBJECTS.split(",")], train_pairs=TRAIN_PAIRS, **overrides)


def zero_initialised(model: Refiner) -> list[torch.Tensor]:
    """The tensors that start at zero so that the untrained model is the CLIP baseline."""
    return [model.image_lambda, model.text_lambda, model.prompts.state_offsets, model.prompts.object_offsets,
            model.state_disentangler.block[-1].weight, model.state_disentangler.block[-1].bias,
            model.object_disentangler.block[-1].weight, model.object_disentangler.block[-1].bias]


def perturb(model: Refiner, scale: float = 0.5) -> Refiner:
    """Stand-in for a trained model: every zero-initialised tensor gets a non-zero value."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in zero_initialised(model):
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale)
    return model


def test_untrained_refiner_scores_like_clip(example_images, clip_model, vocab):
    """Every pair's score equals the clip model's, for a batch and for single images, with and without the fusion MLP."""
    batch_clip = clip_model.predict(example_images, vocab, top_k=3)
    single_clip = [clip_model.predict(image, vocab)[0] for image in example_images[:2]]
    for options in ({}, {"fusion_mlp": True, "num_queries": 6, "query_layers": 1}):
        refiner = make_refiner(**options)
        assert not refiner.is_trained
        batch_refiner = refiner.predict(example_images, vocab, top_k=3)
        assert len(batch_refiner) == len(example_images) >= 4
        for ours, theirs in zip(batch_refiner, batch_clip):
            np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-5, rtol=0)
            assert [(r.state, r.object) for r in ours.ranking] == [(r.state, r.object) for r in theirs.ranking]
        for image, theirs in zip(example_images[:2], single_clip):
            np.testing.assert_allclose(refiner.predict(image, vocab)[0].scores, theirs.scores, atol=1e-5, rtol=0)


def test_perturbed_refiner_differs_from_clip(example_images, clip_model, vocab):
    """Guards the equality test: once the zero-initialised tensors move, scores move."""
    refiner = perturb(make_refiner())
    difference = np.abs(refiner.predict(example_images[:2], vocab)[0].scores - clip_model.predict(example_images[:2], vocab)[0].scores)
    assert difference.max() > 1e-2


def _training_step_gradients(model: Refiner, images, vocab: Vocabulary, batch: int) -> dict[str, torch.Tensor | None]:
    model.train()
    pixels = model.backbone.preprocess_images(images[:batch])
    pair_targets = torch.arange(batch) % len(TRAIN_PAIRS)
    train_vocab = Vocabulary.build(STATES, OBJECTS, pairs=[" ".join(p) for p in TRAIN_PAIRS])
    state_targets = torch.as_tensor(train_vocab.pair_states)[pair_targets]
    object_targets = torch.as_tensor(train_vocab.pair_objects)[pair_targets]
    model.zero_grad()
    loss, parts = model.loss(model(pixels, train_vocab), pair_targets, state_targets, object_targets)
    assert torch.isfinite(loss) and set(parts) == {"pair", "state", "object"}
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters() if p.requires_grad}


def test_untrained_step_reaches_every_tensor_and_moves_the_gates(example_images, vocab):
    """From the zero-initialised start, upstream tensors get an exactly zero gradient (the zero λ and
    the zero disentangler outputs block it), so this checks what is true at step 0: every trainable
    tensor gets a finite gradient, and the zero-initialised gates themselves get a non-zero one."""
    model = make_refiner()
    gradients = _training_step_gradients(model, example_images, vocab, batch=4)
    assert gradients and all(g is not None and torch.isfinite(g).all() for g in gradients.values())
    for name in ("image_lambda", "text_lambda", "state_disentangler.block.4.weight", "object_disentangler.block.4.weight",
                 "prompts.context"):
        assert gradients[name].abs().sum() > 0, name


def test_one_step_gives_every_trainable_tensor_a_gradient(example_images, vocab):
    """With the zero-initialised tensors perturbed (as after a first update), one backward pass gives
    every trainable tensor a non-zero gradient, and one optimiser step changes every one of them."""
    model = perturb(make_refiner())
    gradients = _training_step_gradients(model, example_images, vocab, batch=4)
    missing = [name for name, g in gradients.items() if g is None or not torch.isfinite(g).all() or g.abs().sum() == 0]
    assert not missing
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    torch.optim.Adam(model.trainable_parameters(), lr=1e-3).step()
    unchanged = [name for name, p in model.named_parameters() if p.requires_grad and torch.equal(p, before[name])]
    assert not unchanged


def test_batch_size_one_trains_and_matches_batched_predictions(example_images, vocab):
    """Batch size 1 works in training mode (BatchNorm) and a batch scores each image as it alone would."""
    model = perturb(make_refiner())
    gradients = _training_step_gradients(model, example_images, vocab, batch=1)
    assert gradients["image_lambda"].abs().sum() > 0
    batched = model.predict(example_images[:3], vocab)
    for image, prediction in zip(example_images[:3], batched):
        np.testing.assert_allclose(model.predict(image, vocab)[0].scores, prediction.scores, atol=1e-4, rtol=1e-5)


def test_explanations_shapes_and_contributions(example_images, vocab):
    """Per-group attention maps over the patch grid; contributions are 0 untrained and, once trained,
    equal the drop in score when a group's λ_b is set to zero."""
    model = make_refiner()
    grid = model.backbone.grid_size
    explanation = model.predict(example_images[0], vocab, top_k=4)[0].explanations
    assert explanation["query_groups"] == list(QUERY_GROUPS)
    assert explanation["query_attention"].shape == (3, *grid)
    assert explanation["query_attention_layers"].shape == (2, 3, *grid)
    np.testing.assert_allclose(explanation["query_attention"].sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert explanation["group_contributions"].shape == (4, 3)
    assert np.all(explanation["group_contributions"] == 0)
    assert explanation["top_pair_group"] == "none" and "zero" in explanation["group_note"]

    model = perturb(make_refiner())
    prediction = model.predict(example_images[0], vocab, top_k=4)[0]
    contributions = prediction.explanations["group_contributions"]
    assert np.abs(contributions).max() > 0
    top_index = vocab.pair_names().index((prediction.ranking[0].state, prediction.ranking[0].object))
    for group_index, group in enumerate(QUERY_GROUPS):
        ablated = perturb(make_refiner())
        with torch.no_grad():
            ablated.image_lambda[group_index].zero_()
        ablated_score = ablated.predict(example_images[0], vocab)[0].scores[top_index]
        assert contributions[0, group_index] == pytest.approx(prediction.ranking[0].score - ablated_score, abs=1e-4)
    expected = QUERY_GROUPS[int(np.argmax(contributions[0]))] if contributions[0].max() > 0 else "none"
    assert prediction.explanations["top_pair_group"] == expected
    assert prediction.to_dict()["explanations"]["query_attention"]  # JSON-able


def test_explanations_leave_outputs_unchanged(example_images, vocab):
    """branch_logits gives identical logits with and without explanations."""
    model = perturb(make_refiner()).eval()
    with torch.no_grad():
        visual = model.encode_images(model.backbone.preprocess_images(example_images[:2]), explain=True)
        plain = model.branch_logits(visual, vocab, explain=False)
        explained = model.branch_logits(visual, vocab, explain=True)
    for branch in ("pair", "state", "object"):
        assert torch.equal(getattr(plain, branch), getattr(explained, branch))
    assert not plain.explanations and "query_attention" in explained.explanations


def test_chunked_fusion_and_cached_visual_give_the_same_scores(example_images, vocab):
    """Chunking the text rows changes no result; a cached vision pass (the trainer's path) equals pixels."""
    model = perturb(make_refiner()).eval()
    with torch.no_grad():
        pixels = model.backbone.preprocess_images(example_images[:3])
        visual = model.encode_images(pixels).detach()
        whole = model(None, vocab, visual=visual)
        from_pixels = model(pixels, vocab)
        model.fusion_row_budget = 7
        chunked = model(None, vocab, visual=visual)
    for branch in ("pair", "state", "object"):
        torch.testing.assert_close(getattr(chunked, branch), getattr(whole, branch), atol=1e-5, rtol=1e-6)
        assert torch.equal(getattr(from_pixels, branch), getattr(whole, branch))


def test_save_load_round_trip(example_images, vocab, tmp_path):
    """A saved checkpoint (non-default config) reloads with its config and identical predictions."""
    model = perturb(make_refiner(num_queries=6, query_layers=1, num_heads=4, fusion_mlp=True))
    model.training_steps += 3
    model.save_pretrained(tmp_path)
    loaded = load_model(None, checkpoint=tmp_path)
    assert isinstance(loaded, Refiner) and loaded.is_trained
    assert {k: loaded.config[k] for k in ("num_queries", "query_layers", "num_heads", "fusion_mlp")} == \
        {"num_queries": 6, "query_layers": 1, "num_heads": 4, "fusion_mlp": True}
    assert not any(key.startswith("backbone") for key in loaded.state_dict())
    for ours, theirs in zip(model.predict(example_images[:2], vocab), loaded.predict(example_images[:2], vocab)):
        np.testing.assert_array_equal(ours.scores, theirs.scores)
        np.testing.assert_array_equal(ours.explanations["group_contributions"], theirs.explanations["group_contributions"])


def test_configuration_checks_and_reconstruction_label():
    """Bad query counts fail clearly; the heads fit the width; the UI text says it is a reconstruction."""
    with pytest.raises(ValueError, match="multiple of 3"):
        make_refiner(num_queries=10)
    assert fit_heads(768, 12) == 12 and fit_heads(32, 12) == 8 and fit_heads(7, 4) == 1
    assert "reconstruction" in Refiner.summary and "reconstruction" in Refiner.display_name.lower()
    assert "reconstruction" in (Refiner.__doc__ or "")


def test_speed_benchmark_quick_mode_runs():
    """The benchmark's --quick mode prints the ratio table and the parameter count."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "refiner_speed.py"), "--quick",
                             "--threads", "1"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={"HF_HUB_OFFLINE": "1", "CZSL_DEVICE": "cpu", "PYTHONPATH": str(ROOT),
                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "ratio" in result.stdout and "trainable parameters" in result.stdout
