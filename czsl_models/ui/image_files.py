"""Explanation pictures written as files by the request's own worker thread, in the format that suits them.

Handed a PIL image, Gradio encodes it as PNG on its event loop, where every visitor's request waits for it:
about 60 ms for a photo panel, a third of a small-backbone prediction. Encoded here instead, photo panels
become JPEG (2 ms, a quarter of the bytes) and charts fast PNG, and Gradio only finds the finished file in its
cache (same content hash, so it is not copied again)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from gradio.processing_utils import hash_bytes
from gradio.utils import get_upload_folder
from PIL import Image

JPEG_QUALITY = 90  # photo panels: no visible artefacts around their titles at this quality


def encoded(image: Image.Image, photographic: bool) -> tuple[bytes, str]:
    """(file bytes, suffix): JPEG for pictures made of the photo, lossless PNG for charts and text."""
    buffer = io.BytesIO()
    if photographic:
        image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue(), "jpg"
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), "png"


def cached_image_file(image: Image.Image, photographic: bool, cache_dir: str | None = None) -> str:
    """The path of the picture's file in Gradio's cache folder (written once per distinct picture)."""
    data, suffix = encoded(image, photographic)
    folder = Path(cache_dir or get_upload_folder()) / hash_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"explanation.{suffix}"
    if not path.exists():
        partial = folder / f".explanation-{os.getpid()}-{id(data)}.{suffix}"
        partial.write_bytes(data)
        os.replace(partial, path)  # a concurrent request for the same picture never sees half a file
    return str(path)
