"""Showing visitors' own text (words, file and checkpoint names) safely: as literal text in Markdown and in
HTML toasts, never as markup (an image or link typed as a word must not render)."""

from __future__ import annotations

import html
import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def escape_html(text: object) -> str:
    """Text for an HTML context (Gradio's toasts and gr.HTML): tags and entities shown literally."""
    return html.escape(str(text), quote=True)


def escape_markdown(text: object) -> str:
    """Text for a Markdown context: HTML escaped, then Markdown's punctuation backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))
