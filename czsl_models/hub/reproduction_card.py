"""The model card of a reproduced checkpoint: Hub metadata (model-index) and the paper comparison."""

from __future__ import annotations

from typing import Any

from ..backbones.specs import backbone_hub_repo
from ..data.benchmarks import BENCHMARKS, hub_dataset_id
from ..models.card import HEADLINE_METRICS, LIBRARY_NAME, PIPELINE_TAG, card_tags

PAPER_BACKBONE = "ViT-L-14-quickgelu:openai"
HEADLINE = HEADLINE_METRICS  # (key in metrics, short name, long name), in percent

# Published test results (percent) as docs/models.md gives them; only MSCI publishes CZSL numbers.
PUBLISHED: dict[tuple[str, str], dict[str, dict[str, float]]] = {
    ("msci", "mit-states"): {"closed_world": {"best_seen": 50.2, "best_unseen": 53.4, "best_hm": 39.9, "AUC": 22.8},
                             "open_world": {"best_hm": 21.2, "AUC": 7.9}},
    ("msci", "ut-zappos"): {"closed_world": {"best_seen": 67.4, "best_unseen": 75.5, "best_hm": 59.2, "AUC": 45.8},
                            "open_world": {"best_hm": 53.2, "AUC": 37.3}},
    ("msci", "cgqa"): {"closed_world": {"best_seen": 42.4, "best_unseen": 38.2, "best_hm": 31.7, "AUC": 14.2},
                       "open_world": {"best_hm": 13.7, "AUC": 3.8}},
}
NO_PUBLISHED_NUMBERS = {
    "refiner": "Refiner (ICASSP 2025) publishes no code and no full text; this is a reconstruction from its "
               "abstract, and there are no published numbers to compare with.",
    "svip": "SVIP (ICCV 2025) is evaluated on attribute-based ZSL (CUB, AwA2, SUN), not on CZSL benchmarks; "
            "it publishes no CZSL numbers to compare with.",
}
DEPARTURES = {
    "msci": ["The released architecture (variant 'released': static per-channel λ from 0.1 on whole stage outputs, the "
             "released disentanglers, word dropout on the whole word-embedding matrix, the release's eval-mode "
             "quirk on); words are learned offsets on their own token embeddings instead of one soft token per "
             "word; one checkpoint serves both worlds with 12 heads (the released MIT-States open-world config "
             "trains another model with 16). Element by element: docs/parity.md.",
             "Text features are encoded in one pass (the released test script's chunking shrinks the state x "
             "object term)."],
    "refiner": ["The whole model is a reconstruction from the abstract in the Troika family (learnable region "
                "queries, cross-modal fusion), trained with Troika's published recipe."],
    "svip": ["Adapted to free-text states and objects: CLIP text features replace word2vec attribute vectors, "
             "on CLIP's ViT instead of an ImageNet ViT; trained with Troika's recipe (SVIP publishes none for CZSL; "
             "its consistency term and gradient clipping at 1 are as released)."],
}
COMMON_DEPARTURES = [
    "Open world: infeasible pairs are masked to minus infinity (the released test script multiplies their scores "
    "by 0, which is only right for positive scores).",
]


def _percent(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"


def _eval_results(document: dict[str, Any], dataset: str) -> list:
    from huggingface_hub import EvalResult

    bench = BENCHMARKS[dataset]
    # model-index asks for a Hub dataset id; a benchmark with none on the Hub keeps its own short name.
    dataset_type = hub_dataset_id(dataset) or bench.name
    results = []
    for world, label in (("closed_world", "closed world"), ("open_world", "open world")):
        metrics = document.get(world) or {}
        for key, short, long in HEADLINE:
            if key in metrics:
                results.append(EvalResult(
                    task_type=PIPELINE_TAG, task_name=f"Compositional zero-shot recognition ({label})",
                    dataset_type=dataset_type, dataset_name=bench.title, dataset_config=world.replace("_", "-"),
                    dataset_split="test", metric_type=key.lower(), metric_name=f"{short} ({long}, {label})",
                    metric_value=round(100 * float(metrics[key]), 2)))
    return results


def _comparison_table(document: dict[str, Any], model: str, dataset: str) -> list[str]:
    published = PUBLISHED.get((model, dataset))
    lines = ["| | " + " | ".join(f"{short} closed" for _, short, _ in HEADLINE) + " | HM open | AUC open |",
             "| --- |" + " ---: |" * (len(HEADLINE) + 2)]
    closed, open_ = document.get("closed_world") or {}, document.get("open_world") or {}
    ours = [_percent(closed.get(key)) for key, _, _ in HEADLINE] + [_percent(open_.get("best_hm")), _percent(open_.get("AUC"))]
    lines.append("| this checkpoint | " + " | ".join(ours) + " |")
    if published:
        paper = [f"{published['closed_world'].get(key, '–')}" for key, _, _ in HEADLINE]
        paper += [f"{published['open_world'].get('best_hm', '–')}", f"{published['open_world'].get('AUC', '–')}"]
        lines.append("| paper | " + " | ".join(paper) + " |")
    return lines


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{seconds:.0f} s" if seconds < 120 else (f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h")


def render_reproduction_card(document: dict[str, Any]) -> str:
    """README.md of a reproduced checkpoint: YAML the Hub reads, then the results beside the paper's."""
    from huggingface_hub import ModelCardData

    run = document["reproduction"]
    model, dataset, backbone = run["model"], run["dataset"], run["backbone"]
    bench = BENCHMARKS[dataset]
    base_model = backbone_hub_repo(backbone)
    hub_id = run.get("dataset_hub_id") or hub_dataset_id(dataset)
    data = ModelCardData(
        library_name=LIBRARY_NAME, license="mit", pipeline_tag=PIPELINE_TAG, base_model=base_model,
        datasets=[hub_id] if hub_id else None, tags=card_tags(model, bench.name),
        model_name=f"{model}-{bench.name}", eval_results=_eval_results(document, dataset))
    recipe = run.get("recipe", {})
    repo = run.get("repo_id") or "OWNER/NAME"
    threshold = (document.get("open_world") or {}).get("feasibility_threshold")
    lines = ["---", data.to_yaml(), "---", "",
             f"# {run.get('display_name', model)} on {bench.title}", "",
             f"This checkpoint was trained on {bench.title} with `python -m czsl_models reproduce {model} {bench.name}`: "
             f"the model's published recipe (the \"paper\" preset), evaluated on the test split in the closed world "
             f"and in the open world.", "",
             "## Results (test split, percent)", ""]
    lines += _comparison_table(document, model, dataset)
    lines.append("")
    if (model, dataset) in PUBLISHED:
        lines.append(f"The paper row is {model.upper()}'s published result on {bench.title} (docs/models.md); "
                     "open-world S and U are not published.")
    else:
        lines.append(NO_PUBLISHED_NUMBERS.get(model, "The paper publishes no numbers for this dataset."))
    open_world = document.get("open_world") or {}
    if threshold is not None:
        source = open_world.get("feasibility_source", "CLIP-text feasibility (CompCos on the model's text features)")
        lines.append(f"Open world: unseen pairs with feasibility below {threshold:.4f} are masked; feasibility "
                     f"source: {source}.")
    for world, label in (("closed_world", "Closed world"), ("open_world", "Open world")):
        weights = (document.get(world) or {}).get("score_weights")
        if weights:
            lines.append(f"{label} inference weights (pair, state, object): {', '.join(str(w) for w in weights)}.")
    lines += ["", "## Recipe", "",
              f"- Backbone (frozen, not stored here): `{backbone}`" + ("" if backbone == PAPER_BACKBONE else
                                                                       f" — the papers use `{PAPER_BACKBONE}`"),
              f"- Preset: paper; epochs {recipe.get('epochs')}, batch {recipe.get('batch_size')}, "
              f"{recipe.get('optimizer')} lr {recipe.get('lr')}, weight decay {recipe.get('weight_decay')}"
              + (f", StepLR every {recipe['lr_step']} epochs × {recipe.get('lr_gamma')}" if recipe.get("lr_step") else ""),
              f"- Model options: {recipe.get('model_options') or 'none'}",
              f"- Precision: {recipe.get('mixed_precision', 'not recorded')}; eval mode kept after the first "
              f"validation (the released MSCI quirk): {recipe.get('keep_eval_mode_after_validation', 'not recorded')}; "
              f"gradient-norm clipping: {recipe.get('max_grad_norm') or 'none'}",
              f"- Model selection: best validation AUC; selected epoch {document.get('epoch')}, "
              f"{document.get('training_steps')} optimisation steps",
              f"- Training time: {_duration(float(run.get('train_seconds', 0)))} on {run.get('hardware', 'unknown hardware')}",
              f"- Data: {bench.title} installed by `python -m czsl_models download {bench.name}`"
              + (f" (archives: {', '.join(a['file'] + ' sha256 ' + a['sha256'][:12] for a in run.get('archives', []))})"
                 if run.get("archives") else ""), "",
              "## Departures from the paper", ""]
    departures = list(DEPARTURES.get(model, []))
    if backbone != PAPER_BACKBONE:
        departures.insert(0, f"Backbone `{backbone}` instead of the paper's `{PAPER_BACKBONE}`.")
    if run.get("epochs_overridden"):
        departures.insert(0, f"Trained for {recipe.get('epochs')} epochs instead of the recipe's {run.get('recipe_epochs')}.")
    lines += [f"- {text}" for text in departures + COMMON_DEPARTURES]
    lines += ["", "## Use", "", "```python", "from czsl_models import Vocabulary, load_model",
              f'model = load_model(checkpoint="{repo}")', 'vocab = Vocabulary.build("sliced, whole, rotten", "apple, bread")',
              "print(model.predict(image, vocab, top_k=5)[0].ranking)", "```", "",
              f"or `python -m czsl_models predict PHOTO --checkpoint {repo}`.", ""]
    return "\n".join(lines)
