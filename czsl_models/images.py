"""Opening user images safely: clear errors for non-images and oversized images."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 60_000_000  # a 50-megapixel phone photo passes; 100 MP does not


class ImageError(ValueError):
    """An image cannot be used; the message says why."""


def max_pixels() -> int:
    """Largest accepted image in pixels; CZSL_MAX_PIXELS raises it."""
    return int(os.environ.get("CZSL_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def check_image_size(image: Image.Image, name: str = "The image") -> None:
    """Raise ImageError when an image has more pixels than the limit (checked before decoding)."""
    width, height = image.size
    if width * height > max_pixels():
        raise ImageError(
            f"{name} is {width:,} x {height:,} pixels ({width * height / 1e6:.0f} megapixels); the limit is "
            f"{max_pixels() / 1e6:.0f} megapixels. Resize it first (the models look at 224 x 224 pixels anyway)."
        )
    if width < 1 or height < 1:
        raise ImageError(f"{name} is empty.")


def load_image(source: str | Path | bytes | Image.Image, name: str | None = None) -> Image.Image:
    """An RGB PIL image from a path, bytes or an image, after the size check; name is what messages call it."""
    if isinstance(source, Image.Image):
        check_image_size(source, name or "The image")
        return source.convert("RGB")
    name = name or (Path(source).name if isinstance(source, (str, Path)) else "The upload")
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as error:
        raise ImageError(f"Cannot open {name}: {error.strerror or error}.") from None
    with handle:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(handle)
                check_image_size(image, name)
                image.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{name} has far more pixels than the limit of {max_pixels() / 1e6:.0f} megapixels; "
                             "resize it first (the models look at 224 x 224 pixels anyway).") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name} is not an image Pillow can read (JPEG, PNG, WebP, ...).") from None
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageError(f"{name} is damaged or truncated ({error}).") from None
    return image.convert("RGB")
