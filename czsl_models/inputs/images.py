"""Opening user images safely and correctly: clear errors for non-images and oversized images, the camera's
EXIF rotation applied, 16-bit and other unusual modes converted to RGB as they look, and extreme aspect ratios
cropped before any resizing (the models look at the centre square, so the crop changes nothing they see)."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 60_000_000  # a 50-megapixel phone photo passes; 100 MP does not
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "I;16": 2, "I;16B": 2, "I;16L": 2,
                   "I;16N": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4,
                   "CMYK": 4, "I": 4, "F": 4}
MAX_ASPECT = 2.0  # longer side / shorter side kept: the centre square plus a margin for the resize filter


class ImageError(ValueError):
    """An image cannot be used; the message says why."""


def max_pixels() -> int:
    """Largest accepted image in pixels; CZSL_MAX_PIXELS raises it."""
    return int(os.environ.get("CZSL_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def max_decode_bytes() -> int:
    """Largest decoded image in bytes, whatever its mode (CZSL_MAX_DECODE_MB; default: the pixel limit in RGB)."""
    try:
        return int(float(os.environ["CZSL_MAX_DECODE_MB"]) * 1e6)
    except (KeyError, ValueError):
        return max_pixels() * 3


def decoded_bytes(image: Image.Image) -> int:
    """What decoding takes: width x height x bytes per pixel of its mode (RGBA 4, 16-bit grey 2, float 4...)."""
    width, height = image.size
    return width * height * BYTES_PER_PIXEL.get(image.mode, 4)


def check_image_size(image: Image.Image, name: str = "The image") -> None:
    """Raise ImageError when an image has more pixels or decodes to more bytes than the limits (from its header,
    before decoding)."""
    width, height = image.size
    if width * height > max_pixels():
        raise ImageError(
            f"{name} is {width:,} x {height:,} pixels ({width * height / 1e6:.0f} megapixels); the limit is "
            f"{max_pixels() / 1e6:.0f} megapixels. Resize it first (the models look at 224 x 224 pixels anyway)."
        )
    if decoded_bytes(image) > max_decode_bytes():
        raise ImageError(
            f"{name} is {width:,} x {height:,} pixels in {image.mode} and would take {decoded_bytes(image) / 1e6:,.0f} MB "
            f"to open; the limit is {max_decode_bytes() / 1e6:,.0f} MB. Resize it or save it as RGB first.")
    if width < 1 or height < 1:
        raise ImageError(f"{name} is empty.")


def limit_aspect(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """The image's central region with the longer side at most max_aspect x the shorter.

    Preprocessing scales the shorter side to 224 pixels and keeps the centre square, so a 20000 x 1 strip would
    otherwise become 4.5 million x 224 pixels (gigabytes) on the way to that square."""
    width, height = image.size
    short = min(width, height)
    keep = max(short, int(round(short * max_aspect)))
    if max(width, height) <= keep:
        return image
    if width > height:
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    top = (height - keep) // 2
    return image.crop((0, top, width, top + keep))


def _scaled_to_8_bits(array: np.ndarray) -> np.ndarray:
    """Integer or float pixel values as 0..255: 16-bit ranges scale down, floats in 0..1 scale up."""
    if array.dtype.kind == "f":
        array = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = 1.0 if array.size and array.max() <= 1.0 else 255.0 if array.size and array.max() <= 255.0 else 65535.0
        return np.clip(array / top * 255.0, 0, 255).astype(np.uint8)
    array = array.astype(np.int64)
    if array.size and (array.max() > 255 or array.min() < 0):
        # 16-bit data (mode I;16 or I): the full 16-bit range maps to 0..255 as a viewer shows it.
        return np.clip(array // 257, 0, 255).astype(np.uint8)
    return array.astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB as the image looks: 16-bit and float grey scaled (not clipped to white), transparency over white,
    palettes and CMYK converted."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16"):
        grey = Image.fromarray((np.asarray(image).astype(np.uint32) // 257).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    if mode.startswith("I") or mode == "F":
        grey = Image.fromarray(_scaled_to_8_bits(np.asarray(image)), mode="L")
        return grey.convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or image.mode == "RGBA":
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def prepare_photo(image: Image.Image) -> Image.Image:
    """A decoded photo made ready for the models: upright (EXIF), RGB, aspect ratio bounded."""
    try:
        upright = ImageOps.exif_transpose(image)
    except (OSError, ValueError, TypeError, KeyError, SyntaxError):  # a damaged EXIF block: keep it as stored
        upright = image
    return to_rgb(limit_aspect(upright if upright is not None else image))


def load_image(source: str | Path | bytes | Image.Image, name: str | None = None) -> Image.Image:
    """An upright RGB PIL image from a path, bytes or an image, after the size check; name is what messages call it."""
    if isinstance(source, Image.Image):
        check_image_size(source, name or "The image")
        return prepare_photo(source)
    name = name or (Path(source).name if isinstance(source, (str, Path)) else "The upload")
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as error:  # strerror is the reason alone ("No such file or directory"), never the path
        raise ImageError(f"Cannot open {name}: {error.strerror or 'it cannot be read'}.") from None
    with handle:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(handle)
                check_image_size(image, name)
                image.load()
                return prepare_photo(image)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{name} has far more pixels than the limit of {max_pixels() / 1e6:.0f} megapixels; "
                             "resize it first (the models look at 224 x 224 pixels anyway).") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name} is not an image Pillow can read (JPEG, PNG, WebP, ...).") from None
        except (OSError, SyntaxError, ValueError):
            raise ImageError(f"{name} is damaged or truncated; save it again or try another photo.") from None
