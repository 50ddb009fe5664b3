"""SVIP: super-patch geometry, the rollout teacher, PatchCls, the learned context embedding, the
CLIP equivalence of the untrained model, training, checkpoints, explanations, CLI and benchmark."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from czsl_models import Vocabulary, load_model
from czsl_models.models.svip import (
    SuperPatchGrid,
    add_context_to_patches,
    attention_rollout_cls,
    kept_super_patch_count,
    teacher_super_patch_scores,
    top_mask,
)

VOCAB = Vocabulary.build("sleeping, sitting, shiny, hot, striped", "cat, coffee, astronaut, rocket")
TRAIN_STATES = ["sleeping", "shiny", "hot"]
TRAIN_OBJECTS = ["cat", "coffee", "rocket"]
TRAIN_PAIRS = [["sleeping", "cat"], ["shiny", "rocket"], ["hot", "coffee"], ["shiny", "cat"]]
TRAIN_VOCAB = Vocabulary.build(TRAIN_STATES, TRAIN_OBJECTS, pairs=[" ".join(pair) for pair in TRAIN_PAIRS])
TINY_KEPT = 52  # of 8 x 8 super-patches at the default ratio 0.82
CHANCE_OVERLAP = TINY_KEPT * TINY_KEPT / 64  # expected overlap of two random 52-of-64 selections


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One torch thread for these tiny tensors: on a busy machine, thread hand-offs cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _svip(**overrides):
    return load_model("svip", backbone="tiny", **overrides)


def _with_context(model, patchcls_trained: bool, seed: int = 0):
    """Put a non-zero context embedding in place, as training would, selecting with PatchCls or the teacher."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.context_embedding.copy_(torch.randn(model.context_embedding.shape, generator=generator))
        model.patchcls_steps.fill_(1 if patchcls_trained else 0)
        model.patchcls_agreement.fill_(0.9 if patchcls_trained else -1.0)  # as if validated above the threshold
    return model.eval()


# ------------------------------------------------------------------ geometry and teacher
def test_kept_count_and_super_patch_grids():
    assert kept_super_patch_count(64, 0.82) == 52 and kept_super_patch_count(49, 0.82) == 40
    assert kept_super_patch_count(64, 0.001) == 1 and kept_super_patch_count(64, 1.0) == 64
    grid = SuperPatchGrid((16, 16))
    assert grid.shape == (8, 8) and grid.num_super_patches == 64
    patches = torch.arange(256.0).view(1, 256, 1)
    # super-patch (1, 1) holds patches (2, 2), (2, 3), (3, 2), (3, 3) in row-major slot order
    assert grid.concat(patches)[0, 9].tolist() == [34.0, 35.0, 50.0, 51.0]
    assert grid.mean(patches)[0, 9, 0].item() == pytest.approx(42.5)
    odd = SuperPatchGrid((7, 7))  # e.g. ViT-B/32: edge super-patches hold fewer patches
    assert odd.shape == (4, 4)
    odd_patches = torch.arange(1.0, 50.0).view(1, 49, 1)
    assert odd.concat(odd_patches)[0, 15].tolist() == [49.0, 0.0, 0.0, 0.0]  # corner: one real patch, zero padding
    assert odd.mean(odd_patches)[0, 15, 0].item() == 49.0
    assert odd.mean(odd_patches)[0, 3, 0].item() == pytest.approx((7 + 14) / 2)  # right edge: two patches


def test_rollout_matches_the_full_matrix_product():
    torch.manual_seed(0)
    attentions = [torch.randn(2, 3, 10, 10).softmax(dim=-1) for _ in range(4)]
    rollout = None
    for attention in attentions:
        mixed = attention.mean(dim=1) + torch.eye(10)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed if rollout is None else mixed @ rollout
    assert torch.allclose(attention_rollout_cls(attentions), rollout[:, 0, 1:], atol=1e-6)


def test_rollout_grouping_picks_the_true_2x2_block():
    """One head of the CLS row attends only to patches (6,10), (6,11), (7,10), (7,11): super-patch
    (3, 5). Grouping 4 consecutive row-major patches (the released code's slip) splits them over
    two groups and picks another one."""
    tokens = 257
    block = [6 * 16 + 10, 6 * 16 + 11, 7 * 16 + 10, 7 * 16 + 11]
    attention = torch.eye(tokens).repeat(1, 2, 1, 1)  # [1, heads, T, T]: every token keeps itself
    attention[0, 0, 0] = 0.0
    attention[0, 0, 0, [1 + patch for patch in block]] = 0.25
    scores = teacher_super_patch_scores([attention, attention], SuperPatchGrid((16, 16)))[0]
    expected = 3 * 8 + 5
    assert int(scores.argmax()) == expected and scores[expected] > 0
    assert torch.all(scores[torch.arange(64) != expected] == 0)
    consecutive = attention_rollout_cls([attention, attention])[0].view(64, 4).mean(dim=1)
    assert int(consecutive.argmax()) != expected
    assert consecutive.max() == pytest.approx(scores[expected].item() / 2)


def test_context_is_added_to_the_four_sub_patches_of_replaced_super_patches_only():
    grid = SuperPatchGrid((16, 16))
    context = torch.arange(1.0, 13.0).view(4, 3)
    replaced = torch.zeros(2, 64, dtype=torch.bool)
    replaced[1, 9] = True
    edited = add_context_to_patches(torch.zeros(2, 256, 3), replaced, context, grid)
    assert edited[0].abs().sum() == 0
    changed = edited[1].abs().sum(dim=-1).nonzero().flatten().tolist()
    assert changed == [34, 35, 50, 51]
    assert torch.equal(edited[1, [34, 35, 50, 51]], context)


# ------------------------------------------------------------------ untrained = CLIP
@pytest.mark.parametrize("keep_ratio, kept", [(0.82, TINY_KEPT), (0.5, 32)])
def test_untrained_svip_scores_like_clip_and_keeps_exactly_m(example_images, keep_ratio, kept):
    clip = load_model("clip", backbone="tiny")
    svip = _svip(keep_ratio=keep_ratio)
    assert svip.config["keep_ratio"] == keep_ratio and svip.num_kept == kept
    reference = clip.predict(example_images, VOCAB)
    batch = svip.predict(example_images, VOCAB, top_k=3)
    singles = [svip.predict(image, VOCAB, top_k=3)[0] for image in example_images[:2]]
    for ours, theirs in zip(batch, reference):
        assert np.abs(ours.scores - theirs.scores).max() < 1e-5
        assert not ours.trained
        explanation = ours.explanations
        assert explanation["selection"] == "teacher"
        assert explanation["kept_mask"].shape == (8, 8) and explanation["kept_mask"].sum() == kept
        assert explanation["kept_count"] == kept and explanation["teacher_map"].shape == (8, 8)
        # the kept super-patches are the teacher's top-M
        order = np.argsort(-explanation["teacher_map"].ravel(), kind="stable")
        assert explanation["kept_mask"].ravel()[order[:kept]].all()
    for single, ours in zip(singles, batch):
        assert np.abs(single.scores - ours.scores).max() < 1e-5


def test_evidence_lies_on_kept_super_patches(example_images):
    prediction = _svip().predict(example_images[0], VOCAB, top_k=4)[0]
    explanation = prediction.explanations
    kept = explanation["kept_mask"]
    for key in ("evidence_state_patch", "evidence_object_patch"):
        cells = explanation[key]
        assert cells.shape == (4, 2)
        assert all(kept[row, col] for row, col in cells)
    assert np.all(np.abs(explanation["evidence_state_similarity"]) <= 1 + 1e-6)


# ------------------------------------------------------------------ PatchCls
def test_patchcls_learns_the_teachers_mask():
    """Random-noise batches: every patch embedding differs, so a few steps of PatchCls's BCE against
    the teacher's mask of these images must lower the BCE and make PatchCls's selection overlap the
    teacher's well above chance (42.25 of 52). The tiny random ViT's teacher depends partly on
    position, which PatchCls (no positions) cannot see; this tests fitting, not generalisation."""
    torch.manual_seed(0)
    model = _svip()
    pixels = torch.randn(8, 3, 224, 224)
    model.train()
    visual = model.encode_images(pixels)  # teacher scores and patch embeddings of the unedited pass
    teacher_kept = top_mask(visual.teacher_scores, model.num_kept)
    inputs = model.grid.concat(visual.patch_embeddings)
    optimiser = torch.optim.Adam(model.patch_classifier.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        bce = model.patchcls_bce(model.patch_classifier(inputs), teacher_kept)
        optimiser.zero_grad()
        bce.backward()
        optimiser.step()
        losses.append(bce.item())
    assert losses[-1] < 0.5 * losses[0]
    model.patchcls_steps.fill_(len(losses))
    assert model.selection_source == "teacher"  # trained but not yet validated
    checks = model.validation_checks([pixels[:5], pixels[5:]])
    # Kept overlap > chance + 4 means more than 6.25 of the 12 replaced super-patches agree: above 0.5.
    assert checks["patchcls_agreement"] > 0.52 and checks["selection"] == "patchcls"
    assert model.measured_agreement == pytest.approx(checks["patchcls_agreement"])
    model.eval()
    model.explain_teacher_map = True
    with torch.no_grad():
        selected = model.encode_images(pixels, explain=True)
    assert selected.selection == "patchcls"
    assert torch.all(selected.kept.sum(dim=1) == TINY_KEPT)
    overlap = (selected.kept & top_mask(selected.teacher_scores, TINY_KEPT)).sum(dim=1).float().mean()
    assert overlap > CHANCE_OVERLAP + 4


# ------------------------------------------------------------------ training
def _targets(count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pairs = [TRAIN_VOCAB.pairs[i % TRAIN_VOCAB.num_pairs] for i in range(count)]
    return (torch.arange(count) % TRAIN_VOCAB.num_pairs, torch.tensor([s for s, _ in pairs]),
            torch.tensor([o for _, o in pairs]))


@pytest.fixture(scope="module")
def trained(example_images):
    """SVIP after two Adam steps on the training vocabulary (batch of 2), with a record of the first step."""
    torch.manual_seed(0)
    model = _svip(train_states=TRAIN_STATES, train_objects=TRAIN_OBJECTS, train_pairs=TRAIN_PAIRS)
    named = {name: p for name, p in model.named_parameters() if p.requires_grad}
    before = {name: p.detach().clone() for name, p in named.items()}
    optimiser = torch.optim.Adam(named.values(), lr=1e-2)
    pixels = model.backbone.preprocess_images(example_images[:2])
    targets = _targets(2)
    first_gradients, parts = {}, []
    model.train()
    for step in range(2):
        logits = model(pixels, TRAIN_VOCAB)
        loss, step_parts = model.loss(logits, *targets)
        optimiser.zero_grad()
        loss.backward()
        if step == 0:
            first_gradients = {name: None if p.grad is None else p.grad.clone() for name, p in named.items()}
        optimiser.step()
        parts.append(step_parts)
    stale = model.context_embedding.clone()  # written during the second forward, before its step
    model.eval()
    return SimpleNamespace(model=model, before=before, first_gradients=first_gradients, parts=parts, stale=stale)


@pytest.mark.cpu_kernels
def test_training_reaches_every_trainable_tensor(trained):
    """At step 0 the zero-initialised mix of e and beta block the gradient of the tensors behind them
    (it is exactly zero there), so the test checks: every gradient exists and is finite at step 0,
    and after 2 Adam steps every trainable tensor has changed."""
    assert trained.first_gradients
    for name, gradient in trained.first_gradients.items():
        assert gradient is not None and torch.isfinite(gradient).all(), name
    for name, parameter in trained.model.named_parameters():
        if parameter.requires_grad:
            assert not torch.equal(parameter.detach(), trained.before[name]), f"{name} did not change"
    first, second = trained.parts
    assert {"pair", "original_pair", "consistency", "patchcls_bce"} <= set(first)
    # e = 0 at step 0: both passes agree up to float rounding. The term is T^2 times a KL divergence, so rounding
    # shows up scaled by T^2 (T = 20 here) and by the size of the log-probabilities (the pair loss, in nats).
    rounding = trained.model.consistency_temperature ** 2 * 64 * torch.finfo(torch.float32).eps * first["pair"]
    assert abs(first["consistency"]) <= rounding
    assert second["consistency"] > abs(first["consistency"])  # the learned context now changes the contextualised pass
    assert all(math.isfinite(value) for value in first.values())
    # PatchCls trained, but the teacher keeps selecting until validation shows they agree.
    assert int(trained.model.patchcls_steps) == 2 and trained.model.selection_source == "teacher"
    assert trained.model.measured_agreement is None


def test_stored_context_is_refreshed_after_the_last_step(trained):
    model = trained.model
    with torch.no_grad():
        current = model.context_generator(model._training_word_features())
    assert current.abs().sum() > 0
    assert torch.allclose(model.context_embedding, current, atol=1e-6)
    assert not torch.allclose(trained.stale, current)


def test_training_step_with_batch_of_one(example_images):
    model = _svip(train_states=TRAIN_STATES, train_objects=TRAIN_OBJECTS, train_pairs=TRAIN_PAIRS).train()
    pixels = model.backbone.preprocess_images(example_images[:1])
    loss, parts = model.loss(model(pixels, TRAIN_VOCAB), *_targets(1))
    loss.backward()
    assert torch.isfinite(loss) and "patchcls_bce" in parts
    assert model.context_generator.mix.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------ checkpoints and explanations
def test_context_round_trips_and_inference_needs_no_training_words(trained, tmp_path, monkeypatch, example_images):
    model = trained.model
    model.patchcls_agreement.fill_(0.75)  # as validation_checks would record it
    before = model.predict(example_images[:2], VOCAB)  # a vocabulary other than the training one
    model.save_pretrained(tmp_path)
    model.patchcls_agreement.fill_(-1.0)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "svip" and config["keep_ratio"] == 0.82
    loaded = load_model("svip", checkpoint=tmp_path)
    assert torch.equal(loaded.context_embedding, model.context_embedding)
    assert int(loaded.patchcls_steps) == 2 and loaded.measured_agreement == 0.75

    def refuse():
        raise AssertionError("inference encoded the training words")

    monkeypatch.setattr(loaded, "_training_word_features", refuse)
    after = loaded.predict(example_images[:2], VOCAB)
    for old, new in zip(before, after):
        assert np.abs(old.scores - new.scores).max() < 1e-5
        assert new.explanations["selection"] == "patchcls" and new.explanations["patchcls_agreement"] == 0.75
        assert np.array_equal(old.explanations["kept_mask"], new.explanations["kept_mask"])
        assert "teacher_map" not in new.explanations  # optional for PatchCls: it costs a second pass


@pytest.mark.parametrize("patchcls_trained", [False, True])
def test_learned_context_changes_scores_and_explanations_do_not(example_images, patchcls_trained):
    clip_scores = load_model("clip", backbone="tiny").predict(example_images[:2], VOCAB)
    model = _with_context(_svip(), patchcls_trained)
    plain = model.predict(example_images[:2], VOCAB)
    model.explain_teacher_map = True
    with_map = model.predict(example_images[:2], VOCAB)
    expected = "patchcls" if patchcls_trained else "teacher"
    for reference, first, second in zip(clip_scores, plain, with_map):
        assert np.abs(first.scores - reference.scores).max() > 1e-3  # contextualised pass differs from CLIP
        assert np.array_equal(first.scores, second.scores)
        assert first.explanations["selection"] == second.explanations["selection"] == expected
        assert first.explanations["kept_count"] == TINY_KEPT
        assert "teacher_map" in second.explanations
        assert ("teacher_map" in first.explanations) == (not patchcls_trained)
    pixels = model.backbone.preprocess_images(example_images[:2])
    with torch.no_grad():
        quiet = model(pixels, VOCAB).pair
        explained = model.branch_logits(model.encode_images(pixels, explain=True), VOCAB, explain=True, pixels=pixels).pair
    assert torch.equal(quiet, explained)


def test_shared_vision_pass(tiny_backbone, example_images):
    """Compare shares one vision pass between models: usable as is while e = 0; with a learned
    context SVIP needs the pixels and says so."""
    model = _svip()
    pixels = tiny_backbone.preprocess_images(example_images[:2])
    request = model.visual_request(explain=True)
    with torch.no_grad():
        shared = tiny_backbone.encode_image(pixels, layers=request.layers, attention=request.attention,
                                            patch_embeddings=request.patch_embeddings)
    direct = model.predict(example_images[:2], VOCAB)
    from_shared = model.predict_from_visual(shared, VOCAB)
    for first, second in zip(direct, from_shared):
        assert np.abs(first.scores - second.scores).max() < 1e-5
        assert np.array_equal(first.explanations["kept_mask"], second.explanations["kept_mask"])
    _with_context(model, patchcls_trained=True)
    with pytest.raises(ValueError, match="pixels"):
        model.predict_from_visual(shared, VOCAB)
    assert len(model.predict_from_visual(shared, VOCAB, pixels=pixels)) == 2


# ------------------------------------------------------------------ CLI and benchmark
def test_cli_predict_json_shows_ranking_and_kept_patches(example_paths, capsys):
    from czsl_models.cli import main

    assert main(["predict", str(example_paths[0]), "--model", "svip", "--backbone", "tiny", "--json", "--top-k", "3"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["model"] == "svip" and len(document["ranking"]) == 3
    explanation = document["explanations"]
    assert explanation["selection"] == "teacher"
    assert np.array(explanation["kept_mask"]).shape == (8, 8)
    assert np.array(explanation["kept_mask"]).sum() == TINY_KEPT
    assert len(explanation["evidence_state_patch"]) == 3


def test_speed_benchmark_quick_runs():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "svip_speed.py"
    spec = importlib.util.spec_from_file_location("svip_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ratios = module.main(["--quick", "--pairs", "60", "--repeats", "1", "--threads", "1"])
    assert ratios["clip"] == 1.0
    assert set(ratios) == {"clip", "svip untrained", "svip PatchCls", "svip PatchCls + map", "svip teacher"}
    assert all(math.isfinite(value) and value > 0 for value in ratios.values())


# ------------------------------------------------------------------ selection switch and consistency
def test_patchcls_selects_only_once_its_agreement_reaches_the_threshold():
    model = _with_context(_svip(), patchcls_trained=True)
    for agreement, expected in ((-1.0, "teacher"), (0.49, "teacher"), (0.5, "patchcls"), (0.8, "patchcls")):
        model.patchcls_agreement.fill_(agreement)
        assert model.selection_source == expected, agreement
    strict = _with_context(_svip(switch_agreement=0.9), patchcls_trained=True)
    strict.patchcls_agreement.fill_(0.8)
    assert strict.selection_source == "teacher"
    # A checkpoint saved before agreement was recorded loads with a never-validated PatchCls: teacher.
    state = {k: v for k, v in model.state_dict().items() if k != "patchcls_agreement"}
    fresh = _svip()
    fresh.load_state_dict(state)
    assert fresh.measured_agreement is None and fresh.selection_source == "teacher"
    with pytest.raises(ValueError, match="switch_agreement"):
        _svip(switch_agreement=1.5)


def test_replaced_agreement_counts_shared_replaced_super_patches():
    from czsl_models.models.svip import replaced_agreement

    teacher = torch.arange(8.0).unsqueeze(0)  # replaces (lowest) 0, 1, 2 when 5 are kept
    student = torch.tensor([[0.0, 1.0, 9.0, 2.0, 8.0, 7.0, 6.0, 5.0]])  # replaces 0, 1, 3
    assert replaced_agreement(student, teacher, 5).tolist() == pytest.approx([2 / 3])
    assert replaced_agreement(teacher, teacher, 5).tolist() == [1.0]
    assert replaced_agreement(student, teacher, 8).tolist() == [1.0]


def test_consistency_is_the_released_distillation_kl():
    """KL(softmax(ctx/T) || softmax(orig/T)) · T² on unscaled cosines, mean over all B·C elements (released
    nn.KLDivLoss() default; tests/test_parity_svip.py compares with it directly); 0 for equal inputs."""
    from czsl_models.models.svip import consistency_kl

    generator = torch.Generator().manual_seed(0)
    contextual = torch.rand(3, 7, generator=generator) * 2 - 1
    original = torch.rand(3, 7, generator=generator) * 2 - 1
    temperature = 20.0
    p = (original.double() / temperature).softmax(-1)  # float64: float32 rounding is ~1e-4 of this small value
    q = (contextual.double() / temperature).softmax(-1)
    expected = (q * (q.log() - p.log())).sum() / q.numel() * temperature ** 2
    assert consistency_kl(contextual, original, temperature).item() == pytest.approx(expected.item(), rel=1e-4)
    assert consistency_kl(original, original, temperature).item() == pytest.approx(0.0, abs=1e-7)


def test_patch_overlay_says_who_chose_the_replaced_patches(example_images):
    from czsl_models.ui.explain import svip_patches_visual

    photo = example_images[0]
    untrained = _svip().predict(photo, VOCAB)[0]
    assert untrained.explanations["context_active"] is False
    caption = svip_patches_visual(untrained, photo).caption
    assert "attention" in caption and "Nothing is replaced yet" in caption
    doubtful = _with_context(_svip(), patchcls_trained=True)
    doubtful.patchcls_agreement.fill_(0.3)
    shown = doubtful.predict(photo, VOCAB)[0]
    assert shown.explanations["selection"] == "teacher" and "only 30%" in svip_patches_visual(shown, photo).caption
    trusted = _with_context(_svip(), patchcls_trained=True).predict(photo, VOCAB)[0]
    assert trusted.explanations["selection"] == "patchcls"
    assert "learned patch picker chose" in svip_patches_visual(trusted, photo).caption


def test_teacher_scores_are_remembered_per_training_image(monkeypatch):
    """A batch seen before skips the attention maps (the costly part of the teacher) and gets the same scores."""
    torch.manual_seed(0)
    model = _svip(train_states=TRAIN_STATES, train_objects=TRAIN_OBJECTS, train_pairs=TRAIN_PAIRS).train()
    pixels = torch.randn(3, 3, 224, 224)
    calls = []
    encode = model.backbone.encode_image

    def counting(*args, **kwargs):
        calls.append(bool(kwargs.get("attention")))
        return encode(*args, **kwargs)

    monkeypatch.setattr(model.backbone, "encode_image", counting)
    first = model.encode_images(pixels)
    assert calls[0] is True
    calls.clear()
    second = model.encode_images(pixels)
    assert True not in calls  # no attention maps: the teacher's scores came from memory
    assert torch.equal(first.teacher_scores, second.teacher_scores)
    assert torch.equal(first.original.cls, second.original.cls)
    calls.clear()
    model.encode_images(torch.cat([pixels[:2], torch.randn(1, 3, 224, 224)]))  # one new image: full teacher pass
    assert calls[0] is True


def test_fast_svip_trains_from_cached_outputs_with_the_teachers_scores(tmp_path):
    """train_context=False: the feature cache keeps the teacher's scores beside the pass, and a training
    step from the cache gives the same loss as one from the pixels."""
    from czsl_models.data import load_dataset
    from czsl_models.training.feature_cache import build_feature_cache, model_trains_from_cache

    dataset = load_dataset("synthetic:shapes?num_states=3&num_objects=3&images_per_pair=2")
    samples = list(dataset.splits["train"])[:4]
    model = _svip(train_states=list(dataset.states), train_objects=list(dataset.objects),
                  train_pairs=[list(p) for p in dataset.train_pairs], train_context=False)
    assert model.context_generator is None and model_trains_from_cache(model)
    assert model_trains_from_cache(_svip(train_states=TRAIN_STATES, train_objects=TRAIN_OBJECTS)) is False
    cache = build_feature_cache(model, dataset, samples, cache_root=tmp_path, dtype="float32")
    assert set(cache.extras) == {"teacher_scores"} and cache.extras["teacher_scores"].shape == (4, 64)
    vocab = Vocabulary.build(list(dataset.states), list(dataset.objects),
                             pairs=[" ".join(p) for p in dataset.train_pairs])
    pair_index = {pair: i for i, pair in enumerate(vocab.pair_names())}
    targets = (torch.tensor([pair_index[(s.state, s.object)] for s in samples]),
               torch.tensor([vocab.states.index(s.state) for s in samples]),
               torch.tensor([vocab.objects.index(s.object) for s in samples]))
    model.train()
    cached_loss, cached_parts = model.loss(model(None, vocab, visual=cache.batch(range(4), "cpu")), *targets)
    pixels = model.backbone.preprocess_images([dataset.load_image(s) for s in samples])
    pixel_loss, pixel_parts = model.loss(model(pixels, vocab), *targets)
    assert "patchcls_bce" in cached_parts and "original_pair" not in cached_parts
    assert cached_loss.item() == pytest.approx(pixel_loss.item(), rel=1e-4)
    cached_loss.backward()
    assert model.patch_classifier.mlp[1].weight.grad.abs().sum() > 0


def test_trainer_records_patchcls_agreement_each_epoch(tmp_path):
    """After each epoch the trainer measures PatchCls against the teacher on the validation images; the
    number is in the epoch record, the CLI line and the saved checkpoint, and decides who selects."""
    from czsl_models.training import TrainConfig, train
    from czsl_models.training.progress import format_epoch_line

    config = TrainConfig(model="svip", dataset="synthetic:shapes?num_states=3&num_objects=3&images_per_pair=2",
                         out=str(tmp_path / "run"), backbone="tiny", epochs=1, lr=1e-3, batch_size=4,
                         cache_dir=str(tmp_path / "cache"), cpu=True, test_at_end=False)
    result = train(config)
    checks = result.history[0]["checks"]
    assert 0.0 <= checks["patchcls_agreement"] <= 1.0
    expected = "patchcls" if checks["patchcls_agreement"] >= 0.5 else "teacher"
    assert checks["selection"] == expected
    assert "PatchCls agrees with the teacher" in format_epoch_line(1, result.history[0])
    loaded = load_model("svip", checkpoint=tmp_path / "run")
    assert loaded.measured_agreement == pytest.approx(checks["patchcls_agreement"])
    assert loaded.selection_source == expected and loaded.train_context is False  # the fast preset


def test_model_card_states_who_selects_and_the_agreement():
    from czsl_models.models.card import render_model_card

    model = _with_context(_svip(), patchcls_trained=True)
    model.patchcls_agreement.fill_(0.62)
    assert "PatchCls agrees with the teacher on 62%" in render_model_card(model)
    assert "PatchCls never validated" in render_model_card(_svip())
