"""Vocabulary: parsing, closed/open world, seen pairs, limits and clear errors."""

from __future__ import annotations

import pytest

from czsl_models.models.prompts import PromptEncoder
from czsl_models.inputs.vocab import Vocabulary, VocabularyError, parse_words


def test_parse_words_trims_and_deduplicates_case_insensitively():
    assert parse_words(" Sliced,whole\n\nROTTEN , sliced, Whole ,  wet   dog ") == ["Sliced", "whole", "ROTTEN", "wet dog"]
    assert parse_words(["a", "A", " b "]) == ["a", "b"]


def test_open_world_is_every_state_with_every_object():
    vocab = Vocabulary.build("sliced, whole, rotten", "apple, bread")
    assert vocab.open_world and vocab.num_pairs == 6
    assert vocab.pair_names()[:3] == [("sliced", "apple"), ("sliced", "bread"), ("whole", "apple")]
    assert list(vocab.pair_states) == [0, 0, 1, 1, 2, 2]
    assert list(vocab.pair_objects) == [0, 1, 0, 1, 0, 1]


def test_closed_world_with_multi_word_names_and_seen_pairs():
    vocab = Vocabulary.build("faux leather, wet", "ankle boot, dog",
                             pairs="faux leather ankle boot\nwet dog\nWET dog\n\n",
                             seen_pairs=[("wet", "dog")])
    assert not vocab.open_world
    assert vocab.pair_names() == [("faux leather", "ankle boot"), ("wet", "dog")]
    assert list(vocab.seen_mask) == [False, True]
    assert vocab.with_seen([("faux leather", "ankle boot")]).seen == (True, False)


def test_unknown_pair_is_named():
    with pytest.raises(VocabularyError, match="'rusty apple'"):
        Vocabulary.build("sliced", "apple", pairs="rusty apple")


@pytest.mark.parametrize("states, objects, message", [
    ("", "apple", "list of states is empty"),
    ("sliced", " , \n", "list of objects is empty"),
])
def test_empty_lists(states, objects, message):
    with pytest.raises(VocabularyError, match=message):
        Vocabulary.build(states, objects)


def test_ten_thousand_words_says_the_limit_and_how_to_raise_it():
    words = ", ".join(f"word{i}" for i in range(10_000))
    with pytest.raises(VocabularyError) as error:
        Vocabulary.build(words, "apple")
    assert "10,000 states" in str(error.value) and "1,000" in str(error.value) and "CZSL_MAX_WORDS" in str(error.value)
    assert Vocabulary.build(words, "apple", max_words=10_000).num_pairs == 10_000


def test_open_world_pair_limit(monkeypatch):
    states = ", ".join(f"s{i}" for i in range(200))
    objects = ", ".join(f"o{i}" for i in range(200))
    with pytest.raises(VocabularyError, match="40,000 pairs.*CZSL_MAX_PAIRS"):
        Vocabulary.build(states, objects)
    monkeypatch.setenv("CZSL_MAX_PAIRS", "50000")
    assert Vocabulary.build(states, objects).num_pairs == 40_000


def test_feasibility_length_is_checked():
    with pytest.raises(VocabularyError, match="feasibility"):
        Vocabulary.build("a, b", "c", feasibility=[1.0])


def test_word_too_long_for_the_text_encoder(tiny_backbone):
    encoder = PromptEncoder(tiny_backbone, learnable=False)
    long_word = "ꙮ" * 60  # 60 characters (within the name limit) but 180 byte-level tokens
    with pytest.raises(VocabularyError, match="too long for the text encoder"):
        encoder.check_lengths(Vocabulary.build(f"sliced, {long_word}", "apple"))
    encoder.check_lengths(Vocabulary.build("sliced", "apple"))


def test_key_changes_with_content():
    a = Vocabulary.build("sliced", "apple")
    assert a.key == Vocabulary.build("sliced", "apple").key
    assert a.key != Vocabulary.build("sliced", "apples").key
