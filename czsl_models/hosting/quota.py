"""Keeping a folder of visitors' uploads within an age and size budget: the oldest go first."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

DEFAULT_MAX_BYTES = 4_000_000_000
DEFAULT_MAX_AGE_HOURS = 24.0


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ[name])
    except (KeyError, ValueError):
        return default


def upload_budget() -> tuple[int, float]:
    """(bytes, seconds) that unpacked uploads may keep (CZSL_UPLOADS_MAX_BYTES, CZSL_UPLOADS_MAX_AGE_HOURS)."""
    return (int(_env_number("CZSL_UPLOADS_MAX_BYTES", DEFAULT_MAX_BYTES)),
            _env_number("CZSL_UPLOADS_MAX_AGE_HOURS", DEFAULT_MAX_AGE_HOURS) * 3600)


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under a folder (links are not followed)."""
    total = 0
    for base, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                continue
    return total


def prune(root: Path, keep: set[Path] | None = None, max_bytes: int | None = None,
          max_age_seconds: float | None = None) -> list[Path]:
    """Delete the uploads under root (root/owner/upload) that are older than the age budget,
    then the oldest until the rest fit the size budget; folders in `keep` stay. Returns what was deleted."""
    default_bytes, default_age = upload_budget()
    max_bytes = default_bytes if max_bytes is None else max_bytes
    max_age_seconds = default_age if max_age_seconds is None else max_age_seconds
    keep = {path.resolve() for path in (keep or set())}
    if not root.is_dir():
        return []
    folders: list[tuple[float, int, Path]] = []
    for owner in root.iterdir():
        if not owner.is_dir() or owner.is_symlink():
            continue
        for folder in owner.iterdir():
            # Dot folders are imports still unpacking (data.import_zip stages there and cleans up itself).
            if folder.is_dir() and not folder.is_symlink() and not folder.name.startswith("."):
                folders.append((folder.stat().st_mtime, folder_bytes(folder), folder))
    folders.sort()
    now = time.time()
    total = sum(size for _, size, _ in folders)
    deleted = []
    for stamp, size, folder in folders:
        if folder.resolve() in keep:
            continue
        if now - stamp > max_age_seconds or total > max_bytes:
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            deleted.append(folder)
    return deleted
