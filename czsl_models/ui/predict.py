"""The Predict tab: one photo, a model and a vocabulary in; one headline answer, the ranked list and the
model's explanation out. The photo and the words are shared with the Compare tab."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from ..hosting.space import GPU_SECONDS
from ..inference.microbatch import MicroBatcher
from ..models.base import Prediction
from ..inputs.presets import DEFAULT_OBJECTS, DEFAULT_PRESET, DEFAULT_STATES
from ..models.checkpoints import CheckpointError
from .answer import (Honesty, LookingFor, answer_html, details_html, headline_text, is_random_backbone,
                     message_html)
from .explain import marginal_confidences, ranking_confidences
from .gallery import Example
from .predict_pictures import (EXPLAIN_TITLE, VISUAL_SLOTS, PicturesToDraw, draw_pictures, explain_box_update,
                               picture_outputs, pictures_to_draw)
from .visual import Visual
from .inputs import (WORLD_CHOICES, WORLD_CLOSED, WORLD_OPEN, as_float, build_vocabulary, clamp_int,
                     friendly_errors, read_photo, uploaded_path)
from .session import visitor_scope
from .text import escape_markdown
from .state import DEFAULT_WEIGHTS_RULE, UNTRAINED, AppState, gpu_function
from .word_lists import (CUSTOM_PRESET, WORDS_RULE, checkpoint_config, matching_preset, preset_names,
                         preset_vocabulary, words_for_upload)

MAX_TOP_K = 20
BIAS_RANGE = 20.0
# Visitors asking the same model about the same words within a few ms share one backbone pass.
PREDICT_BATCHER = MicroBatcher()


@dataclass
class PredictResult:
    """Everything one prediction shows."""

    ranking: dict[str, float]
    states: dict[str, float]
    objects: dict[str, float]
    note: str
    visuals: list[Visual]  # empty when drawn later, from `pending`
    details: dict[str, Any]
    seconds: float
    pending: PicturesToDraw | None = None  # what the pictures need, when they are drawn after the answer
    headline: str = ""
    answer: str = ""  # the headline and ranked list as HTML
    parts: str = ""  # the states and objects of the ranking as HTML
    honesty: Honesty = field(default_factory=lambda: Honesty(False, True, False))


# --------------------------------------------------------------------------- logic
@dataclass(frozen=True)
class ModelFacts:
    """What the page says about the model that answered."""

    name: str
    display_name: str
    trained: bool
    training_steps: int
    backbone: str
    looking_for: LookingFor | None = None


def model_status_note(facts: ModelFacts, checkpoint: str, seconds: float, trained_on: str = "") -> str:
    """The sentence under the answer: which model and weights answered, what the weights were trained on, and
    whether what it learned means anything."""
    timing = f"Answered in {seconds:.2f} s."
    if facts.name == "clip":
        return (f"**{facts.display_name}** compares the photo with written descriptions such as 'a photo of a rusty "
                f"bike'; it learns nothing, so it needs no trained weights. {timing}")
    if not facts.trained:
        return (f"**{facts.display_name}, no trained weights**: it is not trained yet, so it answers exactly like the "
                f"CLIP baseline and its explanation shows nothing learned. Train it in the **Train** tab, or choose "
                f"trained weights under *Model*. {timing}")
    shown = escape_markdown(Path(checkpoint).name if checkpoint else checkpoint)  # a visitor may have typed it
    where = f", {escape_markdown(trained_on)}" if trained_on else ""
    return (f"**{facts.display_name}**, weights *{shown}*{where} ({facts.training_steps:,} training steps). "
            f"{timing}")


@gpu_function(duration=GPU_SECONDS["predict"])
def run_model(state: AppState, model_name: str, checkpoint: str | None, photo: Image.Image,
              vocabulary_text: tuple[str, str, str, str | None], top_k: int, bias: float
              ) -> tuple[Prediction, ModelFacts]:
    """One photo through one model (the part that needs the GPU; arguments and results pickle, as ZeroGPU wants)."""
    model = state.get_model(model_name, checkpoint)
    vocabulary = build_vocabulary(*vocabulary_text, model.train_pairs or None)
    bias = bias if vocabulary.seen is not None else 0.0
    prediction = PREDICT_BATCHER.predict(model, photo, vocabulary, vocabulary_text, top_k=top_k, bias=bias)
    facts = ModelFacts(model.name, model.display_name or model.name, model.is_trained,
                       int(model.training_steps.item()), model.backbone.name,
                       LookingFor(tuple(vocabulary.states), tuple(vocabulary.objects), len(vocabulary.pairs)))
    return prediction, facts


def predict_photo(state: AppState, image: Any, model_name: str, checkpoint: str | None, states: str, objects: str,
                  world: str, pairs: str | None, top_k: Any = 5, bias: Any = 0.0,
                  draw: bool = True) -> PredictResult:
    """Run one prediction and build its headline answer and explanation visuals (draw=False: the visuals are
    left to draw_pictures(result.pending), after the answer is shown)."""
    started = time.perf_counter()
    photo = read_photo(image)
    prediction, facts = run_model(state, model_name or "clip", checkpoint, photo, (states, objects, world, pairs),
                                  clamp_int(top_k, 1, MAX_TOP_K, 5),
                                  max(-BIAS_RANGE, min(BIAS_RANGE, as_float(bias))))
    honesty = Honesty(is_random_backbone(state.backbone.spec), facts.trained, facts.name != "clip")
    pending = pictures_to_draw(prediction, photo, honesty)
    visuals = draw_pictures(pending) if draw else []
    trained_on = state.trained_on(checkpoint) if facts.trained else None
    seconds = time.perf_counter() - started
    details = prediction.to_dict()
    details["seconds"] = round(seconds, 4)
    return PredictResult(
        ranking=ranking_confidences(prediction),
        states=marginal_confidences(prediction.states),
        objects=marginal_confidences(prediction.objects),
        note=model_status_note(facts, checkpoint or UNTRAINED, seconds, trained_on.describe() if trained_on else ""),
        visuals=visuals,
        details=details,
        seconds=seconds,
        headline=headline_text(prediction, honesty),
        answer=answer_html(prediction, honesty, looking_for=facts.looking_for),
        parts=details_html(prediction),
        honesty=honesty,
        pending=None if draw else pending,
    )


def model_summary(state: AppState, model_name: str) -> str:
    """One sentence about a model for the menu."""
    from ..models.registry import model_class

    cls = model_class(model_name)
    return f"**{cls.display_name or cls.name}**: {cls.summary}"


# --------------------------------------------------------------------------- layout
MARK_STALE_JS = """() => {
  const answer = document.querySelector('#predict-answer .czsl-answer');
  if (answer && !answer.classList.contains('czsl-previous')) {
    answer.classList.add('czsl-previous');
    const note = document.createElement('p');
    note.className = 'czsl-previous-note';
    note.textContent = 'Out of date: the photo or words changed. Press Recognise to update the answer.';
    answer.prepend(note);
  }
}"""
# On a phone an example is clicked far below the answer: bring the photo, the answer and its picture (which fit
# one screen from the photo down) into view; a page whose answer is already on screen stays where it is.
SCROLL_TO_ANSWER_JS = """() => {
  if (window.innerWidth >= 768) return;
  const shown = [...document.querySelectorAll('#predict-message, #predict-answer')].find(e => e.offsetParent);
  if (!shown) return;
  const box = shown.getBoundingClientRect();
  if (box.top >= 0 && box.bottom <= window.innerHeight) return;
  (document.querySelector('#predict-image') || shown).scrollIntoView({behavior: 'smooth', block: 'start'});
}"""


def pair_box_visibility(world: str) -> Any:
    """Show the pair list only in the closed world."""
    return gr.update(visible=world == WORLD_CLOSED)


def as_previous(answer: str) -> str:
    """An answer's HTML marked as belonging to the earlier photo or settings."""
    if not answer or "czsl-previous" in answer:
        return answer
    note = '<p class="czsl-previous-note">Previous answer: it belongs to the earlier photo or settings.</p>'
    return answer.replace('<div class="czsl-answer">', f'<div class="czsl-answer czsl-previous">{note}', 1)


@dataclass
class PredictTab:
    """Components other tabs share or update: the photo and words (Compare), the menus (after training)."""

    image: gr.Image
    states: gr.Textbox
    objects: gr.Textbox
    world: gr.Radio
    pairs: gr.Textbox
    model: gr.Dropdown
    checkpoint: gr.Dropdown
    preset: gr.Dropdown
    compare_button: gr.Button
    outputs: list[Any]
    first_answer: Any  # () -> the first example with its answer, for the page's load event
    first_answer_outputs: list[Any]


def result_outputs(result: PredictResult) -> list[Any]:
    """The answer event's outputs for one result (same order as PredictTab.outputs): the pictures on screen are
    marked as being redrawn, and what the picture event draws from is kept in the session."""
    return [gr.update(value="", visible=False), result.answer, result.note,
            explain_box_update(result.honesty, drawing=result.pending is not None), result.parts, result.details,
            as_previous(result.answer), result.pending]


def with_notice(outputs: list[Any], notice: str) -> list[Any]:
    """Result outputs with a neutral notice above the answer (e.g. which words a new photo was searched for)."""
    return [gr.update(value=message_html(notice, kind="info"), visible=True), *outputs[1:]]


def error_outputs(message: str, previous: str) -> list[Any]:
    """One message; the previous answer stays, marked as previous; nothing else changes."""
    unchanged = [gr.update() for _ in range(4)]  # note, explanation, details: the previous answer's
    return [gr.update(value=message_html(message), visible=True), previous or gr.update(), *unchanged, gr.update(),
            None]


def error_message(error: BaseException) -> str:
    """The visitor-facing text of an error raised through friendly_errors."""
    return str(getattr(error, "message", None) or error)


def build_predict_tab(state: AppState, examples: list[Example], concurrency_limit: int) -> PredictTab:
    """Lay out the Predict tab and wire its events."""
    model_names = state.model_names()
    default_model = state.default_model_name()
    # Made before the layout (the examples above them fill them in), placed under "What to look for".
    states = gr.Textbox(DEFAULT_STATES, label="States (how things are)", lines=2, elem_id="predict-states",
                        info="Separated by commas, e.g. sliced, rusty, wet", render=False)
    objects = gr.Textbox(DEFAULT_OBJECTS, label="Objects (what things are)", lines=2, elem_id="predict-objects",
                         info="Separated by commas, e.g. apple, bike, dog", render=False)
    with gr.Row(equal_height=False, elem_id="predict-row"):
        # Three columns on a laptop: the photo and words, the answer, its picture of why (all on the first screen).
        with gr.Column(scale=4, min_width=300, elem_id="predict-inputs"):
            image = gr.Image(type="filepath", image_mode=None, label="Your photo", height=300, elem_id="predict-image",
                             sources=["upload", "clipboard", "webcam"])
            with gr.Row(elem_id="predict-buttons"):
                run = gr.Button("Recognise", variant="primary", elem_id="predict-button", scale=2)
                compare_button = gr.Button("Compare all models", variant="secondary",
                                           elem_id="predict-compare", scale=2)
            example_set = gr.Examples(examples=[[example.path, example.states, example.objects] for example in examples],
                                      inputs=[image, states, objects], label="Or click an example (each has its words)",
                                      cache_examples=False, api_name="predict_load_example", elem_id="predict-examples",
                                      examples_per_page=5)
            with gr.Accordion("Model", open=True, elem_id="predict-model-box"):
                model = gr.Dropdown([(state.display_name(name), name) for name in model_names], value=default_model,
                                    label="Model", elem_id="predict-model")
                summary = gr.Markdown(model_summary(state, default_model))
                checkpoint = gr.Dropdown(state.checkpoint_choices(default_model),
                                         value=state.default_checkpoint(default_model), label="Trained weights",
                                         allow_custom_value=True, elem_id="predict-checkpoint",
                                         info=f"What the model learned in training; Compare uses the same. "
                                              f"{DEFAULT_WEIGHTS_RULE} Type a Hugging Face model name "
                                              "(owner/name) to use weights shared there.")
                checkpoint_info = gr.Markdown("")
            with gr.Accordion("What to look for", open=True, elem_id="predict-words"):
                gr.Markdown(WORDS_RULE, elem_id="predict-words-rule")
                preset = gr.Dropdown(preset_names(state), value=DEFAULT_PRESET, label="Word list",
                                     elem_id="predict-preset",
                                     info="The list whose words are below; typing your own makes it "
                                          f"'{CUSTOM_PRESET}'.")
                states.render()
                objects.render()
                world = gr.Radio(WORLD_CHOICES, value=WORLD_OPEN, label="Which combinations to consider")
                pairs = gr.Textbox("", label="Combinations to consider", lines=4, visible=False,
                                   info="One per line: a state, a space, an object, e.g. rusty bike")
            with gr.Accordion("More settings", open=False, elem_id="predict-more"):
                top_k = gr.Slider(1, MAX_TOP_K, value=5, step=1, label="How many answers to show")
                bias = gr.Slider(-BIAS_RANGE, BIAS_RANGE, value=0.0, step=0.5, visible=False,
                                 label="Favour new combinations",
                                 info="Higher values move combinations the model never saw in training up the list.")
        with gr.Column(scale=5, min_width=300, elem_id="predict-results"):
            message = gr.HTML("", elem_id="predict-message", visible=False)
            answer = gr.HTML("", elem_id="predict-answer")
            note = gr.Markdown("", elem_id="predict-note")
            with gr.Accordion("Details: the states and objects in the answer", open=False, elem_id="predict-details"):
                parts = gr.HTML("", elem_id="predict-parts")
            with gr.Accordion("The numbers behind the answer (for developers)", open=False,
                              elem_id="predict-numbers"):
                details = gr.JSON(label="Prediction")
        with gr.Column(scale=5, min_width=300, elem_id="predict-why"):
            with gr.Accordion(EXPLAIN_TITLE, open=True, elem_id="predict-explain") as explain_box:
                slots: list[Any] = []
                for index in range(VISUAL_SLOTS):
                    # The title goes into the sentence under the picture: a label chip would hide the plot's titles.
                    slots.append(gr.Image(label="Explanation", show_label=False, visible=False, interactive=False,
                                          format="png", buttons=["download", "fullscreen"],
                                          elem_id=f"predict-visual-{index}"))
                    slots.append(gr.Markdown("", visible=False, elem_id=f"predict-caption-{index}"))
    previous = gr.State("")
    # What the answer's pictures are drawn from, until they are drawn (then emptied; dropped after 10 minutes).
    pending = gr.State(None, time_to_live=600)

    def compute(image_value, model_name, checkpoint_value, states_text, objects_text, world_value, pairs_text,
                top_k_value, bias_value) -> PredictResult:
        return predict_photo(state, image_value, model_name, checkpoint_value, states_text, objects_text,
                             world_value, pairs_text, top_k_value, bias_value, draw=False)

    guarded_compute = friendly_errors(compute)

    @visitor_scope
    def on_predict(image_value, model_name, checkpoint_value, states_text, objects_text, world_value, pairs_text,
                   top_k_value, bias_value, previous_value):
        """Rank state-object compositions in a photo and explain the answer."""
        try:
            result = guarded_compute(image_value, model_name, checkpoint_value, states_text, objects_text,
                                     world_value, pairs_text, top_k_value, bias_value)
        except gr.Error as error:
            return error_outputs(error_message(error), as_previous(previous_value))
        return result_outputs(result)

    @visitor_scope
    def on_rerun(image_value, model_name, checkpoint_value, states_text, objects_text, world_value, pairs_text,
                 top_k_value, bias_value, previous_value):
        """Answer again after the model or words changed; nothing to do before there is a photo."""
        if uploaded_path(image_value) is None:
            return [gr.update() for _ in outputs]
        return on_predict(image_value, model_name, checkpoint_value, states_text, objects_text, world_value,
                          pairs_text, top_k_value, bias_value, previous_value)

    inputs = [image, model, checkpoint, states, objects, world, pairs, top_k, bias, previous]
    outputs = [message, answer, note, explain_box, parts, details, previous, pending]
    # preprocess=False: the photo reaches our own checks (not an image, too many pixels) unopened.
    event_options = dict(inputs=inputs, outputs=outputs, preprocess=False, concurrency_limit=concurrency_limit,
                         concurrency_id="predict")
    picture_event = dict(fn=picture_outputs, inputs=[pending], outputs=[explain_box, *slots, pending],
                         concurrency_limit=concurrency_limit, concurrency_id="predict_pictures",
                         show_progress="hidden", api_visibility="undocumented")

    def then_draw(event: Any, name: str) -> Any:
        """After an answer event: its pictures, drawn in their own event (the answer is on screen by then)."""
        return event.then(api_name=f"{name}_pictures", **picture_event)

    then_draw(run.click(on_predict, api_name="predict", **event_options), "predict").then(
        None, js=SCROLL_TO_ANSWER_JS, api_name="predict_scroll")
    then_draw(example_set.load_input_event.then(on_predict, api_name="predict_example", api_visibility="undocumented",
                                                **event_options), "predict_example").then(
        None, js=SCROLL_TO_ANSWER_JS, api_name="example_scroll")

    @visitor_scope
    def on_upload(image_value, model_name, checkpoint_value, states_text, objects_text, world_value, pairs_text,
                  top_k_value, bias_value, previous_value):
        """A new photo: words by WORDS_RULE, then the answer, saying which words were searched when they changed."""
        new_states, new_objects = words_for_upload(states_text, objects_text, examples)
        answered = on_rerun(image_value, model_name, checkpoint_value, new_states, new_objects, world_value,
                            pairs_text, top_k_value, bias_value, previous_value)
        if (new_states, new_objects) != (states_text, objects_text) and uploaded_path(image_value) is not None \
                and not (isinstance(answered[0], dict) and answered[0].get("visible")):
            answered = with_notice(answered, f"Your photo was searched for the '{DEFAULT_PRESET}' words: the "
                                             "example's words were for the example. Change them under What to "
                                             "look for.")
        return [new_states, new_objects, matching_preset(state, new_states, new_objects, checkpoint_value), *answered]

    then_draw(image.upload(on_upload, api_name="predict_upload", api_visibility="undocumented",
                           **{**event_options, "outputs": [states, objects, preset, *outputs]}), "predict_upload")

    def on_model_change(model_name):
        """The checkpoints of a model and a sentence about it."""
        choices = state.checkpoint_choices(model_name)
        return gr.update(choices=choices, value=state.default_checkpoint(model_name)), model_summary(state, model_name)

    then_draw(model.change(friendly_errors(on_model_change), inputs=[model], outputs=[checkpoint, summary],
                           api_name="predict_model_changed").then(on_rerun, api_name="predict_model_rerun",
                                                                  api_visibility="undocumented", **event_options),
              "predict_model_rerun")

    @visitor_scope
    def on_checkpoint_change(checkpoint_value):
        """What a checkpoint knows: its words and its seen pairs (which enable the bias)."""
        try:
            config = checkpoint_config(checkpoint_value)
        except CheckpointError as error:
            return f"⚠️ {escape_markdown(error)}", gr.update(visible=False, value=0.0), gr.update(choices=preset_names(state))
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
    then_draw(checkpoint.input(on_rerun, api_name="predict_checkpoint_rerun", api_visibility="undocumented",
                               **event_options), "predict_checkpoint_rerun")

    def on_preset(preset_value, checkpoint_value):
        """Fill the word boxes from a ready-made list ('your own words' keeps those on screen)."""
        if preset_value == CUSTOM_PRESET:
            return gr.update(), gr.update(), gr.update(), gr.update()
        states_text, objects_text, world_value, pairs_text = preset_vocabulary(state, preset_value, checkpoint_value)
        return states_text, objects_text, world_value, gr.update(value=pairs_text, visible=world_value == WORLD_CLOSED)

    then_draw(preset.input(friendly_errors(on_preset), inputs=[preset, checkpoint],
                           outputs=[states, objects, world, pairs], api_name="predict_preset").then(
        on_rerun, api_name="predict_preset_rerun", api_visibility="undocumented", **event_options),
        "predict_preset_rerun")
    world.change(pair_box_visibility, inputs=[world], outputs=[pairs], api_name="predict_world_changed")

    @visitor_scope
    def on_words_changed(states_text, objects_text, checkpoint_value):
        """The word-list menu names the list on screen, whoever changed the words (an example, typing, a list)."""
        return gr.update(value=matching_preset(state, states_text, objects_text, checkpoint_value))

    # Typed words are the visitor's own (said in the browser, no round trip); an example's are named on the server.
    for what, box in (("states", states), ("objects", objects)):
        box.input(None, js=f"() => {CUSTOM_PRESET!r}", outputs=[preset], api_name=f"predict_{what}_own_words")
    example_set.load_input_event.then(on_words_changed, inputs=[states, objects, checkpoint], outputs=[preset],
                                      api_name="predict_example_list_name", show_progress="hidden")
    for what, box in (("states", states), ("objects", objects), ("pairs", pairs), ("world", world),
                      ("top_k", top_k), ("bias", bias)):
        box.input(None, js=MARK_STALE_JS, api_name=f"predict_{what}_stale")
    image.clear(None, js=MARK_STALE_JS, api_name="predict_image_cleared")

    first_example = examples[0] if examples else None
    first_cache: dict[tuple[str, str], list[Any]] = {}

    def first_answer():
        """The first example, already answered, so the page never opens on an empty result (computed once
        per model and weights, then served from memory). Each visitor gets a copy: Gradio's post-processing
        takes values out of the update dicts it is handed."""
        if first_example is None:
            return [gr.update() for _ in first_outputs]
        checkpoint_value = state.default_checkpoint(default_model)
        key = (default_model, checkpoint_value)
        if key not in first_cache:  # the answer and its pictures at once: the page opens whole
            answered = on_predict(first_example.path, default_model, checkpoint_value, first_example.states,
                                  first_example.objects, WORLD_OPEN, "", 5, 0.0, "")
            message_value, answer_value, note_value, _, parts_value, details_value, previous_value, drawn = answered
            first_cache[key] = [message_value, answer_value, note_value, parts_value, details_value, previous_value,
                                *picture_outputs(drawn)]
        menu = gr.update(choices=state.checkpoint_choices(default_model), value=checkpoint_value)
        words = matching_preset(state, first_example.states, first_example.objects, checkpoint_value)
        return [first_example.path, first_example.states, first_example.objects, menu, words,
                *copy.deepcopy(first_cache[key])]

    first_outputs = [image, states, objects, checkpoint, preset, message, answer, note, parts, details, previous,
                     explain_box, *slots, pending]
    return PredictTab(image=image, states=states, objects=objects, world=world, pairs=pairs, model=model,
                      checkpoint=checkpoint, preset=preset, compare_button=compare_button, outputs=outputs,
                      first_answer=first_answer, first_answer_outputs=first_outputs)


def refresh_choices(state: AppState, model_name: str, checkpoint_value: str | None) -> tuple[Any, Any]:
    """Updated checkpoint and preset menus (after training or loading a dataset elsewhere)."""
    name = model_name or "clip"
    # Keep what the visitor chose; an untrained choice moves to the default weights (DEFAULT_WEIGHTS_RULE).
    value = checkpoint_value or state.default_checkpoint(name)
    return gr.update(choices=state.checkpoint_choices(name), value=value), gr.update(choices=preset_names(state))
