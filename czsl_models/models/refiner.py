"""Refiner (ICASSP 2025), reconstructed: learnable state / object / composition queries refine the
image embedding with region-specific context, and each branch's text rows move toward the image.

No code or full text of the paper is public. This is a reconstruction from its abstract in the
Troika family it compares against (docs/models.md, "Refiner"); the sizes and the choices the abstract
leaves open are constructor arguments, so they land in config.json.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import DEFAULT_BACKBONE, VisualOutput
from .registry import register_model
from ..inputs.vocab import Vocabulary
from .base import LOGIT_SCALE, BranchLogits, CompositionModel, VisualRequest
from .layers import CrossAttention, CrossAttentionLayer, ResidualDisentangler, fit_heads

QUERY_GROUPS = ("state", "object", "composition")
NORM_EPS = 1e-12  # F.normalize's
# The prompt branch each query group refines; rows of image_lambda and text_lambda follow QUERY_GROUPS.
BRANCH_OF_GROUP = {"state": "state", "object": "object", "composition": "pair"}
INACTIVE_GROUPS_NOTE = ("Every query group's weight (lambda) is zero, as in an untrained model, so no group "
                        "changes any score: all contributions are 0.")
CONTRIBUTION_NOTE = ("A group's contribution is the pair's score minus its score with that group's refined "
                     "embedding removed (image side only; text fusion and disentanglers kept).")


@register_model
class Refiner(CompositionModel):
    """Refiner, a reconstruction (no code or full text of the paper is public; docs/models.md, "Refiner").

    Image side: `num_queries` learnable queries in three equal groups (state, object, composition)
    attend to the last block's patch tokens through `query_layers` cross-attention layers; each
    branch's image embedding is the CLS feature g plus a zero-initialised per-channel λ_b times the
    mean of its group's refined queries, and the state and object branches then pass through
    MSCI's residual disentanglers. Text side: each branch's prompt features attend to the same
    patches in one cross-attention (no MLP unless `fusion_mlp`) and move toward the image,
    `t' = normalize(t + λ ⊙ CA(t, patches))` with λ zero-initialised per branch and channel, CA
    being the attention's update (the layer output minus its input when `fusion_mlp`). With every
    λ and disentangler output at zero the model scores exactly as the CLIP baseline.

    Choices the abstract leaves open (all configurable): heads are fitted to divide the joint
    width; the fusion attention is shared by the three branches (keys and values projected once
    per image); the fusion has no MLP by default, because an MLP over P text rows per image costs
    more than the ViT itself at open-world sizes, while one attention keeps Refiner within ~1.1x
    of CLIP per image at P = 2,000 (benchmarks/refiner_speed.py).
    """

    name = "refiner"
    display_name = "Refiner (reconstruction)"
    summary = ("Learned 'queries' look at the parts of the photo that matter for the state, the object and "
               "the whole composition, and sharpen each comparison; a reconstruction from the paper's abstract, "
               "whose code is not public.")

    # Image-rows per chunk of the text fusion: bounds memory (P = 28,175 on ViT-L stays under ~1 GB)
    # and never changes a result, because every text row is computed independently.
    fusion_row_budget: int = 16384

    def __init__(self, backbone: str = DEFAULT_BACKBONE, train_states: list[str] | None = None,
                 train_objects: list[str] | None = None, train_pairs: list[list[str]] | None = None,
                 score_weights: list[float] | None = None, loss_weights: list[float] | None = None,
                 num_queries: int = 24, query_layers: int = 2, num_heads: int = 12, dropout: float = 0.1,
                 disentangler_dropout: float = 0.5, fusion_mlp: bool = False) -> None:
        super().__init__(backbone, train_states, train_objects, train_pairs, score_weights, loss_weights)
        if num_queries < len(QUERY_GROUPS) or num_queries % len(QUERY_GROUPS):
            raise ValueError(f"num_queries must be a positive multiple of {len(QUERY_GROUPS)} (one group each for "
                             f"{', '.join(QUERY_GROUPS)}), got {num_queries}")
        if query_layers < 1:
            raise ValueError(f"query_layers must be at least 1, got {query_layers}")
        dim = self.backbone.embed_dim
        heads = fit_heads(dim, num_heads)
        self.num_queries = num_queries
        self.fusion_mlp = fusion_mlp
        self.patch_norm = nn.LayerNorm(dim)
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.query_blocks = nn.ModuleList(CrossAttentionLayer(dim, heads, dropout) for _ in range(query_layers))
        # λ_b per query group (state, object, composition) and λ per text branch, per channel.
        self.image_lambda = nn.Parameter(torch.zeros(len(QUERY_GROUPS), dim))
        self.text_lambda = nn.Parameter(torch.zeros(len(QUERY_GROUPS), dim))
        self.state_disentangler = ResidualDisentangler(dim, dropout=disentangler_dropout)
        self.object_disentangler = ResidualDisentangler(dim, dropout=disentangler_dropout)
        self.text_fusion: nn.Module = CrossAttentionLayer(dim, heads, dropout) if fusion_mlp else CrossAttention(dim, heads)

    def visual_request(self, explain: bool = False) -> VisualRequest:
        """The last block's projected tokens (CLS feature comes with every pass)."""
        return VisualRequest(layers=(self.backbone.num_layers,))

    # ------------------------------------------------------------ image side
    def refine_queries(self, patches: torch.Tensor, keys_values: list[tuple[torch.Tensor, torch.Tensor]]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined queries [B, Q, D] and their head-mean attention per layer [B, L, Q, N]."""
        queries: torch.Tensor = self.queries
        maps = []
        for layer, kv in zip(self.query_blocks, keys_values):
            # Weights are always taken (24 rows: negligible) so explain on/off gives identical outputs.
            queries, weights = layer(queries, kv, need_weights=True)
            maps.append(weights)
        return queries, torch.stack(maps, dim=1)

    def group_means(self, refined: torch.Tensor) -> torch.Tensor:
        """Mean refined query of each group [B, 3, D] (state, object, composition)."""
        batch, count, dim = refined.shape
        return refined.view(batch, len(QUERY_GROUPS), count // len(QUERY_GROUPS), dim).mean(dim=2)

    def branch_image_features(self, cls: torch.Tensor, groups: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Image embedding of each branch: g + λ_b ⊙ group mean (skipped when groups is None), then
        the residual disentanglers on the state and object branches."""
        refined = cls.unsqueeze(1).expand(-1, len(QUERY_GROUPS), -1)
        if groups is not None:
            refined = refined + self.image_lambda * groups
        return {"state": self.state_disentangler(refined[:, 0]), "object": self.object_disentangler(refined[:, 1]),
                "pair": refined[:, 2]}

    # ------------------------------------------------------------- text side
    def text_update(self, text: torch.Tensor, keys_values: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """CA(t, patches) [B, T, D]: what the patches add to each text row."""
        if self.fusion_mlp:
            updated, _ = self.text_fusion(text, keys_values)
            return updated - text
        attended, _ = self.text_fusion(text, keys_values)
        return attended

    def fused_logits(self, text: torch.Tensor, keys_values: tuple[torch.Tensor, torch.Tensor],
                     text_lambda: torch.Tensor, image_features: torch.Tensor) -> torch.Tensor:
        """100 * cos(image, t + λ ⊙ CA(t, patches)) as [K, B, T] for image features [B, K, D], computed
        in chunks of text rows so memory stays bounded for open-world vocabularies."""
        batch = image_features.shape[0]
        # Scaled before the matmul, in the order the baseline's cosine_logits uses.
        image = LOGIT_SCALE * F.normalize(image_features.float(), dim=-1)
        rows = max(1, self.fusion_row_budget // max(1, batch))
        chunks = []
        for start in range(0, text.shape[0], rows):
            rows_text = text[start:start + rows]
            shift = text_lambda * self.text_update(rows_text, keys_values)  # [B, c, D]
            fused_norm = (rows_text + shift).norm(dim=-1).clamp_min(NORM_EPS)  # [B, c]
            text_scale = rows_text.norm(dim=-1).clamp_min(NORM_EPS) / fused_norm
            unit_text = F.normalize(rows_text, dim=-1)
            shift_dot = torch.bmm(shift, image.transpose(1, 2)) / fused_norm.unsqueeze(-1)  # [B, c, K]
            # cos(v, t + s) = (v̂·t̂)·|t|/|t + s| + v̂·s/|t + s|: the first product is the baseline's own
            # matmul, so with λ = 0 (s = 0, scale 1) the logits equal the CLIP baseline's bit for bit.
            chunks.append(torch.stack([(image[:, k] @ unit_text.t()) * text_scale + shift_dot[..., k]
                                       for k in range(image.shape[1])]))
        return torch.cat(chunks, dim=-1)

    # ---------------------------------------------------------------- scoring
    def branch_logits(self, visual: VisualOutput, vocab: Vocabulary, explain: bool = False,
                      pixels: torch.Tensor | None = None) -> BranchLogits:
        """Logits of the three branches; with explain, the query attention and each branch's logits
        without the query refinement (for the per-group contributions)."""
        tokens = visual.layer_tokens.get(self.backbone.num_layers)
        if tokens is None:
            raise ValueError(f"Refiner needs the tokens of block {self.backbone.num_layers} (see visual_request)")
        patches = self.patch_norm(tokens[:, 1:].float())
        refined, attention = self.refine_queries(patches, [layer.attention.project_keys(patches)
                                                           for layer in self.query_blocks])
        fusion_attention = self.text_fusion.attention if self.fusion_mlp else self.text_fusion
        fusion_keys = fusion_attention.project_keys(patches)
        cls = visual.cls.float()
        features = self.branch_image_features(cls, self.group_means(refined))
        unrefined = self.branch_image_features(cls, None) if explain else None
        text = self.prompts.encode_all(vocab)
        logits: dict[str, torch.Tensor] = {}
        explanations: dict[str, torch.Tensor] = {}
        for index, group in enumerate(QUERY_GROUPS):
            branch = BRANCH_OF_GROUP[group]
            image = features[branch].unsqueeze(1)
            if unrefined is not None:
                image = torch.cat([image, unrefined[branch].unsqueeze(1)], dim=1)
            branch_logits = self.fused_logits(text[branch], fusion_keys, self.text_lambda[index], image)
            logits[branch] = branch_logits[0]
            if unrefined is not None:
                explanations[f"unrefined_{branch}"] = branch_logits[1]
        if explain:
            explanations["query_attention"] = attention
        return BranchLogits(pair=logits["pair"], state=logits["state"], object=logits["object"], explanations=explanations)

    # ----------------------------------------------------------- explanations
    def group_contributions(self, logits: BranchLogits, vocab: Vocabulary, image_index: int,
                            pairs: np.ndarray) -> np.ndarray:
        """[len(pairs), 3]: each pair's score minus its score with one group's refined embedding removed
        (state, object, composition; text fusion and disentanglers kept). All 0 when untrained."""
        w_pair, w_state, w_object = self.score_weights_for(vocab)
        b = image_index
        state_index = torch.as_tensor(vocab.pair_states[pairs], device=logits.state.device)
        object_index = torch.as_tensor(vocab.pair_objects[pairs], device=logits.object.device)
        pair_index = torch.as_tensor(pairs, device=logits.pair.device)

        def score(pair_logits: torch.Tensor, state_logits: torch.Tensor, object_logits: torch.Tensor) -> torch.Tensor:
            state_prob = w_state * state_logits.float().softmax(-1)[state_index]
            object_prob = w_object * object_logits.float().softmax(-1)[object_index]
            return w_pair * pair_logits.float()[pair_index] + state_prob * object_prob

        pair, state, obj = logits.pair[b], logits.state[b], logits.object[b]
        full = score(pair, state, obj)
        without = [score(pair, logits.explanations["unrefined_state"][b], obj),
                   score(pair, state, logits.explanations["unrefined_object"][b]),
                   score(logits.explanations["unrefined_pair"][b], state, obj)]
        return torch.stack([full - other for other in without], dim=1).cpu().numpy()

    def explain(self, logits: BranchLogits, vocab: Vocabulary, image_index: int, top_pairs: np.ndarray) -> dict[str, Any]:
        """Per-group query attention over the patch grid (last layer and every layer, head and query
        mean) and, for the top pairs, how much each group's refinement raised the score."""
        attention = logits.explanations["query_attention"][image_index].float()  # [L, Q, N]
        layers, count, _ = attention.shape
        grid = self.backbone.grid_size
        per_group = attention.view(layers, len(QUERY_GROUPS), count // len(QUERY_GROUPS), *grid).mean(dim=2)
        contributions = self.group_contributions(logits, vocab, image_index, np.asarray(top_pairs))
        top = contributions[0]
        supported = QUERY_GROUPS[int(np.argmax(top))] if float(np.max(top)) > 0 else "none"
        groups_inactive = not bool(torch.any(self.image_lambda != 0))
        return {
            "query_groups": list(QUERY_GROUPS),
            "query_attention": per_group[-1].cpu().numpy(),  # [3, gh, gw]
            "query_attention_layers": per_group.cpu().numpy(),  # [L, 3, gh, gw]
            "group_contributions": contributions,  # [k, 3] in score units
            "top_pair_group": supported,
            "group_note": INACTIVE_GROUPS_NOTE if groups_inactive else CONTRIBUTION_NOTE,
        }
