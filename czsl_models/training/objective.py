"""What a training step optimises: the model and its loss as one module (what DDP wraps), and the recipe's
optimiser and learning-rate schedule."""

from __future__ import annotations

from typing import Any

from .config import Recipe


def build_optimizer(model, recipe: Recipe) -> tuple[Any, Any]:
    """The recipe's optimiser over the model's trainable parameters and its StepLR schedule (None when
    the recipe keeps the learning rate constant)."""
    import torch

    optimizer_class = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(model.trainable_parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, recipe.lr_step, recipe.lr_gamma)
                 if recipe.lr_step > 0 else None)
    return optimizer, scheduler


def make_loss_module(model, vocab):
    """The model and its loss as one module returning the loss tensor (what DDP wraps)."""
    from torch import nn

    class LossModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels, visual, pair_targets, state_targets, object_targets):
            logits = self.model(pixels, vocab, visual=visual)
            loss, _ = self.model.loss(logits, pair_targets, state_targets, object_targets)
            return loss

    return LossModule()
