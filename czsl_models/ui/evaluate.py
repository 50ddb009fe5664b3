"""The Evaluate tab: a checkpoint on a dataset, or a saved scores .npz, gives the seen-unseen accuracy
curve (AUC shaded, best HM marked) and the metrics table."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..hosting.space import GPU_SECONDS_MAX, evaluate_gpu_seconds, zero_gpu
from .datasets import build_dataset_picker, dataset_spec
from .inputs import InputError, delete_raw_upload, friendly_errors, uploaded_path, user_error_types
from .predict import model_summary
from .state import AppState, dataset_vocabulary, gpu_function
from .text import escape_markdown

SOURCE_MODEL = "A model on a dataset"
SOURCE_SCORES = "A saved scores file (.npz)"
PHASES = [("Test photos", "test"), ("Validation photos", "val")]
METRIC_ROWS = (("best_seen", "Best seen accuracy", "photos of combinations seen in training"),
               ("best_unseen", "Best unseen accuracy", "photos of new combinations"),
               ("best_hm", "Best harmonic mean (HM)", "the best balance of seen and unseen"),
               ("AUC", "Area under the curve (AUC)", "a summary of every trade-off"),
               ("attr_acc", "State accuracy", "the state of the top answer is right"),
               ("obj_acc", "Object accuracy", "the object of the top answer is right"))
# Matplotlib's Agg canvases are independent, but its font cache is process-wide: one curve renders at a time.
RENDER_LOCK = threading.Lock()


def figure_to_image(figure: Figure) -> Image.Image:
    """Render a matplotlib figure to an RGB image."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def best_hm_index(seen: np.ndarray, unseen: np.ndarray) -> int:
    """Index of the curve point with the highest harmonic mean (0 where either accuracy is 0)."""
    total = seen + unseen
    harmonic = np.where((seen > 0) & (unseen > 0), 2 * seen * unseen / np.where(total > 0, total, 1), 0.0)
    return int(np.argmax(harmonic))


def curve_image(metrics: dict[str, Any], title: str, baseline: dict[str, Any] | None = None) -> Image.Image:
    """Seen accuracy against unseen accuracy as the model is nudged toward new combinations, the area under
    the curve shaded, the best balance marked, and the CLIP baseline's curve (when given) for comparison."""
    seen = 100 * np.asarray(metrics["seen_curve"], dtype=np.float64)
    unseen = 100 * np.asarray(metrics["unseen_curve"], dtype=np.float64)
    order = np.argsort(unseen, kind="stable")
    best = best_hm_index(seen, unseen)
    with RENDER_LOCK:
        figure = Figure(figsize=(6.0, 5.2), dpi=100)
        axis = figure.add_subplot(1, 1, 1)
        axis.fill_between(unseen[order], seen[order], color="#0072B2", alpha=0.18,
                          label=f"area under the curve (AUC): {100 * float(metrics['AUC']):.2f} (100 = perfect)")
        axis.plot(unseen[order], seen[order], color="#0072B2", marker="o", markersize=3, linewidth=1.8,
                  label="this model, nudged more and more toward new combinations")
        if baseline is not None:
            base_seen = 100 * np.asarray(baseline["seen_curve"], dtype=np.float64)
            base_unseen = 100 * np.asarray(baseline["unseen_curve"], dtype=np.float64)
            base_order = np.argsort(base_unseen, kind="stable")
            axis.plot(base_unseen[base_order], base_seen[base_order], color="#4b5563", linestyle="--", linewidth=1.6,
                      label=f"CLIP baseline, untrained (AUC {100 * float(baseline['AUC']):.2f})")
            seen = np.concatenate([seen, base_seen])
            unseen = np.concatenate([unseen, base_unseen])
        axis.scatter([unseen[best]], [seen[best]], s=120, color="#E69F00", zorder=5, edgecolor="black",
                     label=f"best balance (HM): {100 * float(metrics['best_hm']):.2f}% (seen {seen[best]:.1f}%, "
                           f"unseen {unseen[best]:.1f}%)")
        axis.set_xlabel("Unseen accuracy (%): new combinations")
        axis.set_ylabel("Seen accuracy (%): combinations seen in training")
        axis.set_xlim(0, max(5.0, float(unseen.max()) * 1.15))
        axis.set_ylim(0, max(5.0, float(seen.max()) * 1.15))
        axis.set_title(title, fontsize=11)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
        axis.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        return figure_to_image(figure)


def published_metrics(model_name: str, dataset_name: str, phase: str, open_world: bool) -> dict[str, float] | None:
    """The paper's own test results (percent) for this model on this benchmark, when the paper publishes any."""
    from ..data.benchmarks import benchmark
    from ..data.dataset import DatasetError
    from ..hub.reproduction_card import PUBLISHED

    if phase != "test":
        return None
    try:
        key = benchmark(Path(dataset_name).name).name
    except DatasetError:
        return None
    published = PUBLISHED.get((model_name, key))
    return None if published is None else published["open_world" if open_world else "closed_world"]


def metrics_table(metrics: dict[str, Any], paper: dict[str, float] | None = None) -> pd.DataFrame:
    """The headline metrics in percent, with what each means, and the paper's figure beside each it reports."""
    rows = [[label, round(100 * float(metrics[key]), 2), *([paper.get(key, "–")] if paper else []), meaning]
            for key, label, meaning in METRIC_ROWS if key in metrics]
    return pd.DataFrame(rows, columns=["Metric", "Value (%)", *(["Paper (%)"] if paper else []), "What it measures"])


def metrics_summary(metrics: dict[str, Any], where: str) -> str:
    """Two plain sentences about the result."""
    return (f"On {where}, the model is right on **{100 * float(metrics['best_seen']):.1f}%** of photos of combinations "
            f"it saw in training at best, and on **{100 * float(metrics['best_unseen']):.1f}%** of photos of new "
            f"combinations at best. The curve shows the trade-off between the two as the model is nudged toward "
            f"new combinations; the round marker is the best balance (HM).")


def metrics_from_scores_file(path: str) -> dict[str, Any]:
    """CZSL metrics of a scores .npz (scores, pairs, labels, seen; optional candidates, feasibility)."""
    from ..evaluation import StreamingEvaluator, load_metrics_inputs
    from ..hosting.safe_npz import NpzTooLarge, check_npz

    name = Path(path).name
    if not Path(path).is_file():
        raise InputError(f"{name} is no longer on the server (uploads are deleted once read); upload it again.")
    try:
        check_npz(path)  # sizes from the zip directory and the .npy headers, before numpy allocates anything
        inputs = load_metrics_inputs(Path(path))
    except NpzTooLarge as error:
        raise InputError(str(error)) from None
    except user_error_types() as error:  # its messages name the file by its server path
        raise InputError(str(error).replace(str(Path(path).parent) + os.sep, "").replace(str(path), name)) from None
    finally:
        delete_raw_upload(path)  # read once: nothing of it is kept
    try:
        evaluator = StreamingEvaluator(inputs["pair_states"], inputs["pair_objects"], inputs["seen"],
                                       inputs["candidates"], inputs["feasibility"], inputs["threshold"])
        evaluator.update(inputs["scores"], inputs["labels"])
        return evaluator.compute().to_dict()
    except ValueError as error:
        raise InputError(f"The scores file cannot be evaluated: {error}") from None


def evaluation_passes(spec: str, phase: str, open_world: bool, feasible_only: bool) -> list[tuple[int, int]]:
    """The (photos, candidate pairs) of each pass an evaluation makes: the phase, and with feasible_only in the
    open world first the validation photos that choose the threshold."""
    from ..data import load_dataset

    dataset = load_dataset(spec)
    pairs = len(dataset.candidate_pairs(phase, open_world))
    passes = [(len(dataset.splits.get(phase, [])), pairs)]
    if feasible_only and open_world:
        passes.insert(0, (len(dataset.splits.get("val", [])), pairs))
    return passes


def evaluation_gpu_seconds(state: AppState, model_name: str, checkpoint: str | None, spec: str, phase: str,
                           open_world: bool, feasible_only: bool = False, progress: Any = None) -> int:
    """ZeroGPU's duration for metrics_of_model, sized from its work (it takes the same arguments)."""
    return min(GPU_SECONDS_MAX, evaluate_gpu_seconds(evaluation_passes(spec, phase, open_world, feasible_only)))


def check_fits_zero_gpu(spec: str, phase: str, open_world: bool, feasible_only: bool) -> None:
    """On ZeroGPU, refuse an evaluation that needs more GPU time than one call may have, before asking for it."""
    if not zero_gpu():
        return
    needed = evaluate_gpu_seconds(evaluation_passes(spec, phase, open_world, feasible_only))
    if needed > GPU_SECONDS_MAX:
        raise InputError(f"This evaluation needs about {needed} s of GPU time, more than this Space may borrow at "
                         f"once ({GPU_SECONDS_MAX} s): choose the closed world or the validation photos, or run "
                         f"`czsl-models evaluate` on your own machine.")


@gpu_function(duration=evaluation_gpu_seconds)
def metrics_of_model(state: AppState, model_name: str, checkpoint: str | None, spec: str, phase: str,
                     open_world: bool, feasible_only: bool = False, progress: Any = None) -> tuple[dict[str, Any], str]:
    """CZSL metrics of a model (untrained or a checkpoint) on a dataset phase, and the dataset's name
    (arguments and results pickle, as ZeroGPU wants). feasible_only (open world): mask unseen pairs
    below the feasibility threshold chosen on the validation photos; the metrics then hold it as
    `feasibility_threshold`. progress: a gr.Progress, told how many photos are done."""
    from ..data import load_dataset
    from ..evaluation import choose_feasibility_threshold, evaluate_model

    dataset = load_dataset(spec)
    state.remember_dataset(dataset_vocabulary(dataset))
    model = state.get_model(model_name, checkpoint)
    name = state.display_name(model_name)

    def reporter(what: str):
        if progress is None:
            return None
        return lambda done, total: progress((done, total), desc=f"{name}: {what}", unit="photos")

    threshold = None
    try:
        if feasible_only and open_world:
            threshold, _ = choose_feasibility_threshold(model, dataset, progress=reporter("choosing the cut-off"))
        metrics = evaluate_model(model, dataset, phase=phase, open_world=open_world, feasibility_threshold=threshold,
                                 progress=reporter("scoring the photos"))
    except ValueError as error:
        raise InputError(f"Cannot evaluate on this dataset: {error}.") from None
    source = None if threshold is None else "CLIP-text feasibility (CompCos on the model's own text features)"
    return {**metrics.to_dict(), "feasibility_threshold": threshold, "feasibility_source": source}, dataset.name


MARK_STALE_JS = """() => {
  const summary = document.querySelector('#evaluate-summary');
  if (!summary || !summary.innerText.trim() || document.querySelector('#evaluate-stale')) return;
  const note = document.createElement('p');
  note.id = 'evaluate-stale';
  note.className = 'czsl-previous-note';
  note.setAttribute('role', 'status');
  note.textContent = 'Out of date: the model, weights, dataset or settings changed. Press Evaluate to update.';
  summary.before(note);
  summary.parentElement.classList.add('czsl-stale-results');
}"""
CLEAR_STALE_JS = """() => {
  document.querySelector('#evaluate-stale')?.remove();
  document.querySelector('.czsl-stale-results')?.classList.remove('czsl-stale-results');
}"""


def refresh_checkpoints(state: AppState, model_name: str | None) -> Any:
    """The checkpoint menu of a model, newest first and chosen (e.g. one trained a minute ago)."""
    name = model_name or "clip"
    return gr.update(choices=state.checkpoint_choices(name), value=state.newest_checkpoint(name))


def build_evaluate_tab(state: AppState) -> tuple[Any, Any]:
    """Lay out the Evaluate tab and wire its events; returns its (model, checkpoint) menus to refresh on opening."""
    names = state.model_names()
    default_model = state.default_model_name()
    gr.Markdown("How good is a model? It is shown photos whose answer is known, some of combinations it saw in "
                "training and some of new ones, and this page draws how often it is right on each kind.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=300):
            source = gr.Radio([SOURCE_MODEL, SOURCE_SCORES], value=SOURCE_MODEL, label="What to evaluate")
            with gr.Group(visible=True) as model_group:
                model = gr.Dropdown([(state.display_name(name), name) for name in names], value=default_model,
                                    label="Model", elem_id="evaluate-model")
                summary = gr.Markdown(model_summary(state, default_model))
                checkpoint = gr.Dropdown(state.checkpoint_choices(default_model),
                                         value=state.newest_checkpoint(default_model), label="Trained weights",
                                         allow_custom_value=True, elem_id="evaluate-checkpoint")
                picker = build_dataset_picker("evaluate")
                phase = gr.Radio(PHASES, value="test", label="Which photos")
                open_world = gr.Checkbox(False, label="Consider every state with every object (open world)")
                feasible_only = gr.Checkbox(False, visible=False, elem_id="evaluate-feasible",
                                            label="Leave out implausible new combinations",
                                            info="A new combination counts as implausible when its state and object "
                                                 "look little like those they were seen with in training (CompCos "
                                                 "feasibility); the cut-off is the one that scores best on the "
                                                 "validation photos.")
            scores_file = gr.File(label="Scores file (.npz with scores, pairs, labels, seen)", file_types=[".npz"],
                                  visible=False, elem_id="evaluate-scores")
            run = gr.Button("Evaluate", variant="primary", elem_id="evaluate-button")
        with gr.Column(scale=6):
            summary_text = gr.Markdown("", elem_id="evaluate-summary")
            curve = gr.Image(label="Seen vs unseen accuracy", show_label=False, interactive=False, format="png",
                             elem_id="evaluate-curve")
            with gr.Column(visible=False) as table_box:  # no empty table before the first evaluation
                # Tall enough for every metric with its wrapped explanation, even on a phone.
                table = gr.Dataframe(label="Metrics", interactive=False, wrap=True, max_height=1200,
                                     elem_id="evaluate-table")

    @friendly_errors
    def on_evaluate(source_value, model_name, checkpoint_value, dataset_source, upload, server_path, phase_value,
                    open_world_value, scores_value, feasible_value=False, progress=gr.Progress()):
        """Evaluate a model on a dataset, or a saved scores file; returns the summary, curve and table."""
        if source_value == SOURCE_SCORES:
            path = uploaded_path(scores_value)
            if path is None:
                raise InputError("Upload a scores .npz file first.")
            metrics = metrics_from_scores_file(path)
            where = f"the photos in {escape_markdown(Path(path).name)}"  # visitors' names: shown as text
            title = Path(path).name
        else:
            spec = dataset_spec(dataset_source, upload, server_path)
            check_fits_zero_gpu(spec, phase_value or "test", bool(open_world_value), bool(feasible_value))
            metrics, dataset_name = metrics_of_model(state, model_name, checkpoint_value, spec, phase_value or "test",
                                                     bool(open_world_value), bool(feasible_value), progress)
            phase_name = "validation" if phase_value == "val" else "test"
            world = short_world = "open world" if open_world_value else "closed world"
            threshold = metrics["feasibility_threshold"]
            if threshold is not None:
                world += (f", leaving out implausible new combinations: CLIP-text feasibility below {threshold:.3f} "
                          "(not the benchmarks' released feasibility scores, which `reproduce` uses)")
                short_world += ", implausible combinations left out"
            where = f"the {phase_name} photos of {escape_markdown(dataset_name)} ({world})"
            title = f"{state.display_name(model_name)} on {dataset_name}, {phase_name} ({short_world})"
            baseline = None
            if model_name != "clip":
                # The untrained CLIP baseline on the same photos: what training has to beat.
                try:
                    baseline, _ = metrics_of_model(state, "clip", "", spec, phase_value or "test",
                                                   bool(open_world_value), bool(feasible_value), progress)
                except (InputError, ValueError):  # e.g. no feasibility without seen pairs: draw the model alone
                    baseline = None
            summary_value = metrics_summary(metrics, where)
            paper = published_metrics(model_name, dataset_name, phase_value or "test", bool(open_world_value))
            if paper:
                summary_value += (f" The paper reports AUC {paper['AUC']} and HM {paper['best_hm']} here (its "
                                  f"ViT-L/14 and its own training), in the table's Paper column.")
            if baseline is not None:
                summary_value += (f" The dashed grey line is the untrained CLIP baseline on the same photos (area under "
                                  f"its curve: {100 * float(baseline['AUC']):.2f}, against "
                                  f"{100 * float(metrics['AUC']):.2f} here).")
            return (summary_value, curve_image(metrics, title, baseline), metrics_table(metrics, paper),
                    gr.update(visible=True))
        return metrics_summary(metrics, where), curve_image(metrics, title), metrics_table(metrics), gr.update(visible=True)

    run.click(on_evaluate, inputs=[source, model, checkpoint, *picker.inputs, phase, open_world, scores_file,
                                   feasible_only],
              outputs=[summary_text, curve, table, table_box], api_name="evaluate", concurrency_id="evaluate",
              concurrency_limit=1)
    open_world.change(lambda value: gr.update(visible=bool(value)), inputs=[open_world], outputs=[feasible_only],
                      api_name="evaluate_world_changed")
    # A result stays on screen when the model, weights, dataset or settings change: marked out of date until the
    # next evaluation (in the browser: nothing to compute).
    run.click(None, js=CLEAR_STALE_JS, api_name="evaluate_fresh")
    for number, component in enumerate([source, model, checkpoint, *picker.inputs, phase, open_world, scores_file,
                                        feasible_only]):
        component.change(None, js=MARK_STALE_JS, api_name=f"evaluate_input_{number}_stale")
    def on_source(value):
        """Show the model and dataset choices, or the scores file upload."""
        return gr.update(visible=value == SOURCE_MODEL), gr.update(visible=value == SOURCE_SCORES)

    source.change(on_source, inputs=[source], outputs=[model_group, scores_file], api_name="evaluate_source_changed")

    @friendly_errors
    def on_model_change(model_name):
        """The checkpoints of a model and a sentence about it."""
        return (gr.update(choices=state.checkpoint_choices(model_name), value=state.newest_checkpoint(model_name)),
                model_summary(state, model_name))

    model.change(on_model_change, inputs=[model], outputs=[checkpoint, summary], api_name="evaluate_model_changed")
    return model, checkpoint
