"""The Compare tab: the Predict tab's photo, words and weights through every model, sharing one backbone pass;
the differences first (one table, rank changes against CLIP, a one-line headline), timings for
researchers in a closed panel. A result whose inputs changed since is marked out of date."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from ..backbones import VisualOutput
from ..hosting.space import GPU_SECONDS
from ..models.base import CompositionModel, Prediction, VisualRequest
from .answer import Honesty, is_random_backbone
from .differences import comparison_headline, comparison_table_html
from .explain import build_visuals
from .visual import mark_not_meaningful
from .inputs import build_vocabulary, friendly_errors, read_photo, uploaded_path
from .state import UNTRAINED, AppState, gpu_function
from .text import escape_markdown

COMPARE_TOP_K = 5
RANKS_KEPT = 20  # ranked further than shown, so a pair in one model's top five has a baseline rank to compare
THUMBNAIL_WIDTH = 360


@dataclass
class ModelAnswer:
    """One model's column: its top-5 and how long it took."""

    name: str
    display_name: str
    prediction: Prediction
    seconds: float
    own_pass: bool
    checkpoint: str


def shares_vision_pass(model: CompositionModel) -> bool:
    """Whether the model can score a vision pass made for several models (adapters make it its own)."""
    return bool(getattr(model, "shares_vision_pass", True))


def compared_weights(state: AppState, use_checkpoints: bool, chosen: dict[str, str] | None = None) -> dict[str, str]:
    """The weights each model runs with: those chosen in Predict for its model, every other model's default
    weights (the same rule Predict opens with), or none at all when use_checkpoints is off."""
    if not use_checkpoints:
        return {name: UNTRAINED for name in state.model_names()}
    chosen = chosen or {}
    return {name: chosen[name] if name in chosen else state.default_checkpoint(name) for name in state.model_names()}


@gpu_function(duration=GPU_SECONDS["compare"])
def compare_models(state: AppState, photo, vocabulary_args: tuple, use_checkpoints: bool,
                   chosen: dict[str, str] | None = None) -> tuple[list[ModelAnswer], float]:
    """Every model's top-5 for one photo (weights by compared_weights); one backbone pass is shared by the models
    that can share it. Returns the answers and the seconds the shared pass took."""
    models: list[tuple[CompositionModel, str]] = []
    for name, checkpoint in compared_weights(state, use_checkpoints, chosen).items():
        models.append((state.get_model(name, checkpoint), checkpoint))
    backbone = state.backbone
    sharing = [model for model, _ in models if shares_vision_pass(model)]
    request = VisualRequest()
    for model in sharing:
        request = request.union(model.visual_request(explain=True))
    answers: list[ModelAnswer] = []
    with torch.no_grad():
        started = time.perf_counter()
        pixels = backbone.preprocess_images([photo])
        shared: VisualOutput | None = None
        if sharing:
            shared = backbone.encode_image(pixels, layers=request.layers, attention=request.attention,
                                           patch_embeddings=request.patch_embeddings)
        shared_seconds = time.perf_counter() - started
        for model, checkpoint in models:
            vocabulary = build_vocabulary(*vocabulary_args, model.train_pairs or None)
            model.prompts.check_lengths(vocabulary)
            model.eval()
            # Text features are computed once per vocabulary and cached: warm them first, so no model's time
            # includes the one-off cost of reading the words.
            model.prompts.encode_all(vocabulary)
            started = time.perf_counter()
            own = not shares_vision_pass(model)
            visual = model.encode_images(pixels, explain=True) if own else shared
            prediction = model.predict_from_visual(visual, vocabulary, top_k=RANKS_KEPT, pixels=pixels)[0]
            answers.append(ModelAnswer(model.name, model.display_name or model.name, prediction,
                                       time.perf_counter() - started, own, checkpoint))
    return answers, shared_seconds


def answer_caption(answer: ModelAnswer, shared_seconds: float) -> str:
    """A model's time and training status (the researchers' panel)."""
    if answer.own_pass:
        timing = f"{answer.seconds * 1000:.0f} ms (its own pass through the photo)"
    else:
        timing = f"{(answer.seconds + shared_seconds) * 1000:.0f} ms ({shared_seconds * 1000:.0f} shared + " \
                 f"{answer.seconds * 1000:.0f} own)"
    if answer.name == "clip":
        status = "nothing to train"
    elif answer.prediction.trained:
        status = f"trained: *{escape_markdown(Path(answer.checkpoint).name)}*"
    elif answer.prediction.untrained_equals_baseline:
        status = "untrained: ranks like the CLIP baseline"
    else:
        status = "untrained: its ranking means nothing yet"
    return f"**{answer.display_name}**: {timing}; {status}"


def timings_markdown(answers: list[ModelAnswer], shared_seconds: float, device: str) -> str:
    """The researchers' panel: the shared pass and each model's own time (text features warmed first)."""
    lines = [f"Shared pass through the photo: **{shared_seconds * 1000:.0f} ms** on {device}. The words' text "
             "features were computed before timing, so no model pays their one-off cost."]
    lines += [f"- {answer_caption(answer, shared_seconds)}" for answer in answers]
    return "\n".join(lines)


def thumbnails(answers: list[ModelAnswer], photo, random_backbone: bool) -> list[tuple[Image.Image, str]]:
    """Each model's first explanation picture, small, captioned (and stamped when it means nothing)."""
    items = []
    for answer in answers:
        shown = dataclasses.replace(answer.prediction, ranking=answer.prediction.ranking[:COMPARE_TOP_K])
        visuals = build_visuals(shown, photo)
        if not visuals:
            continue
        honesty = Honesty(random_backbone, answer.prediction.trained, answer.name != "clip")
        visual = visuals[0] if honesty.explanation_meaningful else mark_not_meaningful(visuals[0], honesty.caveat)
        image = visual.image
        small = image.resize((THUMBNAIL_WIDTH, max(1, round(image.height * THUMBNAIL_WIDTH / image.width))),
                             Image.LANCZOS)
        note = f" ({honesty.caveat})" if honesty.caveat else ""
        items.append((small, f"{answer.display_name}: {visual.title}{note}"))
    return items


@dataclass
class CompareTab:
    """What the Predict tab's 'Compare these' button needs to run the comparison."""

    run: Any  # the event function
    inputs: list[Any]
    outputs: list[Any]
    concurrency_limit: int


def inputs_summary(image_value: Any, states_text: str, objects_text: str) -> str:
    """One line saying which photo and words the comparison uses (they are set in the Predict tab)."""
    path = uploaded_path(image_value)
    photo = f"*{escape_markdown(Path(path).name)}*" if path else "no photo yet"
    return (f"Photo: {photo}. States: {escape_markdown(states_text or '')}. "
            f"Objects: {escape_markdown(objects_text or '')}. Change them, and the weights, in the **Predict** tab.")


def weights_summary(state: AppState, weights: dict[str, str]) -> str:
    """Which weights each model runs with and what they were trained on (one line each)."""
    lines = []
    for name, checkpoint in weights.items():
        if name == "clip":
            continue
        facts = state.trained_on(checkpoint)
        if not checkpoint:
            what = "no trained weights (answers like the CLIP baseline)"
        else:
            what = f"*{escape_markdown(Path(checkpoint).name)}*" + (f", {escape_markdown(facts.describe())}"
                                                                    if facts else "")
        lines.append(f"- **{state.display_name(name)}**: {what}")
    return "Weights (the same as in Predict):\n" + "\n".join(lines)


def inputs_key(*values: Any) -> str:
    """What a comparison depended on, as one string: a result whose key differs from the screen's is out of date."""
    return repr(tuple(uploaded_path(value) if index == 0 else value for index, value in enumerate(values)))


STALE_NOTE = ('<p class="czsl-previous-note" role="status">Out of date: the photo, words or weights changed since '
              'this comparison. Press <strong>Compare all models</strong> to update it.</p>')


def build_compare_tab(state: AppState, shared: Any, concurrency_limit: int) -> CompareTab:
    """Lay out the Compare tab (on the Predict tab's photo, words and weights) and wire its events."""
    names = state.model_names()
    display_names = {name: state.display_name(name) for name in names}
    random_backbone = is_random_backbone(state.backbone.spec)
    gr.Markdown("The photo, words and weights from the **Predict** tab, through every model at once: where they "
                "agree, and where they differ.")
    with gr.Row(equal_height=False, elem_id="compare-row"):
        with gr.Column(scale=3, min_width=260):
            preview = gr.Image(label="The photo", interactive=False, height=200, elem_id="compare-image", buttons=[])
            words = gr.Markdown("", elem_id="compare-words")
            run = gr.Button("Compare all models", variant="primary", elem_id="compare-button")
            weights = gr.Markdown("", elem_id="compare-weights")
        with gr.Column(scale=8, min_width=300):
            stale = gr.HTML("", visible=False, elem_id="compare-stale")
            headline = gr.Markdown("", elem_id="compare-headline")
            table = gr.HTML("", elem_id="compare-table")
            # No label chip or buttons: on the thumbnails they would cover the pictures' titles.
            gallery = gr.Gallery(label="Each model's explanation (click to enlarge)", show_label=False, buttons=[],
                                 columns=4, height="auto", object_fit="contain", elem_id="compare-thumbnails",
                                 visible=False)
            with gr.Accordion("Timings (for researchers)", open=False, elem_id="compare-timings-box"):
                timings = gr.Markdown("", elem_id="compare-timings")
    compared = gr.State("")  # inputs_key of the comparison on screen

    @friendly_errors
    def on_compare(image_value, states_text, objects_text, world_value, pairs_text, model_name, checkpoint_value):
        """Rank the photo's compositions with every model (Predict's weights); show where they differ."""
        photo = read_photo(image_value)
        chosen = {model_name: (checkpoint_value or UNTRAINED).strip()} if model_name else {}
        answers, shared_seconds = compare_models(state, photo, (states_text, objects_text, world_value, pairs_text),
                                                 True, chosen)
        predictions = {answer.name: answer.prediction for answer in answers}
        line = comparison_headline(predictions, names, display_names)
        if random_backbone:
            line += " *(random — demo mode: these answers mean nothing.)*"
        pictures = thumbnails(answers, photo, random_backbone)
        used = {answer.name: answer.checkpoint for answer in answers}
        return [uploaded_path(image_value), inputs_summary(image_value, states_text, objects_text),
                weights_summary(state, used), gr.update(value="", visible=False), line,
                comparison_table_html(predictions, names, display_names),
                gr.update(value=pictures, visible=bool(pictures)),
                timings_markdown(answers, shared_seconds, str(state.backbone.device)),
                inputs_key(image_value, states_text, objects_text, world_value, pairs_text, model_name,
                           checkpoint_value)]

    def on_inputs(image_value, states_text, objects_text, world_value, pairs_text, model_name, checkpoint_value,
                  compared_key):
        """Show which photo and words a comparison will use; mark a result made with other inputs out of date."""
        key = inputs_key(image_value, states_text, objects_text, world_value, pairs_text, model_name,
                         checkpoint_value)
        out_of_date = bool(compared_key) and key != compared_key
        return (uploaded_path(image_value), inputs_summary(image_value, states_text, objects_text),
                gr.update(value=STALE_NOTE if out_of_date else "", visible=out_of_date))

    tracked = [shared.image, shared.states, shared.objects, shared.world, shared.pairs, shared.model,
               shared.checkpoint]
    inputs = list(tracked)
    outputs = [preview, words, weights, stale, headline, table, gallery, timings, compared]
    run.click(on_compare, inputs=inputs, outputs=outputs, preprocess=False, concurrency_limit=concurrency_limit,
              concurrency_id="predict", api_name="compare")
    for what, component in (("photo", shared.image), ("states", shared.states), ("objects", shared.objects),
                            ("world", shared.world), ("pairs", shared.pairs), ("model", shared.model),
                            ("weights", shared.checkpoint)):
        component.change(on_inputs, inputs=[*tracked, compared], outputs=[preview, words, stale],
                         preprocess=False, api_name=f"compare_{what}_changed",
                         api_visibility="private", show_progress="hidden")
    return CompareTab(run=on_compare, inputs=inputs, outputs=outputs, concurrency_limit=concurrency_limit)
