"""Building a Backbone from a spec: the Hub (with an offline fallback), a local folder or the tiny test config."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import torch
from torch import nn

from .backbone import Backbone
from .precision import resolve_backbone_precision
from .specs import (TINY_MODEL_CONFIG, TINY_SEED, BackboneError, BackboneSpec, UnsupportedBackboneError,
                    parse_backbone_spec, unsupported_reason)


_BACKBONES: dict[tuple[str, str, str], Backbone] = {}
_BACKBONES_LOCK = threading.Lock()


def default_device() -> torch.device:
    """CUDA when present, else CPU; CZSL_DEVICE overrides."""
    requested = os.environ.get("CZSL_DEVICE")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _build_from_config(model_cfg: dict, seed: int | None) -> nn.Module:
    import open_clip

    config = dict(model_cfg)
    quick_gelu = config.pop("quick_gelu", False)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return open_clip.model.CLIP(**config, quick_gelu=quick_gelu)


def _tokenizer_for(context_length: int):
    import open_clip

    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)


def _preprocess_for(image_size: int, mean=None, std=None):
    import open_clip

    return open_clip.image_transform(image_size, is_train=False, mean=mean, std=std)


@contextmanager
def _quiet_root_logger():
    """open_clip logs download failures on the root logger; we raise one clear error instead."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(previous)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face Hub opens within timeout seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    try:
        socket.create_connection((parsed.hostname or "huggingface.co", parsed.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextmanager
def _offline_when_hub_unreachable():
    """With no network, huggingface_hub retries for about a minute before using its cache; switch it
    to offline mode for this load instead, so cached weights load and missing ones fail at once."""
    from huggingface_hub import constants

    switch = not constants.HF_HUB_OFFLINE and not hub_reachable()
    if switch:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if switch:
            constants.HF_HUB_OFFLINE = False


def _offline_hint(spec: BackboneSpec) -> BackboneError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    reason = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub cannot be reached"
    return BackboneError(
        f"Could not load backbone {spec}: its weights are not in the local cache and {reason}. Connect to the "
        f"internet once to download them, point to a local folder, or use --backbone tiny (random weights, for tests)."
    )


def load_backbone_uncached(spec: str | BackboneSpec | None = None, device: torch.device | str | None = None,
                           precision: str | None = None) -> Backbone:
    """Build a Backbone from a spec (no sharing; see get_backbone), its image tower in `precision`
    (backbones.precision: None or 'auto' picks per device)."""
    parsed = spec if isinstance(spec, BackboneSpec) else parse_backbone_spec(spec)
    device = torch.device(device) if device is not None else default_device()
    backbone = _build_backbone(parsed, device)
    backbone.set_precision(resolve_backbone_precision(device, precision))
    return backbone


def _build_backbone(parsed: BackboneSpec, device: torch.device) -> Backbone:
    import open_clip

    if parsed.kind == "tiny":
        model = _build_from_config(TINY_MODEL_CONFIG, TINY_SEED)
        return Backbone(model, _preprocess_for(TINY_MODEL_CONFIG["vision_cfg"]["image_size"]), _tokenizer_for(77), parsed, device)
    if parsed.kind == "random":
        config = open_clip.get_model_config(parsed.architecture)
        if config is None:
            raise BackboneError(f"Unknown OpenCLIP architecture {parsed.architecture!r}; see open_clip.list_models().")
        reason = unsupported_reason(config)
        if reason:
            raise UnsupportedBackboneError(f"Backbone {parsed} is {reason}")
        model = _build_from_config(config, 0)
        size = config["vision_cfg"]["image_size"]
        return Backbone(model, _preprocess_for(size), _tokenizer_for(config.get("text_cfg", {}).get("context_length", 77)), parsed, device)
    if parsed.kind == "pretrained":
        if parsed.architecture not in open_clip.list_models():
            raise BackboneError(f"Unknown OpenCLIP architecture {parsed.architecture!r}; see open_clip.list_models().")
        reason = unsupported_reason(open_clip.get_model_config(parsed.architecture))
        if reason:  # said before downloading weights that could not be used
            raise UnsupportedBackboneError(f"Backbone {parsed} is {reason}")
    if parsed.kind == "local":
        config_path = Path(parsed.location) / "open_clip_config.json"
        if not config_path.is_file():
            raise BackboneError(f"{parsed.location} has no open_clip_config.json (the Hugging Face Hub layout of OpenCLIP).")
        name, pretrained = "local-dir:" + parsed.location, None
    elif parsed.kind == "hf-hub":
        name, pretrained = "hf-hub:" + parsed.location, None
    else:
        name, pretrained = parsed.architecture, parsed.pretrained
    try:
        with _quiet_root_logger(), _offline_when_hub_unreachable():
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device="cpu")
            tokenizer = open_clip.get_tokenizer(name)
    except BackboneError:
        raise
    except Exception as error:  # open_clip raises many kinds; all mean "could not load"
        text = f"{type(error).__name__} {error}"
        if any(word in text for word in ("offline", "Offline", "LocalEntryNotFound", "connect", "resolve", "Connection")):
            raise _offline_hint(parsed) from error
        raise BackboneError(f"Could not load backbone {parsed}: {error}") from error
    if not hasattr(tokenizer, "eot_token_id"):
        raise BackboneError(f"Backbone {parsed} uses a Hugging Face tokenizer; these models need OpenCLIP's CLIP tokenizer.")
    return Backbone(model, preprocess, tokenizer, parsed, device)


def get_backbone(spec: str | BackboneSpec | None = None, device: torch.device | str | None = None,
                 precision: str | None = None) -> Backbone:
    """The shared Backbone for a spec: loaded once per process, device and backbone precision (None: the one
    in effect, see backbones.precision.requested_backbone_precision), then reused."""
    parsed = spec if isinstance(spec, BackboneSpec) else parse_backbone_spec(spec)
    device = torch.device(device) if device is not None else default_device()
    concrete = resolve_backbone_precision(device, precision)
    key = (str(parsed), str(device), concrete)
    with _BACKBONES_LOCK:
        backbone = _BACKBONES.get(key)
        if backbone is None:
            backbone = load_backbone_uncached(parsed, device, concrete)
            _BACKBONES[key] = backbone
        return backbone


def save_backbone_local(backbone: Backbone, directory: str | Path) -> Path:
    """Write a backbone in OpenCLIP's Hub layout (open_clip_config.json + weights); used to make
    a local copy of a tiny or downloaded backbone that loads with no network."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if backbone.spec.kind == "tiny":
        model_cfg = TINY_MODEL_CONFIG
    else:
        import open_clip

        model_cfg = open_clip.get_model_config(backbone.spec.architecture) if backbone.spec.architecture else None
        if model_cfg is None:
            raise BackboneError(f"Cannot find the architecture config of {backbone.spec} to save it.")
    preprocess_cfg = {"size": list(backbone.image_size), "mean": list(_preprocess_stat(backbone, "mean")),
                      "std": list(_preprocess_stat(backbone, "std"))}
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2))
    if backbone.precision == "int8":
        raise BackboneError(f"Cannot save {backbone.spec} from its int8 copy; load it in float32 to save it.")
    # Always float32 on disk, whatever precision this copy's image tower runs in.
    state = {k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in backbone.model.state_dict().items()}
    save_file(state, str(directory / "open_clip_model.safetensors"))
    return directory


def _preprocess_stat(backbone: Backbone, name: str) -> Sequence[float]:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    for step in getattr(backbone.preprocess, "transforms", []):
        if hasattr(step, name):
            return [float(v) for v in getattr(step, name)]
    return OPENAI_DATASET_MEAN if name == "mean" else OPENAI_DATASET_STD
