"""Training: the trainer, its recipes, the feature cache and run state."""

from .config import PRESETS, TrainConfig, TrainError
from .progress import TrainCallback, TrainResult
from .batching import epoch_batches, shard_batch
from .trainer import train

__all__ = ["PRESETS", "TrainCallback", "TrainConfig", "TrainError", "TrainResult", "epoch_batches", "shard_batch",
           "train"]
