"""Training: the trainer, its recipes, the feature cache and run state."""
