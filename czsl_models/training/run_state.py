"""What a training run keeps on disk: the best checkpoint (committed atomically into the output
folder) and the state needed to resume (last weights, optimizer, scheduler, position, history).

Nothing here is pickled: tensors go to safetensors, everything else to JSON.

Checkpoint commit: the new files are written into ``<out>/.checkpoint-staging/``, a ``COMMIT``
marker is written last, then each file is renamed over its old version and the staging folder is
removed. `recover_checkpoint` (run at the start of every run) finishes a commit whose marker
exists and discards one whose marker does not, so a crash at any point leaves either the old or
the new checkpoint, never a mixture.

Training state: ``<out>/training_state/`` is replaced as a whole: built in a temporary sibling,
the old one renamed aside, the new one renamed in, the old one removed; `load_training_state`
falls back to the set-aside copy if a crash came between the two renames.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

CHECKPOINT_FILES = ("config.json", "model.safetensors", "metrics.json", "README.md")
STAGING_NAME = ".checkpoint-staging"
COMMIT_MARKER = "COMMIT"
STATE_DIR = "training_state"
STATE_FORMAT_VERSION = 1


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:  # some systems cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def recover_checkpoint(out: Path) -> None:
    """Finish or discard a checkpoint commit that a crash interrupted."""
    staging = out / STAGING_NAME
    if not staging.is_dir():
        return
    if (staging / COMMIT_MARKER).is_file():
        _move_staged_files(staging, out)
    shutil.rmtree(staging, ignore_errors=True)


def _move_staged_files(staging: Path, out: Path) -> None:
    for name in CHECKPOINT_FILES:
        if (staging / name).is_file():
            os.replace(staging / name, out / name)
    _fsync_dir(out)


def commit_checkpoint(out: Path, write: Callable[[Path], None]) -> None:
    """Write a checkpoint with `write(folder)` into staging, then move it into `out` atomically."""
    out.mkdir(parents=True, exist_ok=True)
    recover_checkpoint(out)
    staging = out / STAGING_NAME
    staging.mkdir()
    write(staging)
    for name in CHECKPOINT_FILES:
        if (staging / name).is_file():
            _fsync_file(staging / name)
    (staging / COMMIT_MARKER).write_text("ready\n")
    _fsync_dir(staging)
    _move_staged_files(staging, out)
    shutil.rmtree(staging, ignore_errors=True)


def has_checkpoint(out: Path) -> bool:
    """True when `out` holds a committed checkpoint."""
    return (out / "config.json").is_file() and (out / "model.safetensors").is_file()


# --------------------------------------------------------------------------- training state


@dataclass
class TrainingState:
    """Where a run stands: the next batch to run, the best epoch so far and the history."""

    config: dict[str, Any]
    epoch: int = 0  # the epoch in progress (0-based)
    batch: int = 0  # the next global batch of that epoch
    global_step: int = 0
    epoch_loss_sum: float = 0.0  # of the epoch in progress, so its mean survives a resume
    epoch_loss_count: int = 0
    best_score: float | None = None
    best_epoch: int | None = None
    best_metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    scheduler: dict[str, Any] = field(default_factory=dict)
    scaler: dict[str, Any] | None = None
    finished: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"format_version": STATE_FORMAT_VERSION, **self.__dict__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainingState":
        """Inverse of to_json."""
        data = dict(data)
        version = data.pop("format_version", None)
        if version != STATE_FORMAT_VERSION:
            raise ValueError(f"training state format {version} is not supported (expected {STATE_FORMAT_VERSION})")
        return cls(**data)


def _optimizer_to_files(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (safetensors) and the rest (JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    plain_state: dict[str, dict[str, Any]] = {}
    for param_id, values in state_dict["state"].items():
        plain: dict[str, Any] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain[name] = value
        plain_state[str(param_id)] = plain
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in group.items()} for group in state_dict["param_groups"]]
    return tensors, {"state": plain_state, "param_groups": groups}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    for key, value in tensors.items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def save_training_state(out: Path, state: TrainingState, model_state: dict[str, torch.Tensor],
                        optimizer_state: dict[str, Any]) -> None:
    """Replace <out>/training_state atomically with the given state, weights and optimizer."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    target = out / STATE_DIR
    aside = out / f"{STATE_DIR}.old"
    staging = Path(tempfile.mkdtemp(prefix=f".{STATE_DIR}.", dir=out))
    try:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in model_state.items()},
                  str(staging / "model.safetensors"))
        tensors, optimizer_meta = _optimizer_to_files(optimizer_state)
        save_file(tensors, str(staging / "optimizer.safetensors"))
        (staging / "optimizer.json").write_text(json.dumps(optimizer_meta))
        (staging / "state.json").write_text(json.dumps(state.to_json(), indent=1))
        for path in staging.iterdir():
            _fsync_file(path)
        _fsync_dir(staging)
        if target.exists():
            if aside.exists():
                shutil.rmtree(aside)
            os.rename(target, aside)
        os.rename(staging, target)
        _fsync_dir(out)
        if aside.exists():
            shutil.rmtree(aside)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def training_state_path(out: Path) -> Path | None:
    """The folder of the last complete training state, or None."""
    for candidate in (out / STATE_DIR, out / f"{STATE_DIR}.old"):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def load_training_state(out: Path) -> tuple[TrainingState, dict[str, torch.Tensor], dict[str, Any]] | None:
    """(state, last model weights, optimizer state_dict) of the last saved state, or None."""
    from safetensors.torch import load_file

    folder = training_state_path(out)
    if folder is None:
        return None
    state = TrainingState.from_json(json.loads((folder / "state.json").read_text()))
    model_state = load_file(str(folder / "model.safetensors"))
    optimizer_state = _optimizer_from_files(load_file(str(folder / "optimizer.safetensors")),
                                            json.loads((folder / "optimizer.json").read_text()))
    return state, model_state, optimizer_state
