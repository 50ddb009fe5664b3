"""OpenCLIP backbones: naming one (specs), building it (loading), running it (backbone), its caches and precision."""

from .backbone import Backbone, VisualOutput
from .caches import BoundedDict, TextFeatureCache, tensor_fingerprint
from .loading import default_device, get_backbone, hub_reachable, load_backbone_uncached, save_backbone_local
from .specs import (DEFAULT_BACKBONE, TINY_BACKBONE, TINY_MODEL_CONFIG, BackboneError, BackboneSpec,
                    UnsupportedBackboneError, parse_backbone_spec, unsupported_reason)

__all__ = [
    "DEFAULT_BACKBONE", "TINY_BACKBONE", "TINY_MODEL_CONFIG", "Backbone", "BackboneError", "BackboneSpec",
    "BoundedDict", "TextFeatureCache", "UnsupportedBackboneError", "VisualOutput", "default_device", "get_backbone",
    "hub_reachable", "load_backbone_uncached", "parse_backbone_spec", "save_backbone_local", "tensor_fingerprint",
    "unsupported_reason",
]
