"""One picture of an explanation with its caption and alt text, and the frame that marks it as not meaningful."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw

from .bar_chart import font as _font


@dataclass
class Visual:
    """One picture of an explanation, the sentence shown under it and its text for screen readers."""

    title: str
    image: Image.Image
    caption: str
    description: str = ""  # what the picture shows, for its alt text (the caption says how to read it)
    photographic: bool = False  # made of the photo (heat maps, patches): stored as JPEG, charts as PNG

    @property
    def alt(self) -> str:
        """Alt text: what the picture shows, else its title and caption."""
        return self.description or f"{self.title}. {self.caption}"


NOT_MEANINGFUL_COLOUR = (153, 27, 27)  # dark red: white text on it is 8.3:1
MARK_BORDER = 6
MARK_BAND = 34
MARK_TEXT = 17


def mark_not_meaningful(visual: Visual, text: str) -> Visual:
    """The visual inside a dark red frame with 'text' on a band above it: marked as not meaningful without
    covering any of its titles, axes or labels (the picture itself is unchanged), and said so in its alt text."""
    image = visual.image.convert("RGB")
    canvas = Image.new("RGB", (image.width + 2 * MARK_BORDER, image.height + MARK_BAND + MARK_BORDER),
                       NOT_MEANINGFUL_COLOUR)
    canvas.paste(image, (MARK_BORDER, MARK_BAND))
    draw = ImageDraw.Draw(canvas)
    words = text.upper()
    size = MARK_TEXT
    while size > 11 and draw.textlength(words, font=_font(size, bold=True)) > canvas.width - 2 * MARK_BORDER:
        size -= 1
    font = _font(size, bold=True)
    top = (MARK_BAND - size) / 2 - 1
    draw.text((MARK_BORDER + 4, top), words, font=font, fill="white")
    return Visual(visual.title, canvas, visual.caption, f"{visual.alt} Marked: {text}.", visual.photographic)
