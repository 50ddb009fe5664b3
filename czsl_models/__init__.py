"""Compositional zero-shot recognition on OpenCLIP: MSCI, Refiner and SVIP, with a CLIP baseline.

What a library user imports lives here; the layers behind it are described in docs/architecture.md."""

from .backbones import DEFAULT_BACKBONE, Backbone, BackboneError, get_backbone, parse_backbone_spec
from .inference.summary import prediction_summary
from .inputs import ImageError, Vocabulary, VocabularyError, load_image
from .models import (CheckpointError, CompositionModel, Prediction, RankedPair, list_local_checkpoints, list_models,
                     load_model, model_class)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BACKBONE", "Backbone", "BackboneError", "CheckpointError", "CompositionModel", "ImageError",
    "Prediction", "RankedPair", "Vocabulary", "VocabularyError", "get_backbone", "list_local_checkpoints",
    "list_models", "load_image", "load_model", "model_class", "parse_backbone_spec", "prediction_summary",
    "__version__",
]
