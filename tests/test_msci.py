"""MSCI: the CLIP start, chunking, explanations, training, checkpoints and the speed benchmark's quick run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from czsl_models import Vocabulary, load_model
from czsl_models.backbones import precision
from czsl_models.models.msci import MSCI, PRESETS, resolve_preset

VOCAB = Vocabulary.build("sleeping, sitting, shiny, hot, striped, wet, old", "cat, coffee, astronaut, rocket, dog")
TRAIN_STATES = ["sleeping", "shiny", "hot", "wet"]
TRAIN_OBJECTS = ["cat", "coffee", "rocket"]


@pytest.fixture(autouse=True)
def float32_heads(monkeypatch):
    """The equalities below are about float32 arithmetic, on any machine; the bfloat16 inference path
    (the default where the CPU has native bfloat16) has its own tests at the end of this file."""
    monkeypatch.setenv(precision.HEAD_PRECISION_ENV, "float32")


def perturbed_msci(seed: int = 0, **kwargs) -> MSCI:
    """An MSCI whose zero-initialised tensors (λ, disentangler outputs, word offsets, adapters) are random,
    so the refinement actually changes scores (an untrained one would hide most bugs)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # same seed, same weights: models that differ only in config are comparable
        model = load_model("msci", backbone="tiny", train_states=TRAIN_STATES, train_objects=TRAIN_OBJECTS, **kwargs)
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad and not parameter.any():
                    parameter.copy_(0.5 * torch.randn(parameter.shape))
    return model.eval()


def all_scores(predictions) -> np.ndarray:
    return np.stack([prediction.scores for prediction in predictions])


@pytest.mark.parametrize("batch", [1, 3])
def test_untrained_msci_scores_every_pair_as_clip(example_images, batch):
    clip = load_model("clip", backbone="tiny")
    # chunk_size 8 makes the 35 pair rows span several chunks.
    msci = load_model("msci", backbone="tiny", train_states=TRAIN_STATES, train_objects=TRAIN_OBJECTS, chunk_size=8)
    images = example_images[:batch]
    expected = all_scores(clip.predict(images, VOCAB, top_k=3))
    got = all_scores(msci.predict(images, VOCAB, top_k=3))
    assert got.shape == (batch, VOCAB.num_pairs)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert not msci.is_trained


def test_refinement_changes_scores_once_trained(example_images):
    """Guards the tests below: a perturbed model must differ from CLIP, or equalities prove nothing."""
    clip = all_scores(load_model("clip", backbone="tiny").predict(example_images, VOCAB))
    msci = all_scores(perturbed_msci().predict(example_images, VOCAB))
    assert np.abs(msci - clip).max() > 1e-2


@pytest.mark.parametrize("head_precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("batch", [1, 3])
def test_chunked_equals_unchunked(example_images, batch, head_precision):
    """Chunk sizes 1, 5, 9 (35 pair rows) against one chunk, in both head precisions. float32 matrix
    products round differently for different row counts (observed up to ~8e-6 on logits of ~27), hence
    1e-4 (bfloat16 ones came out bit-identical here, ViT-L/14 widths included); a chunking mistake
    (rows misaligned, keys of the wrong image) moves logits by whole units."""
    reference = perturbed_msci(chunk_size=1 << 20)
    reference.head_precision = head_precision
    pixels = reference.backbone.preprocess_images(example_images[:batch])
    with torch.no_grad():
        visual = reference.encode_images(pixels)
        expected = reference.branch_logits(visual, VOCAB)
        for chunk_size in (1, 5, 9):
            chunked = perturbed_msci(chunk_size=chunk_size)
            chunked.head_precision = head_precision
            got = chunked.branch_logits(visual, VOCAB)
            for name in ("pair", "state", "object"):
                torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=1e-4)


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("head_precision", ["float32", "bfloat16"])
def test_batch_of_one_equals_batch(example_images, head_precision):
    model = perturbed_msci()
    model.head_precision = head_precision
    batch = model.predict(example_images, VOCAB)
    # CPU kernels block a batch differently from a single image, so the sums round differently: the tolerance is
    # relative to the scores' size (the x100 logit scale) and to the head's precision.
    relative = 64 * torch.finfo(torch.float32).eps if head_precision == "float32" else 2 * torch.finfo(torch.bfloat16).eps
    for image, expected in zip(example_images, batch):
        tolerance = relative * float(np.abs(expected.scores).max())
        np.testing.assert_allclose(model.predict(image, VOCAB)[0].scores, expected.scores, rtol=0, atol=tolerance)


def test_cached_queries_follow_weight_changes(example_images):
    """Stage-1 queries are cached with the text features; changing the weights must not reuse them."""
    model = perturbed_msci()
    before = model.predict(example_images[:1], VOCAB)[0].scores
    with torch.no_grad():
        model.local_stage.attention.q_proj.weight.mul_(3.0)
    after = model.predict(example_images[:1], VOCAB)[0].scores
    assert np.abs(after - before).max() > 1e-3
    with torch.enable_grad():  # the training path projects without the cache
        expected = model.eval().branch_logits(model.encode_images(model.backbone.preprocess_images(example_images[:1])), VOCAB)
    np.testing.assert_allclose(after, model.pair_scores(expected, VOCAB)[0].detach().numpy(), rtol=0, atol=1e-4)


def test_explanations_leave_outputs_unchanged(example_images):
    model = perturbed_msci()
    pixels = model.backbone.preprocess_images(example_images)
    with torch.no_grad():
        visual = model.encode_images(pixels, explain=True)
        plain = model.branch_logits(visual, VOCAB, explain=False)
        explained = model.branch_logits(visual, VOCAB, explain=True)
    for name in ("pair", "state", "object"):
        assert torch.equal(getattr(plain, name), getattr(explained, name))


def test_explanation_shapes_sums_and_consistency(example_images):
    model = perturbed_msci()
    top_k = 4
    predictions = model.predict(example_images[:2], VOCAB, top_k=top_k)
    pixels = model.backbone.preprocess_images(example_images[:2])
    with torch.no_grad():
        keys = model.image_keys(model.encode_images(pixels))
        text = model.prompts.encode_all(VOCAB)
        all_rows = model.refine(text["pair"], keys)  # the scoring path (fused attention, no weights)
    index = {pair: i for i, pair in enumerate(VOCAB.pair_names())}
    for b, prediction in enumerate(predictions):
        explanation = prediction.explanations
        top = [index[(r.state, r.object)] for r in prediction.ranking]
        for name in ("gate_composition", "gate_state", "gate_object"):
            gate = explanation[name]
            assert gate.shape == (top_k, 2)
            assert np.all(gate >= 0) and np.allclose(gate.sum(axis=1), 1, atol=1e-6)
        # The shown weights are those the ranking was computed with.
        np.testing.assert_allclose(explanation["gate_composition"], all_rows.gate[b, top].numpy(), atol=1e-5)
        # A state row's weights depend on the state only.
        states = [r.state for r in prediction.ranking]
        for i in range(top_k):
            for j in range(top_k):
                if states[i] == states[j]:
                    np.testing.assert_array_equal(explanation["gate_state"][i], explanation["gate_state"][j])
        for name in ("stage1_attention", "stage2_attention"):
            attention = explanation[name]
            assert attention.shape == tuple(model.backbone.grid_size) == (16, 16)
            assert np.all(attention >= 0) and 0.5 < attention.sum() <= 1 + 1e-5
        assert not np.allclose(explanation["stage1_attention"], explanation["stage2_attention"])
    document = json.dumps(predictions[0].to_dict())
    assert "gate_composition" in document and "stage2_attention" in document


def test_shown_logit_parts_are_what_moved_the_scores(example_images):
    """Each top row's (prompt, local stage, global stage) parts equal a recomputation from the forward pass's
    modules and add up to the very logits the ranking used."""
    model = perturbed_msci()
    top_k = 3
    predictions = model.predict(example_images[:2], VOCAB, top_k=top_k)
    pixels = model.backbone.preprocess_images(example_images[:2])
    with torch.no_grad():
        visual = model.encode_images(pixels)
        logits = model.branch_logits(visual, VOCAB)  # the scoring path, independent of explain()
        keys = model.image_keys(visual)
        text = model.prompts.encode_all(VOCAB)
        cls = visual.cls
        image = {"pair": cls, "state": model.state_disentangler(cls), "object": model.object_disentangler(cls)}
    index = {pair: i for i, pair in enumerate(VOCAB.pair_names())}
    for b, prediction in enumerate(predictions):
        shown = prediction.explanations
        assert shown["logit_parts"] == ["prompt", "local stage", "global stage"]
        assert "reconstruction" in shown["gate_note"]
        top = np.array([index[(r.state, r.object)] for r in prediction.ranking])
        for branch, key, rows in (("pair", "logit_parts_composition", top),
                                  ("state", "logit_parts_state", VOCAB.pair_states[top]),
                                  ("object", "logit_parts_object", VOCAB.pair_objects[top])):
            parts = shown[key]
            assert parts.shape == (top_k, 3)
            np.testing.assert_allclose(parts.sum(axis=1), getattr(logits, branch)[b, rows].numpy(), rtol=0, atol=1e-4)
            with torch.no_grad():  # by hand: t, q1 = CA1(t), q2 = CA2(q1), gate on the increments
                t = text[branch][torch.as_tensor(rows)]
                one = keys.select(b)
                q1, _ = model.local_stage(t, one.local)
                q2, _ = model.global_stage(q1, one.global_)
                d1, d2 = q1[0] - t, q2[0] - q1[0]
                weights = model.gate(d1, d2)
                local = weights[:, :1] * model.local_scale * d1
                global_ = weights[:, 1:] * model.global_scale * d2
                norm = (t + local + global_).norm(dim=-1)
                v = torch.nn.functional.normalize(image[branch][b], dim=-1)
                expected = torch.stack([100 * (t @ v), 100 * (local @ v), 100 * (global_ @ v)], dim=1) / norm[:, None]
            np.testing.assert_allclose(parts, expected.numpy(), rtol=0, atol=1e-4)
            # Both stages really moved these rows (a zero split would prove nothing).
            assert np.abs(parts[:, 1]).max() > 1e-3 and np.abs(parts[:, 2]).max() > 1e-3
    # Untrained: the stages add nothing and the prompt part is the CLIP logit.
    untrained = load_model("msci", backbone="tiny", train_states=TRAIN_STATES, train_objects=TRAIN_OBJECTS)
    clip = load_model("clip", backbone="tiny").predict(example_images[:1], VOCAB, top_k=top_k)[0]
    explained = untrained.predict(example_images[:1], VOCAB, top_k=top_k)[0].explanations
    assert np.all(explained["logit_parts_composition"][:, 1:] == 0)
    np.testing.assert_allclose(explained["logit_parts_composition"][:, 0], clip.explanations["score_parts"]["composition"],
                               rtol=0, atol=1e-4)


@pytest.mark.parametrize("batch", [1, 3])
def test_training_steps_reach_every_trainable_tensor(example_images, batch):
    """One step: finite loss and a finite gradient (possibly exactly zero) for every trainable tensor.
    Tensors behind a zero-initialised residual (λ, disentangler and adapter outputs) get exactly zero
    gradient at step 0 by design, so the real check is that after two Adam steps every one has moved.
    With one image the disentanglers skip BatchNorm (it cannot train on one sample; layers.py), so
    exactly their BatchNorm weights and biases are left without a gradient."""
    torch.manual_seed(0)  # dropout masks (stages, words, disentanglers) decide which paths carry gradient
    model = load_model("msci", backbone="tiny", train_states=TRAIN_STATES, train_objects=TRAIN_OBJECTS)
    model.train()
    parameters = dict(model.named_parameters())
    trainable = {name: p for name, p in parameters.items() if p.requires_grad}
    assert set(trainable) == set(parameters)
    before = {name: p.detach().clone() for name, p in trainable.items()}
    optimizer = torch.optim.Adam(trainable.values(), lr=1e-3)
    pixels = model.backbone.preprocess_images(example_images[:batch])
    with torch.no_grad():
        visual = model.backbone.encode_image(pixels, layers=model.visual_request(explain=False).layers).detach()
    generator = torch.Generator().manual_seed(1)
    targets = [torch.randint(0, n, (batch,), generator=generator)
               for n in (VOCAB.num_pairs, len(VOCAB.states), len(VOCAB.objects))]
    batch_norm = {f"{branch}_disentangler.block.1.{kind}" for branch in ("state", "object") for kind in ("weight", "bias")}
    skipped = batch_norm if batch == 1 else set()
    for step in range(2):
        optimizer.zero_grad()
        loss, parts = model.loss(model(None, VOCAB, visual=visual), *targets)
        assert torch.isfinite(loss) and set(parts) == {"pair", "state", "object"}
        loss.backward()
        assert {name for name, p in trainable.items() if p.grad is None} == skipped
        for name, parameter in trainable.items():
            assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name
        optimizer.step()
    unchanged = {name for name, p in trainable.items() if torch.equal(p.detach(), before[name])}
    assert unchanged == skipped


def test_adapters_train_through_the_backbone(example_images):
    """The "paper" preset: adapters in every block, trained from pixels; a cached pass is refused."""
    model = load_model("msci", backbone="tiny", use_adapters=True)
    assert len(model.adapters) == model.backbone.num_layers and not model.shares_vision_pass
    model.train()
    pixels = model.backbone.preprocess_images(example_images[:1])
    up_weights = [p for name, p in model.named_parameters() if name.startswith("adapters.") and ".up." in name]
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    loss, _ = model.loss(model(pixels, VOCAB), torch.tensor([0]), torch.tensor([0]), torch.tensor([0]))
    loss.backward()
    assert up_weights and all(p.grad is not None and p.grad.abs().sum() > 0 for p in up_weights)
    optimizer.step()
    with torch.no_grad():
        cached = model.backbone.encode_image(pixels, layers=model.visual_request().layers)
    with pytest.raises(ValueError, match="adapters"):
        model(None, VOCAB, visual=cached)


def test_save_load_round_trip(tmp_path, example_images):
    model = perturbed_msci(preset="ut-zappos", use_adapters=True, chunk_size=16)
    model.training_steps.fill_(3)
    model.save_pretrained(tmp_path / "msci")
    config = json.loads((tmp_path / "msci" / "config.json").read_text())
    assert config["model_type"] == "msci" and config["preset"] == "ut-zappos" and config["use_adapters"] is True
    loaded = load_model("msci", checkpoint=tmp_path / "msci")
    assert loaded.is_trained and loaded.low_layers == (1, 2, 3)
    before = model.predict(example_images, VOCAB, top_k=3)
    after = loaded.predict(example_images, VOCAB, top_k=3)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a.scores, b.scores)
        for name in ("gate_composition", "stage1_attention", "stage2_attention"):
            np.testing.assert_array_equal(a.explanations[name], b.explanations[name])


def test_presets_and_head_count():
    assert resolve_preset("MIT_States")[0] == "mit-states" and resolve_preset("C-GQA")[0] == "cgqa"
    with pytest.raises(ValueError, match="preset"):
        resolve_preset("imagenet")
    cgqa = load_model("msci", backbone="tiny", preset="cgqa")
    assert cgqa.loss_weights == (1.0, 0.1, 0.1) and cgqa.training_recipe()["learning_rate"] == PRESETS["cgqa"].learning_rate
    zappos = load_model("msci", backbone="tiny", preset="ut-zappos")
    assert zappos.low_layers == (1, 2, 3) and zappos.high_layers == (4, 5, 6)
    override = load_model("msci", backbone="tiny", aggregated_layers=2)
    assert override.visual_request().layers == (1, 2, 5, 6)
    assert cgqa.heads == 8  # 12 does not divide the tiny backbone's width 32
    with pytest.raises(ValueError, match="aggregated_layers"):
        load_model("msci", backbone="tiny", aggregated_layers=7)


def test_cli_predict_json(example_paths, capsys):
    from czsl_models.cli import main

    assert main(["predict", str(example_paths[0]), "--model", "msci", "--backbone", "tiny", "--json", "--top-k", "2"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["model"] == "msci" and len(document["ranking"]) == 2
    assert np.array(document["explanations"]["gate_object"]).shape == (2, 2)


def test_speed_benchmark_quick_run():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        import msci_speed
    finally:
        sys.path.pop(0)
    report = msci_speed.run_benchmark(msci_speed.parse_args(["--quick"]))
    assert [row["pairs"] for row in report["timings"]] == [100, 2000]
    assert all(row["ratio"] > 0 for row in report["timings"])
    # The benchmark compares the default (auto) precision with float32 whatever the environment says.
    if precision.native_bfloat16(torch.device("cpu")):
        assert set(report["timings"][0]["models"]) == {"clip", "msci bfloat16", "msci float32"}
        agreement = report["precision"]
        assert 0 < agreement["max_score_difference"] < 0.05 * agreement["max_refinement_change"]
    else:
        assert set(report["timings"][0]["models"]) == {"clip", "msci float32"} and report["precision"] is None
    assert report["trainable_parameters"] > 0


# ---------------------------------------------------------------- bfloat16 row heads
def mlp_output_dtypes(model: MSCI) -> list[torch.dtype]:
    """Records the dtype each stage's first MLP layer computes in (hooks stay until the model is dropped)."""
    seen: list[torch.dtype] = []
    for stage in (model.local_stage, model.global_stage):
        stage.mlp[0].register_forward_hook(lambda _module, _inputs, output: seen.append(output.dtype))
    return seen


@pytest.mark.parametrize("batch", [1, 3])
def test_untrained_bfloat16_heads_still_score_as_clip(example_images, batch):
    """λ = 0 zeroes whatever the stages compute, and the cosine scores stay float32."""
    clip = load_model("clip", backbone="tiny")
    msci = load_model("msci", backbone="tiny", train_states=TRAIN_STATES, train_objects=TRAIN_OBJECTS, chunk_size=8)
    msci.head_precision = "bfloat16"
    dtypes = mlp_output_dtypes(msci)
    images = example_images[:batch]
    np.testing.assert_allclose(all_scores(msci.predict(images, VOCAB)), all_scores(clip.predict(images, VOCAB)),
                               rtol=0, atol=1e-5)
    assert dtypes and set(dtypes) == {torch.bfloat16}


def test_bfloat16_heads_stay_close_to_float32(example_images):
    """Trained-like weights: bfloat16 moves logits by rounding only, keeps every top-1 and most of
    every top 5, and gives the same kind of explanation (weights summing to 1 in float32)."""
    model = perturbed_msci()
    reference = model.predict(example_images, VOCAB, top_k=5)
    model.head_precision = "bfloat16"
    dtypes = mlp_output_dtypes(model)
    fast = model.predict(example_images, VOCAB, top_k=5)
    assert set(dtypes) == {torch.bfloat16}
    clip = all_scores(load_model("clip", backbone="tiny").predict(example_images, VOCAB))
    change = np.abs(all_scores(reference) - clip).max()
    error = np.abs(all_scores(fast) - all_scores(reference)).max()
    assert 0 < error < 0.02 * change, (error, change)
    for a, b in zip(reference, fast):
        assert a.ranking[0].state == b.ranking[0].state and a.ranking[0].object == b.ranking[0].object
        overlap = {(r.state, r.object) for r in a.ranking} & {(r.state, r.object) for r in b.ranking}
        assert len(overlap) >= 4
        for name in ("gate_composition", "gate_state", "gate_object"):
            gate = b.explanations[name]
            assert gate.dtype == np.float32 and np.allclose(gate.sum(axis=1), 1, atol=1e-6)
            np.testing.assert_allclose(gate, a.explanations[name], atol=0.02)
        for name in ("stage1_attention", "stage2_attention"):
            assert b.explanations[name].dtype == np.float32
            np.testing.assert_allclose(b.explanations[name], a.explanations[name], atol=0.02)


def test_training_ignores_head_precision(example_images):
    """With gradients enabled the heads compute in float32 whatever is asked, so training is unchanged."""
    model = perturbed_msci().train()
    pixels = model.backbone.preprocess_images(example_images[:2])
    with torch.no_grad():
        visual = model.backbone.encode_image(pixels, layers=model.visual_request().layers)
    targets = (torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([2, 0]))
    losses = []
    for choice in ("float32", "bfloat16"):
        model.head_precision = choice
        torch.manual_seed(0)  # same dropout masks
        losses.append(model.loss(model(None, VOCAB, visual=visual), *targets)[0])
    assert torch.equal(losses[0], losses[1])


def test_head_precision_choice(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "native_bfloat16", lambda device: True)
    monkeypatch.setenv(precision.HEAD_PRECISION_ENV, "auto")
    assert precision.head_dtype(cpu) == torch.bfloat16
    assert precision.head_dtype(cpu, "float32") == torch.float32  # an explicit choice beats the environment
    monkeypatch.setattr(precision, "native_bfloat16", lambda device: False)
    assert precision.head_dtype(cpu) == torch.float32
    assert precision.head_dtype(cpu, "BFloat16") == torch.bfloat16  # asked for, even if not native
    with torch.no_grad():
        assert isinstance(precision.head_autocast(cpu, "bfloat16"), torch.autocast)
    assert not isinstance(precision.head_autocast(cpu, "bfloat16"), torch.autocast)  # gradients enabled
    monkeypatch.setenv(precision.HEAD_PRECISION_ENV, "fp8")
    with pytest.raises(ValueError, match="auto, float32, bfloat16"):
        precision.head_dtype(cpu)


def test_cli_head_precision(example_paths, capsys):
    from czsl_models.cli import main

    assert main(["predict", str(example_paths[0]), "--model", "msci", "--backbone", "tiny", "--json",
                 "--head-precision", "bfloat16"]) == 0
    assert json.loads(capsys.readouterr().out)["head_precision"] == "bfloat16"
    with pytest.raises(SystemExit):
        main(["predict", str(example_paths[0]), "--head-precision", "half"])


def test_app_checks_head_precision_at_start(monkeypatch, capsys):
    import app

    assert app.parse_args(["--head-precision", "Float32"]).head_precision == "float32"
    monkeypatch.setenv(precision.HEAD_PRECISION_ENV, "fp8")
    with pytest.raises(SystemExit):
        app.parse_args([])
    assert "head precision must be one of auto, float32, bfloat16" in capsys.readouterr().err


def test_released_dropouts_act_in_training_only(example_images):
    """Word-embedding dropout (the preset's attr_dropout) and the stages' output dropout change training
    forwards from call to call; in eval the model is deterministic and untrained equals CLIP."""
    model = load_model("msci", backbone="tiny", train_states=TRAIN_STATES, train_objects=TRAIN_OBJECTS)
    assert model.prompts.word_dropout == 0.3 and model.local_stage.output_dropout.p == 0.1
    assert load_model("msci", backbone="tiny", preset="cgqa").prompts.word_dropout == 0.0
    assert load_model("msci", backbone="tiny", word_dropout=0.0).prompts.word_dropout == 0.0
    model.train()
    text = [model.prompts.encode(VOCAB, "pair") for _ in range(2)]
    assert not torch.allclose(text[0], text[1])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.prompts.encode(VOCAB, "pair"), model.prompts.encode(VOCAB, "pair"))
    clip = load_model("clip", backbone="tiny").predict(example_images[:1], VOCAB)[0]
    np.testing.assert_allclose(model.predict(example_images[:1], VOCAB)[0].scores, clip.scores, rtol=0, atol=1e-5)


def test_open_world_score_weights_apply_to_open_world_vocabularies_only(example_images):
    released = PRESETS["mit-states"].open_world_score_weights
    assert released == (0.3, 0.7, 0.7) and PRESETS["ut-zappos"].open_world_score_weights == (1.0, 1.0, 1.0)
    plain = perturbed_msci()
    weighted = perturbed_msci(open_world_score_weights=list(released))
    closed = Vocabulary.build("sleeping, shiny", "cat, rocket", pairs=["sleeping cat", "shiny rocket"])
    assert VOCAB.open_world and not closed.open_world
    assert weighted.score_weights_for(VOCAB) == released and weighted.score_weights_for(closed) == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(plain.predict(example_images[:1], closed)[0].scores,
                                  weighted.predict(example_images[:1], closed)[0].scores)
    got = weighted.predict(example_images[:1], VOCAB)[0].scores
    with torch.no_grad():
        logits = plain.branch_logits(plain.encode_images(plain.backbone.preprocess_images(example_images[:1])), VOCAB)
    state = 0.7 * logits.state[0].softmax(-1)[VOCAB.pair_states]
    obj = 0.7 * logits.object[0].softmax(-1)[VOCAB.pair_objects]
    np.testing.assert_allclose(got, (0.3 * logits.pair[0] + state * obj).numpy(), rtol=0, atol=1e-4)
    assert not np.allclose(got, plain.predict(example_images[:1], VOCAB)[0].scores)
