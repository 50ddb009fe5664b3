"""The Predict tab's word lists: the ready-made ones, loaded datasets' and the chosen weights' own words, which
list the words on screen belong to, and the rule for the words a newly uploaded photo is searched for."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ..hosting.confinement import checkpoint_config as confined_checkpoint_config
from ..inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES, VOCABULARY_PRESETS
from ..models.checkpoints import CheckpointError
from .gallery import Example
from .inputs import WORLD_CLOSED, WORLD_OPEN
from .state import UNTRAINED, AppState
from .text import escape_html

DATASET_PRESET_PREFIX = "Dataset: "
CHECKPOINT_PRESET = "The words the chosen weights were trained on"
CUSTOM_PRESET = "Your own words, or an example's"  # what the menu says when the words match no list
WORDS_RULE = ("An example brings its own words. Your own photo is searched for the words under *What to look for*; "
              "when those are still an example's, they go back to *Everyday photos* first.")


def checkpoint_config(checkpoint: str | None) -> dict[str, Any] | None:
    """The config.json of a chosen checkpoint, or None for the untrained start."""
    if not checkpoint or checkpoint == UNTRAINED:
        return None
    return confined_checkpoint_config(checkpoint)[1]


def preset_names(state: AppState, has_checkpoint_words: bool = False) -> list[str]:
    """Built-in vocabularies, then loaded datasets, then the checkpoint's own words, then 'your own words'."""
    names = list(VOCABULARY_PRESETS)
    names += [DATASET_PRESET_PREFIX + vocabulary.name for vocabulary in state.dataset_vocabularies()]
    if has_checkpoint_words:
        names.append(CHECKPOINT_PRESET)
    return names + [CUSTOM_PRESET]


def _word_key(text: str | None) -> tuple[str, ...]:
    return tuple(word.strip().casefold() for word in (text or "").replace("\n", ",").split(",") if word.strip())


def matching_preset(state: AppState, states: str, objects: str, checkpoint: str | None) -> str:
    """The word list whose words are on screen, else CUSTOM_PRESET: the menu names what is searched for."""
    key = (_word_key(states), _word_key(objects))
    for name in preset_names(state, True):
        if name == CUSTOM_PRESET:
            continue
        try:
            preset = preset_vocabulary(state, name, checkpoint)
        except (gr.Error, CheckpointError):
            continue
        if (_word_key(preset[0]), _word_key(preset[1])) == key:
            return name
    return CUSTOM_PRESET


def words_for_upload(states: str, objects: str, examples: list[Example]) -> tuple[str, str]:
    """WORDS_RULE: words still as an example left them go back to the everyday list; typed words stay."""
    key = (_word_key(states), _word_key(objects))
    if any((_word_key(example.states), _word_key(example.objects)) == key for example in examples):
        return DEFAULT_STATES, DEFAULT_OBJECTS
    return states, objects


def preset_vocabulary(state: AppState, preset: str, checkpoint: str | None) -> tuple[str, str, str, str]:
    """(states, objects, world, pairs) text of a preset."""
    if preset in VOCABULARY_PRESETS:
        states, objects = VOCABULARY_PRESETS[preset]
        return states, objects, WORLD_OPEN, ""
    if preset.startswith(DATASET_PRESET_PREFIX):
        name = preset[len(DATASET_PRESET_PREFIX):]
        for vocabulary in state.dataset_vocabularies():
            if vocabulary.name == name:
                pairs = "\n".join(f"{s} {o}" for s, o in vocabulary.pairs)
                return ", ".join(vocabulary.states), ", ".join(vocabulary.objects), WORLD_CLOSED, pairs
        raise gr.Error(f"The dataset {escape_html(name)} is no longer loaded; load it again in the Train or "
                       "Evaluate tab.", print_exception=False)
    if preset == CHECKPOINT_PRESET:
        config = checkpoint_config(checkpoint) or {}
        states, objects = config.get("train_states") or [], config.get("train_objects") or []
        if not states or not objects:
            raise gr.Error("The chosen trained weights do not list the words they were trained on.", print_exception=False)
        return ", ".join(states), ", ".join(objects), WORLD_OPEN, ""
    raise gr.Error(f"Unknown word list {escape_html(preset)!r}.", print_exception=False)
