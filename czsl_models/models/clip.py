"""The CLIP zero-shot baseline: the shared three-branch scorer with nothing learned."""

from __future__ import annotations

from .registry import register_model
from .base import CompositionModel


@register_model
class ClipBaseline(CompositionModel):
    """Composition, state and object prompts ("a photo of ...") scored against the CLS feature.

    Every other model starts exactly here: their residual heads are zero-initialised."""

    name = "clip"
    display_name = "CLIP baseline"
    summary = "Zero-shot CLIP: the photo is compared with 'a photo of {state} {object}', 'a photo of {state}' and 'a photo of {object}'."
    learnable_prompts = False
