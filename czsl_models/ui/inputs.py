"""Turning what visitors type and upload into library objects, and library errors into clear
messages (gr.Error) instead of stack traces."""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import gradio as gr
from PIL import Image

from ..backbones import BackboneError
from ..inputs.images import ImageError, load_image
from ..models.checkpoints import CheckpointError
from ..inputs.vocab import Vocabulary, VocabularyError
from .session import visitor_scope
from .text import escape_html, hide_server_paths

LOGGER = logging.getLogger(__name__)
WORLD_OPEN = "Every state with every object"
WORLD_CLOSED = "Only the pairs I list"
WORLD_CHOICES = [WORLD_OPEN, WORLD_CLOSED]

Function = TypeVar("Function", bound=Callable[..., Any])


def user_error_types() -> tuple[type[BaseException], ...]:
    """Library errors whose message is written for the person using the app."""
    types: list[type[BaseException]] = [BackboneError, CheckpointError, ImageError, VocabularyError]
    try:
        from ..data import DatasetError

        types.append(DatasetError)
    except ImportError:  # the dataset module is optional for prediction-only installs
        pass
    try:
        from ..training import TrainError

        types.append(TrainError)
    except ImportError:
        pass
    try:
        from ..evaluation import MetricsInputError

        types.append(MetricsInputError)
    except ImportError:
        pass
    return tuple(types)


def first_line(error: BaseException) -> str:
    """An error's message as one line (library messages may carry a second line of detail)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class InputError(ValueError):
    """A problem with what the visitor entered, found by the UI itself."""


def friendly_errors(function: Function, hub_login: bool = True) -> Function:
    """Show library and input errors as their own message; anything else as a short notice, logged. hub_login:
    whether the handler receives the visitor's Hugging Face sign-in (session.visitor_scope)."""
    expected = (InputError, *user_error_types())

    @functools.partial(visitor_scope, hub_login=hub_login)
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except expected as error:
            # A host's instructions (environment variables, options) go to the log; the visitor reads what to do.
            if getattr(error, "host_hint", ""):
                LOGGER.info("%s %s", getattr(error, "visitor_message", error), error.host_hint)
            shown = getattr(error, "visitor_message", None) or first_line(error)
            # Toasts render HTML, and messages quote what the visitor typed: shown as text, never as markup.
            raise gr.Error(escape_html(hide_server_paths(shown)), print_exception=False) from None
        except Exception as error:  # unexpected: keep the traceback in the server log, not on screen
            LOGGER.exception("Unexpected error in %s", function.__name__)
            raise gr.Error(f"Something went wrong ({type(error).__name__}). The details are in the server log.",
                           print_exception=False) from None

    return wrapper  # type: ignore[return-value]


def uploaded_path(payload: Any) -> str | None:
    """The server-side path of an upload, whether Gradio passed a path or its raw file payload."""
    if payload is None:
        return None
    if isinstance(payload, (str, Path)):
        return str(payload)
    if isinstance(payload, dict):
        return payload.get("path") or None
    path = getattr(payload, "path", None)
    return str(path) if path else None


def read_photo(payload: Any) -> Image.Image:
    """The uploaded photo as RGB, with the library's checks (not an image, too many pixels...)."""
    path = uploaded_path(payload)
    if path is None:
        raise InputError("Add a photo first: upload one, paste one, or click an example below it.")
    return load_image(path)


def build_vocabulary(states: str, objects: str, world: str, pairs: str | None,
                     seen_pairs: Iterable[Iterable[str]] | None = None) -> Vocabulary:
    """A Vocabulary from the text boxes; seen pairs come from a checkpoint's training pairs."""
    seen = [tuple(pair) for pair in seen_pairs] if seen_pairs else None
    if world == WORLD_CLOSED:
        if not (pairs or "").strip():
            raise InputError("The pair list is empty: write one 'state object' pair a line, or choose "
                             f"'{WORLD_OPEN}'.")
        return Vocabulary.build(states or "", objects or "", pairs=pairs, seen_pairs=seen)
    return Vocabulary.build(states or "", objects or "", seen_pairs=seen)


def clamp_int(value: Any, low: int, high: int, default: int) -> int:
    """An integer setting from a slider or an API call, kept in range."""
    try:
        number = int(round(float(value)))
    except (TypeError, ValueError):
        return default
    return max(low, min(high, number))


def as_float(value: Any, default: float = 0.0) -> float:
    """A float setting from a slider or an API call; not-a-number and infinities give the default."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def photo_with_examples(examples: list[str], name: str, height: int) -> tuple[gr.Image, gr.Examples]:
    """A photo upload (passed on as a file path, so our own checks read it) with one-click examples."""
    image = gr.Image(type="filepath", image_mode=None, label="Your photo", height=height, elem_id=f"{name}-image",
                     sources=["upload", "clipboard", "webcam"])
    example_set = gr.Examples(examples=[[path] for path in examples], inputs=[image], label="Or click an example",
                              cache_examples=False, api_name=f"{name}_load_example", elem_id=f"{name}-examples",
                              example_labels=[Path(path).stem for path in examples])
    return image, example_set


def delete_raw_upload(path: str) -> None:
    """Delete Gradio's copy of an uploaded file once it was read (only files in Gradio's upload folder)."""
    try:
        import tempfile

        upload_root = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()
        raw = Path(path).resolve()
        if raw.is_file() and raw.is_relative_to(upload_root):
            raw.unlink()
    except OSError:
        pass
