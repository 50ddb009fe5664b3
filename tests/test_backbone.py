"""Backbone: spec kinds up to the network, one vision pass, attention capture, truncated text, cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from czsl_models.backbones import (
    BackboneError, get_backbone, load_backbone_uncached, parse_backbone_spec, save_backbone_local,
)
from czsl_models.models.layers import vision_adapters
from czsl_models.models.prompts import PromptEncoder
from czsl_models.inputs.vocab import Vocabulary


def test_spec_kinds(tmp_path):
    assert parse_backbone_spec(None).kind == "pretrained"
    default = parse_backbone_spec("default")
    assert (default.architecture, default.pretrained) == ("ViT-L-14-quickgelu", "openai")
    assert parse_backbone_spec("hf-hub:laion/CLIP-ViT-B-32").location == "laion/CLIP-ViT-B-32"
    assert parse_backbone_spec("tiny").kind == "tiny"
    assert parse_backbone_spec("random:ViT-B-32").architecture == "ViT-B-32"
    assert parse_backbone_spec(str(tmp_path)).kind == "local"
    assert parse_backbone_spec(f"local-dir:{tmp_path}").kind == "local"
    for text in ("ViT-L-14-quickgelu:openai", "tiny", "random:ViT-B-32", "hf-hub:a/b"):
        assert str(parse_backbone_spec(text)) == text
    with pytest.raises(BackboneError, match="Cannot read backbone spec"):
        parse_backbone_spec("no-such-thing")


def test_pretrained_tag_offline_fails_clearly():
    with pytest.raises(BackboneError, match="not in the local cache and HF_HUB_OFFLINE is set"):
        load_backbone_uncached("ViT-B-32:openai", "cpu")


def test_hub_id_offline_fails_clearly():
    with pytest.raises(BackboneError, match="--backbone tiny"):
        load_backbone_uncached("hf-hub:someone/not-cached-clip", "cpu")


def test_unknown_architecture():
    with pytest.raises(BackboneError, match="Unknown OpenCLIP architecture"):
        load_backbone_uncached("ViT-Q-99:openai", "cpu")


def test_tiny_is_deterministic_and_shared(tiny_backbone):
    other = load_backbone_uncached("tiny", "cpu")
    for (name, a), (_, b) in zip(tiny_backbone.model.state_dict().items(), other.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert get_backbone("tiny", "cpu") is tiny_backbone


def test_local_directory_round_trip(tmp_path, tiny_backbone, example_images):
    folder = save_backbone_local(tiny_backbone, tmp_path / "tiny-clip")
    assert (folder / "open_clip_config.json").is_file()
    local = load_backbone_uncached(str(folder), "cpu")
    assert local.spec.kind == "local"
    pixels = tiny_backbone.preprocess_images(example_images[:2])
    assert torch.equal(local.encode_image(pixels).cls, tiny_backbone.encode_image(pixels).cls)
    prompts = ["a photo of sliced apple", "a photo of a cat"]
    assert torch.allclose(local.encode_prompts(prompts), tiny_backbone.encode_prompts(prompts), atol=1e-6)


def test_local_directory_without_config(tmp_path):
    with pytest.raises(BackboneError, match="open_clip_config.json"):
        load_backbone_uncached(str(tmp_path), "cpu")


def test_vision_pass_matches_open_clip_and_attention_is_side_effect_free(tiny_backbone, example_images):
    pixels = tiny_backbone.preprocess_images(example_images)
    reference = tiny_backbone.model.encode_image(pixels)
    plain = tiny_backbone.encode_image(pixels, layers=(1, 3, 6))
    with_attention = tiny_backbone.encode_image(pixels, layers=(1, 3, 6), attention=True)
    assert torch.equal(plain.cls, reference)
    assert torch.equal(with_attention.cls, plain.cls)
    for layer in (1, 3, 6):
        assert torch.equal(with_attention.layer_tokens[layer], plain.layer_tokens[layer])
    tokens = 1 + tiny_backbone.num_patches
    assert len(with_attention.attentions) == tiny_backbone.num_layers
    assert with_attention.attentions[0].shape == (len(example_images), tiny_backbone.num_heads, tokens, tokens)
    sums = with_attention.attentions[-1].sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    # the last block's projected CLS token is the CLIP image embedding
    assert torch.allclose(plain.layer_tokens[6][:, 0], reference, atol=1e-5)


def test_zero_initialised_adapters_leave_outputs_unchanged(tiny_backbone, example_images):
    pixels = tiny_backbone.preprocess_images(example_images[:2])
    adapters = vision_adapters(tiny_backbone.width, tiny_backbone.num_layers)
    assert torch.allclose(tiny_backbone.encode_image(pixels, adapters=adapters).cls,
                          tiny_backbone.encode_image(pixels).cls, atol=1e-6)


def test_patch_embedding_edit_is_applied(tiny_backbone, example_images):
    pixels = tiny_backbone.preprocess_images(example_images[:1])
    out = tiny_backbone.encode_image(pixels, patch_embeddings=True, edit_patch_embeddings=lambda x: x + torch.randn_like(x))
    assert out.patch_embeddings.shape == (1, tiny_backbone.num_patches, tiny_backbone.width)
    assert not torch.allclose(out.cls, tiny_backbone.encode_image(pixels).cls)


def test_truncated_context_equals_full_context(tiny_backbone):
    prompts = [f"a photo of {s} {o}" for s in ("sliced", "rusty old", "wet") for o in ("apple", "faux leather shoe")]
    ids = tiny_backbone.tokenizer(prompts)
    full = tiny_backbone.model.encode_text(ids)  # open_clip: context 77
    truncated = tiny_backbone.encode_text_embeddings(tiny_backbone.embed_tokens(ids), ids.argmax(-1))
    assert truncated.shape == full.shape
    assert (truncated - full).abs().max().item() < 1e-5


def test_prompt_encoder_matches_plain_prompts(tiny_backbone):
    vocab = Vocabulary.build("sliced, faux leather", "apple, ankle boot")
    encoder = PromptEncoder(tiny_backbone, learnable=False)
    expected = F.normalize(tiny_backbone.encode_prompts([f"a photo of {s} {o}" for s, o in vocab.pair_names()]), dim=-1)
    assert (encoder.encode(vocab, "pair") - expected).abs().max().item() < 1e-5
    states = F.normalize(tiny_backbone.encode_prompts([f"a photo of {s}" for s in vocab.states]), dim=-1)
    assert (encoder.encode(vocab, "state") - states).abs().max().item() < 1e-5


def test_text_cache_hits_and_trained_parameters_change_the_key(tiny_backbone):
    vocab = Vocabulary.build("ripe, raw", "banana, egg")
    encoder = PromptEncoder(tiny_backbone, ["ripe", "raw"], ["banana", "egg"], learnable=True)
    cache = tiny_backbone.text_cache
    with torch.no_grad():
        first = encoder.encode(vocab, "pair")
        hits = cache.hits
        again = encoder.encode(vocab, "pair")
        assert cache.hits == hits + 1
        assert again is first
        encoder.state_offsets[0] += torch.randn_like(encoder.state_offsets[0])
        changed = encoder.encode(vocab, "pair")
    assert not torch.allclose(changed, first)
    # with gradients needed the cache is bypassed, so training sees live parameters
    trained = encoder.encode(vocab, "pair")
    assert trained.requires_grad


def test_learned_word_offsets_apply_to_known_words_only(tiny_backbone):
    encoder = PromptEncoder(tiny_backbone, ["ripe"], ["banana"], learnable=True)
    plain = PromptEncoder(tiny_backbone, learnable=False)
    with torch.no_grad():
        encoder.state_offsets += torch.randn_like(encoder.state_offsets)
        vocab = Vocabulary.build("ripe, mouldy", "banana")
        learned, fixed = encoder.encode(vocab, "state"), plain.encode(vocab, "state")
    assert not torch.allclose(learned[0], fixed[0], atol=1e-4)  # "ripe" has an offset
    assert torch.allclose(learned[1], fixed[1], atol=1e-5)  # "mouldy" was never seen in training


def test_unreachable_hub_fails_fast_without_the_offline_variable(monkeypatch):
    """With no network and HF_HUB_OFFLINE unset, loading must not sit in the Hub's retries."""
    import time

    from huggingface_hub import constants

    import czsl_models.backbones.loading as backbone_module

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(backbone_module, "hub_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(BackboneError, match="Hub cannot be reached"):
        load_backbone_uncached("ViT-B-32:openai", "cpu")
    assert time.perf_counter() - start < 30
    assert constants.HF_HUB_OFFLINE is False
