"""The explanation bar charts: bar lengths proportional to the values, negative bars left of zero, stacked bars
end to end, and round ticks."""

from __future__ import annotations

import numpy as np
import pytest

from czsl_models.ui.bar_chart import Series, horizontal_bars, nice_ticks

BLUE = (0, 114, 178)
ORANGE = (230, 159, 0)


def _runs(image, colour) -> list[tuple[int, int, int]]:
    """(row, first column, last column) of every pixel row holding the colour, legend swatches excluded."""
    pixels = np.asarray(image)
    mask = (np.abs(pixels.astype(int) - colour).sum(axis=-1) < 10)
    found = []
    for y in range(mask.shape[0]):
        columns = np.flatnonzero(mask[y])
        if columns.size > 20:  # a legend swatch is 17 px wide
            found.append((y, int(columns[0]), int(columns[-1])))
    return found


def _bar_spans(image, colour) -> list[tuple[int, int]]:
    """(left, right) of each bar of one colour, top to bottom."""
    spans, last_row = [], -10
    for y, left, right in _runs(image, colour):
        if y > last_row + 1:
            spans.append((left, right))
        last_row = y
    return spans


def test_bar_lengths_are_proportional_and_negative_bars_go_left_of_zero():
    image = horizontal_bars(["first", "second", "third"],
                            [Series("values", "#0072B2", [1.0, 2.0, -1.0])], "value")
    (l1, r1), (l2, r2), (l3, r3) = _bar_spans(image, BLUE)
    assert l1 == l2 and abs(l1 - r3) <= 2, "all bars start at the zero line (drawn over their first pixel)"
    assert (r2 - l2) / (r1 - l1) == pytest.approx(2.0, rel=0.03)
    assert (r3 - l3) == pytest.approx(r1 - l1, abs=2) and l3 < l1, "the negative bar extends to the left"


def test_stacked_bars_continue_where_the_previous_part_ends():
    image = horizontal_bars(["a", "b"], [Series("one", "#0072B2", [3.0, 1.0]), Series("two", "#E69F00", [1.0, 1.0])],
                            "points", stacked=True)
    blue, orange = _bar_spans(image, BLUE), _bar_spans(image, ORANGE)
    assert len(blue) == len(orange) == 2
    for (_, blue_right), (orange_left, orange_right) in zip(blue, orange):
        assert abs(orange_left - blue_right) <= 1
    assert (orange[0][1] - blue[0][0]) / (orange[1][1] - blue[1][0]) == pytest.approx(2.0, rel=0.03)


def test_ticks_are_round_and_cover_the_values():
    assert nice_ticks(0, 3.05) == [0, 1, 2, 3]
    assert nice_ticks(-0.7, 1.4) == [-0.5, 0, 0.5, 1.0]
    assert nice_ticks(-1300, 200) == [-1000, -500, 0]
    assert nice_ticks(0.0012, 0.0031) == pytest.approx([0.0015, 0.002, 0.0025, 0.003])



def test_values_that_are_not_finite_draw_no_bar_and_no_error():
    image = horizontal_bars(["finite", "nan", "inf"], [Series("values", "#0072B2", [1.0, float("nan"), float("inf")])],
                            "value")
    assert len(_bar_spans(image, BLUE)) == 1


def test_long_row_names_push_the_legend_left_but_never_out_of_the_picture():
    rows = [f"a rather long composition name {index} (composition)  gate 0.45" for index in range(3)]
    image = horizontal_bars(rows, [Series("upper bar: added by the local-details stage", "#0072B2", [0.1, 0.2, 0.3]),
                                   Series("lower bar: added by the whole-scene stage", "#E69F00", [0.3, 0.2, 0.1])],
                            "change")
    right_edge = np.asarray(image)[:, -6:]
    assert (right_edge > 200).all(), "nothing is drawn into the right margin, so no text was cut off"
