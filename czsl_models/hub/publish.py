"""Publishing a checkpoint folder to the Hugging Face Hub (config, weights, metrics, model card)."""

from __future__ import annotations

import os
from pathlib import Path

from ..models.checkpoints import read_checkpoint_config
from ..training.run_state import CHECKPOINT_FILES

_TRUE = ("1", "true", "yes", "on")


class PublishError(RuntimeError):
    """Publishing failed or cannot start; the message says why. The local folder is never changed."""


def hub_offline() -> bool:
    """True when the Hub is switched off (HF_HUB_OFFLINE, read now or when huggingface_hub was imported)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def resolve_token(token: str | None = None) -> str | None:
    """The token to publish with: the argument, else HF_TOKEN, else the login cache."""
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def push_checkpoint(directory: str | Path, repo_id: str, token: str | None = None, private: bool = False,
                    commit_message: str | None = None) -> str:
    """Create the model repo if needed and upload the checkpoint files; returns the repo URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    directory = Path(directory)
    config = read_checkpoint_config(directory)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"{repo_id!r} is not a valid repo id (owner/name): {error}") from None
    if "/" not in repo_id:
        raise PublishError(f"{repo_id!r} is not a valid repo id: write it as owner/name")
    if hub_offline():
        raise PublishError("cannot publish: the Hugging Face Hub is switched off (HF_HUB_OFFLINE is set); "
                           "unset it and connect to the internet")
    token = resolve_token(token)
    if not token:
        raise PublishError("cannot publish: no Hugging Face token; pass --token, set HF_TOKEN, or run `hf auth login`")
    present = [name for name in CHECKPOINT_FILES if (directory / name).is_file()]
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(directory), allow_patterns=present, repo_type="model",
                          commit_message=commit_message or f"Upload {config['model_type']} checkpoint")
    except Exception as error:  # network, auth and HTTP errors come in many types; each ends the push the same way
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise PublishError(f"could not publish to {repo_id}: {type(error).__name__}: {first_line}") from None
    return str(url)
