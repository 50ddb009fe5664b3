"""Which checkpoints a visitor may load: a folder in the weights folder (the host's, shared read-only, or the
visitor's own) or a Hugging Face repo id read with the visitor's own login. Any other path gets one message,
the same whether it exists or not, and messages name the checkpoint as the visitor wrote it, never a server path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from .budget import VISITORS_FOLDER, keep_disk_budget, protect_host_folders, touch
from .hub_budget import check_downloaded, check_hub_checkpoint
from .space import HOST, current_visitor, hub_read_token, hub_token_fingerprint
from ..models.checkpoints import CheckpointError, read_checkpoint_config, weights_dir

REFUSED = "Choose trained weights from the list, or type a Hugging Face repo id (owner/name)."
HUB_FILES = ["config.json", "model.safetensors", "README.md", "metrics.json"]
_HOST_FOLDERS: set[Path] = set()  # local copies of the Hub checkpoints the host listed (hub.hosted)
_HOST_NAMES: dict[str, Path] = {}  # the same, by the name visitors see (repo id[@revision]), never a server path
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def allow_host_folders(folders: Iterable[Path]) -> None:
    """Let these folders (the host's own picks, fetched from the Hub at start) be loaded by path as well."""
    for folder in folders:
        _HOST_FOLDERS.add(Path(folder).resolve())
    protect_host_folders(_HOST_FOLDERS)


def allow_host_checkpoint(name: str, folder: Path) -> None:
    """Let the host's Hub checkpoint be chosen by its repo id[@revision], served from its local copy."""
    _HOST_NAMES[name] = Path(folder).resolve()
    allow_host_folders([folder])


def choice_value(folder: Path) -> str:
    """What a checkpoint menu offers for a local folder: its name where visitors are strangers (they never see a
    server path), its path otherwise."""
    from .space import visitors_isolated

    if not visitors_isolated():
        return str(folder)
    resolved = Path(folder).resolve()
    named = [name for name, path in _HOST_NAMES.items() if path == resolved]
    return named[0] if named else Path(folder).name


def visitor_weights_dir(visitor: str | None = None, root: Path | None = None) -> Path:
    """Where a visitor's checkpoints go: the weights folder itself for the host, else a folder of their own."""
    visitor = current_visitor() if visitor is None else visitor
    root = weights_dir() if root is None else root
    return root if visitor == HOST else root / VISITORS_FOLDER / visitor


def _allowed_local(value: str, root: Path, own: Path) -> Path | None:
    """The checkpoint folder `value` names, when it is a direct child of the weights folder or of the visitor's
    own folder (by name or path; `..` and links resolved first), else None."""
    if not value or "\x00" in value:
        return None
    candidates = [Path(value).expanduser()]
    if "/" not in value and "\\" not in value:
        candidates += [own / value, root / value]
    allowed_parents = {root.resolve(), own.resolve()}
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError):
            continue
        if resolved in _HOST_FOLDERS and resolved.is_dir():
            return resolved
        if resolved.parent in allowed_parents and not resolved.name.startswith("."):
            if resolved.is_dir():
                return resolved
    return None


def is_repo_id(value: str) -> bool:
    """True for text shaped like a Hugging Face repo id (owner/name)."""
    return bool(_REPO_ID.match(value)) and ".." not in value


def locate_checkpoint(value: str) -> tuple[Path | None, str | None]:
    """(local folder, None) or (None, Hub repo id) for what the visitor chose; CheckpointError(REFUSED) otherwise."""
    value = (value or "").strip()
    if value in _HOST_NAMES and _HOST_NAMES[value].is_dir():
        return _HOST_NAMES[value], None
    root = weights_dir()
    local = _allowed_local(value, root, visitor_weights_dir(root=root))
    if local is not None:
        return local, None
    if is_repo_id(value):
        return None, value
    raise CheckpointError(REFUSED)


def shown_name(value: str) -> str:
    """How a checkpoint is named in messages: a folder's name, or the repo id."""
    value = (value or "").strip()
    return value if is_repo_id(value) and not Path(value).is_absolute() else Path(value).name or value


def download_repo(repo_id: str) -> Path:
    """A Hub checkpoint's files, read with the visitor's own login (on a Space never the host's HF_TOKEN), after
    its size and tensor shapes were checked from the Hub's metadata (hub_budget); then the disk budget is kept."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        NotASafetensorsRepoError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError, SafetensorsParsingError)

    wanted = tuple(HUB_FILES)
    try:
        if constants.HF_HUB_OFFLINE:  # only the local cache is read: check what is there before reading it
            folder = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, token=hub_read_token()))
            check_downloaded(repo_id, folder, wanted)
            return folder
        checked = check_hub_checkpoint(repo_id, wanted, hub_read_token())
        folder = Path(snapshot_download(repo_id, revision=checked.commit, allow_patterns=list(checked.files),
                                        token=hub_read_token()))
        keep_disk_budget(keep={folder})
        return folder
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise CheckpointError(f"Checkpoint {repo_id} is not in the local cache and the Hub cannot be reached "
                              "(offline?). Connect once to download it, or choose weights from the list.") from None
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError):
        raise CheckpointError(f"No model repo {repo_id} that you can read on the Hugging Face Hub (if it is "
                              "private, sign in with an account that can read it).") from None
    except CheckpointError:
        raise
    except (NotASafetensorsRepoError, SafetensorsParsingError):
        raise CheckpointError(f"{repo_id}'s model.safetensors has no readable header; it is not downloaded.") from None
    except (HfHubHTTPError, OSError, ValueError) as error:  # SafetensorsParsingError is a ValueError too
        raise CheckpointError(f"Could not read {repo_id} from the Hub ({type(error).__name__}); try again later, "
                              "or check that it is a czsl_models checkpoint.") from None


def checkpoint_folder(value: str) -> Path:
    """The local folder of a checkpoint the visitor may load (Hub repos downloaded first)."""
    local, repo_id = locate_checkpoint(value)
    if local is not None:
        if VISITORS_FOLDER in local.parts:
            touch(local)  # most recently used: pruned last (the host's folders keep their times: menus sort by them)
        return local
    folder = download_repo(repo_id)
    touch(folder)
    return folder


def scrub(text: str, folder: Path, value: str) -> str:
    """A library message with the folder's server path replaced by the checkpoint's shown name."""
    shown = shown_name(value)
    for form in {str(folder), str(folder.resolve()), str(folder / "model.safetensors"),
                 str(folder / "config.json")}:
        text = text.replace(form, shown)
    return text


def checkpoint_config(value: str) -> tuple[Path, dict[str, Any]]:
    """(folder, config.json) of a checkpoint the visitor may load; messages name it as the visitor did."""
    folder = checkpoint_folder(value)
    try:
        return folder, read_checkpoint_config(folder)
    except CheckpointError as error:
        raise CheckpointError(scrub(str(error), folder, value)) from None


def cache_identity(value: str) -> tuple[str, str, float]:
    """What keys a loaded model in a cache: the folder and its file time, or the repo id and whose login read it
    (a private repo read by one visitor is never served from the cache to another)."""
    local, repo_id = locate_checkpoint(value)
    if local is not None:
        weights = local / "model.safetensors"
        return str(local), "", weights.stat().st_mtime if weights.is_file() else 0.0
    return repo_id, hub_token_fingerprint(), 0.0
