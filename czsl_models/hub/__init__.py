"""Publishing checkpoints to the Hugging Face Hub and their model cards."""

from ..models.card import render_model_card
from .publish import PublishError, push_checkpoint

__all__ = ["PublishError", "push_checkpoint", "render_model_card"]
