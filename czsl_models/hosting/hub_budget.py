"""Checking a Hub checkpoint a visitor named before any of it is downloaded: its file list and sizes from the
Hub's metadata, and its tensor shapes from the safetensors header (a few kilobytes read by range request).
The download is then pinned to the commit that was checked, so the repo cannot change in between."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..models.build_budget import check_tensor_shapes
from ..models.checkpoints import CheckpointError

DEFAULT_MAX_CHECKPOINT_MB = 1000.0  # the released heads on ViT-L/14 are a few hundred MB at most
MAX_SIDE_FILE_BYTES = 1 << 20  # config.json, README.md, metrics.json: text, a few kilobytes each
REQUIRED_FILES = ("config.json", "model.safetensors")


@dataclass(frozen=True)
class CheckedRepo:
    """A Hub checkpoint that passed the checks: the commit checked and the files to fetch."""

    repo_id: str
    commit: str
    files: tuple[str, ...]
    total_bytes: int
    parameters: int


def max_checkpoint_bytes() -> int:
    """The most a visitor's Hub checkpoint may download (CZSL_MAX_CHECKPOINT_MB)."""
    try:
        return int(float(os.environ["CZSL_MAX_CHECKPOINT_MB"]) * 1e6)
    except (KeyError, ValueError):
        return int(DEFAULT_MAX_CHECKPOINT_MB * 1e6)


def check_sizes(repo_id: str, sizes: dict[str, int | None], wanted: tuple[str, ...],
                max_bytes: int | None = None) -> tuple[tuple[str, ...], int]:
    """(files to fetch, their total bytes); CheckpointError when a file is missing, of unknown size or too big."""
    max_bytes = max_checkpoint_bytes() if max_bytes is None else max_bytes
    for required in REQUIRED_FILES:
        if required not in sizes:
            raise CheckpointError(f"{repo_id} is not a czsl_models checkpoint: it has no {required}.")
    files = tuple(name for name in wanted if name in sizes)
    for name in files:
        size = sizes[name]
        if size is None:
            raise CheckpointError(f"The Hub does not say how large {repo_id}'s {name} is, so it is not downloaded.")
        if name != "model.safetensors" and size > MAX_SIDE_FILE_BYTES:
            raise CheckpointError(f"{repo_id}'s {name} is {size / 1e6:,.1f} MB; a checkpoint's {name} is a few "
                                  "kilobytes, so it is not downloaded.")
    total = sum(int(sizes[name] or 0) for name in files)
    if total > max_bytes:
        raise CheckpointError(f"{repo_id} is {total / 1e6:,.0f} MB to download; this server loads checkpoints of at "
                              f"most {max_bytes / 1e6:,.0f} MB (CZSL_MAX_CHECKPOINT_MB).")
    return files, total


def check_hub_checkpoint(repo_id: str, wanted: tuple[str, ...], token: str | bool | None,
                         revision: str | None = None) -> CheckedRepo:
    """Check a Hub checkpoint from metadata alone (huggingface_hub errors pass through for the caller to word)."""
    from huggingface_hub import HfApi

    api = HfApi()  # a new client reads the endpoint now (HF_ENDPOINT), as the downloads do
    info = api.model_info(repo_id, revision=revision, files_metadata=True, token=token)
    sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or []}
    files, total = check_sizes(repo_id, sizes, wanted)
    commit = info.sha or revision or "main"
    header = api.get_safetensors_metadata(repo_id, revision=commit, token=token)
    weights = header.files_metadata.get("model.safetensors")
    if weights is None:
        raise CheckpointError(f"{repo_id}'s model.safetensors has no readable header.")
    shapes = {name: tuple(tensor.shape) for name, tensor in weights.tensors.items()}
    parameters = check_tensor_shapes(shapes, f"{repo_id}'s model.safetensors")
    return CheckedRepo(repo_id, commit, files, total, parameters)


def check_downloaded(repo_id: str, folder: Path, wanted: tuple[str, ...]) -> None:
    """The same size checks on files already in the local cache (offline, nothing was asked of the Hub)."""
    sizes = {name: (folder / name).stat().st_size for name in wanted if (folder / name).is_file()}
    check_sizes(repo_id, sizes, wanted)
