"""The OpenCLIP backbone: one vision pass that yields what a model asks for (per-layer tokens, attention
maps), and text features encoded from token embeddings with a truncated context and a cache."""

from __future__ import annotations

import hashlib
import threading
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .caches import BoundedDict, TextFeatureCache
from .specs import NEEDS_VIT, USE_VIT, WORD_CACHE_ITEMS, BackboneSpec, UnsupportedBackboneError


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


def _attention_block(block: nn.Module, x: torch.Tensor, adapter: nn.Module | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """One ResidualAttentionBlock (plus optional adapters) with its attention computed explicitly, so the
    per-head probabilities [B, H, T, T] it returns are the ones this pass used (no second Q/K projection)."""
    attn: nn.MultiheadAttention = block.attn
    batch, tokens, width = x.shape
    heads = attn.num_heads
    h = block.ln_1(x)
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(batch, tokens, heads, width // heads).transpose(1, 2) for t in (q, k, v))
    logits = q @ k.transpose(-1, -2) / (width // heads) ** 0.5
    probabilities = logits.float().softmax(dim=-1)  # float32: shown, and rolled out over every block
    mixed = (probabilities.to(v.dtype) @ v).transpose(1, 2).reshape(batch, tokens, width)
    attended = block.ls_1(attn.out_proj(mixed))
    if adapter is not None:
        attended = attended + _adapter_branch(adapter.attention_branch, x)
    x = x + attended
    x = x + block.ls_2(block.mlp(block.ln_2(x))) + (0 if adapter is None else _adapter_branch(adapter.mlp_branch, x))
    return x, probabilities


def _adapter_branch(branch: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An adapter (float32 weights, trained with a float32 backbone) on tokens of any precision."""
    return branch(x.float()).to(x.dtype)


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
        self.precision = "float32"  # of the image tower; set_precision changes it
        self.image_dtype = torch.float32
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

    def set_precision(self, precision: str) -> "Backbone":
        """Run the image tower in a concrete precision (backbones.precision.resolve_backbone_precision): on a
        CPU, bfloat16 converts its weights and int8 quantises its Linear layers; on CUDA, half precision
        runs under autocast. Once per backbone, from float32; the text tower always stays float32."""
        if precision == self.precision:
            return self
        if self.precision != "float32":
            raise ValueError(f"backbone {self.name} already runs in {self.precision}; load another for {precision}")
        visual = self.model.visual
        if precision == "bfloat16" and self.device.type == "cpu":
            visual.to(torch.bfloat16)
            self.image_dtype = torch.bfloat16
        elif precision == "int8":
            if self.device.type != "cpu":
                raise ValueError("int8 backbones run only on a CPU")
            with warnings.catch_warnings():  # torch points eager quantisation users to torchao; this API still works
                warnings.simplefilter("ignore")
                torch.ao.quantization.quantize_dynamic(visual, {nn.Linear}, dtype=torch.qint8, inplace=True)
        elif precision not in ("bfloat16", "float16") or self.device.type != "cuda":
            raise ValueError(f"backbone precision {precision!r} cannot run on {self.device}")
        self.precision = precision
        return self

    def autocast(self):
        """Half precision under autocast for the image tower on CUDA (unless forced to float32); nothing on CPU."""
        if self.device.type == "cuda" and self.precision in ("bfloat16", "float16"):
            return torch.autocast("cuda", dtype=torch.bfloat16 if self.precision == "bfloat16" else torch.float16)
        return nullcontext()

    def text_autocast(self):
        """Mixed precision for the text tower on CUDA (as before backbone precisions existed), nothing on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        return nullcontext()

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> normalised pixel batch on the backbone device."""
        from ..inputs.images import limit_aspect, to_rgb
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
            x = visual.conv1(pixels.to(self.device, self.image_dtype))
            x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
            raw_patches = x
            if edit_patch_embeddings is not None:  # the edit (a model's float32 head) sees float32 embeddings
                x = edit_patch_embeddings(x.float()).to(x.dtype)
            cls_token = visual.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
            x = torch.cat([cls_token, x], dim=1)
            x = x + visual.positional_embedding.to(x.dtype)
            x = visual.patch_dropout(x)
            x = visual.ln_pre(x)
            layer_tokens: dict[int, torch.Tensor] = {}
            attentions: list[torch.Tensor] = []
            for index, block in enumerate(visual.transformer.resblocks, start=1):
                adapter = None if adapters is None else adapters[index - 1]
                if attention:
                    x, probabilities = _attention_block(block, x, adapter)
                    attentions.append(probabilities)
                elif adapter is None:
                    x = block(x)
                else:
                    x = self._block_with_adapters(block, x, adapter)
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
        return visual.ln_post(x.to(self.image_dtype)) @ visual.proj

    @staticmethod
    def _block_with_adapters(block: nn.Module, x: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
        # Same arithmetic as ResidualAttentionBlock.forward, plus adapters in parallel with
        # attention and MLP (AdaptFormer); zero-initialised adapters leave it unchanged.
        x = x + block.ls_1(block.attention(q_x=block.ln_1(x))) + _adapter_branch(adapter.attention_branch, x)
        x = x + block.ls_2(block.mlp(block.ln_2(x))) + _adapter_branch(adapter.mlp_branch, x)
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
            with self.text_autocast():
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
