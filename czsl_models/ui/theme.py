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
.czsl-confidence { display: inline-block; font-size: 1rem; font-weight: 600; color: #1e3a8a; background: #dbeafe;
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
.czsl-previous { opacity: 0.55; border-style: dashed; }
.czsl-previous-note { font-weight: 700; color: #7f1d1d; margin: 0 0 6px 0; }
.czsl-message { border-left: 5px solid #b91c1c; background: #fef2f2; color: #7f1d1d; padding: 8px 12px;
  border-radius: 6px; font-weight: 600; margin: 0; }
.czsl-details ol { margin: 0 0 8px 0; padding-left: 1.6em; }
.czsl-parts p { font-weight: 600; margin: 6px 0 2px 0; }
.czsl-compare-wrap { overflow-x: auto; max-width: 100%; }
.czsl-compare { border-collapse: collapse; width: 100%; font-size: 0.95rem; }
.czsl-compare caption { caption-side: bottom; text-align: left; color: #374151; font-size: 0.85rem; padding-top: 6px; }
.czsl-compare th, .czsl-compare td { border-bottom: 1px solid #d1d5db; padding: 5px 8px; text-align: center; }
.czsl-compare th[scope="row"] { text-align: left; font-weight: 600; }
.czsl-compare td.czsl-top { font-weight: 700; background: #eef2ff; }
.czsl-compare td.czsl-absent { color: #4b5563; }
.czsl-change { font-size: 0.8rem; font-weight: 700; border-radius: 4px; padding: 0 4px; }
.czsl-up { color: #064e3b; background: #d1fae5; }
.czsl-down { color: #7c2d12; background: #ffedd5; }
.czsl-new { color: #1e3a8a; background: #dbeafe; }
footer, footer a, footer button { color: #374151 !important; }
@media (max-width: 640px) {
  /* On a phone: photo, buttons, then the answer, then the settings (columns would put it below them all). */
  #predict-row { flex-direction: column; }
  #predict-inputs { display: contents; }
  #predict-image { order: 1; }
  #predict-buttons { order: 2; }
  #predict-results { order: 3; }
  #predict-model-box, #predict-words, #predict-examples, #predict-more { order: 4; }
  .czsl-answer .czsl-headline { font-size: 1.35rem; }
  .czsl-ranking .czsl-name { flex-basis: 55%; }
}
"""
