"""Naming a backbone: ARCH:TAG, hf-hub: ids, local folders and the tiny test config; what the models need of it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


DEFAULT_BACKBONE = "ViT-L-14-quickgelu:openai"
TINY_BACKBONE = "tiny"
WORD_CACHE_ITEMS = 50_000  # words the tokenizer caches keep (a few MB); older ones are tokenised again
RANDOM_PREFIX = "random:"

# A small ViT with ViT-L/14's patch grid (16x16 patches of 14 px at 224 px), so every
# model's shapes are exercised for real, but with a few thousand times fewer FLOPs.
TINY_MODEL_CONFIG: dict = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 6, "width": 64, "patch_size": 14, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
TINY_SEED = 20250501


class BackboneError(RuntimeError):
    """A backbone could not be loaded; the message says why and what to do."""


class UnsupportedBackboneError(BackboneError):
    """The backbone loads, but its towers are not the OpenCLIP ViT + CLIP text tower the models are built on."""


NEEDS_VIT = "not supported: the models need a ViT's patch tokens"
USE_VIT = "Use an OpenCLIP ViT such as ViT-L-14-quickgelu:openai or ViT-B-16:openai."


def unsupported_reason(model_cfg: dict) -> str | None:
    """Why an OpenCLIP architecture config cannot back these models, or None when it can (read before building it,
    so a ResNet or timm tower gets this message instead of an error from deep inside open_clip)."""
    vision = model_cfg.get("vision_cfg", {})
    text = model_cfg.get("text_cfg", {})
    if vision.get("timm_model_name"):
        return f"{NEEDS_VIT} (its image tower, {vision['timm_model_name']}, comes from timm). {USE_VIT}"
    if isinstance(vision.get("layers"), (list, tuple)):
        return f"{NEEDS_VIT} (its image tower is a ResNet). {USE_VIT}"
    if text.get("hf_model_name") or text.get("hf_tokenizer_name"):
        return ("not supported: its text tower or tokenizer comes from Hugging Face transformers; the models need "
                "OpenCLIP's own CLIP text tower and tokenizer.")
    if vision.get("attentional_pool") or vision.get("pool_type", "tok") != "tok" or vision.get("final_ln_after_pool"):
        return "not supported: it pools its image tokens by average or attention; the models need CLS-token pooling."
    if model_cfg.get("multimodal_cfg") or text.get("pool_type", "argmax") != "argmax":
        return "not supported: the models need a CLIP text tower pooled at the end-of-text token."
    return None


@dataclass(frozen=True)
class BackboneSpec:
    """Where a backbone comes from: kind is 'pretrained', 'hf-hub', 'local', 'random' or 'tiny'."""

    kind: str
    architecture: str = ""
    pretrained: str = ""
    location: str = ""

    def __str__(self) -> str:
        if self.kind == "tiny":
            return TINY_BACKBONE
        if self.kind == "random":
            return RANDOM_PREFIX + self.architecture
        if self.kind == "hf-hub":
            return "hf-hub:" + self.location
        if self.kind == "local":
            return self.location
        return f"{self.architecture}:{self.pretrained}"


def parse_backbone_spec(spec: str | None) -> BackboneSpec:
    """Parse 'ARCH:TAG', 'hf-hub:org/repo', a local folder, 'random:ARCH' or 'tiny'."""
    spec = (spec or DEFAULT_BACKBONE).strip()
    if spec in ("default", ""):
        spec = DEFAULT_BACKBONE
    if spec == TINY_BACKBONE:
        return BackboneSpec("tiny", architecture="tiny")
    if spec.startswith(RANDOM_PREFIX):
        return BackboneSpec("random", architecture=spec[len(RANDOM_PREFIX):])
    if spec.startswith("hf-hub:"):
        return BackboneSpec("hf-hub", location=spec[len("hf-hub:"):])
    if spec.startswith("local-dir:"):
        spec = spec[len("local-dir:"):]
    if os.path.isdir(spec):
        return BackboneSpec("local", location=str(Path(spec)))
    if ":" in spec:
        architecture, pretrained = spec.split(":", 1)
        return BackboneSpec("pretrained", architecture=architecture, pretrained=pretrained)
    raise BackboneError(
        f"Cannot read backbone spec {spec!r}. Use 'ARCHITECTURE:PRETRAINED_TAG' "
        f"(e.g. {DEFAULT_BACKBONE}), 'hf-hub:org/repo', a local folder with open_clip_config.json, "
        f"'random:ARCHITECTURE' or 'tiny'."
    )


def backbone_hub_repo(backbone: str) -> str | None:
    """The Hub repo holding a backbone's weights (the card's base_model), when there is one."""
    if backbone.startswith("hf-hub:"):
        return backbone[len("hf-hub:"):].rstrip("/")
    architecture, _, tag = backbone.partition(":")
    if not tag or architecture in ("random", "tiny"):
        return None
    try:
        import open_clip

        repo = (open_clip.get_pretrained_cfg(architecture, tag) or {}).get("hf_hub")
    except Exception:  # an unknown architecture or tag: the card simply names no base model
        return None
    return repo.rstrip("/") if repo else None
