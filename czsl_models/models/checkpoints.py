"""Checkpoints: a local folder or a Hub repo, checked before a model is built from it, and the local weights folder."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backbones.precision import using_backbone_precision
from .build_budget import build_budget, check_tensor_shapes
from .registry import CheckpointError, model_class

if TYPE_CHECKING:
    from .base import CompositionModel

WEIGHTS_DIR_ENV = "CZSL_WEIGHTS_DIR"


def weights_dir() -> Path:
    """Folder of local checkpoints ($CZSL_WEIGHTS_DIR or ./weights)."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV, "weights"))


@dataclass
class CheckpointInfo:
    """A local checkpoint folder and what its config says."""

    path: Path
    model_type: str
    backbone: str
    states: int
    objects: int

    @property
    def label(self) -> str:
        """Short text for menus."""
        return f"{self.path.name} ({self.model_type}, {self.states} states x {self.objects} objects)"


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """config.json of a checkpoint folder, checked."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: it has no config.json.")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path} is not valid JSON ({error}).") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise CheckpointError(f"{config_path} does not name a model_type; it was not written by czsl_models.")
    if not (directory / "model.safetensors").is_file():
        raise CheckpointError(f"{directory} has no model.safetensors.")
    return config


def list_local_checkpoints(directory: str | Path | None = None) -> list[CheckpointInfo]:
    """Checkpoint folders under weights/ (one folder each), newest first; broken ones are skipped."""
    root = Path(directory) if directory is not None else weights_dir()
    found = []
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            config = read_checkpoint_config(folder)
        except CheckpointError:
            continue
        found.append(CheckpointInfo(folder, config["model_type"], config.get("backbone", "?"),
                                    len(config.get("train_states") or []), len(config.get("train_objects") or [])))
    return found


CHECKPOINT_PATTERNS = ["config.json", "model.safetensors", "README.md", "metrics.json"]


def resolve_checkpoint(checkpoint: str | Path, revision: str | None = None, token: str | bool | None = None,
                       cache_dir: str | Path | None = None, local_files_only: bool = False,
                       force_download: bool = False) -> Path:
    """A local folder as is; otherwise a Hub repo id at `revision`, downloaded (or taken from the cache)."""
    path = Path(checkpoint).expanduser()
    local = path if path.exists() else weights_dir() / str(checkpoint)
    if path.exists() or local.is_dir():
        if not local.is_dir():
            raise CheckpointError(f"{path} is a file; a checkpoint is a folder with config.json and model.safetensors.")
        if revision is not None:
            raise CheckpointError(f"{local} is a local folder; a revision applies to Hub repos only.")
        return local
    repo_id = str(checkpoint)
    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".")):
        raise CheckpointError(f"{checkpoint} is neither a local folder nor a Hub repo id (owner/name).")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    at = f" at revision {revision}" if revision else ""
    try:
        return Path(snapshot_download(repo_id, revision=revision, token=token, cache_dir=cache_dir,
                                      local_files_only=local_files_only, force_download=force_download,
                                      allow_patterns=CHECKPOINT_PATTERNS))
    except LocalEntryNotFoundError as error:
        raise CheckpointError(
            f"Checkpoint {repo_id}{at} is not in the local cache and the Hub cannot be reached (offline?). "
            f"Connect once to download it, or give a local folder."
        ) from error
    except RevisionNotFoundError as error:
        raise CheckpointError(f"The model repo {repo_id} has no revision {revision!r}.") from error
    except RepositoryNotFoundError as error:
        raise CheckpointError(f"No model repo {repo_id} on the Hugging Face Hub (or it is private: log in).") from error
    except (HfHubHTTPError, OSError) as error:
        raise CheckpointError(f"Could not download {repo_id}{at}: {error}") from error


MAX_CONFIG_INT = 65_536  # any size in a config.json; real ones are at most a few thousand
SHAPE_CHECKED_INT = 4_096  # sizes above this must be a dimension of some tensor in the weights file
MAX_CONFIG_LIST = 100_000  # words and pairs a checkpoint may name (C-GQA has under 10,000)


def safetensors_shapes(weights_path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a .safetensors header, read without loading any tensor (safetensors' own
    reader, which also checks that the header is well formed and the file holds every tensor it lists)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as weights:
            return {name: tuple(int(d) for d in weights.get_slice(name).get_shape()) for name in weights.keys()}
    except (OSError, ValueError, SafetensorError):
        raise CheckpointError(f"{weights_path} is corrupt or truncated; retrain or download it again.") from None


def check_config_sizes(config: dict[str, Any], weights_path: Path) -> None:
    """Refuse a config whose sizes are out of bounds or absent from the weights file's tensor shapes, before a
    model is built from it (a config.json is text anyone can edit; a wrong size would allocate gigabytes)."""
    dims = {d for shape in safetensors_shapes(weights_path).values() if 0 not in shape for d in shape}
    for key, value in config.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise CheckpointError(f"config.json sets {key} to {value}; a checkpoint's numbers must be finite.")
        if isinstance(value, int) and not 0 <= value <= MAX_CONFIG_INT:
            raise CheckpointError(f"config.json sets {key} = {value:,}, outside 0..{MAX_CONFIG_INT:,}.")
        if isinstance(value, int) and value > SHAPE_CHECKED_INT and value not in dims:
            raise CheckpointError(f"config.json sets {key} = {value:,}, which no tensor in model.safetensors has; "
                                  "the config does not match its weights.")
        if isinstance(value, list):
            if len(value) > MAX_CONFIG_LIST:
                raise CheckpointError(f"config.json lists {len(value):,} {key}; the limit is {MAX_CONFIG_LIST:,}.")
            if any(len(str(item)) > 1000 for item in value):
                raise CheckpointError(f"config.json has an overlong entry in {key}.")


def load_model(name: str | None = None, checkpoint: str | Path | None = None, backbone: str | None = None, *,
               revision: str | None = None, token: str | bool | None = None, cache_dir: str | Path | None = None,
               local_files_only: bool = False, force_download: bool = False, backbone_precision: str | None = None,
               **overrides: Any) -> "CompositionModel":
    """A model by name, untrained (its zero-initialised start) or from a checkpoint folder / Hub repo.

    With a checkpoint, `name` may be None: the checkpoint's config names the model. `revision`, `token`,
    `cache_dir`, `local_files_only` and `force_download` are passed to the Hub download of a repo id.
    `backbone_precision` (auto, float32, bfloat16, float16, int8; None: $CZSL_BACKBONE_PRECISION, else auto)
    picks the shared backbone copy whose image tower runs in that precision."""
    with using_backbone_precision(backbone_precision):
        return _load_model(name, checkpoint, backbone, revision=revision, token=token, cache_dir=cache_dir,
                           local_files_only=local_files_only, force_download=force_download, **overrides)


def _load_model(name: str | None, checkpoint: str | Path | None, backbone: str | None, *, revision: str | None,
                token: str | bool | None, cache_dir: str | Path | None, local_files_only: bool, force_download: bool,
                **overrides: Any) -> "CompositionModel":
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if checkpoint is None:
        cls = model_class(name or "clip")
        kwargs = dict(overrides)
        if backbone is not None:
            kwargs["backbone"] = backbone
        return cls(**kwargs)
    directory = resolve_checkpoint(checkpoint, revision=revision, token=token, cache_dir=cache_dir,
                                   local_files_only=local_files_only, force_download=force_download)
    config = read_checkpoint_config(directory)
    model_type = config["model_type"]
    if name is not None and name.lower() != model_type:
        raise CheckpointError(f"{checkpoint} holds a {model_type} checkpoint, not {name}.")
    if backbone is not None and backbone != config.get("backbone"):
        from ..backbones import parse_backbone_spec

        if str(parse_backbone_spec(backbone)) != config.get("backbone"):
            raise CheckpointError(
                f"{directory} was trained on backbone {config.get('backbone')}, not {backbone}; "
                f"load it without a backbone option to use its own."
            )
    cls = model_class(model_type)
    accepted = set(cls._hub_mixin_init_parameters) - {"self"}
    kwargs = {k: v for k, v in config.items() if k in accepted}
    kwargs.update(overrides)
    weights_path = directory / "model.safetensors"
    parameters = check_tensor_shapes(safetensors_shapes(weights_path))
    check_config_sizes(kwargs, weights_path)
    with build_budget(parameters, "config.json"):  # a config describing more than its weights is refused mid-build
        model = cls(**kwargs)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path} is corrupt or truncated ({error}); retrain or download it again.") from None
    not_finite = sorted(k for k, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all())
    if not_finite:
        raise CheckpointError(f"{weights_path} holds NaN or infinite values ({', '.join(not_finite[:3])}); its training "
                              "diverged. Retrain with a smaller learning rate.")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong_shape:
        details = "; ".join(part for part in (
            f"missing {', '.join(missing[:5])}" if missing else "",
            f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
            f"wrong shape {', '.join(wrong_shape[:5])}" if wrong_shape else "") if part)
        raise CheckpointError(f"{weights_path} does not match the {model_type} model its config describes ({details}).")
    model.load_state_dict(state, strict=True)
    model.eval()
    return model
