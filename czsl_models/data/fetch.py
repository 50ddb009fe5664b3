"""Fetching one archive over HTTP like a package manager: resumable (Range), retried, timed out, hashed."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .dataset import DatasetError

CHUNK_BYTES = 1 << 20
USER_AGENT = "czsl-models-download/1"


@dataclass(frozen=True)
class FetchedFile:
    """An archive on local disk with where it came from, its size and its sha256."""

    path: Path
    source: str
    size: int
    sha256: str


@dataclass
class FetchPolicy:
    """How hard to try: per-request timeout, retries, pause between them, and the progress bar."""

    timeout_s: float = 60.0
    retries: int = 5
    backoff_s: float = 2.0
    progress: bool = True


def free_bytes(folder: Path) -> int:
    """Free space on the file system holding `folder` (or its nearest existing parent)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise DatasetError before starting when `needed` bytes would not fit."""
    free = free_bytes(folder)
    if needed > free:
        raise DatasetError(f"{what} needs {_size(needed)} but only {_size(free)} are free in {folder}")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def sha256_of(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total: int | None, initial: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1000, desc=name,
                disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def _open(url: str, offset: int, validator: str | None, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:  # the server sends the whole new file instead of a range of a changed one
            headers["If-Range"] = validator
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _total_size(response, offset: int) -> int | None:
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        total = content_range.rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def probe_size(url: str, timeout: float = 30.0) -> int | None:
    """Content-Length of `url` from a HEAD request, or None when the server does not say."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def download(url: str, destination: Path, policy: FetchPolicy | None = None,
             on_retry: Callable[[str], None] | None = None) -> FetchedFile:
    """Download `url` to `destination`, resuming a `.part` left by an earlier try; returns size and sha256."""
    policy = policy or FetchPolicy()
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    state_path = destination.with_name(destination.name + ".part.json")
    state = _read_state(state_path, url)
    if not state and part.exists():
        part.unlink()  # a partial file from another source cannot be continued
    attempt, last_error = 0, ""
    while attempt <= policy.retries:
        offset = part.stat().st_size if part.exists() else 0
        try:
            with _open(url, offset, state.get("validator"), policy.timeout_s) as response:
                if offset and response.status != 206:
                    offset = 0  # no Range support, or the file changed: start again
                total = _total_size(response, offset)
                validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
                state = {"url": url, "validator": validator, "total": total}
                state_path.write_text(json.dumps(state))
                if total is not None:
                    check_free_space(destination.parent, total - offset, f"downloading {destination.name}")
                _copy_body(response, part, offset, total, destination.name, policy)
            size = part.stat().st_size
            if total is not None and size != total:
                raise http.client.IncompleteRead(b"", total - size)
            break
        except DatasetError:
            raise
        except urllib.error.HTTPError as error:
            if error.code == 416 and offset and state.get("total") == offset:
                break  # the part is already complete
            if error.code == 416:
                part.unlink(missing_ok=True)  # the file on the server is shorter now: start again
            if error.code in (404, 403, 410) or attempt == policy.retries:
                raise DatasetError(f"cannot download {destination.name} from {url}: HTTP {error.code} {error.reason}") from None
            last_error = f"HTTP {error.code}"
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, OSError) as error:
            last_error = str(getattr(error, "reason", None) or error) or type(error).__name__
            if attempt == policy.retries:
                raise DatasetError(
                    f"cannot download {destination.name} from {url} after {policy.retries + 1} tries: {last_error} "
                    f"(run the command again to resume from {_size(part.stat().st_size if part.exists() else 0)})"
                ) from None
        attempt += 1
        if on_retry:
            on_retry(f"{destination.name}: {last_error}; retry {attempt} of {policy.retries}")
        time.sleep(policy.backoff_s * attempt)
    os.replace(part, destination)
    state_path.unlink(missing_ok=True)
    return FetchedFile(destination, url, destination.stat().st_size, sha256_of(destination))


def _read_state(path: Path, url: str) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) and state.get("url") == url else {}


def _copy_body(response, part: Path, offset: int, total: int | None, name: str, policy: FetchPolicy) -> None:
    """Append the response body to the part file in chunks, never holding the archive in memory."""
    with open(part, "ab" if offset else "wb") as target, _progress_bar(total, offset, name, policy.progress) as bar:
        while chunk := response.read(CHUNK_BYTES):
            target.write(chunk)
            bar.update(len(chunk))
