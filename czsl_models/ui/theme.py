"""The app's look: a theme whose text passes WCAG AA contrast (4.5:1), and the CSS of the answer card."""

from __future__ import annotations

import gradio as gr

# Text colours checked against their backgrounds (white / the Soft theme's light panels):
# #374151 on white is 10.3:1, #4b5563 on #f3f4f6 is 6.9:1, white on #3730a3 is 10.4:1.
SUBDUED_TEXT = "#4b5563"
BODY_TEXT = "#1f2937"
LABEL_TEXT = "#374151"


def app_theme() -> gr.themes.Base:
    """Gradio's Soft theme with hint, label and footer text dark enough for AA contrast."""
    return gr.themes.Soft(primary_hue="indigo").set(
        body_text_color=BODY_TEXT,
        body_text_color_subdued=SUBDUED_TEXT,
        block_info_text_color=SUBDUED_TEXT,
        block_label_text_color=LABEL_TEXT,
        block_title_text_color=LABEL_TEXT,
        input_placeholder_color=SUBDUED_TEXT,
        button_primary_background_fill="#3730a3",
        button_primary_background_fill_hover="#312e81",
        button_primary_text_color="white",
        block_label_background_fill="#eef2ff",
        checkbox_label_text_color=BODY_TEXT,
    )


APP_CSS = """
.czsl-banner { background: #fff3cd; border: 2px solid #b38600; border-radius: 8px; padding: 6px 14px; }
.czsl-banner p { color: #3d2e00 !important; font-weight: 600; margin: 0; }
#predict-note p { font-size: 0.95rem; }
.czsl-answer { border: 2px solid #3730a3; border-radius: 10px; padding: 12px 16px; background: #ffffff; }
.czsl-answer .czsl-headline { font-size: 1.6rem; line-height: 1.25; margin: 0 0 4px 0; color: #111827; }
.czsl-answer .czsl-caption, .czsl-details .czsl-caption { color: #374151; margin: 2px 0 8px 0; font-size: 0.95rem; }
.czsl-lead { display: inline-block; font-size: 1rem; font-weight: 600; color: #1e3a8a; background: #dbeafe;
  border-radius: 999px; padding: 2px 10px; vertical-align: middle; }
.czsl-stamp { display: inline-block; font-size: 1rem; font-weight: 700; color: #7f1d1d; background: #fee2e2;
  border: 2px dashed #991b1b; border-radius: 6px; padding: 2px 10px; vertical-align: middle; }
.czsl-ranking { margin: 0; padding-left: 1.6em; }
.czsl-ranking li { display: flex; align-items: center; gap: 10px; margin: 4px 0; color: #111827; list-style: decimal; }
.czsl-ranking li::marker { color: #374151; }
.czsl-ranking .czsl-name { flex: 0 1 45%; min-width: 0; overflow-wrap: anywhere; }
.czsl-ranking .czsl-bar { flex: 1 1 auto; height: 12px; background: #e5e7eb; border-radius: 6px; overflow: hidden; }
.czsl-ranking .czsl-bar span { display: block; height: 100%; background: #3730a3; }
.czsl-ranking .czsl-percent { flex: 0 0 3.2em; text-align: right; font-variant-numeric: tabular-nums; }
.czsl-tag { font-size: 0.8rem; color: #374151; background: #f3f4f6; border-radius: 4px; padding: 0 6px; }
/* An out-of-date answer: dashed and its old content faded; the warning itself keeps full contrast (9:1). */
.czsl-previous { border-style: dashed; }
.czsl-previous > :not(.czsl-previous-note) { opacity: 0.5; }
.czsl-previous-note { font-weight: 700; color: #7f1d1d !important; background: #fef2f2; border-radius: 6px;
  padding: 4px 8px; margin: 0 0 6px 0; opacity: 1; }
.czsl-stale-results > :not(.czsl-previous-note) { opacity: 0.5; }
.czsl-looking { color: #374151; margin: 0 0 4px 0; font-size: 0.95rem; overflow-wrap: anywhere; }
.czsl-message { border-left: 5px solid #b91c1c; background: #fef2f2; color: #7f1d1d; padding: 8px 12px;
  border-radius: 6px; font-weight: 600; margin: 0; }
.czsl-message.czsl-info { border-left-color: #3730a3; background: #eef2ff; color: #1e1b4b; }
#predict-explain .icon-button-wrapper { position: static; justify-content: flex-end; }
#predict-explain img { height: auto !important; max-height: none !important; }
/* The previous answer's pictures while the new ones are drawn: faded, and said so after the title; both only
   after a quarter of a second, so that a quick drawing does not make the page flicker. */
#predict-explain.czsl-drawing img { opacity: 0.3; transition: opacity 0.15s 0.25s; }
#predict-explain.czsl-drawing .label-wrap > span:first-child::after { content: " Drawing the picture…";
  animation: czsl-appear 0s 0.25s both; }
@keyframes czsl-appear { from { visibility: hidden; } to { visibility: visible; } }
.czsl-details ol { margin: 0 0 8px 0; padding-left: 1.6em; }
.czsl-parts p { font-weight: 600; margin: 6px 0 2px 0; }
.czsl-compare-wrap { overflow-x: auto; max-width: 100%; }
.czsl-compare { border-collapse: collapse; width: 100%; font-size: 0.95rem; }
.czsl-compare caption { caption-side: top; text-align: left; color: #374151; font-size: 0.9rem; padding-bottom: 6px; }
.czsl-compare th, .czsl-compare td { border-bottom: 1px solid #d1d5db; padding: 5px 8px; text-align: center; }
.czsl-compare th[scope="row"] { text-align: left; font-weight: 600; }
.czsl-compare td.czsl-top { font-weight: 700; background: #eef2ff; }
.czsl-compare td.czsl-absent { color: #4b5563; }
.czsl-change { font-size: 0.8rem; font-weight: 700; border-radius: 4px; padding: 0 4px; }
.czsl-up { color: #064e3b; background: #d1fae5; }
.czsl-down { color: #7c2d12; background: #ffedd5; }
.czsl-new { color: #1e3a8a; background: #dbeafe; }
footer, footer a, footer button { color: #374151 !important; }
/* The examples' table fits the photo's column (a third of a laptop screen): its words wrap, nothing is cut. */
#predict-examples table { table-layout: fixed; width: 100%; }
#predict-examples th, #predict-examples td, #predict-examples th * { overflow-wrap: anywhere; white-space: normal;
  padding-left: 4px; padding-right: 4px; }
@media (min-width: 641px) and (max-width: 1000px) {
  /* A tablet or a narrow window: the photo and its buttons beside the answer, the picture of why under both,
     then the rest (three columns would wrap the picture below the whole settings column). */
  #predict-row { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 12px 16px;
    align-items: start; }
  #predict-inputs, #predict-results, #predict-why { display: contents; }
  #predict-row > *, #predict-inputs > *, #predict-results > *, #predict-why > * { grid-column: 1 / -1; min-width: 0; }
  #predict-image { order: 1; grid-column: 1; }
  #predict-answer { order: 1; grid-column: 2; grid-row: span 2; }
  #predict-buttons { order: 2; grid-column: 1; }
  #predict-explain { order: 3; }
  #predict-note { order: 4; }
  #predict-details, #predict-numbers { order: 5; }
  #predict-model-box, #predict-words, #predict-examples, #predict-more { order: 6; }
}
@media (max-width: 640px) {
  /* The first screen of a phone shows the photo, the words, the answer and the start of its picture of why. */
  #predict-explain.padded { padding-left: 4px; padding-right: 4px; }
  .czsl-banner { padding: 4px 10px; }
  .czsl-banner-more { display: none; }
  #intro h1 { font-size: 1.25rem; margin: 0; }
  #intro p { display: none; }
  /* Gradio folds tabs that do not fit into a menu, measuring a hidden copy: both copies get the smaller size. */
  .tab-wrapper .tab-container button { padding: 6px 6px; font-size: 0.88rem; min-width: 0; }
  /* On a phone, one column: the photo with the buttons beside it, the answer, its picture of why, then the
     rest (the note on the weights, the details, the settings). */
  #predict-row { display: grid; grid-template-columns: 3fr 2fr; gap: 8px; }
  #predict-inputs, #predict-results, #predict-why { display: contents; }
  #predict-row > *, #predict-inputs > *, #predict-results > *, #predict-why > * { grid-column: 1 / -1; min-width: 0; }
  #predict-image { order: 1; grid-column: 1 / 2; }
  #predict-image, #predict-image .image-container { height: 130px !important; min-height: 0 !important; }
  #predict-buttons { order: 2; grid-column: 2 / 3; flex-direction: column; justify-content: center; }
  #predict-buttons button { min-width: 0; width: 100%; padding: 10px 6px; }
  #predict-message, #predict-answer { order: 3; }
  #predict-explain { order: 4; }
  #predict-note { order: 5; }
  #predict-details, #predict-numbers { order: 6; }
  #predict-model-box, #predict-words, #predict-examples, #predict-more { order: 7; }
  .czsl-answer { padding: 8px 10px; }
  /* Compare, once it has compared: its answers first (the photo was just seen in Predict), the thumbnails two
     a row rather than a sideways strip. */
  #compare-row:has(#compare-table table) { flex-direction: column-reverse; }
  #compare-thumbnails .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important;
    grid-auto-flow: row !important; overflow-x: visible !important; }
  .czsl-compare { font-size: 0.8rem; table-layout: fixed; }
  .czsl-compare th, .czsl-compare td { padding: 4px 2px; overflow-wrap: anywhere; }
  .czsl-compare th[scope="row"] { width: 30%; }
  /* The metrics and the epochs tables (Gradio dataframes) fit the phone: cells wrap instead of the table
     running off the edge. */
  #evaluate-table table, #train-epochs table { table-layout: fixed; width: 100% !important;
    min-width: 0 !important; font-size: 0.7rem; }
  #evaluate-table th, #evaluate-table td, #train-epochs th, #train-epochs td,
  #evaluate-table th *, #evaluate-table td *, #train-epochs th *, #train-epochs td * {
    white-space: normal !important; overflow-wrap: break-word; hyphens: auto; min-width: 0 !important;
    max-width: none !important; text-overflow: clip !important; }
  #evaluate-table th, #evaluate-table td, #train-epochs th, #train-epochs td { padding: 4px 3px !important;
    width: auto !important; }
  #evaluate-table th *, #evaluate-table td *, #train-epochs th *, #train-epochs td * {
    padding: 0 !important; margin: 0 !important; font-size: 0.7rem !important; }
  /* The rows on show are the table's own cells (.cell-wrap), outside its sizing table. */
  #evaluate-table .cell-wrap, #evaluate-table .cell-wrap *, #train-epochs .cell-wrap, #train-epochs .cell-wrap * {
    font-size: 0.7rem !important; padding-left: 1px !important; padding-right: 1px !important; }
  #train-epochs .cell-wrap, #train-epochs .cell-wrap * { word-break: normal !important;
    overflow-wrap: normal !important; }
  .czsl-answer .czsl-caption, .czsl-looking { font-size: 0.8rem; line-height: 1.35; margin-bottom: 4px; }
  .czsl-answer .czsl-headline { font-size: 1.2rem; }
  .czsl-answer .czsl-stamp, .czsl-answer .czsl-lead { font-size: 0.85rem; }
  /* The ranked answers as one numbered run of text ("1 striped tiger 44% · 2 ..."): the picture of why fits
     on the first screen under them. */
  .czsl-ranking { padding-left: 0; counter-reset: rank; line-height: 1.5; }
  .czsl-ranking li { display: inline-block; margin: 0 0.5em 0 0; counter-increment: rank; white-space: nowrap;
    max-width: 100%; overflow-wrap: anywhere; }
  .czsl-ranking li::before { content: counter(rank) " "; color: #374151; font-weight: 700; font-size: 0.85em; }
  .czsl-ranking li + li::before { content: "· " counter(rank) " "; }
  .czsl-ranking .czsl-bar { display: none; }
  .czsl-ranking .czsl-percent { margin-left: 0.3em; }
  /* Page chrome kept small, and the picture's viewer buttons left out (a long press saves the picture). */
  #predict-explain .icon-button-wrapper { display: none; }
  #predict-explain .label-wrap, #predict-explain .label-wrap span { font-size: 0.8rem; text-align: left; }
  #predict-answer .html-container { padding: 0; }
  /* The photo and the picture keep the width they had inside the wider margins: the picture's words stay
     about 10 px, and it stays short enough for the first screen. */
  #predict-explain img { max-width: 330px !important; margin: 0 auto; display: block; }
}
"""

# Gradio scopes APP_CSS inside its own container, so the page's outer margins (32 px a side, too much for a
# phone) are set from the page head.
PAGE_HEAD = """<style>
@media (max-width: 640px) { .gradio-container .main.app { padding: 8px 10px !important; } }
</style>"""
