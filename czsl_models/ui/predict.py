"""The Predict tab: one photo, a model and a vocabulary in; ranked compositions and the model's
explanation out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..models.base import Prediction
from ..presets import DEFAULT_OBJECTS, DEFAULT_PRESET, DEFAULT_STATES, VOCABULARY_PRESETS
from ..registry import CheckpointError, read_checkpoint_config, resolve_checkpoint
from .explain import Visual, build_visuals, marginal_confidences, ranking_confidences
from .inputs import (WORLD_CHOICES, WORLD_CLOSED, WORLD_OPEN, as_float, build_vocabulary, clamp_int,
                     friendly_errors, photo_with_examples, read_photo)
from .state import UNTRAINED, AppState, gpu_function

VISUAL_SLOTS = 3
MAX_TOP_K = 20
DATASET_PRESET_PREFIX = "Dataset: "
CHECKPOINT_PRESET = "The words the chosen checkpoint was trained on"
BIAS_RANGE = 20.0


@dataclass
class PredictResult:
    """Everything one prediction shows."""

    ranking: dict[str, float]
    states: dict[str, float]
    objects: dict[str, float]
    note: str
    visuals: list[Visual]
    details: dict[str, Any]
    seconds: float


# --------------------------------------------------------------------------- logic
@dataclass(frozen=True)
class ModelFacts:
    """What the page says about the model that answered."""

    name: str
    display_name: str
    trained: bool
    training_steps: int
    backbone: str


def model_status_note(facts: ModelFacts, checkpoint: str, seconds: float) -> str:
    """The sentence beside the results: what model answered and whether its learned parts mean anything."""
    timing = f"Answered in {seconds:.2f} s on {facts.backbone}."
    if facts.name == "clip":
        return (f"**{facts.display_name}**: compares the photo with written descriptions such as 'a photo of a rusty "
                f"bike'; nothing is trained. {timing}")
    if not facts.trained:
        return (f"⚠️ **{facts.display_name} has no trained checkpoint yet.** Its ranking is exactly the CLIP "
                f"baseline's, and the explanation pictures come from parts that have not learned anything yet, so "
                f"they mean nothing. Train it in the **Train** tab, or pick trained weights under *Model* (a folder in "
                f"`weights/` or a Hugging Face repo id). {timing}")
    shown = Path(checkpoint).name if checkpoint else checkpoint
    return (f"**{facts.display_name}**, trained checkpoint `{shown}` ({facts.training_steps:,} training steps). "
            f"{timing}")


@gpu_function
def run_model(state: AppState, model_name: str, checkpoint: str | None, photo: Image.Image,
              vocabulary_text: tuple[str, str, str, str | None], top_k: int, bias: float
              ) -> tuple[Prediction, ModelFacts]:
    """One photo through one model (the part that needs the GPU; arguments and results pickle, as ZeroGPU wants)."""
    model = state.get_model(model_name, checkpoint)
    vocabulary = build_vocabulary(*vocabulary_text, model.train_pairs or None)
    bias = bias if vocabulary.seen is not None else 0.0
    prediction = model.predict(photo, vocabulary, top_k=top_k, bias=bias)[0]
    facts = ModelFacts(model.name, model.display_name or model.name, model.is_trained,
                       int(model.training_steps.item()), model.backbone.name)
    return prediction, facts


def predict_photo(state: AppState, image: Any, model_name: str, checkpoint: str | None, states: str, objects: str,
                  world: str, pairs: str | None, top_k: Any = 5, bias: Any = 0.0) -> PredictResult:
    """Run one prediction and build its explanation visuals."""
    started = time.perf_counter()
    photo = read_photo(image)
    prediction, facts = run_model(state, model_name or "clip", checkpoint, photo, (states, objects, world, pairs),
                                  clamp_int(top_k, 1, MAX_TOP_K, 5), as_float(bias))
    visuals = build_visuals(prediction, photo)
    seconds = time.perf_counter() - started
    details = prediction.to_dict()
    details["seconds"] = round(seconds, 4)
    return PredictResult(
        ranking=ranking_confidences(prediction),
        states=marginal_confidences(prediction.states),
        objects=marginal_confidences(prediction.objects),
        note=model_status_note(facts, checkpoint or UNTRAINED, seconds),
        visuals=visuals,
        details=details,
        seconds=seconds,
    )


def checkpoint_config(checkpoint: str | None) -> dict[str, Any] | None:
    """The config.json of a chosen checkpoint, or None for the untrained start."""
    if not checkpoint or checkpoint == UNTRAINED:
        return None
    return read_checkpoint_config(resolve_checkpoint(checkpoint))


def preset_names(state: AppState, has_checkpoint_words: bool = False) -> list[str]:
    """Built-in vocabularies, then loaded datasets, then the checkpoint's own words."""
    names = list(VOCABULARY_PRESETS)
    names += [DATASET_PRESET_PREFIX + vocabulary.name for vocabulary in state.dataset_vocabularies()]
    if has_checkpoint_words:
        names.append(CHECKPOINT_PRESET)
    return names


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
        raise gr.Error(f"The dataset {name} is no longer loaded; load it again in the Train or Evaluate tab.",
                       print_exception=False)
    if preset == CHECKPOINT_PRESET:
        config = checkpoint_config(checkpoint) or {}
        states, objects = config.get("train_states") or [], config.get("train_objects") or []
        if not states or not objects:
            raise gr.Error("The chosen checkpoint does not list the words it was trained on.", print_exception=False)
        return ", ".join(states), ", ".join(objects), WORLD_OPEN, ""
    raise gr.Error(f"Unknown preset {preset!r}.", print_exception=False)


def model_summary(state: AppState, model_name: str) -> str:
    """One sentence about a model for the menu."""
    from ..registry import model_class

    cls = model_class(model_name)
    return f"**{cls.display_name or cls.name}**: {cls.summary}"


# --------------------------------------------------------------------------- layout
def pair_box_visibility(world: str) -> Any:
    """Show the pair list only in the closed world."""
    return gr.update(visible=world == WORLD_CLOSED)


@dataclass
class PredictTab:
    """Components other tabs update (the checkpoint list after training, the presets after loading data)."""

    model: gr.Dropdown
    checkpoint: gr.Dropdown
    preset: gr.Dropdown


def _sentence(title: str) -> str:
    """A title as the start of a sentence: ends with a full stop unless it has its own punctuation."""
    return title if title.endswith(("?", "!", ".")) else title + "."


def _visual_updates(visuals: list[Visual]) -> list[Any]:
    updates: list[Any] = []
    for index in range(VISUAL_SLOTS):
        if index < len(visuals):
            visual = visuals[index]
            updates += [gr.update(value=visual.image, label=visual.title, visible=True),
                        gr.update(value=f"**{_sentence(visual.title)}** {visual.caption}", visible=True)]
        else:
            updates += [gr.update(value=None, visible=False), gr.update(value="", visible=False)]
    return updates


def build_predict_tab(state: AppState, examples: list[str], concurrency_limit: int) -> PredictTab:
    """Lay out the Predict tab and wire its events."""
    model_names = state.model_names()
    default_model = state.default_model_name()
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=320):
            image, example_set = photo_with_examples(examples, "predict", height=320)
            run = gr.Button("Recognise", variant="primary", elem_id="predict-button")
            with gr.Accordion("Model", open=True):
                model = gr.Dropdown([(state.display_name(name), name) for name in model_names], value=default_model,
                                    label="Model", elem_id="predict-model")
                summary = gr.Markdown(model_summary(state, default_model))
                checkpoint = gr.Dropdown(state.checkpoint_choices(default_model),
                                         value=state.newest_checkpoint(default_model), label="Trained weights",
                                         allow_custom_value=True,
                                         info="A folder in weights/, or type a Hugging Face repo id (owner/name).")
                checkpoint_info = gr.Markdown("")
            with gr.Accordion("What to look for", open=True):
                preset = gr.Dropdown(preset_names(state), value=DEFAULT_PRESET, label="Ready-made word lists")
                states = gr.Textbox(DEFAULT_STATES, label="States (how things are)", lines=2,
                                    info="Separated by commas, e.g. sliced, rusty, wet")
                objects = gr.Textbox(DEFAULT_OBJECTS, label="Objects (what things are)", lines=2,
                                     info="Separated by commas, e.g. apple, bike, dog")
                world = gr.Radio(WORLD_CHOICES, value=WORLD_OPEN, label="Which combinations to consider")
                pairs = gr.Textbox("", label="Pairs to consider", lines=4, visible=False,
                                   info="One 'state object' pair a line, e.g. rusty bike")
            with gr.Accordion("More settings", open=False):
                top_k = gr.Slider(1, MAX_TOP_K, value=5, step=1, label="How many answers to show")
                bias = gr.Slider(-BIAS_RANGE, BIAS_RANGE, value=0.0, step=0.5, visible=False,
                                 label="Favour new combinations",
                                 info="Positive values push combinations the model never saw in training up the list.")
        with gr.Column(scale=7, min_width=360):
            ranking = gr.Label(label="Best descriptions of the photo", elem_id="predict-ranking")
            note = gr.Markdown("", elem_id="predict-note")
            with gr.Row():
                state_ranking = gr.Label(label="Most likely states", elem_id="predict-states")
                object_ranking = gr.Label(label="Most likely objects", elem_id="predict-objects")
            gr.Markdown("### Why this answer?")
            slots: list[Any] = []
            for index in range(VISUAL_SLOTS):
                # The title goes into the sentence under the picture: a label chip would hide the plot's own titles.
                slots.append(gr.Image(label="Explanation", show_label=False, visible=False, interactive=False,
                                      format="png", buttons=["download", "fullscreen"],
                                      elem_id=f"predict-visual-{index}"))
                slots.append(gr.Markdown("", visible=False, elem_id=f"predict-caption-{index}"))
            with gr.Accordion("The numbers behind the answer (for developers)", open=False):
                details = gr.JSON(label="Prediction")

    @friendly_errors
    def on_predict(image_value, model_name, checkpoint_value, states_text, objects_text, world_value, pairs_text,
                   top_k_value, bias_value):
        """Rank state-object compositions in a photo and explain the answer."""
        result = predict_photo(state, image_value, model_name, checkpoint_value, states_text, objects_text,
                               world_value, pairs_text, top_k_value, bias_value)
        return [result.ranking, result.note, result.states, result.objects, *_visual_updates(result.visuals),
                result.details]

    inputs = [image, model, checkpoint, states, objects, world, pairs, top_k, bias]
    outputs = [ranking, note, state_ranking, object_ranking, *slots, details]
    # preprocess=False: the photo reaches our own checks (not an image, too many pixels) unopened.
    event_options = dict(fn=on_predict, inputs=inputs, outputs=outputs, preprocess=False,
                         concurrency_limit=concurrency_limit, concurrency_id="predict")
    run.click(api_name="predict", **event_options)
    example_set.load_input_event.then(api_name="predict_example", api_visibility="undocumented", **event_options)

    @friendly_errors
    def on_model_change(model_name):
        """The checkpoints of a model and a sentence about it."""
        choices = state.checkpoint_choices(model_name)
        return gr.update(choices=choices, value=state.newest_checkpoint(model_name)), model_summary(state, model_name)

    model.change(on_model_change, inputs=[model], outputs=[checkpoint, summary], api_name="predict_model_changed")

    def on_checkpoint_change(checkpoint_value):
        """What a checkpoint knows: its words and its seen pairs (which enable the bias)."""
        try:
            config = checkpoint_config(checkpoint_value)
        except CheckpointError as error:
            return f"⚠️ {error}", gr.update(visible=False, value=0.0), gr.update(choices=preset_names(state))
        if config is None:
            return "", gr.update(visible=False, value=0.0), gr.update(choices=preset_names(state))
        words = bool(config.get("train_states") and config.get("train_objects"))
        seen = len(config.get("train_pairs") or [])
        states_count = len(config.get("train_states") or [])
        objects_count = len(config.get("train_objects") or [])
        text = f"Trained on {states_count} states and {objects_count} objects ({seen} combinations seen in training)."
        return text, gr.update(visible=seen > 0), gr.update(choices=preset_names(state, words))

    checkpoint.change(on_checkpoint_change, inputs=[checkpoint], outputs=[checkpoint_info, bias, preset],
                      api_name="predict_checkpoint_changed")

    @friendly_errors
    def on_preset(preset_value, checkpoint_value):
        """Fill the word boxes from a ready-made list."""
        states_text, objects_text, world_value, pairs_text = preset_vocabulary(state, preset_value, checkpoint_value)
        return states_text, objects_text, world_value, gr.update(value=pairs_text, visible=world_value == WORLD_CLOSED)

    preset.input(on_preset, inputs=[preset, checkpoint], outputs=[states, objects, world, pairs],
                 api_name="predict_preset")
    world.change(pair_box_visibility, inputs=[world], outputs=[pairs], api_name="predict_world_changed")
    return PredictTab(model=model, checkpoint=checkpoint, preset=preset)


def refresh_choices(state: AppState, model_name: str, checkpoint_value: str | None) -> tuple[Any, Any]:
    """Updated checkpoint and preset menus (after training or loading a dataset elsewhere)."""
    name = model_name or "clip"
    # Keep what the visitor chose; an untrained choice moves to the newest checkpoint, e.g. one just trained.
    value = checkpoint_value or state.newest_checkpoint(name)
    return gr.update(choices=state.checkpoint_choices(name), value=value), gr.update(choices=preset_names(state))
