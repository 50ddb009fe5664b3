"""Safe import of a dataset zip: bounded, junk-free, no path escapes or links, atomic."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .dataset import (
    IMAGE_EXTENSIONS,
    JUNK_FOLDERS,
    JUNK_NAMES,
    METADATA_EXTENSIONS,
    DatasetError,
)
from .sources import has_image_subfolder, load_dataset

Pair = tuple[str, str]


@dataclass(frozen=True)
class ZipImportReport:
    """What an import wrote and what it left out."""

    target: Path
    images: int
    skipped_non_images: int
    layout: str


def _archive_parts(name: str) -> tuple[str, ...]:
    """The path parts of an archive member, refusing anything that could land outside the target."""
    normalised = name.replace("\\", "/")
    parts = tuple(part for part in normalised.split("/") if part not in ("", "."))
    if (
        normalised.startswith("/")
        or re.match(r"^[A-Za-z]:", normalised)
        or ".." in parts
        or "\x00" in name
        or any(re.match(r"^[A-Za-z]:", part) for part in parts)  # drive letters, also "C:evil"
        or not parts
    ):
        raise DatasetError(f"the zip holds an unsafe path {name!r}; nothing was imported")
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def _is_junk(parts: tuple[str, ...]) -> bool:
    return parts[0].lower() in JUNK_FOLDERS or parts[-1].lower() in JUNK_NAMES or parts[-1].startswith("._")


MAX_METADATA_BYTES = 32_000_000


def _plan_extraction(
    infos: list[zipfile.ZipInfo], max_total_bytes: int, max_files: int, max_file_bytes: int
) -> tuple[list[tuple[zipfile.ZipInfo, tuple[str, ...]]], int]:
    """Check every member against the limits before anything is written; return what to extract."""
    files = [info for info in infos if not info.is_dir()]
    if len(files) > max_files:
        raise DatasetError(f"the zip holds {len(files):,} files; the limit is {max_files:,}")
    declared_total = sum(info.file_size for info in files)
    if declared_total > max_total_bytes:
        raise DatasetError(
            f"the zip unpacks to {declared_total:,} bytes; the limit is {max_total_bytes:,} bytes"
        )
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    skipped = 0
    seen: set[str] = set()
    for info in infos:
        parts = _archive_parts(info.filename)
        if _is_symlink(info):
            raise DatasetError(f"the zip holds a symbolic link {info.filename!r}; nothing was imported")
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise DatasetError(f"the zip is password-protected ({info.filename!r}); export it without a password")
        if info.file_size > max_file_bytes:
            raise DatasetError(
                f"{info.filename!r} unpacks to {info.file_size:,} bytes; the limit per file is {max_file_bytes:,}"
            )
        if Path(parts[-1]).suffix.lower() in METADATA_EXTENSIONS and info.file_size > MAX_METADATA_BYTES:
            # Pair lists and splits are parsed into memory many times their size: keep them to real datasets' scale.
            raise DatasetError(
                f"{info.filename!r} unpacks to {info.file_size:,} bytes; a pair or split file may have at most "
                f"{MAX_METADATA_BYTES:,} (C-GQA's are under 10 MB)"
            )
        key = "/".join(parts).lower()  # case-insensitive, so no file overwrites another on any system
        if key in seen:
            raise DatasetError(f"the zip holds {info.filename!r} twice")
        seen.add(key)
        suffix = Path(parts[-1]).suffix.lower()
        if _is_junk(parts) or suffix not in IMAGE_EXTENSIONS | METADATA_EXTENSIONS:
            skipped += 1
            continue
        plan.append((info, parts))
    return plan, skipped


def _check_free_space(folder: Path, needed: int) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise DatasetError(f"the zip unpacks to {needed:,} bytes but only {free:,} bytes are free")


def _extract_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, budget: int
) -> int:
    """Copy one member, stopping as soon as it exceeds its declared size or the remaining budget."""
    written = 0
    limit = min(info.file_size, budget)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as source, open(destination, "xb") as target:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise DatasetError(f"{info.filename!r} unpacks to more bytes than it declares; the zip is refused")
            target.write(chunk)
    return written


def _is_readable_image(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.verify()
        return True
    except Exception:  # Pillow raises many types for broken files; any of them means "not an image"
        return False


def _content_root(staging: Path) -> Path:
    """The staging folder, or its single top folder when the dataset sits one level down."""
    entries = [entry for entry in staging.iterdir()]
    if len(entries) != 1 or not entries[0].is_dir():
        return staging
    if any(staging.glob("metadata_*.t7")) or has_image_subfolder(staging):
        return staging  # e.g. a zip holding just "red apple/": that folder is a pair, not a wrapper
    return entries[0]


def import_zip(
    zip_path: str | Path,
    target_dir: str | Path,
    *,
    max_total_bytes: int = 2_000_000_000,
    max_files: int = 200_000,
    max_file_bytes: int = 200_000_000,
) -> ZipImportReport:
    """Unpack a user's dataset zip into a new folder safely, or raise DatasetError and write nothing."""
    zip_path, target = Path(zip_path), Path(target_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DatasetError(f"{target.name} already exists; choose another name or remove it first")
    try:
        archive = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise DatasetError(f"zip file not found: {zip_path.name}") from None
    except (zipfile.BadZipFile, OSError, ValueError):
        raise DatasetError(f"{zip_path.name} is not a readable zip file") from None
    with archive:
        plan, skipped = _plan_extraction(archive.infolist(), max_total_bytes, max_files, max_file_bytes)
        if not any(Path(parts[-1]).suffix.lower() in IMAGE_EXTENSIONS for _, parts in plan):
            raise DatasetError(f"{zip_path.name} holds no image files")
        _check_free_space(target.parent, sum(info.file_size for info, _ in plan))
        target.parent.mkdir(parents=True, exist_ok=True)
        # Unpack next to the target (same file system, so the final rename is atomic) and only
        # rename on success: a failed import leaves nothing behind.
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.importing-", dir=target.parent))
        try:
            staging_resolved = staging.resolve()
            images, written_total = 0, 0
            for info, parts in plan:
                destination = staging.joinpath(*parts)
                if not destination.resolve().is_relative_to(staging_resolved):
                    raise DatasetError(f"the zip holds an unsafe path {info.filename!r}; nothing was imported")
                try:
                    written_total += _extract_member(archive, info, destination, max_total_bytes - written_total)
                except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as error:
                    message = f"{zip_path.name} is damaged or unsupported ({info.filename}: {error})"
                    raise DatasetError(message) from None
                except OSError as error:  # the library's text names the server's folder: say only what failed
                    raise DatasetError(f"cannot unpack {info.filename!r} ({error.strerror or type(error).__name__})") from None
                if destination.suffix.lower() in IMAGE_EXTENSIONS:
                    if _is_readable_image(destination):
                        images += 1
                    else:
                        destination.unlink()
                        skipped += 1
            if images == 0:
                raise DatasetError(f"{zip_path.name} holds no readable images")
            content = _content_root(staging)
            try:
                layout = load_dataset(content).layout
            except DatasetError as error:
                # The layout's message names files inside the staging folder: show them relative to the zip.
                shown = str(error).replace(str(content) + os.sep, "").replace(str(content), zip_path.name)
                raise DatasetError(f"the zip does not hold a usable dataset: {shown}") from None
            if target.exists():
                target.rmdir()  # checked empty above; rmdir refuses if anything appeared since
            os.rename(content, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return ZipImportReport(target=target, images=images, skipped_non_images=skipped, layout=layout)
