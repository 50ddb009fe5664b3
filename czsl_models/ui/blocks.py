"""Assembles the tabs into one Gradio app and holds what launching it needs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr

from ..hosting.budget import forget_visitor
from ..hosting.memory import release_free_memory
from ..hosting.space import HOST, storage_note, visitors_isolated
from .about import build_about_tab, runtime_text
from .api import build_api, hide_ui_events
from .compare import build_compare_tab
from .evaluate import build_evaluate_tab, refresh_checkpoints
from .gallery import EXAMPLES_DIR, example_catalogue, examples_for_paths
from .mcp_json import json_answers_lifespan
from .predict import build_predict_tab, refresh_choices
from .session import visitor_id, visitor_scope
from .state import AppState, load_app_backbone
from .theme import APP_CSS, PAGE_HEAD, app_theme
from .train import build_train_tab

TITLE = "State + object recognition"
DEFAULT_PREDICT_CONCURRENCY = 4
INTRO = (f"# {TITLE}\n"
         "Upload a photo or click an example: the app names its **state + object** (*sliced apple*, *rusty bike*), "
         "even combinations it never saw, with a picture of why.")


def banner_markdown(text: str) -> str:
    """A banner: its first sentence in bold (all a phone shows), the rest after it."""
    head, _, rest = text.partition(". ")
    if not rest:
        return f"⚠️ **{text}**"
    return f"⚠️ **{head}.** <span class='czsl-banner-more'>{rest}</span>"


def example_photos(folder: Path | None = None) -> list[str]:
    """The example photos shipped with the app, in the order the app offers them."""
    return [example.path for example in example_catalogue(folder)]


def predict_concurrency() -> int:
    """How many predictions run at once (CZSL_PREDICT_CONCURRENCY, default 4)."""
    try:
        return max(1, int(os.environ.get("CZSL_PREDICT_CONCURRENCY", DEFAULT_PREDICT_CONCURRENCY)))
    except ValueError:
        return DEFAULT_PREDICT_CONCURRENCY


def build_app(state: AppState, examples: list[str] | None = None) -> gr.Blocks:
    """The whole app: Predict, Compare, Train, Evaluate and About tabs."""
    catalogue = example_catalogue() if examples is None else examples_for_paths(examples)
    concurrency = predict_concurrency()
    # Gradio's copies of uploaded photos: checked every 10 minutes, deleted after 30 (zips go once unpacked).
    with gr.Blocks(title=TITLE, delete_cache=(600, 1800)) as demo:
        if state.banner:
            gr.Markdown(banner_markdown(state.banner), elem_classes=["czsl-banner"], elem_id="backbone-banner")
        if storage_note():
            gr.Markdown(banner_markdown(storage_note()), elem_classes=["czsl-banner"], elem_id="storage-banner")
        gr.Markdown(INTRO, elem_id="intro")
        with gr.Tabs() as tabs:
            with gr.Tab("Predict", id="predict") as predict_tab:
                predict = build_predict_tab(state, catalogue, concurrency)
            with gr.Tab("Compare", id="compare"):
                compare = build_compare_tab(state, predict, concurrency)
            with gr.Tab("Train", id="train") as train_tab:
                train = build_train_tab(state)
            with gr.Tab("Evaluate", id="evaluate") as evaluate_tab:
                evaluate_model, evaluate_checkpoint = build_evaluate_tab(state)
            with gr.Tab("About", id="about"):
                build_about_tab(runtime_text(state.backbone_spec, str(state.backbone.device), state.backbone.precision))
        gr.Markdown(f"<small>Backbone: `{state.backbone_spec}` on {state.backbone.device}, image encoder in "
                    f"{state.backbone.precision}.</small>")

        @visitor_scope
        def on_predict_tab(model_name, checkpoint_value):
            """Refresh the checkpoint and word-list menus (new checkpoints, newly loaded datasets)."""
            return refresh_choices(state, model_name, checkpoint_value)

        # "Compare these" on Predict: switch to Compare and run it on the same photo and words.
        predict.compare_button.click(lambda: gr.Tabs(selected="compare"), outputs=[tabs],
                                     api_name="predict_compare_these", api_visibility="private").then(
            compare.run, inputs=compare.inputs, outputs=compare.outputs, preprocess=False,
            concurrency_limit=compare.concurrency_limit, concurrency_id="predict", api_name="compare_these",
            api_visibility="undocumented")
        demo.load(predict.first_answer, outputs=predict.first_answer_outputs, api_name="predict_first_example",
                  api_visibility="undocumented", concurrency_limit=concurrency, concurrency_id="predict")
        predict_tab.select(on_predict_tab, inputs=[predict.model, predict.checkpoint],
                           outputs=[predict.checkpoint, predict.preset], api_name="refresh_predict_menus")
        evaluate_tab.select(lambda name: refresh_checkpoints(state, name), inputs=[evaluate_model],
                            outputs=[evaluate_checkpoint], api_name="refresh_evaluate_menus")
        train_tab.select(train.status, outputs=train.status_outputs, api_name="refresh_train_status")
        # The documented API and MCP tools; everything above is the page's own plumbing, hidden in one place.
        hide_ui_events(demo, build_api(state, concurrency))

        def on_unload(request: gr.Request) -> None:
            """The visitor's session ended (page closed or reloaded)."""
            end_session(state, request)

        demo.unload(on_unload)
    demo.queue(max_size=256, default_concurrency_limit=concurrency)
    return demo


def end_session(state: AppState, request: gr.Request | None) -> None:
    """A visitor closed the page: stop or dequeue their training, forget their word lists, and delete what they
    made (with visitors isolated nobody can reach it any more)."""
    visitor = visitor_id(getattr(request, "session_hash", None))
    if visitor == HOST:
        return
    if state.training is not None:
        state.training.leave(visitor)
    state.forget_visitor(visitor)
    forget_visitor(visitor)
    release_free_memory()


def max_sessions() -> int:
    """Sessions whose page state Gradio keeps in memory (CZSL_MAX_SESSIONS; 200 on a Space, else Gradio's 10,000)."""
    try:
        return max(1, int(os.environ["CZSL_MAX_SESSIONS"]))
    except (KeyError, ValueError):
        return 200 if visitors_isolated() else 10_000


def create_app(backbone: str | None = None, device: str | None = None,
               checkpoints: str | None = None) -> tuple[gr.Blocks, AppState]:
    """Fetch the host's Hub checkpoints (`checkpoints`, else $CZSL_CHECKPOINTS), load the backbone (the first
    checkpoint's when none is asked for; the tiny one, with a banner, when it cannot be had) and build the app."""
    from ..hub.hosted import fetch_hosted_checkpoints

    hosted = fetch_hosted_checkpoints(checkpoints)
    if backbone is None and hosted:
        backbone = hosted[0].backbone  # so a Space opens on its trained model without more settings
    shared, banner = load_app_backbone(backbone, device)
    state = AppState(shared, banner, hosted=hosted)
    return build_app(state), state


def launch_options() -> dict[str, Any]:
    """Keyword arguments for Blocks.launch: styling, upload limit, the example photos as servable files, and MCP
    answers written as JSON (mcp_json)."""
    return {"css": APP_CSS, "head": PAGE_HEAD, "theme": app_theme(), "max_file_size": "200mb",
            "allowed_paths": [str(EXAMPLES_DIR)], "app_kwargs": {"lifespan": json_answers_lifespan},
            "state_session_capacity": max_sessions()}
