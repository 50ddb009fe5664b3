"""Plots and photo overlays from a Prediction's explanation arrays, each with one plain sentence.

Only plain arrays come in (Prediction.explanations); no model code runs here. A visual whose
arrays are missing is skipped, so a model that explains less still gets a page."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from ..models.base import Prediction, RankedPair
from .bar_chart import Series, horizontal_bars
from .bar_chart import font as _font
from .visual import Visual

VIEW_SIZE = 224  # the models see the centre square of the photo at this size
# Okabe-Ito colours: told apart with every common colour-vision deficiency; every bar is also labelled
# in words, so no caption has to name a colour.
LOCAL_COLOUR = "#0072B2"  # blue
GLOBAL_COLOUR = "#E69F00"  # orange
COMPOSITION_COLOUR = "#0072B2"
PRODUCT_COLOUR = "#E69F00"
THIRD_COLOUR = "#009E73"  # bluish green
REPLACED_COLOUR = (74, 78, 105)
EVIDENCE_COLOUR = (255, 255, 255)  # drawn over a black outline: visible on light and dark content alike
HEAT_COLORMAP = "viridis"  # perceptually even and readable with colour-vision deficiencies
PANEL_GAP = 10
TOP_MARGIN = 6  # the viewer's download and full-screen buttons sit above the picture (theme.py), not over it
TITLE_HEIGHT = 26 + TOP_MARGIN
PANEL_TEXT = 15
MAX_ROW_WIDTH = 480  # px: shown about 325 px wide on a phone, 15 px words stay about 10 px
LEGEND_HEIGHT = 30
COLOUR_BAR_HEIGHT = 44


# ------------------------------------------------------------------ ranking text
def pair_label(item: RankedPair) -> str:
    """'rusty bike', marked when the checkpoint knows whether the pair was seen in training."""
    name = f"{item.state} {item.object}"
    if item.seen is None:
        return name
    return f"{name} (seen in training)" if item.seen else f"{name} (new combination)"


def ranking_confidences(prediction: Prediction, mark_seen: bool = True) -> dict[str, float]:
    """Top compositions with a softmax confidence over every candidate pair (what gr.Label shows);
    mark_seen adds whether each pair was seen in training, when the checkpoint knows."""
    scores = np.asarray(prediction.scores, dtype=np.float64)
    finite = np.isfinite(scores)
    shifted = np.where(finite, scores - scores[finite].max(), -np.inf)
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum()
    by_score = {float(s): float(p) for s, p in zip(scores[finite], probabilities[finite])}
    return {(pair_label(item) if mark_seen else f"{item.state} {item.object}"): by_score.get(float(item.score), 0.0)
            for item in prediction.ranking}


def marginal_confidences(ranked: Sequence[tuple[str, float]], top: int = 5) -> dict[str, float]:
    """The best few states (or objects) with their probabilities."""
    return {name: float(probability) for name, probability in list(ranked)[:top]}


# ------------------------------------------------------------------ pictures
def model_view(image: Image.Image, size: int = VIEW_SIZE) -> Image.Image:
    """The centre square the backbone looks at (resize the short side, then crop), as RGB."""
    image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BICUBIC)
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def _normalised(grid: np.ndarray) -> np.ndarray:
    grid = np.asarray(grid, dtype=np.float64)
    low, high = np.nanmin(grid), np.nanmax(grid)
    if not np.isfinite(low) or high - low < 1e-12:
        return np.zeros_like(grid)
    return (grid - low) / (high - low)


def as_grid(values: Any) -> np.ndarray | None:
    """A 2-D map from a [h, w] array or a flat square one; None when it is neither."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2:
        return array
    if array.ndim == 1:
        side = math.isqrt(array.size)
        if side * side == array.size and side > 0:
            return array.reshape(side, side)
    return None


def compose_panels(panels: Sequence[tuple[str, Image.Image]],
                   legend: Sequence[tuple[tuple[int, int, int], str]] = ()) -> Image.Image:
    """Pictures in rows no wider than MAX_ROW_WIDTH (a phone shows their words readably), each titled, and an
    optional colour legend below (drawn with PIL: a fraction of matplotlib's time, on every prediction)."""
    font = _font(PANEL_TEXT)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    panel_width = max(image.width for _, image in panels)
    per_row = max(1, min(len(panels), (MAX_ROW_WIDTH - PANEL_GAP) // (panel_width + PANEL_GAP)))
    rows = [panels[start:start + per_row] for start in range(0, len(panels), per_row)]
    row_heights = [TITLE_HEIGHT + max(image.height for _, image in row) + PANEL_GAP for row in rows]
    widths = [22 + int(measure.textlength(text, font=font)) + 18 for _, text in legend]
    stacked = sum(widths) + PANEL_GAP > MAX_ROW_WIDTH  # one legend entry a line rather than one wide line
    legend_width = (max(widths) if stacked else sum(widths)) + PANEL_GAP if legend else 0
    legend_height = LEGEND_HEIGHT * (len(legend) if stacked else 1) if legend else 0
    width = max(max(sum(image.width for _, image in row) + PANEL_GAP * (len(row) + 1) for row in rows), legend_width)
    height = sum(row_heights) + legend_height
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    top = 0
    for row, row_height in zip(rows, row_heights):
        left = PANEL_GAP
        for title, image in row:
            text_width = draw.textlength(title, font=font)
            draw.text((left + (image.width - text_width) / 2, top + TOP_MARGIN + 4), title, fill="black", font=font)
            canvas.paste(image, (left, top + TITLE_HEIGHT))
            left += image.width + PANEL_GAP
        top += row_height
    x, y = PANEL_GAP, height - legend_height + 6
    for (colour, text), entry_width in zip(legend, widths):
        draw.rectangle((x, y, x + 16, y + 16), fill=colour, outline="black")
        draw.text((x + 22, y), text, fill="black", font=font)
        if stacked:
            y += LEGEND_HEIGHT
        else:
            x += entry_width
    return canvas


def heat_overlay(view: Image.Image, grid: np.ndarray, opacity: float = 0.85) -> Image.Image:
    """A heat map over the model's view of the photo, as opaque as the attention is high: where the model
    hardly looked, the photo shows through (greyed a little, so the looked-at parts stand out)."""
    level = np.asarray(Image.fromarray(np.uint8(255 * _normalised(grid))).resize(view.size, Image.BILINEAR),
                       dtype=np.float64) / 255.0
    colours = colormaps[HEAT_COLORMAP](level)[..., :3] * 255.0
    photo = np.asarray(view, dtype=np.float64)
    grey = photo.mean(axis=-1, keepdims=True)
    faded = 0.6 * photo + 0.4 * grey
    alpha = (opacity * level)[..., None]
    return Image.fromarray(np.uint8(np.clip((1 - alpha) * faded + alpha * colours, 0, 255)))


def colour_bar(width: int) -> Image.Image:
    """The heat maps' key: the colour scale from 'less attention' to 'more attention'."""
    font = _font(14)
    bar = Image.new("RGB", (width, COLOUR_BAR_HEIGHT), "white")
    draw = ImageDraw.Draw(bar)
    left, right, top = PANEL_GAP + 120, width - PANEL_GAP - 120, 8
    span = max(right - left, 20)
    ramp = colormaps[HEAT_COLORMAP](np.linspace(0, 1, span))[:, :3] * 255.0
    strip = Image.fromarray(np.uint8(np.repeat(ramp[None], 16, axis=0)))
    bar.paste(strip, (left, top))
    draw.rectangle((left - 1, top - 1, left + span, top + 16), outline="black")
    draw.text((left - 8 - draw.textlength("less attention", font=font), top), "less attention", fill="black",
              font=font)
    draw.text((left + span + 8, top), "more attention", fill="black", font=font)
    return bar


def where_in_photo(grid: np.ndarray) -> str:
    """Where a map is highest, in words ('the top left', 'the centre'), for alt text."""
    grid = np.asarray(grid, dtype=np.float64)
    if grid.size == 0 or not np.isfinite(grid).any():
        return "nowhere in particular"
    row, col = np.unravel_index(int(np.nanargmax(grid)), grid.shape)
    vertical = ("top", "middle", "bottom")[min(2, 3 * row // max(1, grid.shape[0]))]
    horizontal = ("left", "centre", "right")[min(2, 3 * col // max(1, grid.shape[1]))]
    if vertical == "middle":
        return "the centre" if horizontal == "centre" else f"the {horizontal} side"
    return f"the {vertical}" if horizontal == "centre" else f"the {vertical} {horizontal}"


def heatmap_panels(photo: Image.Image, maps: Sequence[tuple[str, np.ndarray]]) -> Image.Image:
    """The model's view of the photo, then one heat map per panel, with the colour key below."""
    view = model_view(photo)
    panels = compose_panels([("The photo", view), *[(title, heat_overlay(view, grid)) for title, grid in maps]])
    key = colour_bar(panels.width)
    canvas = Image.new("RGB", (panels.width, panels.height + key.height), "white")
    canvas.paste(panels, (0, 0))
    canvas.paste(key, (0, panels.height))
    return canvas


def heatmap_description(what: str, maps: Sequence[tuple[str, np.ndarray]]) -> str:
    """Alt text of a heat-map picture: what it shows and where each map is highest."""
    places = "; ".join(f"{title}: most attention at {where_in_photo(grid)}" for title, grid in maps)
    return f"The photo beside heat maps of {what}. {places}."


def _shorten(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ per model
def score_parts_visual(prediction: Prediction) -> Visual | None:
    """How each top composition's score is built, as two positive parts: the whole phrase's match (above the
    weakest answer shown) and the state's and object's probabilities multiplied; the top answer's bar is the
    longest."""
    parts = prediction.explanations.get("score_parts")
    if not isinstance(parts, dict) or "composition" not in parts or "state_times_object" not in parts:
        return None
    names = [_shorten(f"{item.state} {item.object}") for item in prediction.ranking]
    composition = np.asarray(parts["composition"], dtype=np.float64)[: len(names)]
    product = np.asarray(parts["state_times_object"], dtype=np.float64)[: len(names)]
    names = names[: len(composition)]
    if not names:
        return None
    # Both parts shift by the same amount for every row, so the order of the totals is the order of the scores.
    phrase = composition - composition.min()
    width = max(float((phrase + product).max()), 1e-6)
    image = horizontal_bars(names, [
        Series("phrase: the whole 'state object' matches", COMPOSITION_COLOUR, phrase,
               ["phrase" if value > 0.18 * width else "" for value in phrase]),
        Series("parts: state × object, each on its own", PRODUCT_COLOUR, product,
               ["parts" if value > 0.12 * width else "" for value in product], text_colour="black"),
    ], "score points (the phrase part above the lowest shown)", stacked=True, bar_height=30)
    top = names[0]
    return Visual("How each score is made", image,
                  "Each bar is an answer's score, built from two parts: how well the photo matches the whole phrase "
                  "(the 'phrase' part, counted above the weakest answer shown) and how likely its state and its object "
                  "are on their own, multiplied (the 'parts' part). The longest bar is the best answer.",
                  f"Bar chart of how each of the top {len(names)} answers' scores is made; '{top}' has the longest "
                  f"bar. Phrase match: {', '.join(f'{value:.1f}' for value in phrase)}; state × object: "
                  f"{', '.join(f'{value:.2f}' for value in product)}.")


def _stage_rows(prediction: Prediction, explanations: dict[str, Any]) -> list[tuple[str, float, float, float | None]] | None:
    """(row name, local stage's logit contribution, global stage's, the gated extension's local weight or None)
    for each top composition and its state and object."""
    parts, gates = {}, {}
    for kind in ("composition", "state", "object"):
        part = np.asarray(explanations.get(f"logit_parts_{kind}", []), dtype=np.float64)
        gate = explanations.get(f"gate_{kind}")  # only the gated extension has one
        gate = None if gate is None else np.asarray(gate, dtype=np.float64)
        if part.ndim != 2 or part.shape[1] != 3 or (gate is not None and gate.shape != (part.shape[0], 2)):
            return None
        parts[kind], gates[kind] = part, gate
    rows = []
    for index, item in enumerate(prediction.ranking[: len(parts["composition"])]):
        for kind, name in (("composition", f"{item.state} {item.object}"), ("state", item.state), ("object", item.object)):
            _, local, glob = parts[kind][index]
            prefix = "" if kind == "composition" else "   "
            gate = None if gates[kind] is None else float(gates[kind][index][0])
            rows.append((f"{prefix}{_shorten(name, 24)} ({kind})", float(local), float(glob), gate))
    return rows


def msci_weights_visual(prediction: Prediction, top: int = 3) -> Visual | None:
    """Per top composition, state and object: how many logit points each stage added (the exact split of
    the logit); the gated extension's local weight is printed beside each row."""
    rows = _stage_rows(prediction, prediction.explanations)
    if not rows:
        return None
    rows = rows[: 3 * top]
    local = np.array([row[1] for row in rows])
    glob = np.array([row[2] for row in rows])
    gated = all(row[3] is not None for row in rows)
    image = horizontal_bars([f"{row[0]}  gate {row[3]:.2f}" if gated else row[0] for row in rows], [
        Series("upper bar: added by the local-details stage", LOCAL_COLOUR, local),
        Series("lower bar: added by the whole-scene stage", GLOBAL_COLOUR, glob),
    ], "change in the match score (logit points)", bar_height=13)
    untrained = not np.any(np.abs(np.concatenate([local, glob])) > 1e-9)
    caption = ("For each top answer, and for its state and its object, the upper bar shows how much the look at small "
               "details and the lower bar how much the look at the whole scene raised (right) or lowered (left) its "
               "match score; with the plain description's own match they add up exactly to the score used.")
    if gated:
        caption += (" 'gate' is the share a learned switch gave to details, shown for reference only: that switch is "
                    "our reconstruction, since the paper does not publish it.")
    if untrained:
        caption = "The two stages add nothing yet: this model is untrained, so it scores exactly as CLIP does. " + caption
    elif not prediction.trained:
        caption = "This model is untrained: what the two stages add is not learned yet. " + caption
    description = ("Bar chart of what each stage added to the match score. " + "; ".join(
        f"{row[0].strip()}: details {row[1]:+.2f}, whole scene {row[2]:+.2f}"
        + (f", gate {row[3]:.2f}" if gated else "") for row in rows) + ".")
    return Visual("What each stage added to the score", image, caption, description)


def msci_attention_visual(prediction: Prediction, photo: Image.Image) -> Visual | None:
    """Stage-1 (local) and stage-2 (global) attention of the top composition over the photo."""
    maps = []
    for key, title in (("stage1_attention", "Stage 1: local details"), ("stage2_attention", "Stage 2: whole scene")):
        grid = as_grid(prediction.explanations[key]) if key in prediction.explanations else None
        if grid is not None:
            maps.append((title, grid))
    if not maps:
        return None
    top = prediction.ranking[0]
    return Visual(f"Where the model looked for '{top.state} {top.object}'", heatmap_panels(photo, maps),
                  "Beside the photo, the parts the top answer paid most attention to, first for details, then for the "
                  "whole scene: the more attention, the stronger the colour (see the key under the pictures).",
                  heatmap_description(f"where the model looked for '{top.state} {top.object}'", maps),
                  photographic=True)


def refiner_attention_visual(prediction: Prediction, photo: Image.Image) -> Visual | None:
    """Attention of the state, object and composition query groups over the photo."""
    attention = prediction.explanations.get("query_attention")
    if attention is None:
        return None
    attention = np.asarray(attention, dtype=np.float64)
    groups = list(prediction.explanations.get("query_groups") or ["state", "object", "composition"])
    if attention.ndim != 3 or attention.shape[0] != len(groups):
        return None
    maps = [(f"{group.capitalize()} questions", attention[index]) for index, group in enumerate(groups)]
    return Visual("What each group of learned questions looked at", heatmap_panels(photo, maps),
                  "The model sends three groups of learned questions over the photo, about the state, the object and "
                  "the pair; the stronger the colour, the more that group looked there (see the key).",
                  heatmap_description("where each group of learned questions looked", maps), photographic=True)


def refiner_contributions_visual(prediction: Prediction) -> Visual | None:
    """How much each query group raised each top composition's score (only when some group did)."""
    contributions = prediction.explanations.get("group_contributions")
    if contributions is None:
        return None
    values = np.asarray(contributions, dtype=np.float64)
    groups = list(prediction.explanations.get("query_groups") or ["state", "object", "composition"])
    if values.ndim != 2 or values.shape[1] != len(groups) or not np.any(np.abs(values) > 1e-9):
        return None
    names = [_shorten(f"{item.state} {item.object}") for item in prediction.ranking][: values.shape[0]]
    colours = [LOCAL_COLOUR, GLOBAL_COLOUR, THIRD_COLOUR]
    image = horizontal_bars(names, [
        Series(f"{group} questions", colours[index % len(colours)], values[: len(names), index],
               [group] * len(names), text_at_end=True)
        for index, group in enumerate(groups)], "change in score", bar_height=16)
    return Visual("Which questions helped each answer", image,
                  "Each answer has one bar per group of questions, named at its end: to the right, that group raised "
                  "the answer's score; to the left, lowered it.",
                  f"Bar chart of how much the state, object and composition questions changed the scores of "
                  f"{', '.join(names)}.")


def svip_patches_visual(prediction: Prediction, photo: Image.Image) -> Visual | None:
    """The photo with kept and replaced super-patches, with a legend."""
    kept = prediction.explanations.get("kept_mask")
    mask = as_grid(kept) if kept is not None else None
    if mask is None:
        return None
    mask = mask > 0.5
    view = model_view(photo).convert("RGBA")
    shade = Image.new("RGBA", view.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(shade)
    rows, cols = mask.shape
    cell_h, cell_w = view.height / rows, view.width / cols
    for row in range(rows):
        for col in range(cols):
            box = (round(col * cell_w), round(row * cell_h),
                   round((col + 1) * cell_w) - 1, round((row + 1) * cell_h) - 1)
            if not mask[row, col]:
                draw.rectangle(box, fill=REPLACED_COLOUR + (170,), outline=(255, 255, 255, 200))
    picture = Image.alpha_composite(view, shade).convert("RGB")
    explanations = prediction.explanations
    active = bool(explanations.get("context_active", True))
    by_student = explanations.get("selection") == "patchcls"
    judged = "judged unrelated by a learned patch picker" if by_student else "least looked at by the network"
    replaced = f"{'replaced' if active else 'would be replaced'}: {judged} ({int((~mask).sum())})"
    legend = [((255, 255, 255), f"kept as is ({int(mask.sum())})"), (REPLACED_COLOUR, replaced)]
    agreement = explanations.get("patchcls_agreement")
    if by_student:
        how = (f"A small learned patch picker chose the shaded parts; on validation photos {100 * float(agreement):.0f}% "
               "of the parts it replaces are ones the network's own attention also ranks lowest.")
    else:
        how = "The shaded parts are those the network's attention (rollout over its layers) looked at least."
        if agreement is not None:
            how += (f" The learned patch picker is not used: it agreed with the attention on only "
                    f"{100 * float(agreement):.0f}% of the replaced parts on validation photos.")
    if not active and prediction.trained:
        how += (" Nothing is actually replaced: this model was trained with the quick recipe, which does not "
                "learn the hint, so the shaded parts are only marked.")
    elif not active:
        how += " Nothing is replaced yet: this model is untrained, so it scores exactly as CLIP does."
    return Visual("Which parts of the photo were kept", compose_panels([("The photo as the model sees it", picture)],
                                                                       legend),
                  "The model keeps the parts of the photo that matter (clear) and gives the other parts (shaded) a "
                  "learned hint about states and objects instead. " + how, photographic=True)


def _evidence_cells(prediction: Prediction) -> list[tuple[str, int, int]]:
    """(label, row, col) of the evidence super-patch of each distinct top state and object."""
    explanations = prediction.explanations
    cells: list[tuple[str, int, int]] = []
    for kind, key in (("state", "evidence_state_patch"), ("object", "evidence_object_patch")):
        if key not in explanations:
            continue
        where = np.asarray(explanations[key]).reshape(-1, 2)
        shown: set[str] = set()
        for item, (row, col) in zip(prediction.ranking, where):
            name = getattr(item, kind)
            if name not in shown:
                shown.add(name)
                cells.append((f"{kind}: {_shorten(name, 18)}", int(row), int(col)))
    return cells


def svip_evidence_visual(prediction: Prediction, photo: Image.Image) -> Visual | None:
    """Each top label's evidence patch: where the photo best matches that state or object."""
    mask = as_grid(prediction.explanations["kept_mask"]) if "kept_mask" in prediction.explanations else None
    cells = _evidence_cells(prediction)
    if not cells or mask is None:
        return None
    states = [cell for cell in cells if cell[0].startswith("state")][:3]
    objects = [cell for cell in cells if cell[0].startswith("object")][:3]
    rows, cols = mask.shape
    view = model_view(photo)
    cell_h, cell_w = view.height / rows, view.width / cols
    panels = []
    for title, row, col in states + objects:
        picture = view.resize((176, 176), Image.BICUBIC)
        scale = picture.width / view.width
        draw_evidence_box(picture, (col * cell_w * scale, row * cell_h * scale, (col + 1) * cell_w * scale,
                                    (row + 1) * cell_h * scale), title.split(": ", 1)[-1])
        panels.append((title, picture))
    places = "; ".join(f"{title} at {where_in_photo(_one_hot(mask.shape, row, col))}" for title, row, col in
                       states + objects)
    return Visual("The evidence for each answer", compose_panels(panels),
                  "In each copy of the photo, the outlined box marks the part that best matches that state or object, "
                  "with the word written on the box.",
                  f"Copies of the photo, each with one boxed part: {places}.", photographic=True)


def _one_hot(shape: tuple[int, int], row: int, col: int) -> np.ndarray:
    grid = np.zeros(shape)
    grid[min(row, shape[0] - 1), min(col, shape[1] - 1)] = 1.0
    return grid


def draw_evidence_box(picture: Image.Image, box: tuple[float, float, float, float], label: str) -> None:
    """A thick box, black outside and white inside so it shows on any content, with its label on a tab."""
    draw = ImageDraw.Draw(picture)
    # Kept 3 px inside the picture, so a box on the edge keeps its black outline.
    left, top = max(3.0, box[0]), max(3.0, box[1])
    right, bottom = min(picture.width - 4.0, box[2]), min(picture.height - 4.0, box[3])
    draw.rectangle((left - 3, top - 3, right + 3, bottom + 3), outline="black", width=3)
    draw.rectangle((left, top, right, bottom), outline=EVIDENCE_COLOUR, width=3)
    font = _font(13)
    text_width = draw.textlength(label, font=font)
    tab_top = top - 24 if top >= 24 else bottom + 3
    tab_left = min(max(0, left - 3), picture.width - text_width - 10)
    draw.rectangle((tab_left, tab_top, tab_left + text_width + 10, tab_top + 20), fill="black")
    draw.text((tab_left + 5, tab_top + 2), label, fill="white", font=font)


VisualBuilder = Callable[[Prediction, Image.Image], "Visual | None"]
_MODEL_VISUALS: dict[str, tuple[VisualBuilder, ...]] = {
    "msci": (lambda p, photo: msci_weights_visual(p), msci_attention_visual),
    "refiner": (refiner_attention_visual, lambda p, photo: refiner_contributions_visual(p)),
    "svip": (svip_patches_visual, svip_evidence_visual),
}


def build_visuals(prediction: Prediction, photo: Image.Image) -> list[Visual]:
    """Every visual the prediction's explanations allow: the model's own, else how the score is made."""
    visuals = [builder(prediction, photo) for builder in _MODEL_VISUALS.get(prediction.model, ())]
    visuals = [visual for visual in visuals if visual is not None]
    if not visuals:
        parts = score_parts_visual(prediction)
        if parts is not None:
            visuals.append(parts)
    return visuals
