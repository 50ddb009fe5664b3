"""Publishing a checkpoint folder to the Hugging Face Hub (config, weights, metrics, model card)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..models.card import checkpoint_card_data
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


def published_card(directory: Path, config: dict) -> str:
    """The folder's README.md with every Hub metadata field it lacks filled in from config.json and metrics.json
    (base_model, pipeline_tag, library_name, tags, datasets, model-index), so even a card written by an older
    version publishes complete; what the card already says is kept."""
    from huggingface_hub import ModelCard

    metrics_path = directory / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    wanted = checkpoint_card_data(config["model_type"], config.get("backbone", ""), metrics)
    readme = directory / "README.md"
    card = ModelCard(readme.read_text() if readme.is_file() else f"---\n---\n# {config['model_type']} checkpoint\n")
    for key, value in vars(wanted).items():
        if value not in (None, [], "") and getattr(card.data, key, None) in (None, [], ""):
            setattr(card.data, key, value)
    return str(card)


def push_checkpoint(directory: str | Path, repo_id: str, token: str | None = None, private: bool = False,
                    commit_message: str | None = None) -> str:
    """Create the model repo if needed and upload the checkpoint files; returns the repo URL."""
    from huggingface_hub import CommitOperationAdd, HfApi
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
    present = [name for name in CHECKPOINT_FILES if (directory / name).is_file() and name != "README.md"]
    operations = [CommitOperationAdd(name, str(directory / name)) for name in present]
    operations.append(CommitOperationAdd("README.md", published_card(directory, config).encode()))
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.create_commit(repo_id=repo_id, operations=operations, repo_type="model",
                          commit_message=commit_message or f"Upload {config['model_type']} checkpoint")
    except Exception as error:  # network, auth and HTTP errors come in many types; each ends the push the same way
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise PublishError(f"could not publish to {repo_id}: {type(error).__name__}: {first_line}") from None
    return str(url)
