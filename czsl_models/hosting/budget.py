"""One disk budget for everything visitors leave behind: Hub checkpoints they named (in the Hugging Face cache),
feature caches, the checkpoints they trained and the datasets they uploaded. Over the budget, the least recently
used go first; what a visitor made goes as soon as their session ends (nobody can reach it after that).

The host's own files (the weights folder's checkpoints, the backbone, the host's listed Hub checkpoints) are
never counted nor deleted."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .quota import folder_bytes
from .space import HOST, env_switch, on_space, visitors_isolated

DEFAULT_SPACE_BUDGET_GB = 20.0  # a free Space has about 50 GB of disk; the backbone and the app need the rest
RECENT_SECONDS = 120.0  # what was used this recently is being written or read now: never pruned
DATA_DIR_ENV = "CZSL_DATA_DIR"
VISITORS_FOLDER = ".visitors"  # under the weights folder (hosting.confinement keeps visitors' checkpoints there)
_IN_USE: dict[Path, int] = {}
_HOST_OWNED: set[Path] = set()  # the host's listed Hub checkpoints (hosting.confinement registers them)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Entry:
    """One thing a visitor left: a folder, when it was last used, and its size."""

    path: Path
    last_used: float
    size: int


def disk_budget_bytes() -> int | None:
    """Bytes that visitors' leftovers may take (CZSL_DISK_BUDGET_GB); on a Space 20 GB unless set, else no limit."""
    try:
        return int(float(os.environ["CZSL_DISK_BUDGET_GB"]) * 1e9)
    except (KeyError, ValueError):
        return int(DEFAULT_SPACE_BUDGET_GB * 1e9) if visitors_isolated() or on_space() else None


def uploads_dir() -> Path:
    """Where uploaded zips are unpacked ($CZSL_DATA_DIR or runs/datasets), one folder per visitor."""
    return Path(os.environ.get(DATA_DIR_ENV, Path("runs") / "datasets"))


def protect_host_folders(paths: Iterable[Path]) -> None:
    """Never count nor delete these folders (the host's own checkpoints fetched from the Hub)."""
    with _LOCK:
        _HOST_OWNED.update(Path(path).resolve() for path in paths)


def mark_in_use(paths: Iterable[Path]) -> None:
    """Keep these folders (a running training's dataset and output) until release()."""
    with _LOCK:
        for path in paths:
            key = Path(path).resolve()
            _IN_USE[key] = _IN_USE.get(key, 0) + 1


def release(paths: Iterable[Path]) -> None:
    """Undo mark_in_use."""
    with _LOCK:
        for path in paths:
            key = Path(path).resolve()
            if _IN_USE.get(key, 0) <= 1:
                _IN_USE.pop(key, None)
            else:
                _IN_USE[key] -= 1


def touch(path: Path) -> None:
    """Record that a folder was just used (its time decides the order of pruning)."""
    try:
        os.utime(path)
    except OSError:
        pass


def _last_used(path: Path) -> float:
    """The folder's time or its newest child's (a Hub repo is used through its snapshot folder)."""
    try:
        return max([path.stat().st_mtime] + [child.stat().st_mtime for child in path.iterdir()])
    except OSError:
        return 0.0


def _children(folder: Path, depth: int) -> list[Path]:
    """Folders `depth` levels below `folder` (no links, no dot folders: those are imports still unpacking)."""
    level = [folder] if folder.is_dir() else []
    for _ in range(depth):
        level = [child for parent in level for child in sorted(parent.iterdir())
                 if child.is_dir() and not child.is_symlink() and not child.name.startswith(".")]
    return level


def _is_visitor_hub_repo(repo: Path) -> bool:
    """A Hugging Face cache folder holding a czsl_models checkpoint (never the backbone's weights)."""
    if not repo.name.startswith("models--"):
        return False
    for config in repo.glob("snapshots/*/config.json"):
        try:
            return "model_type" in json.loads(config.read_text()[:1_000_000])
        except (OSError, ValueError):
            continue
    return False


def visitor_leftovers() -> list[Entry]:
    """Everything the budget covers, least recently used first."""
    from ..models.checkpoints import weights_dir
    from ..training.feature_cache import default_cache_root

    folders = _children(weights_dir() / VISITORS_FOLDER, 2) + _children(uploads_dir(), 2)
    folders += _children(default_cache_root(), 1)
    try:
        from huggingface_hub import constants

        folders += [repo for repo in _children(Path(constants.HF_HUB_CACHE), 1) if _is_visitor_hub_repo(repo)]
    except ImportError:
        pass
    entries = [Entry(folder, _last_used(folder), folder_bytes(folder)) for folder in folders]
    return sorted(entries, key=lambda entry: entry.last_used)


def _protected(path: Path, keep: set[Path]) -> bool:
    resolved = path.resolve()
    with _LOCK:
        guarded = keep | set(_IN_USE) | _HOST_OWNED
    return any(resolved == other or other.is_relative_to(resolved) or resolved.is_relative_to(other)
               for other in guarded)


def keep_disk_budget(keep: Iterable[Path] = (), max_bytes: int | None = None) -> list[Path]:
    """Delete the least recently used leftovers until the rest fit the budget; returns what was deleted."""
    max_bytes = disk_budget_bytes() if max_bytes is None else max_bytes
    if max_bytes is None:
        return []
    keep_set = {Path(path).resolve() for path in keep}
    entries = visitor_leftovers()
    total = sum(entry.size for entry in entries)
    deleted = []
    now = time.time()
    for entry in entries:
        if total <= max_bytes:
            break
        if now - entry.last_used < RECENT_SECONDS or _protected(entry.path, keep_set):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        total -= entry.size
        deleted.append(entry.path)
    return deleted


def forget_visitor(visitor: str) -> list[Path]:
    """Delete what a visitor made (their checkpoints and unpacked uploads) once their session has ended: with
    visitors isolated nobody can reach it any more. Never the host's own files; running work is kept."""
    if visitor == HOST or not visitors_isolated() or not env_switch("CZSL_FORGET_VISITORS", True):
        return []
    from ..models.checkpoints import weights_dir

    deleted = []
    for folder in (weights_dir() / VISITORS_FOLDER / visitor, uploads_dir() / visitor):
        if folder.is_dir() and not _protected(folder, set()):
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(folder)
    return deleted
