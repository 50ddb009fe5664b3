"""Publishing checkpoints to the Hugging Face Hub. The card a checkpoint carries is rendered by
`czsl_models.models.card` (re-exported here), since `save_pretrained` writes it."""

from ..models.card import render_model_card
from .publish import PublishError, push_checkpoint

__all__ = ["PublishError", "push_checkpoint", "render_model_card"]
