"""The README.md written next to every checkpoint: what it is, its vocabulary and its metrics. It lives with the
models because `save_pretrained` writes it; hub/ publishes it and builds the reproduction card on it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models.base import CompositionModel

PAPERS = {
    "msci": ("MSCI: multi-stage cross-modal interaction (IJCAI 2025, arXiv 2505.10289). Its per-row local/global "
             "gate is a reconstruction: the paper gives no equations for it and the released code never calls its "
             "gated fusion module, adding whole stage outputs with static weights instead"),
    "refiner": "Refiner (ICASSP 2025); this implementation is a reconstruction from the paper's abstract, no code or full text being public",
    "svip": "SVIP: semantic patch selection and contextualisation (ICCV 2025, arXiv 2503.10252), adapted to free-text states and objects",
    "clip": "CLIP zero-shot baseline (no learned parameters)",
}
METRIC_NAMES = (("best_seen", "Best seen"), ("best_unseen", "Best unseen"), ("best_hm", "Best HM"),
                ("AUC", "AUC"), ("attr_acc", "State accuracy"), ("obj_acc", "Object accuracy"))


def _word_list(words: list[str], limit: int = 60) -> str:
    shown = ", ".join(words[:limit])
    return shown + (f", ... ({len(words)} in all)" if len(words) > limit else "") if words else "(none)"


def render_model_card(model: "CompositionModel", metrics: dict[str, Any] | None = None) -> str:
    """Markdown model card with Hub front matter."""
    lines = [
        "---",
        "library_name: czsl-models",
        "license: mit",
        "tags:",
        "- compositional-zero-shot-learning",
        "- open_clip",
        f"- {model.name}",
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
