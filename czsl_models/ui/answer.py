"""The answer as a person reads it: one headline with a plain word for the top answer's lead, the words that
were looked for, the ranked list under it (each answer's share among the listed pairs, not a calibrated
probability), and the states and objects that appear in it; honest about random or untrained output.

Pure functions returning HTML strings (every word a visitor typed is escaped), so they are tested
without a browser and shared by Predict and Compare."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..backbones import BackboneSpec
from ..models.base import Prediction, RankedPair

RANDOM_STAMP = "random — demo mode"
# The shares are a softmax over the pairs listed, not calibrated probabilities (with three pairs a random guess can
# take 90%), so the word says how far the top answer leads the others, never how sure the model is.
LEAD_WORDS = (  # (lowest top share, lowest lead over the runner-up, word), checked in order
    (0.6, 2.0, "far ahead"),
    (0.35, 1.3, "ahead"),
    (0.0, 0.0, "a close call"),
)
MAX_WORDS_SHOWN = 12  # "Looking for" lists this many words of each kind, then "and N more"


@dataclass(frozen=True)
class Honesty:
    """How much the output means: random backbone (no numbers at all) and trained or not (explanations)."""

    random_backbone: bool
    trained: bool
    learns: bool  # False for the CLIP baseline, which has nothing to train

    @property
    def explanation_meaningful(self) -> bool:
        """Whether the explanation pictures show something learned (or, for CLIP, something real)."""
        return not self.random_backbone and (self.trained or not self.learns)

    @property
    def caveat(self) -> str:
        """Why the explanation is not meaningful, in a few words ('' when it is)."""
        reasons = (["random demo model"] if self.random_backbone else []) + \
                  (["not trained"] if self.learns and not self.trained else [])
        return f"{', '.join(reasons)}: not meaningful" if reasons else ""


def is_random_backbone(spec: BackboneSpec) -> bool:
    """Whether a backbone has random weights (the tiny test one or random:ARCH), so answers are random."""
    return spec.kind in ("tiny", "random")


def pair_name(item: RankedPair) -> str:
    """'sliced apple'."""
    return f"{item.state} {item.object}"


def ranking_probabilities(prediction: Prediction) -> list[float]:
    """The probability of each ranked pair: a softmax over the scores of every candidate pair."""
    scores = np.asarray(prediction.scores, dtype=np.float64)
    finite = np.isfinite(scores)
    if not finite.any():
        return [0.0 for _ in prediction.ranking]
    top = scores[finite].max()
    total = np.exp(scores[finite] - top).sum()
    return [float(np.exp(item.score - top) / total) if np.isfinite(item.score) else 0.0
            for item in prediction.ranking]


@dataclass(frozen=True)
class LookingFor:
    """The words a prediction searched for, shown beside its answer."""

    states: tuple[str, ...]
    objects: tuple[str, ...]
    pairs: int  # how many state-object combinations were ranked

    def text(self) -> str:
        """'Looking for: states sliced, whole · objects apple, bread (4 combinations)'."""
        def words(items: tuple[str, ...]) -> str:
            shown = ", ".join(items[:MAX_WORDS_SHOWN])
            return shown + (f" and {len(items) - MAX_WORDS_SHOWN} more" if len(items) > MAX_WORDS_SHOWN else "")

        return (f"Looking for: states {words(self.states)} · objects {words(self.objects)} "
                f"({self.pairs:,} combinations)")


def lead_word(probabilities: Sequence[float]) -> str:
    """'far ahead', 'ahead' or 'a close call', from the top share and its lead over the runner-up."""
    if not probabilities:
        return LEAD_WORDS[-1][2]
    first = probabilities[0]
    second = probabilities[1] if len(probabilities) > 1 else 0.0
    lead = first / second if second > 0 else float("inf")
    for lowest, lowest_lead, word in LEAD_WORDS:
        if first >= lowest and lead >= lowest_lead:
            return word
    return LEAD_WORDS[-1][2]


def _seen_tag(item: RankedPair) -> str:
    if item.seen is None:
        return ""
    text = "seen in training" if item.seen else "new combination"
    return f' <span class="czsl-tag">{text}</span>'


def headline_text(prediction: Prediction, honesty: Honesty) -> str:
    """The headline as plain text: 'Best guess: sliced apple (ahead)'."""
    if not prediction.ranking:
        return "No answer: there was nothing to rank."
    name = pair_name(prediction.ranking[0])
    if honesty.random_backbone:
        return f"Best guess: {name} ({RANDOM_STAMP})"
    return f"Best guess: {name} ({lead_word(ranking_probabilities(prediction))})"


def looking_for_html(looking_for: LookingFor | None) -> str:
    """The words searched for, as one line under the headline ('' when unknown)."""
    if looking_for is None:
        return ""
    return f'<p class="czsl-looking">{html.escape(looking_for.text())}</p>'


def answer_html(prediction: Prediction, honesty: Honesty, previous: bool = False,
                looking_for: LookingFor | None = None) -> str:
    """The headline answer, the words looked for and the ranked list under it (bars and shares only when they
    mean something)."""
    if not prediction.ranking:
        return ('<div class="czsl-answer"><p class="czsl-headline">No answer: there was nothing to rank.</p>'
                f'{looking_for_html(looking_for)}</div>')
    probabilities = ranking_probabilities(prediction)
    top = html.escape(pair_name(prediction.ranking[0]))
    if honesty.random_backbone:
        judgement = f'<span class="czsl-stamp">{RANDOM_STAMP}</span>'
    else:
        judgement = f'<span class="czsl-lead">{html.escape(lead_word(probabilities))}</span>'
    rows = []
    for item, probability in zip(prediction.ranking, probabilities):
        name = html.escape(pair_name(item)) + _seen_tag(item)
        if honesty.random_backbone:
            rows.append(f'<li><span class="czsl-name">{name}</span></li>')
        else:
            percent = 100 * probability
            rows.append(f'<li><span class="czsl-name">{name}</span>'
                        f'<span class="czsl-bar" aria-hidden="true"><span style="width:{percent:.1f}%"></span></span>'
                        f'<span class="czsl-percent">{percent:.0f}%</span></li>')
    count = len(prediction.scores) if prediction.scores is not None else len(prediction.ranking)
    caption = ("Ranked answers (random weights: a random order):" if honesty.random_backbone
               else f"The ranked answers: each one's share among the {count:,} combinations listed (all add up to "
                    "100%), not how sure the model is.")
    classes = "czsl-answer czsl-previous" if previous else "czsl-answer"
    marker = ('<p class="czsl-previous-note">Previous answer: it belongs to the earlier photo or settings.</p>'
              if previous else "")
    return (f'<div class="{classes}">{marker}'
            f'<p class="czsl-headline">Best guess: <strong>{top}</strong> {judgement}</p>'
            f'{looking_for_html(looking_for)}'
            f'<p class="czsl-caption">{caption}</p>'
            f'<ol class="czsl-ranking">{"".join(rows)}</ol></div>')


def parts_in_ranking(prediction: Prediction, kind: str) -> list[tuple[str, str]]:
    """(word, its best answer) for each state (kind='state') or object in the ranking, best first: the
    order always agrees with the headline, whose state and object come first."""
    seen: dict[str, str] = {}
    for item in prediction.ranking:
        word = item.state if kind == "state" else item.object
        seen.setdefault(word, pair_name(item))
    return list(seen.items())


def details_html(prediction: Prediction) -> str:
    """The states and objects of the ranked answers, each listed with the best answer that contains it."""
    def listing(kind: str, title: str) -> str:
        items = "".join(f"<li><strong>{html.escape(word)}</strong> — in “{html.escape(best)}”</li>"
                        for word, best in parts_in_ranking(prediction, kind))
        return f'<div class="czsl-parts"><p>{title}</p><ol>{items}</ol></div>'

    return ('<div class="czsl-details"><p class="czsl-caption">What these are: the states and the objects that '
            'appear in the answers above, each ranked by the best answer that contains it.</p>'
            f'{listing("state", "States (how things are)")}{listing("object", "Objects (what things are)")}</div>')


def message_html(message: str, kind: str = "error") -> str:
    """One short message above the answer (an error, or that the answer is out of date)."""
    role = "alert" if kind == "error" else "status"
    return f'<p class="czsl-message czsl-{kind}" role="{role}">{html.escape(message)}</p>'
