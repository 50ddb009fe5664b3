"""What differs between the models' answers: one table (compositions as rows, models as columns, rank
changes against the CLIP baseline marked) and a one-line headline. Pure functions returning HTML."""

from __future__ import annotations

import html
from typing import Sequence

from ..models.base import Prediction
from .text import escape_markdown

BASELINE = "clip"
SHOWN_RANKS = 5


def ranks(prediction: Prediction) -> dict[str, int]:
    """'state object' -> its rank (1 = best) in a prediction's ranking."""
    return {f"{item.state} {item.object}": index + 1 for index, item in enumerate(prediction.ranking)}


def comparison_rows(predictions: dict[str, Prediction], order: Sequence[str]) -> list[str]:
    """Every composition in some model's top SHOWN_RANKS, by its best rank in any model (the baseline's
    order breaking ties)."""
    by_model = {name: ranks(predictions[name]) for name in order if name in predictions}
    rows: dict[str, tuple[int, int]] = {}
    for position, name in enumerate(order):
        for pair, rank in by_model.get(name, {}).items():
            if rank <= SHOWN_RANKS:
                current = rows.get(pair)
                rows[pair] = (rank, position) if current is None else (min(current[0], rank), current[1])
    return sorted(rows, key=lambda pair: rows[pair])


NOT_IN_BASELINE = "★"  # not "new": Predict calls a pair never seen in training a "new combination"
LEGEND = ("How to read it: #1 is a model's best guess. ▲2 or ▼1: that many places higher or lower than the CLIP "
          f"baseline ranks it. {NOT_IN_BASELINE}: not in the CLIP baseline's top five. —: not in that model's top five.")


def _change(rank: int | None, baseline: int | None) -> str:
    if rank is None or baseline is None:
        return (f' <span class="czsl-change czsl-new" title="not in the CLIP baseline\'s top five">{NOT_IN_BASELINE}'
                '</span>') if rank is not None and baseline is None else ""
    if rank < baseline:
        return f' <span class="czsl-change czsl-up" title="higher than in the CLIP baseline">▲{baseline - rank}</span>'
    if rank > baseline:
        return f' <span class="czsl-change czsl-down" title="lower than in the CLIP baseline">▼{rank - baseline}</span>'
    return ""


def comparison_table_html(predictions: dict[str, Prediction], order: Sequence[str],
                          display_names: dict[str, str]) -> str:
    """A table: each composition's rank under each model, ▲/▼ where it moved against the CLIP baseline."""
    names = [name for name in order if name in predictions]
    by_model = {name: ranks(predictions[name]) for name in names}
    baseline = by_model.get(BASELINE, {})
    header = "".join(f'<th scope="col">{html.escape(display_names.get(name, name))}</th>' for name in names)
    body = []
    for pair in comparison_rows(predictions, names):
        cells = []
        for name in names:
            rank = by_model[name].get(pair)
            shown = rank if rank is not None and rank <= SHOWN_RANKS else None
            if shown is None:
                cells.append('<td class="czsl-absent">—</td>')
                continue
            change = "" if name == BASELINE else _change(shown, baseline.get(pair))
            top = " czsl-top" if shown == 1 else ""
            cells.append(f'<td class="czsl-rank{top}">#{shown}{change}</td>')
        body.append(f'<tr><th scope="row">{html.escape(pair)}</th>{"".join(cells)}</tr>')
    return (f'<div class="czsl-compare-wrap"><table class="czsl-compare"><caption>{html.escape(LEGEND)}</caption>'
            f'<thead><tr><th scope="col">Answer</th>{header}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def comparison_headline(predictions: dict[str, Prediction], order: Sequence[str],
                        display_names: dict[str, str]) -> str:
    """One line: do the models agree on the top answer, and if not, who says what."""
    names = [name for name in order if name in predictions and predictions[name].ranking]
    if not names:
        return "No model gave an answer."
    tops = {name: f"{predictions[name].ranking[0].state} {predictions[name].ranking[0].object}" for name in names}
    if len(set(tops.values())) == 1:
        return f"All {len(names)} models give the same best guess: **{escape_markdown(next(iter(tops.values())))}**."
    groups: dict[str, list[str]] = {}  # best guess -> the models giving it, in the table's order (CLIP first)
    for name in names:
        groups.setdefault(tops[name], []).append(escape_markdown(display_names.get(name, name)))
    says = "; ".join(f"{_joined(models)}: **{escape_markdown(answer)}**" for answer, models in groups.items())
    return f"The models' best guesses differ. {says}."


def _joined(names: list[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
