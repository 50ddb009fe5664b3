"""Horizontal bar charts drawn with PIL: the explanation charts under every prediction.

Matplotlib spends most of a chart's ~0.25 s laying out and rasterising text, which made the chart the largest
cost of an MSCI prediction on a small backbone and serialised concurrent visitors on its render lock. PIL draws
the same chart in a few milliseconds and needs no lock: every call builds its own image with its thread's fonts."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH = 480  # shown about 325 px wide on a phone: 15 px words stay about 10 px
MIN_PLOT_WIDTH = 160
TOP_MARGIN = 12  # the viewer's download and full-screen buttons sit above the picture (theme.py), not over it
SIDE_MARGIN = 14
TEXT = 15  # px: row names, ticks, axis title and legend; still about 11 px when a phone shrinks the picture
BAR_TEXT = 13
GRID_COLOUR = (225, 225, 225)
AXIS_COLOUR = (40, 40, 40)
_THREAD_FONTS = threading.local()


@dataclass(frozen=True)
class Series:
    """One bar per row: its legend entry, colour, values and optional words written on each bar."""

    label: str
    colour: str
    values: Sequence[float]
    bar_texts: Sequence[str] = ()
    text_colour: str = "white"
    text_at_end: bool = False  # after the bar's end instead of inside it


@lru_cache(maxsize=2)
def _font_file(bold: bool) -> str:
    from matplotlib import font_manager

    return font_manager.findfont(f"DejaVu Sans:{'bold' if bold else 'normal'}")


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (it ships with matplotlib), so charts and photo panels share one typeface. Each thread keeps
    its own font objects: a FreeType face must not be used by two threads at once."""
    fonts = _THREAD_FONTS.__dict__.setdefault("fonts", {})
    if (size, bold) not in fonts:
        try:
            fonts[size, bold] = ImageFont.truetype(_font_file(bold), size)
        except OSError:
            fonts[size, bold] = ImageFont.load_default(size=size)
    return fonts[size, bold]


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    span = max(high - low, 1e-9)
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(factor * power for factor in (1, 2, 5, 10) if factor * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * span:
        if value >= low - 1e-9 * span:
            ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def tick_text(value: float, ticks: Sequence[float]) -> str:
    """A tick value with as many decimals as the tick spacing needs."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{decimals}f}".replace("-", "−")


def value_range(series: Sequence[Series], stacked: bool) -> tuple[float, float]:
    """The span the axis must show: zero and every bar's end (stacked bars end at their running total)."""
    values = np.array([list(s.values) for s in series], dtype=np.float64)
    ends = np.cumsum(values, axis=0) if stacked else values
    low, high = min(0.0, float(ends.min())), max(0.0, float(ends.max()))
    if high - low < 1e-9:
        high = low + 1.0
    pad = 0.04 * (high - low)
    return low - (pad if low < 0 else 0.0), high + (pad if high > 0 else 0.0)


def horizontal_bars(rows: Sequence[str], series: Sequence[Series], x_label: str, stacked: bool = False,
                    bar_height: int = 22) -> Image.Image:
    """Rows top to bottom, each with one bar per series (side by side, or end to end when stacked), a value axis
    with round ticks under them, the axis title, and a legend of the series below everything."""
    # A value that is not finite has no length: drawn as no bar (the picture's alt text still gives the number).
    series = [replace(entry, values=np.nan_to_num(np.asarray(entry.values, dtype=np.float64), nan=0.0, posinf=0.0,
                                                  neginf=0.0)) for entry in series]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_font, bar_font = font(TEXT), font(BAR_TEXT, bold=True)
    label_width = max(int(measure.textlength(row, font=text_font)) for row in rows) if rows else 0
    end_texts = [text for s in series if s.text_at_end for text in s.bar_texts]
    end_room = max((int(measure.textlength(text, font=font(BAR_TEXT))) + 8 for text in end_texts), default=0)
    negative_ends = any(v < 0 for s in series if s.text_at_end and s.bar_texts for v in s.values)
    plot_left = SIDE_MARGIN + label_width + 10 + (end_room if negative_ends else 0)
    width = max(WIDTH, plot_left + MIN_PLOT_WIDTH + SIDE_MARGIN + end_room)  # long row names widen the picture
    plot_right = width - SIDE_MARGIN - end_room
    bars_per_row = 1 if stacked else len(series)
    row_height = bars_per_row * bar_height + 14
    plot_top = TOP_MARGIN
    plot_bottom = plot_top + row_height * len(rows)
    legend_top = plot_bottom + 2 * TEXT + 26
    height = legend_top + len(series) * (TEXT + 8) + 10

    low, high = value_range(series, stacked)
    ticks = nice_ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])
    scale = (plot_right - plot_left) / (high - low)

    def x(value: float) -> float:
        return plot_left + (value - low) * scale

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for tick in ticks:
        draw.line((x(tick), plot_top, x(tick), plot_bottom), fill=GRID_COLOUR)
        text = tick_text(tick, ticks)
        draw.text((x(tick) - measure.textlength(text, font=text_font) / 2, plot_bottom + 6), text,
                  fill=AXIS_COLOUR, font=text_font)
    label_length = measure.textlength(x_label, font=text_font)  # centred under the plot, moved in to fit
    label_left = max(SIDE_MARGIN, min((plot_left + plot_right - label_length) / 2, width - SIDE_MARGIN - label_length))
    draw.text((label_left, plot_bottom + TEXT + 12), x_label, fill=AXIS_COLOUR, font=text_font)

    for index, row in enumerate(rows):
        top = plot_top + index * row_height + 7
        draw.text((plot_left - 10 - measure.textlength(row, font=text_font), top + (bars_per_row * bar_height - TEXT) / 2 - 2),
                  row, fill="black", font=text_font)
        start = 0.0
        for number, entry in enumerate(series):
            value = float(entry.values[index])
            begin, end = (start, start + value) if stacked else (0.0, value)
            bar_top = top + (0 if stacked else number * bar_height)
            left, right = sorted((x(begin), x(end)))
            if right - left >= 0.5:
                draw.rectangle((left, bar_top + 1, right, bar_top + bar_height - 2), fill=entry.colour)
            text = entry.bar_texts[index] if index < len(entry.bar_texts) else ""
            if text:
                _bar_text(draw, text, entry, (left, right), bar_top, bar_height, bar_font, value < 0)
            if stacked:
                start += value
    draw.line((x(0.0), plot_top, x(0.0), plot_bottom), fill=AXIS_COLOUR, width=1)
    draw.line((plot_left, plot_bottom, plot_right, plot_bottom), fill=AXIS_COLOUR, width=1)

    # Under the plot, moved left as far as needed for the longest entry to fit the picture.
    legend_width = 24 + max((int(measure.textlength(entry.label, font=text_font)) for entry in series), default=0)
    legend_left = max(SIDE_MARGIN, min(plot_left, width - SIDE_MARGIN - legend_width))
    for number, entry in enumerate(series):
        top = legend_top + number * (TEXT + 8)
        draw.rectangle((legend_left, top + 1, legend_left + 16, top + 17), fill=entry.colour)
        draw.text((legend_left + 24, top), entry.label, fill="black", font=text_font)
    return image


def _bar_text(draw: ImageDraw.ImageDraw, text: str, entry: Series, span: tuple[float, float], top: int,
              bar_height: int, bar_font: ImageFont.FreeTypeFont | ImageFont.ImageFont, negative: bool) -> None:
    """Write a bar's words inside it (centred), or just past its end."""
    left, right = span
    width = draw.textlength(text, font=bar_font if not entry.text_at_end else font(BAR_TEXT))
    y = top + (bar_height - BAR_TEXT) / 2 - 2
    if entry.text_at_end:
        x = left - 4 - width if negative else right + 4
        draw.text((x, y), text, fill="black", font=font(BAR_TEXT))
    else:
        draw.text(((left + right - width) / 2, y), text, fill=entry.text_colour, font=bar_font)
