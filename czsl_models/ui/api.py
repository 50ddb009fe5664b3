"""The app's documented API and MCP tools: a few JSON endpoints for programs and agents, independent of the tabs.

Each endpoint is an event with no trigger on invisible components, so it has typed, named parameters (an image
file, text, numbers) and one named JSON output; gradio_client calls it as /NAME and the MCP server lists it as
the tool NAME, described by the function's docstring. The inputs go through the same checks and bounds as the
tabs (photo size, word and pair limits, top-k and bias ranges)."""

from __future__ import annotations

import functools
import time
from typing import Any

import gradio as gr

from ..inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES
from ..inference.summary import backbone_is_random, prediction_summary
from .compare import compare_models as run_comparison
from .inputs import WORLD_CLOSED, WORLD_OPEN, as_float, clamp_int, friendly_errors, read_photo
from .predict import BIAS_RANGE, MAX_TOP_K, run_model
from .state import UNTRAINED, AppState

DEFAULT_API_MODEL = "msci"
COMPARE_TOP_K = 5  # compare_models returns each model's top 5 (the tab may rank more)
# The API reads public Hub checkpoints only: it never receives the caller's Hugging Face token, so neither the API
# page nor an MCP client is told that a tool acts on their behalf.
api_endpoint = functools.partial(friendly_errors, hub_login=False)


def _world(pairs: str | None) -> str:
    return WORLD_CLOSED if (pairs or "").strip() else WORLD_OPEN


def _checkpoint_name(checkpoint: str) -> str:
    return checkpoint or UNTRAINED


def make_api_functions(state: AppState) -> dict[str, Any]:
    """The endpoint functions bound to one app's state, by endpoint (and tool) name."""

    @api_endpoint
    def recognise_compositions(image: Any, states: str = DEFAULT_STATES, objects: str = DEFAULT_OBJECTS,
                               pairs: str = "", model: str = DEFAULT_API_MODEL, checkpoint: str = "",
                               top_k: int = 5, bias: float = 0.0) -> dict[str, Any]:
        """Recognise state-object compositions in a photo (e.g. 'sliced apple', 'rusty bike') and say why.

        Every state is combined with every object unless pairs lists the only compositions to consider. Returns
        JSON: the ranked compositions with scores, the most likely states and objects, a short explanation
        (numbers plus one sentence) and caveats (e.g. an untrained model ranks exactly like the CLIP baseline).

        Args:
            image: the photo (JPEG, PNG, WebP...; at most 60 megapixels).
            states: the states to look for, comma separated, e.g. "sliced, whole, rotten".
            objects: the objects to look for, comma separated, e.g. "apple, bread".
            pairs: optional; the only compositions to consider, one "state object" a line, e.g. "sliced apple". Empty: all states x objects.
            model: clip (zero-shot baseline), msci, refiner or svip; see list_models.
            checkpoint: trained weights: empty for the untrained start, a checkpoint from list_checkpoints, or a Hugging Face repo id (owner/name).
            top_k: how many compositions to return, 1 to 20.
            bias: added to the scores of compositions the checkpoint never saw in training (-20 to 20); needs a trained checkpoint.
        """
        started = time.perf_counter()
        photo = read_photo(image)
        prediction, _ = run_model(state, model or "clip", _checkpoint_name(checkpoint), photo,
                                  (states, objects, _world(pairs), pairs), clamp_int(top_k, 1, MAX_TOP_K, 5),
                                  max(-BIAS_RANGE, min(BIAS_RANGE, as_float(bias))))
        answer = prediction_summary(prediction)
        answer["checkpoint"] = _checkpoint_name(checkpoint)
        answer["seconds"] = round(time.perf_counter() - started, 4)
        return answer

    @api_endpoint
    def compare_models(image: Any, states: str = DEFAULT_STATES, objects: str = DEFAULT_OBJECTS, pairs: str = "",
                       use_trained_weights: bool = True) -> dict[str, Any]:
        """Rank a photo's state-object compositions with every model at once (CLIP baseline, MSCI, Refiner, SVIP).

        The models share one pass of the backbone over the photo. Returns JSON: for each model its top 5
        compositions with scores, whether it is trained, the checkpoint used and the seconds it took.

        Args:
            image: the photo (JPEG, PNG, WebP...; at most 60 megapixels).
            states: the states to look for, comma separated, e.g. "sliced, whole, rotten".
            objects: the objects to look for, comma separated, e.g. "apple, bread".
            pairs: optional; the only compositions to consider, one "state object" a line. Empty: all states x objects.
            use_trained_weights: use each model's newest local checkpoint when there is one (else every model is untrained).
        """
        photo = read_photo(image)
        answers, shared_seconds = run_comparison(state, photo, (states, objects, _world(pairs), pairs),
                                                 bool(use_trained_weights))
        models = []
        for answer in answers:
            summary = prediction_summary(answer.prediction)
            models.append({"model": answer.name, "display_name": answer.display_name, "trained": summary["trained"],
                           "checkpoint": answer.checkpoint, "ranking": summary["ranking"][:COMPARE_TOP_K],
                           "seconds": round(answer.seconds + (0.0 if answer.own_pass else shared_seconds), 4),
                           "caveats": summary["caveats"]})
        return {"backbone": state.backbone_spec, "shared_pass_seconds": round(shared_seconds, 4), "models": models}

    @api_endpoint
    def list_models() -> dict[str, Any]:
        """List the recognition models this app runs, with what each adds to CLIP, and the backbone they share.

        Returns JSON: the backbone, whether its weights are random (answers then mean nothing), and for each model
        its name (the value to pass as model), its display name and a one-sentence summary.
        """
        from ..models.registry import model_class

        models = []
        for name in state.model_names():
            cls = model_class(name)
            models.append({"name": name, "display_name": cls.display_name or name, "summary": cls.summary,
                           "trainable": name != "clip"})
        return {"backbone": state.backbone_spec, "random_backbone": backbone_is_random(state.backbone_spec),
                "models": models}

    @api_endpoint
    def list_checkpoints(model: str = "") -> dict[str, Any]:
        """List the trained weights (checkpoints) this app has for a model, newest first.

        Only checkpoints trained on the app's backbone are listed. Returns JSON: for each model, its checkpoints,
        each with the value to pass as checkpoint to recognise_compositions and a description.

        Args:
            model: a model name (see list_models); empty for every model.
        """
        names = [model] if model else state.trainable_model_names()
        found = {}
        for name in names:
            state.display_name(name)  # an unknown name fails here with the registry's message
            found[name] = [{"checkpoint": value, "description": label}
                           for label, value in state.checkpoint_choices(name) if value != UNTRAINED]
        return {"backbone": state.backbone_spec, "checkpoints": found}

    return {function.__name__: function for function in
            (recognise_compositions, compare_models, list_models, list_checkpoints)}


API_ENDPOINTS = ("recognise_compositions", "compare_models", "list_models", "list_checkpoints")


def build_api(state: AppState, concurrency_limit: int) -> list[str]:
    """Add the API endpoints to the Blocks being built (on invisible components); returns their names."""
    functions = make_api_functions(state)
    model_choices = state.model_names()
    default_model = DEFAULT_API_MODEL if DEFAULT_API_MODEL in model_choices else model_choices[0]
    with gr.Column(visible=False, elem_id="api-only"):
        image = gr.Image(type="filepath", label="image")
        states = gr.Textbox(DEFAULT_STATES, label="states")
        objects = gr.Textbox(DEFAULT_OBJECTS, label="objects")
        pairs = gr.Textbox("", label="pairs")
        model = gr.Dropdown(model_choices, value=default_model, label="model")
        model_filter = gr.Textbox("", label="model")
        checkpoint = gr.Textbox("", label="checkpoint")
        top_k = gr.Slider(1, MAX_TOP_K, value=5, step=1, precision=0, label="top_k")
        bias = gr.Slider(-BIAS_RANGE, BIAS_RANGE, value=0.0, step=0.5, label="bias")
        use_trained = gr.Checkbox(True, label="use_trained_weights")
        outputs = {name: gr.JSON(label=label) for name, label in (
            ("recognise_compositions", "recognition"), ("compare_models", "comparison"), ("list_models", "models"),
            ("list_checkpoints", "checkpoints"))}
    # preprocess=False: the photo reaches our own checks (not an image, too many pixels) unopened, as in the tabs.
    heavy = dict(triggers=[], preprocess=False, concurrency_limit=concurrency_limit, concurrency_id="predict")
    gr.on(fn=functions["recognise_compositions"], api_name="recognise_compositions",
          inputs=[image, states, objects, pairs, model, checkpoint, top_k, bias],
          outputs=[outputs["recognise_compositions"]], **heavy)
    gr.on(fn=functions["compare_models"], api_name="compare_models",
          inputs=[image, states, objects, pairs, use_trained], outputs=[outputs["compare_models"]], **heavy)
    gr.on(triggers=[], fn=functions["list_models"], api_name="list_models", inputs=[],
          outputs=[outputs["list_models"]], queue=False)
    gr.on(triggers=[], fn=functions["list_checkpoints"], api_name="list_checkpoints", inputs=[model_filter],
          outputs=[outputs["list_checkpoints"]], queue=False)
    return list(API_ENDPOINTS)


def hide_ui_events(demo: gr.Blocks, public: list[str] | tuple[str, ...]) -> None:
    """Leave only the documented API in the API page and the MCP tools: every other event (the tabs' plumbing)
    becomes undocumented, still callable by the page and by clients that know its name. Call it inside the
    Blocks context, before the app's config is written."""
    keep = set(public)
    for function in demo.fns.values():
        if function.api_name not in keep and function.api_visibility == "public":
            function.api_visibility = "undocumented"
