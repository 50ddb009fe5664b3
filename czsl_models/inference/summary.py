"""Short JSON summaries of predictions: the ranking, the marginals and a few numbers that say why, for the API,
the MCP tools and batch output (the full explanation arrays stay in Prediction.explanations)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..models.base import Prediction

RANDOM_BACKBONE_CAVEAT = ("The backbone has random weights (a test or fallback setup): the ranking and the explanation "
                          "are random.")
UNTRAINED_CAVEAT = ("This model has no trained weights yet: its ranking is exactly the CLIP baseline's and its "
                    "explanation comes from parts that have learned nothing.")
UNTRAINED_NOT_BASELINE_CAVEAT = ("This model has no trained weights yet and starts where its released code starts, "
                                 "not at the CLIP baseline: its ranking and its explanation mean nothing yet.")


def backbone_is_random(backbone: str) -> bool:
    """Whether a backbone spec names random weights (the tiny test backbone or random:ARCH)."""
    return backbone == "tiny" or backbone.startswith("random:")


def caveats(prediction: Prediction) -> list[str]:
    """Why the answer may mean nothing: random backbone weights, or an untrained model's explanation."""
    found = []
    if backbone_is_random(prediction.backbone):
        found.append(RANDOM_BACKBONE_CAVEAT)
    if prediction.model != "clip" and not prediction.trained:
        found.append(UNTRAINED_CAVEAT if prediction.untrained_equals_baseline else UNTRAINED_NOT_BASELINE_CAVEAT)
    return found


def _rounded(value: Any) -> float:
    return round(float(value), 4)


def _pair(item: Any) -> str:
    return f"{item.state} {item.object}"


def score_parts_summary(prediction: Prediction) -> list[dict[str, Any]]:
    """Each top composition's score split into the phrase match and the state x object product."""
    parts = prediction.explanations.get("score_parts") or {}
    if "composition" not in parts or "state_times_object" not in parts:
        return []
    return [{"pair": _pair(item), "composition_term": _rounded(composition), "state_times_object_term": _rounded(product)}
            for item, composition, product in zip(prediction.ranking, parts["composition"], parts["state_times_object"])]


def _msci_summary(prediction: Prediction) -> tuple[dict[str, Any], str]:
    """Each stage's logit contribution (the exact split of each row's logit) per top composition, state and object."""
    explanations = prediction.explanations
    names = list(explanations.get("logit_parts") or ("prompt", "local stage", "global stage"))
    keys = [name.replace(" ", "_") for name in names]
    rows = []
    for index, item in enumerate(prediction.ranking):
        row: dict[str, Any] = {"pair": _pair(item)}
        for kind in ("composition", "state", "object"):
            parts = np.asarray(explanations.get(f"logit_parts_{kind}", np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
            if index < len(parts):
                row[kind] = {key: _rounded(value) for key, value in zip(keys, parts[index])}
                gate = explanations.get(f"gate_{kind}")  # the gated extension only
                if gate is not None and index < len(gate):
                    row[kind]["gate_local_weight"] = _rounded(np.asarray(gate, dtype=np.float64)[index, 0])
        rows.append(row)
    summary: dict[str, Any] = {"stage_logit_contributions": rows,
                               "columns": "each row's logit = prompt + local_stage + global_stage (exact split)"}
    top = rows[0] if rows else {}
    if "composition" in top:
        parts = top["composition"]
        text = (f"For '{top['pair']}' the composition's logit {sum(parts[key] for key in keys):.2f} is the prompt's own "
                f"match {parts[keys[0]]:+.2f}, plus {parts[keys[1]]:+.2f} from the local stage and "
                f"{parts[keys[2]]:+.2f} from the global stage.")
    else:
        text = "MSCI refined each composition's text with the photo's local and global tokens."
    return summary, text


def _refiner_summary(prediction: Prediction) -> tuple[dict[str, Any], str]:
    explanations = prediction.explanations
    groups = list(explanations.get("query_groups") or ["state", "object", "composition"])
    values = np.asarray(explanations.get("group_contributions", np.zeros((0, len(groups)))), dtype=np.float64)
    rows = [{"pair": _pair(item), **{group: _rounded(value) for group, value in zip(groups, values[index])}}
            for index, item in enumerate(prediction.ranking) if index < len(values)]
    group = explanations.get("top_pair_group", "none")
    summary = {"group_contributions": rows, "top_pair_group": group, "note": explanations.get("group_note", "")}
    if group == "none":
        text = "No query group raised the top composition's score."
    else:
        text = f"The {group} queries raised the score of '{_pair(prediction.ranking[0])}' the most."
    return summary, text


def _svip_summary(prediction: Prediction) -> tuple[dict[str, Any], str]:
    explanations = prediction.explanations
    mask = np.asarray(explanations.get("kept_mask", np.zeros((0, 0))))
    kept, total = int(mask.sum()), int(mask.size)
    evidence = []
    state_cells = np.asarray(explanations.get("evidence_state_patch", np.zeros((0, 2)))).reshape(-1, 2)
    object_cells = np.asarray(explanations.get("evidence_object_patch", np.zeros((0, 2)))).reshape(-1, 2)
    for index, item in enumerate(prediction.ranking):
        if index < len(state_cells) and index < len(object_cells):
            evidence.append({"pair": _pair(item), "state_patch_row_col": [int(v) for v in state_cells[index]],
                             "object_patch_row_col": [int(v) for v in object_cells[index]]})
    grid = [int(v) for v in np.asarray(explanations.get("super_patch_grid", mask.shape)).tolist()]
    summary = {"kept_super_patches": kept, "super_patches": total, "super_patch_grid": grid,
               "selection": str(explanations.get("selection", "")), "evidence": evidence}
    text = (f"SVIP kept {kept} of {total} image regions and replaced the rest, judged unrelated to states and objects, "
            "with a learned hint.")
    return summary, text


_MODEL_SUMMARIES = {"msci": _msci_summary, "refiner": _refiner_summary, "svip": _svip_summary}


def explanation_summary(prediction: Prediction) -> dict[str, Any]:
    """A few numbers and one sentence saying why the model ranked as it did."""
    summary: dict[str, Any] = {"score_parts": score_parts_summary(prediction)}
    describe = _MODEL_SUMMARIES.get(prediction.model)
    if describe is None:
        text = "CLIP compared the photo with 'a photo of STATE OBJECT' and with each state and object on its own."
    else:
        own, text = describe(prediction)
        summary.update(own)
    summary["text"] = text
    return summary


def prediction_summary(prediction: Prediction, marginals: int = 5) -> dict[str, Any]:
    """The JSON answer for one image: ranked compositions, top states and objects, why, and caveats."""
    return {
        "model": prediction.model,
        "backbone": prediction.backbone,
        "backbone_precision": prediction.backbone_precision,
        "trained": prediction.trained,
        "ranking": [{"rank": rank, "state": item.state, "object": item.object, "score": _rounded(item.score),
                     **({} if item.seen is None else {"seen_in_training": item.seen})}
                    for rank, item in enumerate(prediction.ranking, start=1)],
        "states": [{"state": name, "probability": _rounded(p)} for name, p in prediction.states[:marginals]],
        "objects": [{"object": name, "probability": _rounded(p)} for name, p in prediction.objects[:marginals]],
        "explanation": explanation_summary(prediction),
        "caveats": caveats(prediction),
    }
