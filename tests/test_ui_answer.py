"""The answer card: one headline with a plain confidence word, honest about random and untrained
output, states and objects that agree with the headline, every typed word escaped."""

from __future__ import annotations

import numpy as np

from czsl_models.backbones import parse_backbone_spec
from czsl_models.models.base import Prediction, RankedPair
from czsl_models.ui.answer import (Honesty, answer_html, lead_word, LookingFor, details_html, headline_text,
                                   is_random_backbone, parts_in_ranking, ranking_probabilities)
from czsl_models.ui.predict import as_previous

REAL = Honesty(random_backbone=False, trained=True, learns=True)


def prediction(scores: list[float], pairs: list[tuple[str, str]]) -> Prediction:
    """A prediction ranking the given pairs by their scores."""
    order = np.argsort(scores)[::-1]
    ranking = [RankedPair(pairs[i][0], pairs[i][1], float(scores[i])) for i in order]
    return Prediction("msci", "tiny", True, ranking, [], [], {}, np.asarray(scores, dtype=np.float32))


def test_lead_words_follow_the_top_share_and_its_lead_never_claiming_sureness():
    assert lead_word([0.9, 0.05]) == "far ahead"
    assert lead_word([0.5, 0.3]) == "ahead"
    assert lead_word([0.45, 0.4]) == "a close call"
    assert lead_word([0.2, 0.19]) == "a close call"


def test_headline_has_the_top_pair_and_percentages_only_when_they_mean_something():
    answer = prediction([5.0, 1.0, 0.0], [("sliced", "apple"), ("whole", "apple"), ("rotten", "bread")])
    probabilities = ranking_probabilities(answer)
    assert abs(sum(probabilities) - 1) < 1e-6 and probabilities[0] > 0.9
    assert headline_text(answer, REAL) == "Best guess: sliced apple (far ahead)"
    html = answer_html(answer, REAL, looking_for=LookingFor(("sliced", "whole"), ("apple",), 3))
    assert "<strong>sliced apple</strong>" in html and "98%" in html and "random" not in html
    assert "share among the 3 combinations listed" in html and "confiden" not in html
    assert "Looking for: states sliced, whole · objects apple (3 combinations)" in html
    random = answer_html(answer, Honesty(random_backbone=True, trained=False, learns=True))
    assert "random — demo mode" in random and "%" not in random


def test_honesty_says_why_an_explanation_means_nothing():
    assert REAL.explanation_meaningful and REAL.caveat == ""
    assert Honesty(False, False, False).explanation_meaningful, "CLIP learns nothing: its explanation is real"
    assert Honesty(False, False, True).caveat == "not trained: not meaningful"
    assert Honesty(True, False, True).caveat == "random demo model, not trained: not meaningful"
    assert is_random_backbone(parse_backbone_spec("tiny"))
    assert is_random_backbone(parse_backbone_spec("random:ViT-B-32"))
    assert not is_random_backbone(parse_backbone_spec("ViT-B-32:openai"))


def test_states_and_objects_agree_with_the_headline_and_typed_words_are_escaped():
    answer = prediction([3.0, 2.0, 1.0, 0.5], [("wet", "dog"), ("<b>dry</b>", "cat"), ("wet", "cat"),
                                               ("<b>dry</b>", "dog")])
    assert parts_in_ranking(answer, "state") == [("wet", "wet dog"), ("<b>dry</b>", "<b>dry</b> cat")]
    assert parts_in_ranking(answer, "object")[0] == ("dog", "wet dog")
    for html in (answer_html(answer, REAL), details_html(answer)):
        assert "<b>dry" not in html and "&lt;b&gt;dry" in html
    previous = as_previous(answer_html(answer, REAL))
    assert "czsl-previous" in previous and "Previous answer" in previous and as_previous(previous) == previous


def test_the_comparison_marks_rank_changes_against_clip_and_says_who_disagrees():
    from czsl_models.ui.differences import comparison_headline, comparison_rows, comparison_table_html

    pairs = [("wet", "dog"), ("dry", "dog"), ("wet", "cat"), ("<i>dry</i>", "cat")]
    clip = prediction([4.0, 3.0, 2.0, 1.0], pairs)
    msci = prediction([3.0, 4.0, 1.0, 2.0], pairs)
    names = {"clip": "CLIP", "msci": "MSCI"}
    both = {"clip": clip, "msci": msci}
    assert comparison_rows(both, ["clip", "msci"])[:2] == ["wet dog", "dry dog"]
    table = comparison_table_html(both, ["clip", "msci"], names)
    assert "#1 <span" in table and "▲1" in table and "▼1" in table and "&lt;i&gt;dry" in table
    assert comparison_headline(both, ["clip", "msci"], names) == \
        "The models' best guesses differ. CLIP: **wet dog**; MSCI: **dry dog**."
    assert comparison_headline({"clip": clip, "msci": clip}, ["clip", "msci"], names).startswith(
        "All 2 models give the same best guess")
    assert '"new"' not in table and "How to read it" in table


def test_every_example_has_its_own_words_and_a_stated_licence():
    from pathlib import Path

    from czsl_models.ui.gallery import EXAMPLES_DIR, example_catalogue

    catalogue = example_catalogue()
    licences = (EXAMPLES_DIR / "LICENSES.md").read_text()
    assert len(catalogue) >= 8 and Path(catalogue[0].path).stem == "chelsea"
    for example in catalogue:
        name = Path(example.path).name
        assert f"`{name}`" in licences, f"{name} has no licence line"
        assert example.states.count(",") >= 3 and example.objects.count(",") >= 2
    assert len({(example.states, example.objects) for example in catalogue}) >= 7, "each photo brings its own words"
