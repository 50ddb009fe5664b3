"""The Predict tab's pictures of why, drawn after the answer: the answer event keeps what they need (the
prediction and the model's 224 px view of the photo) in the visitor's session, and a second event, chained
after it, draws them. The answer reaches the screen without waiting for the drawing, and a client of the
/predict event that never asks for pictures never pays for them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr
from PIL import Image

from ..models.base import Prediction
from .answer import Honesty
from .explain import build_visuals, model_view
from .image_files import cached_image_file
from .text import escape_markdown
from .visual import Visual, mark_not_meaningful

LOGGER = logging.getLogger(__name__)
VISUAL_SLOTS = 3
EXPLAIN_TITLE = "Why this answer?"
DRAWING_CLASS = "czsl-drawing"  # the pictures on screen belong to the previous answer until the new ones arrive


@dataclass(frozen=True)
class PicturesToDraw:
    """What the picture event needs, kept between the answer and the drawing (a few hundred KB at most: the
    photo is kept only as the 224 px square the models saw, which is all the pictures show)."""

    prediction: Prediction
    view: Image.Image
    honesty: Honesty


def pictures_to_draw(prediction: Prediction, photo: Image.Image, honesty: Honesty) -> PicturesToDraw:
    """The prediction and the model's view of its photo, for drawing later."""
    return PicturesToDraw(prediction, model_view(photo), honesty)


def draw_pictures(pending: PicturesToDraw) -> list[Visual]:
    """The explanation pictures of one answer, marked when what they show means nothing."""
    visuals = build_visuals(pending.prediction, pending.view)
    if not pending.honesty.explanation_meaningful:
        visuals = [mark_not_meaningful(visual, pending.honesty.caveat) for visual in visuals]
    return visuals


def _sentence(title: str) -> str:
    """A title as the start of a sentence: ends with a full stop unless it has its own punctuation."""
    return title if title.endswith(("?", "!", ".")) else title + "."


def visual_updates(visuals: list[Visual]) -> list[Any]:
    """The picture slots' updates (a picture and its caption per slot; unused slots hidden)."""
    updates: list[Any] = []
    for index in range(VISUAL_SLOTS):
        if index < len(visuals):
            visual = visuals[index]
            picture = cached_image_file(visual.image, visual.photographic)  # encoded here, not on the event loop
            updates += [gr.update(value=picture, label=visual.title, alt_text=visual.alt, visible=True),
                        gr.update(value=f"**{escape_markdown(_sentence(visual.title))}** "
                                        f"{escape_markdown(visual.caption)}", visible=True)]
        else:
            updates += [gr.update(value=None, visible=False), gr.update(value="", visible=False)]
    return updates


def explain_box_update(honesty: Honesty, drawing: bool = False) -> Any:
    """Always open (a presenter explains the picture either way); the title says when it means nothing, and the
    pictures carry the same mark around them. While drawing, the pictures on screen are the previous answer's:
    they are marked (faded, "Drawing the picture…" after the title; CSS shows both only when the drawing takes
    long enough to see, so a quick one does not flicker)."""
    # Short enough for one line on a phone: the mark on the picture and its caption say why.
    title = f"{EXPLAIN_TITLE} (not meaningful)" if not honesty.explanation_meaningful else EXPLAIN_TITLE
    return gr.update(label=title, open=True, elem_classes=[DRAWING_CLASS] if drawing else [])


def picture_outputs(pending: PicturesToDraw | None) -> list[Any]:
    """The explanation box, the slots and the emptied pending state, for the picture event's outputs. Nothing
    pending (the answer failed, or an API client asked for pictures without an answer): nothing changes."""
    if pending is None:
        return [gr.update() for _ in range(1 + 2 * VISUAL_SLOTS)] + [None]
    try:
        visuals = draw_pictures(pending)
    except Exception:  # the answer is on screen already: say the picture failed rather than keep the old one
        LOGGER.exception("Drawing the explanation failed")
        failed = gr.update(label=f"{EXPLAIN_TITLE} (the picture could not be drawn)", open=True, elem_classes=[])
        return [failed, *visual_updates([]), None]
    return [explain_box_update(pending.honesty), *visual_updates(visuals), None]
