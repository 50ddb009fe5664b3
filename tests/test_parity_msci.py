"""Parity with the released MSCI code (ltpwy/MSCI `model/Mutifuse_new.py`, `train_base.py`, `config/msci/*.yml`).

Each test builds the released computation from its definition, with plain tensor operations on the
model's own weights, and compares with the project's to a tolerance relative to the quantity.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from czsl_models import Vocabulary, load_model
from czsl_models.backbones import precision
from czsl_models.models.layers import Disentangler
from czsl_models.models.msci import MSCI, PRESETS, logit_parts

VOCAB = Vocabulary.build("sleeping, shiny, hot, wet", "cat, coffee, rocket")
STATES, OBJECTS = ["sleeping", "shiny", "hot", "wet"], ["cat", "coffee", "rocket"]


@pytest.fixture(autouse=True)
def float32_heads(monkeypatch):
    monkeypatch.setenv(precision.HEAD_PRECISION_ENV, "float32")


def released_msci(seed: int = 0, **kwargs) -> MSCI:
    """A released-variant MSCI with its zero-initialised tensors (word offsets) made random."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = load_model("msci", backbone="tiny", train_states=STATES, train_objects=OBJECTS, variant="released",
                           **kwargs)
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad and not parameter.any():
                    parameter.copy_(0.5 * torch.randn(parameter.shape))
    return model


def close(got: torch.Tensor, expected: torch.Tensor, relative: float = 1e-5) -> None:
    """Equal to a tolerance relative to the quantity's size."""
    scale = float(expected.detach().abs().max()) or 1.0
    torch.testing.assert_close(got, expected, rtol=0, atol=relative * scale)


def pixels(batch: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.randn(batch, 3, 224, 224, generator=generator)


# ------------------------------------------------------------------ the released computation, written out


def ref_attention(layer_attention, queries: torch.Tensor, keys: torch.Tensor, heads: int) -> torch.Tensor:
    """Released MultiHeadAttention: q/k/v Linear without bias, softmax(q k^T · d^-0.5) v, proj with bias."""
    batch, rows, dim = queries.shape
    tokens = keys.shape[1]
    q = F.linear(queries, layer_attention.q_proj.weight).reshape(batch, rows, heads, dim // heads).permute(0, 2, 1, 3)
    k = F.linear(keys, layer_attention.k_proj.weight).reshape(batch, tokens, heads, dim // heads).permute(0, 2, 1, 3)
    v = F.linear(keys, layer_attention.v_proj.weight).reshape(batch, tokens, heads, dim // heads).permute(0, 2, 1, 3)
    weights = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(batch, rows, dim)
    return F.linear(out, layer_attention.out_proj.weight, layer_attention.out_proj.bias)


def ref_cross_attention_layer(layer, queries: torch.Tensor, keys: torch.Tensor, heads: int,
                              drop_attention=lambda x: x, drop_inner=lambda x: x, drop_outer=lambda x: x) -> torch.Tensor:
    """Released CrossAttentionLayer: q + proj_drop(attn(q, kv, kv)); q + dropout(mlp(norm(q))),
    mlp = Linear(D, 4D) → QuickGELU → Dropout → Linear(4D, D)."""
    q = queries + drop_attention(ref_attention(layer.attention, queries, keys, heads))
    hidden = F.linear(F.layer_norm(q, q.shape[-1:], layer.norm.weight, layer.norm.bias, layer.norm.eps),
                      layer.mlp[0].weight, layer.mlp[0].bias)
    hidden = drop_inner(hidden * torch.sigmoid(1.702 * hidden))
    return q + drop_outer(F.linear(hidden, layer.mlp[3].weight, layer.mlp[3].bias))


def ref_aggregate(aggregator, layers: list[torch.Tensor]) -> torch.Tensor:
    """Released concat_projection: Linear(L·D → D) → LayerNorm → ReLU → Dropout(0.1) (eval: identity)."""
    linear, norm = aggregator.project[0], aggregator.project[1]
    x = F.linear(torch.cat(layers, dim=-1), linear.weight, linear.bias)
    return F.relu(F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps))


def ref_disentangler(module: Disentangler, v: torch.Tensor) -> torch.Tensor:
    """Released Disentangler (eval): F.dropout(F.relu(bn1_fc(fc1(x)))), BatchNorm on its running statistics."""
    x = F.linear(v, module.linear.weight, module.linear.bias)
    x = F.batch_norm(x, module.norm.running_mean, module.norm.running_var, module.norm.weight, module.norm.bias,
                     training=False, eps=module.norm.eps)
    return F.relu(x)


def ref_branch_logits(model: MSCI, visual, text: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Released MSCI.forward (eval): t' = normalize(t + lamda⊙q1 + lamda_2⊙q2); 100 · v̂ · t'."""
    low = ref_aggregate(model.low_aggregator, [visual.layer_tokens[i] for i in model.low_layers])
    high = ref_aggregate(model.high_aggregator, [visual.layer_tokens[i] for i in model.high_layers])
    norm = lambda x, ln: F.layer_norm(x, x.shape[-1:], ln.weight, ln.bias, ln.eps)  # noqa: E731
    low, high = norm(low, model.local_norm), norm(high, model.global_norm)
    cls = visual.cls.float()
    images = {"pair": cls, "state": ref_disentangler(model.state_disentangler, cls),
              "object": ref_disentangler(model.object_disentangler, cls)}
    logits = {}
    for branch, rows in text.items():
        t = F.normalize(rows.float(), dim=-1)
        q = t.unsqueeze(0).expand(cls.shape[0], -1, -1)
        q1 = ref_cross_attention_layer(model.local_stage, q, low, model.heads)
        q2 = ref_cross_attention_layer(model.global_stage, q1, high, model.heads)
        refined = t + model.local_scale * q1 + model.global_scale * q2
        refined = refined / refined.norm(dim=-1, keepdim=True)
        image = images[branch] / images[branch].norm(dim=-1, keepdim=True)
        logits[branch] = torch.einsum("bd,bkd->bk", image, refined * 100.0)
    return logits


# ------------------------------------------------------------------------------------------ tests


def test_released_update_equals_its_definition():
    model = released_msci().eval()
    with torch.no_grad():
        visual = model.encode_images(pixels())
        text = model.prompts.encode_all(VOCAB)
        got = model.branch_logits(visual, VOCAB)
        expected = ref_branch_logits(model, visual, text)
    for branch, name in (("pair", "pair"), ("state", "state"), ("object", "object")):
        close(getattr(got, name).float(), expected[branch])


def test_released_variant_starts_as_released():
    """lamda, lamda_2 = ones(D) · init_lamda (0.1); not the clip baseline untrained; no gate module."""
    model = load_model("msci", backbone="tiny", train_states=STATES, train_objects=OBJECTS, variant="released")
    dim = model.backbone.embed_dim
    assert torch.equal(model.local_scale.detach(), torch.full((dim,), 0.1))
    assert torch.equal(model.global_scale.detach(), torch.full((dim,), 0.1))
    assert model.gate is None and not model.untrained_equals_baseline
    assert load_model("msci", backbone="tiny").untrained_equals_baseline  # the gated extension


def test_logit_splits_exactly_into_prompt_and_stage_contributions():
    model = released_msci().eval()
    with torch.no_grad():
        visual = model.encode_images(pixels(1))
        text = model.prompts.encode_all(VOCAB)
        keys = model.image_keys(visual)
        refined = model.refine(text["pair"], keys)
        parts = logit_parts(visual.cls.float().expand(len(text["pair"]), -1), refined)
        logits = model.branch_logits(visual, VOCAB).pair[0]
        expected_local = model.local_scale * model.local_stage(F.normalize(text["pair"], dim=-1), keys.local)[0]
    close(parts.sum(dim=1), logits.float())
    close(refined.local_update, expected_local)  # released: u1 = lamda ⊙ q1, the whole stage output
    assert refined.gate is None


def test_released_disentangler_and_its_size():
    """Linear → BatchNorm1d → ReLU → dropout 0.5, not residual; 2·(D² + D) + 2·2D parameters for both."""
    model = released_msci()
    dim = model.backbone.embed_dim
    size = sum(p.numel() for p in model.state_disentangler.parameters())
    assert size == dim * dim + dim + 2 * dim
    # ViT-L/14 (D = 768): two disentanglers are 1.18 M parameters, as released (the extension's are 2.4 M)
    assert 2 * (768 * 768 + 768 + 2 * 768) == 1_184_256
    module = model.state_disentangler
    with torch.no_grad():
        module.norm.running_mean.copy_(torch.randn(dim))
        module.norm.running_var.copy_(torch.rand(dim) + 0.5)
    v = torch.randn(5, dim)
    module.eval()
    close(module(v), ref_disentangler(module, v))
    module.train()
    torch.manual_seed(3)
    got = module(v)
    torch.manual_seed(3)
    x = F.batch_norm(F.linear(v, module.linear.weight, module.linear.bias), None, None, module.norm.weight,
                     module.norm.bias, training=True, eps=module.norm.eps)
    close(got, F.dropout(F.relu(x), p=0.5, training=True))
    with pytest.raises(ValueError, match="batch of one"):
        module(v[:1])


def test_stage_dropout_placement_as_released():
    """Train mode: the attention output (proj_drop), inside the MLP and the MLP output are dropped, in that order."""
    model = released_msci()
    layer = model.local_stage.train()
    keys_tokens = torch.randn(2, 9, model.backbone.embed_dim)
    queries = F.normalize(torch.randn(6, model.backbone.embed_dim), dim=-1)
    projected = layer.attention.project_keys(keys_tokens)
    torch.manual_seed(11)
    got, _ = layer(queries, projected)
    torch.manual_seed(11)
    p = layer.output_dropout.p
    drop = lambda x: F.dropout(x, p=p, training=True)  # noqa: E731
    expected = ref_cross_attention_layer(layer, queries.unsqueeze(0).expand(2, -1, -1), keys_tokens, model.heads,
                                         drop, lambda x: F.dropout(x, p=layer.mlp[2].p, training=True), drop)
    assert p == 0.1
    close(got, expected)


def test_word_dropout_acts_on_the_whole_word_matrix_as_released():
    """nn.Dropout(attr_dropout)(soft_att_obj) once per forward, then the words are placed in every prompt."""
    model = released_msci(word_dropout=0.3)
    prompts = model.prompts.train()
    assert prompts.word_dropout == 0.3
    torch.manual_seed(5)
    dropped = prompts.dropped_word_matrix(VOCAB)
    torch.manual_seed(5)
    expected = torch.nn.Dropout(0.3)(prompts.word_matrix(VOCAB))
    close(dropped, expected)
    # one draw is shared by the three branches: encode_all equals encoding each branch with the one matrix
    torch.manual_seed(9)
    together = prompts.encode_all(VOCAB)
    torch.manual_seed(9)
    table = prompts.dropped_word_matrix(VOCAB)
    for branch in ("pair", "state", "object"):
        close(together[branch], prompts.encode(VOCAB, branch, table))
    # a word's row in a composition prompt is the same dropped row as in its state prompt
    rows = prompts._rows(VOCAB, "pair")
    embedded, _ = prompts._embed_chunk(rows, 0, table)
    state_of_first_pair = VOCAB.pairs[0][0]
    start = 1 + len(prompts.prefix_ids)
    close(embedded[0, start], table[state_of_first_pair, 0])
    state_rows, _ = prompts._embed_chunk(prompts._rows(VOCAB, "state"), 1, table)
    close(state_rows[state_of_first_pair, start], table[state_of_first_pair, 0])


def test_eval_mode_quirk_switch(tmp_path, monkeypatch):
    """With keep_eval_mode_after_validation, epoch 1 trains in train mode and every later epoch in eval mode
    (released train_base.py); without it, every epoch trains in train mode."""
    from czsl_models.training import TrainConfig, train

    seen: list[tuple[int, bool]] = []
    original = MSCI.forward

    def recording(self, pixels, vocab, visual=None):
        if torch.is_grad_enabled():
            seen.append((int(self.training_steps), self.training))
        return original(self, pixels, vocab, visual=visual)

    monkeypatch.setattr(MSCI, "forward", recording)
    for switch in (True, False):
        seen.clear()
        config = TrainConfig(model="msci", dataset="synthetic:shapes?images_per_pair=3", out=str(tmp_path / str(switch)),
                             backbone="tiny", epochs=3, batch_size=16, keep_eval_mode_after_validation=switch,
                             cache_dir=str(tmp_path / "cache"), num_workers=0)
        train(config)
        steps_per_epoch = len(seen) // 3
        modes = [mode for _, mode in seen]
        assert len(seen) == 3 * steps_per_epoch and steps_per_epoch >= 1
        assert all(modes[:steps_per_epoch])
        assert all(not mode for mode in modes[steps_per_epoch:]) if switch else all(modes)


RELEASED_CONFIGS = {
    # dataset: (closed-world config weights, closed-world test weights (the configs' comment), -ow weights, threshold)
    "ut-zappos": ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 0.4631293780949651),
    "mit-states": ((1.0, 1.0, 1.0), (0.1, 0.9, 0.9), (0.3, 0.7, 0.7), 0.36183673469387756),
    "cgqa": ((1.0, 1.0, 1.0), (0.1, 0.9, 0.9), (0.3, 0.7, 0.7), 0.4061361697255348),
}


@pytest.mark.parametrize("dataset", sorted(RELEASED_CONFIGS))
def test_inference_weights_and_thresholds_per_dataset(dataset):
    from czsl_models.training import TrainConfig
    from czsl_models.training.config import resolve_recipe

    train_weights, closed_test, open_test, threshold = RELEASED_CONFIGS[dataset]
    recipe = resolve_recipe(TrainConfig(model="msci", dataset=dataset, out="x", preset="paper"), dataset)
    assert recipe.closed_world_test_score_weights == closed_test
    assert recipe.open_world_test_score_weights == open_test
    assert recipe.released_feasibility_threshold == threshold
    assert recipe.model_options["open_world_score_weights"] == list(open_test)
    assert recipe.mixed_precision == "no" and recipe.keep_eval_mode_after_validation
    assert recipe.model_options["variant"] == "released"
    model = load_model("msci", backbone="tiny", **recipe.model_options)
    assert model.score_weights == train_weights  # validation during training uses the config's own weights
    open_vocab = Vocabulary.build("hot, wet", "cat, dog")  # every state x object: an open-world vocabulary
    assert model.score_weights_for(open_vocab) == open_test
    other = resolve_recipe(TrainConfig(model="refiner", dataset=dataset, out="x", preset="paper"), dataset)
    assert other.released_feasibility_threshold == threshold and other.closed_world_test_score_weights is None


def test_published_recipe_values():
    """config/msci/*.yml: optimiser, lr, weight decay, StepLR(5, 0.5), epochs, batch, attr_dropout, L."""
    assert (PRESETS["ut-zappos"].optimizer, PRESETS["ut-zappos"].learning_rate, PRESETS["ut-zappos"].batch_size,
            PRESETS["ut-zappos"].epochs, PRESETS["ut-zappos"].aggregated_layers) == ("adamw", 2.5e-4, 48, 15, 3)
    assert (PRESETS["mit-states"].optimizer, PRESETS["mit-states"].learning_rate, PRESETS["mit-states"].batch_size,
            PRESETS["mit-states"].epochs, PRESETS["mit-states"].word_dropout) == ("adam", 1e-4, 64, 20, 0.3)
    assert (PRESETS["cgqa"].learning_rate, PRESETS["cgqa"].loss_weights, PRESETS["cgqa"].word_dropout) == \
        (1.25e-5, (1.0, 0.1, 0.1), 0.0)
    assert all(p.weight_decay == 1e-5 and (p.lr_step_epochs, p.lr_gamma) == (5, 0.5) for p in PRESETS.values())
    assert math.isclose(sum(PRESETS["mit-states"].closed_world_test_score_weights), 1.9)


def test_untrained_released_msci_is_reported_untrained(example_images):
    """Honesty: an untrained released MSCI is not the CLIP baseline, and every output says it is untrained."""
    from czsl_models.cli import _format_prediction
    from czsl_models.inference.summary import UNTRAINED_NOT_BASELINE_CAVEAT, caveats
    from czsl_models.ui.answer import Honesty
    from czsl_models.ui.explain import msci_weights_visual

    model = load_model("msci", backbone="tiny", train_states=STATES, train_objects=OBJECTS, variant="released")
    prediction = model.predict(example_images[0], VOCAB, top_k=3)[0]
    clip = load_model("clip", backbone="tiny").predict(example_images[0], VOCAB, top_k=3)[0]
    assert not prediction.trained and not prediction.untrained_equals_baseline
    assert abs(prediction.scores - clip.scores).max() > 1e-3  # λ = 0.1 already moves the scores
    assert UNTRAINED_NOT_BASELINE_CAVEAT in caveats(prediction)
    assert not Honesty(False, prediction.trained, True).explanation_meaningful
    visual = msci_weights_visual(prediction)
    assert "untrained" in visual.caption and "exactly as CLIP" not in visual.caption
    assert "gate" not in visual.description  # the released variant has none
    assert "scores equal the CLIP baseline" not in _format_prediction("x.jpg", prediction, "MSCI")
    assert "untrained" in _format_prediction("x.jpg", prediction, "MSCI")
