"""The models: the interface and Hub mixin (base), prompts, shared layers, the four models, the name registry,
checkpoint loading and the card every checkpoint carries."""

from .base import CompositionModel, Prediction, RankedPair
from .checkpoints import (CheckpointError, CheckpointInfo, list_local_checkpoints, load_model, read_checkpoint_config,
                          resolve_checkpoint, weights_dir)
from .registry import list_models, model_class, register_model

__all__ = [
    "CheckpointError", "CheckpointInfo", "CompositionModel", "Prediction", "RankedPair", "list_local_checkpoints",
    "list_models", "load_model", "model_class", "read_checkpoint_config", "register_model", "resolve_checkpoint",
    "weights_dir",
]
