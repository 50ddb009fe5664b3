"""The Gradio app: Predict, Compare, Train, Evaluate and About tabs on the shared models."""

from .blocks import build_app, create_app, launch_options
from .state import AppState, load_app_backbone

__all__ = ["AppState", "build_app", "create_app", "launch_options", "load_app_backbone"]
