"""Plots and photo overlays from a Prediction's explanation arrays, each with one plain sentence.

Only plain arrays come in (Prediction.explanations); no model code runs here. A visual whose
arrays are missing is skipped, so a model that explains less still gets a page."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib import colormaps, font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from ..models.base import Prediction, RankedPair

VIEW_SIZE = 224  # the models see the centre square of the photo at this size
LOCAL_COLOUR = "#2a9d8f"
GLOBAL_COLOUR = "#e9a23b"
COMPOSITION_COLOUR = "#4c72b0"
PRODUCT_COLOUR = "#dd8452"
REPLACED_COLOUR = (74, 78, 105)
EVIDENCE_COLOUR = (255, 209, 102)
PANEL_GAP = 10
TITLE_HEIGHT = 26
LEGEND_HEIGHT = 30
# Matplotlib's Agg canvases are independent, but its font cache and colormap registry are
# process-wide; one lock keeps concurrent predictions from rendering at the same instant.
RENDER_LOCK = threading.Lock()


@dataclass
class Visual:
    """One picture of an explanation, the sentence shown under it and its text for screen readers."""

    title: str
    image: Image.Image
    caption: str
    description: str = ""  # what the picture shows, for its alt text (the caption says how to read it)

    @property
    def alt(self) -> str:
        """Alt text: what the picture shows, else its title and caption."""
        return self.description or f"{self.title}. {self.caption}"


def watermark(visual: Visual, text: str) -> Visual:
    """The visual with 'text' stamped across it in large letters, and said so in its alt text."""
    image = visual.image.convert("RGBA")
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = _font(max(14, min(image.width // 14, 40)))
    words = text.upper()
    width = draw.textlength(words, font=font)
    step = max(60, image.height // 3)
    for top in range(step // 3, image.height, step):
        box = draw.textbbox(((image.width - width) / 2, top), words, font=font)
        draw.rectangle((box[0] - 8, box[1] - 4, box[2] + 8, box[3] + 4), fill=(255, 255, 255, 170))
        draw.text(((image.width - width) / 2, top), words, font=font, fill=(160, 20, 20, 235))
    stamped = Image.alpha_composite(image, layer).convert("RGB")
    return Visual(visual.title, stamped, visual.caption, f"{visual.alt} Stamped: {text}.")


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


def figure_to_image(figure: Figure) -> Image.Image:
    """Render a matplotlib figure to an RGB image."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def finish_bar_chart(figure: Figure, axis, positions: np.ndarray, labels: Sequence[str], xlabel: str,
                     fontsize: int = 9, **legend: Any) -> Image.Image:
    """Label a horizontal bar chart the same way everywhere and render it (call under RENDER_LOCK)."""
    axis.set_yticks(positions, labels, fontsize=fontsize)
    axis.set_xlabel(xlabel)
    axis.legend(fontsize=8, **(legend or {"loc": "lower right"}))
    axis.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    return figure_to_image(figure)


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


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Matplotlib's DejaVu Sans, so photo panels and charts share one typeface."""
    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except OSError:
        return ImageFont.load_default(size=size)


def compose_panels(panels: Sequence[tuple[str, Image.Image]],
                   legend: Sequence[tuple[tuple[int, int, int], str]] = ()) -> Image.Image:
    """Pictures side by side, each with a title above, and an optional colour legend below (drawn
    with PIL: a fraction of matplotlib's time, which matters for every prediction)."""
    font = _font(13)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    legend_width = sum(22 + int(measure.textlength(text, font=font)) + 18 for _, text in legend) + PANEL_GAP
    width = max(sum(image.width for _, image in panels) + PANEL_GAP * (len(panels) + 1), legend_width)
    height = TITLE_HEIGHT + max(image.height for _, image in panels) + PANEL_GAP + (LEGEND_HEIGHT if legend else 0)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    left = PANEL_GAP
    for title, image in panels:
        text_width = draw.textlength(title, font=font)
        draw.text((left + (image.width - text_width) / 2, 5), title, fill="black", font=font)
        canvas.paste(image, (left, TITLE_HEIGHT))
        left += image.width + PANEL_GAP
    if legend:
        x = PANEL_GAP
        y = height - LEGEND_HEIGHT + 6
        for colour, text in legend:
            draw.rectangle((x, y, x + 16, y + 16), fill=colour, outline="black")
            draw.text((x + 22, y), text, fill="black", font=font)
            x += 22 + int(draw.textlength(text, font=font)) + 18
    return canvas


def heat_overlay(view: Image.Image, grid: np.ndarray, opacity: float = 0.55) -> Image.Image:
    """A heat map (bright = high) blended over the model's view of the photo."""
    heat = Image.fromarray(np.uint8(255 * _normalised(grid))).resize(view.size, Image.BILINEAR)
    colours = colormaps["inferno"](np.asarray(heat, dtype=np.float64) / 255.0)[..., :3] * 255.0
    blended = (1 - opacity) * np.asarray(view, dtype=np.float64) + opacity * colours
    return Image.fromarray(np.uint8(np.clip(blended, 0, 255)))


def heatmap_panels(photo: Image.Image, maps: Sequence[tuple[str, np.ndarray]]) -> Image.Image:
    """The model's view of the photo with one heat map per panel (bright = looked at most)."""
    view = model_view(photo)
    return compose_panels([(title, heat_overlay(view, grid)) for title, grid in maps])


def _shorten(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------ per model
def score_parts_visual(prediction: Prediction) -> Visual | None:
    """How each top composition's score splits into its two terms (every model has this)."""
    parts = prediction.explanations.get("score_parts")
    if not isinstance(parts, dict) or "composition" not in parts or "state_times_object" not in parts:
        return None
    names = [_shorten(f"{item.state} {item.object}") for item in prediction.ranking]
    composition = np.asarray(parts["composition"], dtype=np.float64)[: len(names)]
    product = np.asarray(parts["state_times_object"], dtype=np.float64)[: len(names)]
    with RENDER_LOCK:
        figure = Figure(figsize=(6.4, 0.45 * len(names) + 1.3), dpi=100)
        axis = figure.add_subplot(1, 1, 1)
        rows = np.arange(len(names))[::-1]
        axis.barh(rows, composition, color=COMPOSITION_COLOUR, label="match with 'a photo of STATE OBJECT'")
        axis.barh(rows, product, left=composition, color=PRODUCT_COLOUR,
                  label="state probability × object probability")
        image = finish_bar_chart(figure, axis, rows, names, "score")
    return Visual("How each score is made", image,
                  "Each score adds how well the photo matches the whole phrase (blue) to how likely the state and "
                  "the object are on their own, multiplied (orange).")


def _weight_rows(prediction: Prediction, explanations: dict[str, Any]) -> list[tuple[str, float, float]] | None:
    """(row name, local weight, global weight) for each top composition and its state and object."""
    gates = {}
    for key in ("gate_composition", "gate_state", "gate_object"):
        if key not in explanations:
            return None
        gate = np.asarray(explanations[key], dtype=np.float64)
        if gate.ndim != 2 or gate.shape[1] != 2:
            return None
        gates[key] = gate
    rows = []
    for index, item in enumerate(prediction.ranking[: len(gates["gate_composition"])]):
        for kind, key, name in (("composition", "gate_composition", f"{item.state} {item.object}"),
                                ("state", "gate_state", item.state), ("object", "gate_object", item.object)):
            local, glob = gates[key][index]
            prefix = "" if kind == "composition" else "   "
            rows.append((f"{prefix}{_shorten(name, 24)} ({kind})", float(local), float(glob)))
    return rows


def msci_weights_visual(prediction: Prediction, top: int = 3) -> Visual | None:
    """Stacked bars of local vs global weight per top composition, state and object."""
    rows = _weight_rows(prediction, prediction.explanations)
    if not rows:
        return None
    rows = rows[: 3 * top]
    with RENDER_LOCK:
        figure = Figure(figsize=(6.4, 0.32 * len(rows) + 1.4), dpi=100)
        axis = figure.add_subplot(1, 1, 1)
        positions = np.arange(len(rows))[::-1]
        local = np.array([row[1] for row in rows])
        glob = np.array([row[2] for row in rows])
        axis.barh(positions, local, color=LOCAL_COLOUR, label="local details (early layers)")
        axis.barh(positions, glob, left=local, color=GLOBAL_COLOUR, label="global view (late layers)")
        axis.set_xlim(0, 1)
        image = finish_bar_chart(figure, axis, positions, [row[0] for row in rows], "share of the weight", fontsize=8,
                                 loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False)
    return Visual("Local details or the big picture?", image,
                  "For each top answer, and for its state and its object, the bar shows how much the model relied on "
                  "small local details (green) versus the overall scene (orange).")


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
                  "Bright areas are the parts of the photo the top answer paid most attention to, first for details, "
                  "then for the whole scene.")


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
                  "the pair; bright areas are where each group looked.")


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
    colours = [LOCAL_COLOUR, GLOBAL_COLOUR, COMPOSITION_COLOUR]
    with RENDER_LOCK:
        figure = Figure(figsize=(6.4, 0.5 * len(names) + 1.4), dpi=100)
        axis = figure.add_subplot(1, 1, 1)
        positions = np.arange(len(names))[::-1]
        height = 0.8 / len(groups)
        for index, group in enumerate(groups):
            axis.barh(positions + (1 - index) * height, values[: len(names), index], height=height,
                      color=colours[index % len(colours)], label=f"{group} questions")
        axis.axvline(0, color="black", linewidth=0.8)
        image = finish_bar_chart(figure, axis, positions, names, "change in score")
    return Visual("Which questions helped each answer", image,
                  "Bars to the right mean that group of questions raised the answer's score; to the left, lowered it.")


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
    legend = [((255, 255, 255), f"kept as is ({int(mask.sum())})"),
              (REPLACED_COLOUR, f"replaced: judged unrelated ({int((~mask).sum())})")]
    return Visual("Which parts of the photo were kept", compose_panels([("The photo as the model sees it", picture)],
                                                                       legend),
                  "The model keeps the parts of the photo that matter (clear) and gives the parts it judged unrelated "
                  "(shaded) a learned hint about states and objects instead.")


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
        picture = view.copy()
        ImageDraw.Draw(picture).rectangle((col * cell_w, row * cell_h, (col + 1) * cell_w, (row + 1) * cell_h),
                                          outline=EVIDENCE_COLOUR, width=4)
        panels.append((title, picture.resize((168, 168), Image.BICUBIC)))
    return Visual("The evidence for each answer", compose_panels(panels),
                  "The yellow box marks the part of the photo that best matches each top state and object.")


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
