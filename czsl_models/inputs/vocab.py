"""States, objects and candidate pairs from user text: closed or open world, seen pairs, feasibility."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np

DEFAULT_MAX_WORDS = 1_000
DEFAULT_MAX_PAIRS = 30_000  # MIT-States open world (28,175 pairs) fits; C-GQA open world needs more
MAX_WORD_CHARS = 100  # a state or object name; CLIP reads at most 77 tokens of a whole prompt anyway
MAX_TEXT_CHARS = 2_000_000  # one request's states, objects and pair list together (30,000 long pairs fit)


class VocabularyError(ValueError):
    """The vocabulary cannot be used; the message says why and how to fix it. A host_hint (how whoever runs the
    program can change a limit) follows the message in str(error); visitors of the app see only the message."""

    def __init__(self, message: str, host_hint: str = "") -> None:
        super().__init__(f"{message} {host_hint}".strip())
        self.visitor_message = message
        self.host_hint = host_hint


def max_words_limit() -> int:
    """Largest number of states (or objects); CZSL_MAX_WORDS raises it."""
    return int(os.environ.get("CZSL_MAX_WORDS", DEFAULT_MAX_WORDS))


def max_pairs_limit() -> int:
    """Largest number of candidate pairs; CZSL_MAX_PAIRS raises it."""
    return int(os.environ.get("CZSL_MAX_PAIRS", DEFAULT_MAX_PAIRS))


def check_text_budget(*texts: object) -> None:
    """Refuse a request whose vocabulary text is larger than MAX_TEXT_CHARS, before any parsing."""
    total = 0
    for text in texts:
        if isinstance(text, str):
            total += len(text)
        elif isinstance(text, (list, tuple)):
            total += sum(len(" ".join(map(str, item))) if isinstance(item, (list, tuple)) else len(str(item))
                         for item in text)
    if total > MAX_TEXT_CHARS:
        raise VocabularyError(f"The word lists are {total:,} characters long; the limit is {MAX_TEXT_CHARS:,}. "
                              "Use fewer or shorter words.")


def parse_words(text: str | Iterable[str], kind: str = "words") -> list[str]:
    """Split on commas and newlines, trim, collapse spaces, drop duplicates case-insensitively
    (the first spelling is kept for display); a name longer than MAX_WORD_CHARS is refused."""
    pieces = re.split(r"[,\n;]", text) if isinstance(text, str) else list(text)
    words: list[str] = []
    seen: set[str] = set()
    for piece in pieces:
        word = " ".join(str(piece).split())
        if not word:
            continue
        if len(word) > MAX_WORD_CHARS:
            raise VocabularyError(f"One of the {kind} is {len(word):,} characters long; the limit is "
                                  f"{MAX_WORD_CHARS}. Write short names such as 'sliced' or 'apple'.")
        key = word.casefold()
        if key not in seen:
            seen.add(key)
            words.append(word)
    return words


def _check_count(words: Sequence[str], kind: str, limit: int) -> None:
    if not words:
        raise VocabularyError(f"The list of {kind} is empty: type at least one, separated by commas or new lines.")
    if len(words) > limit:
        raise VocabularyError(
            f"{len(words):,} {kind} is more than the limit of {limit:,}. Use fewer.",
            "Whoever runs it can raise the limit with the environment variable CZSL_MAX_WORDS (or max_words=...)."
        )


@dataclass(frozen=True)
class Vocabulary:
    """Candidate compositions: pairs index into states and objects (display names)."""

    states: tuple[str, ...]
    objects: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]
    open_world: bool = True
    seen: tuple[bool, ...] | None = None
    feasibility: tuple[float, ...] | None = None

    @classmethod
    def build(
        cls,
        states: str | Iterable[str],
        objects: str | Iterable[str],
        pairs: str | Iterable[str] | Iterable[tuple[str, str]] | None = None,
        seen_pairs: str | Iterable[str] | Iterable[tuple[str, str]] | None = None,
        feasibility: Sequence[float] | None = None,
        max_words: int | None = None,
        max_pairs: int | None = None,
    ) -> "Vocabulary":
        """Vocabulary from user text. pairs=None is the open world (all states x objects);
        otherwise the closed world of the listed pairs, as 'state object' lines or tuples."""
        check_text_budget(states, objects, pairs, seen_pairs)
        state_list = parse_words(states, "states")
        object_list = parse_words(objects, "objects")
        word_limit = max_words if max_words is not None else max_words_limit()
        _check_count(state_list, "states", word_limit)
        _check_count(object_list, "objects", word_limit)
        pair_limit = max_pairs if max_pairs is not None else max_pairs_limit()
        if pairs is None:
            count = len(state_list) * len(object_list)
            if count > pair_limit:
                raise VocabularyError(
                    f"Open world with {len(state_list):,} states x {len(object_list):,} objects gives {count:,} pairs, "
                    f"more than the limit of {pair_limit:,}. Use fewer words or a closed-world pair list.",
                    "Whoever runs it can raise the limit with the environment variable CZSL_MAX_PAIRS (or max_pairs=...)."
                )
            indices = tuple((s, o) for s in range(len(state_list)) for o in range(len(object_list)))
            open_world = True
        else:
            indices = tuple(dict.fromkeys(_match_pairs(pairs, state_list, object_list)))
            if not indices:
                raise VocabularyError("The pair list is empty: give one 'state object' pair a line, or use the open world.")
            if len(indices) > pair_limit:
                raise VocabularyError(
                    f"{len(indices):,} pairs is more than the limit of {pair_limit:,}. Use fewer.",
                    "Whoever runs it can raise the limit with CZSL_MAX_PAIRS."
                )
            open_world = False
        seen = None
        if seen_pairs is not None:
            seen_set = set(_match_pairs(seen_pairs, state_list, object_list, strict=False))
            seen = tuple(pair in seen_set for pair in indices)
        feas = None
        if feasibility is not None:
            if len(feasibility) != len(indices):
                raise VocabularyError(f"{len(feasibility)} feasibility scores for {len(indices)} pairs.")
            feas = tuple(float(v) for v in feasibility)
        return cls(tuple(state_list), tuple(object_list), indices, open_world, seen, feas)

    @property
    def num_pairs(self) -> int:
        """Number of candidate pairs."""
        return len(self.pairs)

    @cached_property
    def pair_states(self) -> np.ndarray:
        """State index of every pair [P]."""
        return np.array([s for s, _ in self.pairs], dtype=np.int64)

    @cached_property
    def pair_objects(self) -> np.ndarray:
        """Object index of every pair [P]."""
        return np.array([o for _, o in self.pairs], dtype=np.int64)

    @cached_property
    def seen_mask(self) -> np.ndarray | None:
        """Seen (training) pairs as a bool array, or None when unknown."""
        return None if self.seen is None else np.array(self.seen, dtype=bool)

    def pair_names(self) -> list[tuple[str, str]]:
        """(state, object) display names of every pair."""
        return [(self.states[s], self.objects[o]) for s, o in self.pairs]

    @cached_property
    def key(self) -> str:
        """A stable hash of the whole vocabulary (for caches)."""
        text = "\x1f".join(self.states) + "\x1e" + "\x1f".join(self.objects) + "\x1e" + repr(self.pairs)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def with_seen(self, seen_pairs: Iterable[tuple[str, str]]) -> "Vocabulary":
        """The same vocabulary with seen pairs marked (pairs unknown to it are ignored)."""
        seen_set = set(_match_pairs(seen_pairs, list(self.states), list(self.objects), strict=False))
        return Vocabulary(self.states, self.objects, self.pairs, self.open_world,
                          tuple(pair in seen_set for pair in self.pairs), self.feasibility)


def _lookup(words: Sequence[str]) -> dict[str, int]:
    return {word.casefold(): index for index, word in enumerate(words)}


def _match_pairs(pairs, states: Sequence[str], objects: Sequence[str], strict: bool = True) -> list[tuple[int, int]]:
    """Resolve pairs given as 'state object' lines (multi-word names allowed) or tuples to indices."""
    state_index, object_index = _lookup(states), _lookup(objects)
    # The longest names bound how a line may split, so matching a line costs time linear in its length.
    state_words = max((len(word.split(" ")) for word in states), default=1)
    object_words = max((len(word.split(" ")) for word in objects), default=1)
    items = [line for line in pairs.splitlines()] if isinstance(pairs, str) else list(pairs)
    matched: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, (tuple, list)):
            state, obj = (" ".join(str(part).split()) for part in item)
            found = (state_index.get(state.casefold()), object_index.get(obj.casefold()))
            found = None if None in found else found
        else:
            line = " ".join(str(item).replace(",", " ").split())
            if not line:
                continue
            found = _split_pair_line(line, state_index, object_index, state_words, object_words)
            state, obj = (line if len(line) <= 2 * MAX_WORD_CHARS else line[:2 * MAX_WORD_CHARS] + "…"), ""
        if found is None:
            if strict:
                shown = f"{state} {obj}".strip()
                raise VocabularyError(f"The pair {shown!r} does not combine one of the states with one of the objects.")
            continue
        matched.append(found)
    return matched


def _split_pair_line(line: str, state_index: dict[str, int], object_index: dict[str, int],
                     state_words: int = 1_000_000, object_words: int = 1_000_000) -> tuple[int, int] | None:
    words = line.split(" ")
    if len(words) > state_words + object_words:
        return None  # longer than any state followed by any object
    for cut in range(max(1, len(words) - object_words), min(len(words), state_words + 1)):
        state = " ".join(words[:cut]).casefold()
        obj = " ".join(words[cut:]).casefold()
        if state in state_index and obj in object_index:
            return state_index[state], object_index[obj]
    return None
