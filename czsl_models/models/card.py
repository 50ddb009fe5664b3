"""The README.md written next to every checkpoint: what it is, its vocabulary and its metrics. It lives with the
models because `save_pretrained` writes it; hub/ publishes it and builds the reproduction card on it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..backbones.specs import backbone_hub_repo

if TYPE_CHECKING:
    from huggingface_hub import ModelCardData

    from ..models.base import CompositionModel

LIBRARY_NAME = "czsl-models"
# The Hub task closest to ranking free-text compositions for a photo: a label set given at inference.
PIPELINE_TAG = "zero-shot-image-classification"
HEADLINE_METRICS = (("best_seen", "S", "best seen accuracy"), ("best_unseen", "U", "best unseen accuracy"),
                    ("best_hm", "HM", "best harmonic mean"), ("AUC", "AUC", "area under the seen-unseen curve"))

PAPERS = {
    "msci": ("MSCI: multi-stage cross-modal interaction (IJCAI 2025, arXiv 2505.10289). Variant 'released' is the "
             "released architecture (whole stage outputs added with static per-channel weights); variant 'gated' "
             "is this project's extension, a per-row local/global gate the released code does not contain "
             "(config.json names the variant)"),
    "refiner": "Refiner (ICASSP 2025); this implementation is a reconstruction from the paper's abstract, no code or full text being public",
    "svip": "SVIP: semantic patch selection and contextualisation (ICCV 2025, arXiv 2503.10252), adapted to free-text states and objects",
    "clip": "CLIP zero-shot baseline (no learned parameters)",
}
METRIC_NAMES = (("best_seen", "Best seen"), ("best_unseen", "Best unseen"), ("best_hm", "Best HM"),
                ("AUC", "AUC"), ("attr_acc", "State accuracy"), ("obj_acc", "Object accuracy"))


def _word_list(words: list[str], limit: int = 60) -> str:
    shown = ", ".join(words[:limit])
    return shown + (f", ... ({len(words)} in all)" if len(words) > limit else "") if words else "(none)"


def card_tags(model_type: str, dataset: str | None = None) -> list[str]:
    """The Hub tags of a checkpoint: the task, the backbone library, the model and its training dataset."""
    tags = ["compositional-zero-shot-learning", "open_clip", model_type]
    if dataset and dataset not in tags:
        tags.append(dataset)
    return tags


def _dataset_slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-") or "dataset"


def checkpoint_card_data(model_type: str, backbone: str, metrics: dict[str, Any] | None = None,
                         model_name: str | None = None) -> "ModelCardData":
    """The Hub metadata of a checkpoint: library, task, base model (the backbone's Hub repo), tags, and, when
    it was measured, the training dataset and the test metrics (model-index). `metrics` is the metrics.json
    document training writes; `datasets` lists a Hub dataset id only where the dataset has one."""
    from huggingface_hub import EvalResult, ModelCardData

    metrics = metrics or {}
    dataset = metrics.get("dataset")
    hub_dataset = metrics.get("dataset_hub_id")
    results = []
    if dataset and metrics.get("phase"):
        world = "open world" if metrics.get("open_world") else "closed world"
        for key, short, long in HEADLINE_METRICS:
            if key in metrics:
                results.append(EvalResult(
                    task_type=PIPELINE_TAG, task_name=f"Compositional zero-shot recognition ({world})",
                    dataset_type=hub_dataset or _dataset_slug(dataset), dataset_name=dataset,
                    dataset_split=metrics["phase"], metric_type=key.lower(), metric_name=f"{short} ({long})",
                    metric_value=round(100 * float(metrics[key]), 2)))
    return ModelCardData(
        library_name=LIBRARY_NAME, license="mit", pipeline_tag=PIPELINE_TAG, base_model=backbone_hub_repo(backbone),
        datasets=[hub_dataset] if hub_dataset else None,
        tags=card_tags(model_type, _dataset_slug(dataset) if dataset else None),
        model_name=(model_name or f"{model_type}-{_dataset_slug(dataset)}") if results else None,
        eval_results=results or None)


def render_model_card(model: "CompositionModel", metrics: dict[str, Any] | None = None) -> str:
    """Markdown model card with Hub front matter (checkpoint_card_data)."""
    data = checkpoint_card_data(model.name, model.backbone_spec, metrics)
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {model.display_name or model.name} checkpoint",
        "",
        PAPERS.get(model.name, model.summary) + ".",
        "",
        f"- Backbone (frozen, not stored here): `{model.backbone_spec}`",
        f"- Optimisation steps: {int(model.training_steps.item())}",
        f"- Trainable parameters: {model.num_trainable_parameters():,}",
        f"- Training states ({len(model.train_states)}): {_word_list(model.train_states)}",
        f"- Training objects ({len(model.train_objects)}): {_word_list(model.train_objects)}",
        f"- Seen (training) pairs: {len(model.train_pairs)}",
    ]
    if getattr(model, "name", "") == "svip":
        agreement = model.measured_agreement
        lines.append("- Patch selection at inference: " + (
            "the attention teacher (PatchCls never validated)" if agreement is None else
            f"{'PatchCls' if model.selection_source == 'patchcls' else 'the attention teacher'}; PatchCls agrees "
            f"with the teacher on {100 * agreement:.0f}% of replaced super-patches on validation images "
            f"(it selects from {100 * model.switch_agreement:.0f}%)"))
    lines += [
        "",
    ]
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "| --- | --- |"]
        for key, label in METRIC_NAMES:
            if key in metrics:
                lines.append(f"| {label} | {100 * float(metrics[key]):.2f} % |")
        lines.append("")
    lines += [
        "## Use",
        "",
        "```python",
        "from czsl_models import Vocabulary, load_model",
        f'model = load_model("{model.name}", checkpoint="THIS_FOLDER_OR_REPO_ID")',
        'vocab = Vocabulary.build("sliced, whole, rotten", "apple, bread")',
        "print(model.predict(image, vocab, top_k=5)[0].ranking)",
        "```",
        "",
        "or `python -m czsl_models predict PHOTO --model " + model.name + " --checkpoint THIS_FOLDER_OR_REPO_ID`.",
        "",
    ]
    return "\n".join(lines)
