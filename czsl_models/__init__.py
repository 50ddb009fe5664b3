"""Compositional zero-shot recognition on OpenCLIP: MSCI, Refiner and SVIP, with a CLIP baseline."""

from .backbone import DEFAULT_BACKBONE, Backbone, BackboneError, get_backbone, parse_backbone_spec
from .images import ImageError, load_image
from .models.base import CompositionModel, Prediction, RankedPair
from .registry import CheckpointError, list_local_checkpoints, list_models, load_model
from .vocab import Vocabulary, VocabularyError

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BACKBONE", "Backbone", "BackboneError", "CheckpointError", "CompositionModel", "ImageError",
    "Prediction", "RankedPair", "Vocabulary", "VocabularyError", "get_backbone", "list_local_checkpoints",
    "list_models", "load_image", "load_model", "parse_backbone_spec", "__version__",
]
