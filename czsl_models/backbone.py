"""OpenCLIP backbone: loading from a spec, one vision pass that yields what a model asks for,
and text features encoded from token embeddings with a truncated context and a cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

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


@dataclass
class VisualOutput:
    """What one vision pass produced; fields the caller did not ask for are empty."""

    cls: torch.Tensor  # [B, D] projected CLS feature (the CLIP image embedding, unnormalised)
    layer_tokens: dict[int, torch.Tensor] = field(default_factory=dict)  # block i (1-based) -> [B, T, D]
    attentions: list[torch.Tensor] = field(default_factory=list)  # per block, [B, heads, T, T]
    patch_embeddings: torch.Tensor | None = None  # [B, N, W] input patch embeddings (before CLS/pos)
    # Per-image values a model derives from this pass ([B, ...], e.g. SVIP's teacher scores); the
    # feature cache stores them with the pass.
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def detach(self) -> "VisualOutput":
        """A copy without autograd history (for caching)."""
        return VisualOutput(
            cls=self.cls.detach(),
            layer_tokens={k: v.detach() for k, v in self.layer_tokens.items()},
            attentions=[a.detach() for a in self.attentions],
            patch_embeddings=None if self.patch_embeddings is None else self.patch_embeddings.detach(),
            extras={k: v.detach() for k, v in self.extras.items()},
        )


def _attention_weights(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """Per-head self-attention probabilities [B, H, T, T] of a batch-first MultiheadAttention."""
    width = attn.embed_dim
    heads = attn.num_heads
    q, k = F.linear(x, attn.in_proj_weight[: 2 * width], attn.in_proj_bias[: 2 * width]).chunk(2, dim=-1)
    batch, tokens, _ = x.shape
    q = q.reshape(batch, tokens, heads, width // heads).transpose(1, 2)
    k = k.reshape(batch, tokens, heads, width // heads).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) / (width // heads) ** 0.5
    return logits.float().softmax(dim=-1)


class TextFeatureCache:
    """LRU cache of encoded text features, bounded by total bytes; thread safe."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        """The cached tensor for key, or None."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: torch.Tensor) -> None:
        """Store value, evicting the least recently used entries beyond max_bytes."""
        size = value.element_size() * value.nelement()
        if size > self.max_bytes:
            return
        with self._lock:
            previous = self._items.pop(key, None)
            if previous is not None:
                self._bytes -= previous.element_size() * previous.nelement()
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.element_size() * old.nelement()

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self._bytes = 0


class BoundedDict(dict):
    """A dict forgetting its oldest entries beyond max_items (not the pinned ones it started with): the tokenizer's
    BPE cache and the word-token cache would otherwise keep every word any visitor ever typed."""

    def __init__(self, pinned: dict | None = None, max_items: int = 50_000) -> None:
        super().__init__(pinned or {})
        self.pinned = frozenset(pinned or {})
        self.max_items = max_items
        self._order: OrderedDict[Any, None] = OrderedDict()
        self._lock = threading.Lock()

    def __setitem__(self, key: Any, value: Any) -> None:
        with self._lock:
            super().__setitem__(key, value)
            if key in self.pinned:
                return
            self._order[key] = None
            self._order.move_to_end(key)
            while len(self._order) > self.max_items:
                old, _ = self._order.popitem(last=False)
                super().pop(old, None)


def tensor_fingerprint(tensors: Iterable[torch.Tensor]) -> str:
    """A short hash of tensor contents: keys the text cache on trained text parameters."""
    digest = hashlib.sha1()
    for tensor in tensors:
        data = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(str(tuple(data.shape)).encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()[:16]


class Backbone:
    """A frozen OpenCLIP model with the passes the composition models need.

    Not an nn.Module on purpose: models hold it by reference, so their state dicts (and
    checkpoints) never contain backbone weights and several models share one instance.
    """

    def __init__(self, clip_model: nn.Module, preprocess: Callable, tokenizer: Callable, spec: BackboneSpec,
                 device: torch.device | str = "cpu") -> None:
        self._check_supported(clip_model, spec)
        self.model = clip_model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.spec = spec
        self.name = str(spec)
        self.device = torch.device(device)
        self.model.to(self.device)
        visual = self.model.visual
        self.width = visual.conv1.out_channels
        self.embed_dim = int(visual.proj.shape[1])
        self.text_width = int(self.model.token_embedding.weight.shape[1])
        self.num_layers = len(visual.transformer.resblocks)
        self.num_heads = visual.transformer.resblocks[0].attn.num_heads
        self.patch_size = tuple(visual.patch_size) if isinstance(visual.patch_size, (tuple, list)) else (visual.patch_size,) * 2
        self.grid_size = tuple(visual.grid_size)
        self.image_size = tuple(visual.image_size) if isinstance(visual.image_size, (tuple, list)) else (visual.image_size,) * 2
        self.context_length = int(self.model.positional_embedding.shape[0])
        self.sot_token = int(tokenizer.sot_token_id) if hasattr(tokenizer, "sot_token_id") else 49406
        self.eot_token = int(tokenizer.eot_token_id) if hasattr(tokenizer, "eot_token_id") else 49407
        self.text_cache = TextFeatureCache()
        self._word_token_cache: BoundedDict = BoundedDict(max_items=WORD_CACHE_ITEMS)
        if isinstance(getattr(tokenizer, "cache", None), dict):  # open_clip's BPE cache: bounded, specials pinned
            tokenizer.cache = BoundedDict(dict(tokenizer.cache), max_items=WORD_CACHE_ITEMS)
        self._lock = threading.Lock()

    @staticmethod
    def _check_supported(clip_model: nn.Module, spec: BackboneSpec) -> None:
        from open_clip.transformer import VisionTransformer

        visual = getattr(clip_model, "visual", None)
        if not isinstance(visual, VisionTransformer):
            tower = type(visual).__name__ if visual is not None else "none"
            raise UnsupportedBackboneError(f"Backbone {spec} is {NEEDS_VIT} (its image tower is {tower}). {USE_VIT}")
        if not hasattr(clip_model, "token_embedding"):
            raise UnsupportedBackboneError(
                f"Backbone {spec} is not supported: the models need OpenCLIP's own CLIP text tower.")
        if getattr(visual, "attn_pool", None) is not None or visual.pool_type != "tok" or visual.final_ln_after_pool:
            raise UnsupportedBackboneError(
                f"Backbone {spec} is not supported: it pools its image tokens by average or attention; the models "
                "need CLS-token pooling.")
        if getattr(clip_model, "text_pool_type", "argmax") != "argmax":
            raise UnsupportedBackboneError(
                f"Backbone {spec} is not supported: it pools text by {clip_model.text_pool_type!r}; the models need "
                "end-of-text pooling.")
        if not getattr(visual.transformer.resblocks[0].attn, "batch_first", True):
            raise UnsupportedBackboneError(f"Backbone {spec} is not supported: it uses sequence-first attention.")

    # ------------------------------------------------------------------ images
    @property
    def num_patches(self) -> int:
        """Number of patch tokens (without CLS)."""
        return self.grid_size[0] * self.grid_size[1]

    def autocast(self):
        """Mixed precision on CUDA, nothing on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        return nullcontext()

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> normalised pixel batch on the backbone device."""
        from .images import limit_aspect, to_rgb
        # The aspect bound first: a thin strip would otherwise grow to millions of pixels in the resize.
        return torch.stack([self.preprocess(to_rgb(limit_aspect(image))) for image in images]).to(self.device)

    def encode_image(
        self,
        pixels: torch.Tensor,
        layers: Sequence[int] = (),
        attention: bool = False,
        patch_embeddings: bool = False,
        edit_patch_embeddings: Callable[[torch.Tensor], torch.Tensor] | None = None,
        adapters: nn.ModuleList | None = None,
    ) -> VisualOutput:
        """One vision pass: CLS feature plus, on request, projected tokens of the given blocks
        (1-based), per-block attention maps, the input patch embeddings; an optional edit of the
        patch embeddings (before CLS and positions) and optional per-block adapters."""
        visual = self.model.visual
        wanted = set(int(i) for i in layers)
        for index in wanted:
            if not 1 <= index <= self.num_layers:
                raise ValueError(f"layer {index} outside 1..{self.num_layers}")
        with self.autocast():
            x = visual.conv1(pixels.to(self.device))
            x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
            raw_patches = x
            if edit_patch_embeddings is not None:
                x = edit_patch_embeddings(x)
            cls_token = visual.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
            x = torch.cat([cls_token, x], dim=1)
            x = x + visual.positional_embedding.to(x.dtype)
            x = visual.patch_dropout(x)
            x = visual.ln_pre(x)
            layer_tokens: dict[int, torch.Tensor] = {}
            attentions: list[torch.Tensor] = []
            for index, block in enumerate(visual.transformer.resblocks, start=1):
                if attention:
                    attentions.append(_attention_weights(block.attn, block.ln_1(x)))
                if adapters is None:
                    x = block(x)
                else:
                    x = self._block_with_adapters(block, x, adapters[index - 1])
                if index in wanted:
                    layer_tokens[index] = self.project_tokens(x)
            pooled = visual.ln_post(x[:, 0])
            cls = pooled @ visual.proj
        return VisualOutput(
            cls=cls.float(),
            layer_tokens={k: v.float() for k, v in layer_tokens.items()},
            attentions=attentions,
            patch_embeddings=raw_patches.float() if patch_embeddings else None,
        )

    def project_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """ln_post then proj on every token: block outputs in the joint embedding space."""
        visual = self.model.visual
        return visual.ln_post(x) @ visual.proj

    @staticmethod
    def _block_with_adapters(block: nn.Module, x: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
        # Same arithmetic as ResidualAttentionBlock.forward, plus adapters in parallel with
        # attention and MLP (AdaptFormer); zero-initialised adapters leave it unchanged.
        x = x + block.ls_1(block.attention(q_x=block.ln_1(x))) + adapter.attention_branch(x)
        x = x + block.ls_2(block.mlp(block.ln_2(x))) + adapter.mlp_branch(x)
        return x

    # -------------------------------------------------------------------- text
    def word_tokens(self, text: str) -> list[int]:
        """BPE token ids of a piece of text, without start/end tokens (same cleaning as the tokenizer)."""
        cached = self._word_token_cache.get(text)
        if cached is None:
            cached = tuple(self.tokenizer.encode(text))
            self._word_token_cache[text] = cached
        return list(cached)

    @property
    def token_embedding(self) -> nn.Embedding:
        """The text tower's token embedding table."""
        return self.model.token_embedding

    def embed_tokens(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> token embeddings (float32)."""
        return self.model.token_embedding(token_ids.to(self.device)).float()

    def encode_text_embeddings(self, embeddings: torch.Tensor, eot_positions: torch.Tensor,
                               chunk_size: int = 1024) -> torch.Tensor:
        """Text features [T, D] from token embeddings [T, L, width] (L <= context), running the
        transformer only up to the longest prompt; causal masking makes this equal to context 77."""
        model = self.model
        outputs = []
        for start in range(0, embeddings.shape[0], chunk_size):
            chunk = embeddings[start:start + chunk_size].to(self.device)
            positions = eot_positions[start:start + chunk_size].to(self.device)
            length = int(positions.max().item()) + 1
            with self.autocast():
                x = chunk[:, :length] + model.positional_embedding[:length].to(chunk.dtype)
                mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
                x = model.transformer(x, attn_mask=mask)
                x = model.ln_final(x)
                x = x[torch.arange(x.shape[0], device=x.device), positions]
                x = x @ model.text_projection if not isinstance(model.text_projection, nn.Linear) else model.text_projection(x)
            outputs.append(x.float())
        return torch.cat(outputs) if outputs else embeddings.new_zeros(0, self.embed_dim)

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Plain CLIP text features [T, D] of fixed prompts (full tokenizer path, cached)."""
        key = "plain|" + hashlib.sha1("\n".join(prompts).encode()).hexdigest()
        cached = self.text_cache.get(key)
        if cached is not None:
            return cached
        ids = self.tokenizer(list(prompts)).to(self.device)
        eot = ids.argmax(dim=-1)
        with torch.no_grad():
            features = self.encode_text_embeddings(self.embed_tokens(ids), eot)
        self.text_cache.put(key, features)
        return features

    def to(self, device: torch.device | str) -> "Backbone":
        """Move to a device (clears the text cache, whose tensors live on the old one)."""
        self.device = torch.device(device)
        self.model.to(self.device)
        self.text_cache.clear()
        return self


# ----------------------------------------------------------------------- loading
_BACKBONES: dict[tuple[str, str], Backbone] = {}
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


def load_backbone_uncached(spec: str | BackboneSpec | None = None, device: torch.device | str | None = None) -> Backbone:
    """Build a Backbone from a spec (no sharing; see get_backbone)."""
    import open_clip

    parsed = spec if isinstance(spec, BackboneSpec) else parse_backbone_spec(spec)
    device = torch.device(device) if device is not None else default_device()
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


def get_backbone(spec: str | BackboneSpec | None = None, device: torch.device | str | None = None) -> Backbone:
    """The shared Backbone for a spec: loaded once per process and device, then reused."""
    parsed = spec if isinstance(spec, BackboneSpec) else parse_backbone_spec(spec)
    device = torch.device(device) if device is not None else default_device()
    key = (str(parsed), str(device))
    with _BACKBONES_LOCK:
        backbone = _BACKBONES.get(key)
        if backbone is None:
            backbone = load_backbone_uncached(parsed, device)
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
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    save_file(state, str(directory / "open_clip_model.safetensors"))
    return directory


def _preprocess_stat(backbone: Backbone, name: str) -> Sequence[float]:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    for step in getattr(backbone.preprocess, "transforms", []):
        if hasattr(step, name):
            return [float(v) for v in getattr(step, name)]
    return OPENAI_DATASET_MEAN if name == "mean" else OPENAI_DATASET_STD
