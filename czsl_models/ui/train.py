"""The Train tab: fine-tune a model in a background thread (never in the way of predictions), with a
live progress bar, loss curve and per-epoch metrics, Stop, and publishing to the Hub."""

from __future__ import annotations

import html
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from ..hosting.confinement import choice_value
from ..hosting.space import (SignInRequired, SwitchedOff, login_button_wanted, publish_token,
                       publishing_disabled_reason, training_disabled_reason)
from .datasets import build_dataset_picker, dataset_spec
from .inputs import InputError, as_float, clamp_int, friendly_errors
from .session import current_oauth_token, current_visitor, visitor_scope
from .state import AppState, dataset_vocabulary
from .training_runs import TrainingManager, TrainingRun, duration_words, remaining_seconds
from .text import escape_markdown

LOGGER = logging.getLogger(__name__)
POLL_SECONDS = 1.0
MAX_PLOTTED_STEPS = 1500
PRESET_CHOICES = [("Fast: learns from the photos' features, computed once", "fast"),
                  ("As in the papers: image augmentation (and MSCI's adapters); much slower", "paper")]
# Rough times on the built-in shapes (the default 15 epochs, tiny backbone, 2-core CPU), said before a run
# starts; the progress bar gives the measured time left once it runs. All three train from cached features.
TIME_ESTIMATES = {"msci": "a few minutes", "refiner": "a few minutes", "svip": "a few minutes"}
# What 'Fast' leaves out, where it leaves something out (czsl_models.training.config builds the presets).
FAST_PRESET_NOTES = {"svip": "'Fast' keeps SVIP's learned context at zero (it needs the photos at every step): "
                             "it learns the patch picker and the label matching; 'As in the papers' learns all of it."}
PIXEL_MESSAGE_PREFIX = "Stopped at step"  # the trainer's own stop line (it names a command-line flag)
EPOCH_HEADERS = ["Epoch", "Train loss", "Seen %", "Unseen %", "HM %", "AUC %", "Kept"]
# The shapes recipe's epochs (czsl_models.training.config): enough for the AUC column to climb visibly.
DEFAULT_EPOCHS = 15


def _percent(value: Any) -> float | None:
    return None if value is None else round(100 * float(value), 2)


def epoch_table(run: TrainingRun | None) -> pd.DataFrame:
    """One row per finished epoch: loss and validation seen / unseen / HM / AUC in percent."""
    rows = []
    entries = run.epochs if run else []
    # SVIP: how often its learned patch picker agrees with the attention teacher (it is used only from 50%).
    agreement = any("patchcls_agreement" in (entry.get("checks") or {}) for entry in entries)
    for entry in entries:
        validation = entry.get("validation") or {}
        rows.append([entry.get("epoch"), round(float(entry.get("train_loss", float("nan"))), 3),
                     _percent(validation.get("best_seen")), _percent(validation.get("best_unseen")),
                     _percent(validation.get("best_hm")), _percent(validation.get("AUC")),
                     "✓" if entry.get("best") else ""]
                    + ([_percent((entry.get("checks") or {}).get("patchcls_agreement"))] if agreement else []))
    return pd.DataFrame(rows, columns=EPOCH_HEADERS + (["Patch picker agrees %"] if agreement else []))


STEP_SERIES = "each step"
EPOCH_SERIES = "mean of each epoch"


def loss_frame(run: TrainingRun | None) -> pd.DataFrame | None:
    """The loss per step (thinned to at most MAX_PLOTTED_STEPS points) and, as a second line through the steps
    where epochs end, each epoch's mean loss: the trend, and where each epoch's validation row belongs.
    None before the first step (an empty plot)."""
    losses = run.losses if run else []
    if not losses:
        return None
    stride = max(1, len(losses) // MAX_PLOTTED_STEPS)
    points = [(step, loss, STEP_SERIES) for step, loss in losses[::stride]]
    epochs = [(int(entry["training_steps"]), float(entry["train_loss"]), EPOCH_SERIES) for entry in run.epochs
              if entry.get("training_steps") and math.isfinite(float(entry.get("train_loss", float("nan"))))]
    # Both series from the first frame on (an empty one for now): the plot fixes its legend on the first frame.
    points += epochs or [(points[0][0], float("nan"), EPOCH_SERIES)]
    return pd.DataFrame(points, columns=["step", "loss", "series"]).astype(
        {"step": "int64", "loss": "float64", "series": "str"})


def progress_html(run: TrainingRun | None) -> str:
    """A progress bar and one line of status in plain words."""
    if run is None:
        return "<p>No training has run yet. Choose a dataset and a model, then press <b>Start training</b>.</p>"
    total = max(run.total_steps, 1)
    fraction = min(1.0, run.step / total) if run.total_steps else 0.0
    elapsed = (run.ended or time.time()) - run.started
    if run.place:
        ahead = "you are next" if run.place == 1 else f"{run.place - 1} runs are ahead of yours"
        return (f'<div id="train-progress"><progress value="0" max="1" style="width:100%;height:18px"></progress>'
                f"<p>Waiting for a training slot: {ahead} (number {run.place} in the queue). It starts by itself; "
                "keep this page open (closing it leaves the queue).</p></div>")
    if run.running:
        if run.stop_requested:
            status = "Stopping after the current step…"
        elif not run.total_steps:
            status = "Preparing: loading the dataset and reading the photos once…"
        else:
            remaining = remaining_seconds(run)
            left = f", about {duration_words(remaining)} left" if remaining is not None else ""
            status = f"Training {html.escape(run.model)}: step {run.step} of {run.total_steps}{left}."
        status = f"{status} {html.escape(run.limit_note)}".strip()
    else:
        status = html.escape(" ".join(part for part in (run.limit_note, _end_status(run)) if part))
    return (f'<div id="train-progress"><progress value="{fraction:.4f}" max="1" style="width:100%;height:18px">'
            f"</progress><p>{round(100 * fraction)}% · {duration_words(elapsed)} so far. {status}</p></div>")


def _end_status(run: TrainingRun) -> str:
    if run.error:
        return f"Training failed: {run.error}"
    result = run.result
    checkpoint = getattr(result, "checkpoint_dir", None)
    name = Path(checkpoint).name if checkpoint is not None else None  # the folder's name, never its server path
    if getattr(result, "stopped", False):
        if checkpoint is None:
            return ("Stopped before the first epoch ended. A model is saved at the end of each epoch, so nothing "
                    "was saved this time.")
        return (f"Stopped. The best model so far is saved in {name}; choose it in the Predict "
                f"tab under 'Trained weights'.")
    if checkpoint is None:
        return "Finished, but no model was saved (see the messages)."
    return (f"Finished. The trained model is saved as {name}; choose it in the Predict tab under "
            f"'Trained weights'.")


def messages_markdown(run: TrainingRun | None) -> str:
    """The trainer's latest status lines."""
    if run is None or not run.messages:
        return ""
    # The trainer's stop line is written for the command line; the status above says the same in the app's words.
    lines = [line for line in run.messages if not line.startswith(PIXEL_MESSAGE_PREFIX)]
    return "\n".join(f"- {escape_markdown(line)}" for line in lines[-5:])


def preset_update(model_name: str | None) -> Any:
    """The 'How to train' choice for a model, with what 'Fast' means for it and how long it takes."""
    estimate = TIME_ESTIMATES.get(model_name or "", "")
    parts = [f"On the built-in shapes, 'Fast' takes {estimate}." if estimate else "",
             FAST_PRESET_NOTES.get(model_name or "", "")]
    return gr.update(interactive=True, info=" ".join(part for part in parts if part) or None)


def display(model_name: str) -> str:
    """A model's human name."""
    from ..models.registry import model_class

    cls = model_class(model_name)
    return cls.display_name or model_name


def publishable_checkpoints(state: AppState) -> list[tuple[str, str]]:
    """The checkpoints this visitor may publish, newest first, as (label, folder): their own where visitors are
    strangers, every local one otherwise."""
    return [(info.label, choice_value(info.path)) for info in state.own_checkpoints()]


# ------------------------------------------------------------------ layout
@dataclass
class TrainTab:
    """What the app wires to page and tab events (showing a run already going on)."""

    status_outputs: list[Any]
    status: Any  # function returning the values of status_outputs


def build_train_tab(state: AppState) -> TrainTab:
    """Lay out the Train tab and wire its events."""
    manager = TrainingManager(state)
    state.training = manager
    off = training_disabled_reason()
    if off:
        gr.Markdown(f"⚠️ {off}", elem_id="train-off")
    gr.Markdown("Teach a model from labelled photos. New here? Keep the built-in coloured shapes and press "
                "**Start training**. The trained model appears in the Predict tab under *Trained weights*.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=300):
            picker = build_dataset_picker("train")
            trainable = state.trainable_model_names()
            model = gr.Dropdown([(state.display_name(name), name) for name in trainable],
                                value=trainable[0] if trainable else None, label="Model to train",
                                elem_id="train-model")
            preset = gr.Radio(PRESET_CHOICES, value="fast", label="How to train", elem_id="train-preset",
                              info=f"On the built-in shapes, 'Fast' takes {TIME_ESTIMATES.get(trainable[0], 'a while')}."
                              if trainable else None)
            epochs = gr.Slider(1, 100, value=DEFAULT_EPOCHS, step=1, label="Epochs (passes over the training photos)")
            # A text box, not a number box: a number box cannot be empty in the browser (it shows and sends 0).
            learning_rate = gr.Textbox("", label="Learning rate (leave empty for the recommended one)",
                                       placeholder="empty: the recipe's", max_lines=1, elem_id="train-lr",
                                       info="How big each learning step is. Empty: the model's recipe for the dataset "
                                            "(0.003-0.005 on the built-in shapes; the papers' own values, such as "
                                            "0.0001, on the benchmark datasets).")
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="train-start", interactive=not off)
                stop = gr.Button("Stop", variant="stop", interactive=False, elem_id="train-stop")
        with gr.Column(scale=7):
            progress = gr.HTML(progress_html(None), elem_id="train-progress-box")
            loss_plot = gr.LinePlot(None, x="step", y="loss", color="series",
                                    title="Training loss (lower is better)",
                                    x_title="training step", y_title="loss", x_axis_format="d",
                                    height=260, elem_id="train-loss")
            table = gr.Dataframe(epoch_table(None), label="After each epoch, on the validation photos",
                                 interactive=False, wrap=True, elem_id="train-epochs")
            gr.Markdown("*Seen*: accuracy on combinations seen in training; *Unseen*: on new combinations; "
                        "*HM*: the best balance of the two; *AUC*: a summary of every trade-off (see About).")
            messages = gr.Markdown("")
            with gr.Accordion("Share a trained model on the Hugging Face Hub", open=False):
                publish_off = publishing_disabled_reason()
                if publish_off:
                    gr.Markdown(publish_off, elem_id="publish-off")
                elif login_button_wanted():
                    gr.LoginButton(elem_id="publish-login")
                gr.Markdown("Sharing uses your own Hugging Face sign-in: the model goes to your account.")
                publish_checkpoint = gr.Dropdown([], label="Trained model", allow_custom_value=True)  # checked: own only
                repo_id = gr.Textbox(label="Repository (owner/name)", placeholder="your-name/msci-shapes")
                private = gr.Checkbox(False, label="Private repository")
                publish = gr.Button("Publish", interactive=not publish_off)
                published = gr.Markdown("")
    timer = gr.Timer(POLL_SECONDS, active=False)

    @visitor_scope
    def status():
        """Progress, loss curve, epoch table, messages, buttons and polling for this visitor's run."""
        manager.seen(current_visitor())
        run = manager.snapshot()
        running = bool(run and run.running)
        return [progress_html(run), loss_frame(run), epoch_table(run), messages_markdown(run),
                gr.update(interactive=not running and not off), gr.update(interactive=running),
                gr.Timer(active=running), gr.update(choices=publishable_checkpoints(state))]

    status_outputs = [progress, loss_plot, table, messages, start, stop, timer, publish_checkpoint]

    @friendly_errors
    def on_start(source, upload, server_path, model_name, preset_value, epochs_value, lr_value):
        """Start training a model on a dataset in the background; returns the first status."""
        from ..data import load_dataset

        if off:
            raise InputError(off)
        if not model_name:
            raise InputError("Choose a model to train.")
        learning_rate_value = None if lr_value is None or str(lr_value).strip() == "" else as_float(lr_value, 0.0)
        if learning_rate_value is not None and not 0 < learning_rate_value <= 1:
            raise InputError("The learning rate must be a number above 0 and at most 1, such as 0.003, or empty "
                             "for the recipe's.")
        manager.check_free()  # before unpacking or reading anything
        spec = dataset_spec(source, upload, server_path)
        dataset = load_dataset(spec)
        if not dataset.splits["train"]:
            raise InputError(f"{dataset.name} has no training photos.")
        manager.start(model_name, spec, Path(dataset.name).name, preset_value or "fast",
                      clamp_int(epochs_value, 1, 100, DEFAULT_EPOCHS), learning_rate_value)
        state.remember_dataset(dataset_vocabulary(dataset))
        return status()

    model.change(preset_update, inputs=[model], outputs=[preset], api_name="train_model_changed")
    start.click(on_start, inputs=[*picker.inputs, model, preset, epochs, learning_rate], outputs=status_outputs,
                api_name="train_start", concurrency_id="train_control", concurrency_limit=1,
                preprocess=False)  # our own checks give API callers a clear message for text in the number boxes

    @visitor_scope
    def on_stop():
        """Stop this visitor's training after its current step (its best checkpoint so far is kept)."""
        manager.stop(current_visitor())
        return status()

    stop.click(on_stop, outputs=status_outputs, api_name="train_stop", concurrency_id="train_control")
    timer.tick(status, outputs=status_outputs, api_name="train_status", show_progress="hidden",
               concurrency_limit=None)

    @friendly_errors
    def on_publish(checkpoint_value, repo_value, private_value):
        """Upload one of your checkpoints to a Hugging Face model repository, signed in as yourself."""
        from ..hub.publish import PublishError, push_checkpoint

        try:
            token = publish_token(current_oauth_token())  # first: nothing else matters to a visitor not signed in
        except (SignInRequired, SwitchedOff) as error:
            raise InputError(str(error)) from None
        own = {choice_value(info.path): info.path for info in state.own_checkpoints()}
        if not checkpoint_value:
            raise InputError("Choose a trained model to share.")
        if checkpoint_value not in own:
            raise InputError("Choose one of your trained models from the list.")
        if not (repo_value or "").strip():
            raise InputError("Type the repository as owner/name.")
        try:
            url = push_checkpoint(own[checkpoint_value], repo_value.strip(), token=token, private=bool(private_value))
        except PublishError as error:
            raise InputError(str(error)) from None
        return f"Published: [{url}]({url})"

    publish.click(on_publish, inputs=[publish_checkpoint, repo_id, private], outputs=[published],
                  api_name="train_publish", concurrency_id="train_control")
    return TrainTab(status_outputs=status_outputs, status=status)
