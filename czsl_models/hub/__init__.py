"""Publishing checkpoints to the Hugging Face Hub and their model cards."""
