"""Showing visitors' own text (words, file and checkpoint names) safely: as literal text in Markdown and in
HTML toasts, never as markup (an image or link typed as a word must not render)."""

from __future__ import annotations

import html
import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
# An absolute server path inside a message (not a URL's path: no scheme or host before it).
_SERVER_PATH = re.compile(r"(?<![\w:/.~-])(?:/[\w.@+~-]+){2,}/?")


def escape_html(text: object) -> str:
    """Text for an HTML text node (Gradio's toasts and gr.HTML): tags and entities shown literally. Quotes stay
    as they are (they mean nothing in a text node), so API callers, who get the same text, see no `&#x27;`."""
    return html.escape(str(text), quote=False)


def hide_server_paths(text: object) -> str:
    """A message with every absolute server path replaced by its last part (a library may name its files)."""
    return _SERVER_PATH.sub(lambda match: match.group(0).rstrip("/").rsplit("/", 1)[-1], str(text))


def escape_markdown(text: object) -> str:
    """Text for a Markdown context: HTML escaped, then Markdown's punctuation backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))
