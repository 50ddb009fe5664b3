"""Checking a visitor's .npz before numpy reads it: its unpacked size (from the zip directory) and each array's
declared size (from its .npy header) must fit a budget, so a 1 MB upload cannot allocate gigabytes."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # 512 MB: MIT-States' closed-world test scores (~100 MB) fit easily


class NpzTooLarge(ValueError):
    """The .npz is not readable within the budget; the message says why without any server path."""


def max_scores_bytes() -> int:
    """The budget for an uploaded scores file, unpacked (CZSL_MAX_SCORES_MB)."""
    try:
        return int(float(os.environ["CZSL_MAX_SCORES_MB"]) * 1024 * 1024)
    except (KeyError, ValueError):
        return DEFAULT_MAX_BYTES


def check_npz(path: str | Path, max_bytes: int | None = None) -> None:
    """Raise NpzTooLarge unless every member's unpacked and declared sizes fit max_bytes together."""
    max_bytes = max_scores_bytes() if max_bytes is None else max_bytes
    name = Path(path).name
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise NpzTooLarge(f"{name} is not a .npz file (a zip of .npy arrays, as numpy.savez writes).") from None
    with archive:
        members = archive.infolist()
        unpacked = sum(info.file_size for info in members)
        if unpacked > max_bytes:
            raise NpzTooLarge(f"{name} unpacks to {unpacked / 1e6:,.0f} MB; the limit here is "
                              f"{max_bytes / 1e6:,.0f} MB.")
        declared = 0
        for info in members:
            if not info.filename.endswith(".npy") or info.is_dir():
                raise NpzTooLarge(f"{name} holds {Path(info.filename).name!r}, which is not a .npy array; a scores "
                                  "file holds only the arrays numpy.savez writes.")
            try:
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(member, max_header_size=10_000)
            except (ValueError, OSError, zipfile.BadZipFile, EOFError, SyntaxError):
                raise NpzTooLarge(f"{name} holds an array numpy cannot read ({info.filename}).") from None
            if dtype.hasobject:
                raise NpzTooLarge(f"{name} holds Python objects ({info.filename}); only numeric arrays are read.")
            declared += int(np.prod(shape, dtype=object)) * dtype.itemsize
            if declared > max_bytes:
                raise NpzTooLarge(f"{name} declares arrays of {declared / 1e6:,.0f} MB; the limit here is "
                                  f"{max_bytes / 1e6:,.0f} MB.")
