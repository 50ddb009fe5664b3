"""MSCI (IJCAI 2025): each text row attends first to low-level (local), then to high-level (global)
visual tokens, and what the two stages produce moves the row toward the image.

Built from docs/models.md ("MSCI"); docs/parity.md compares it element by element with the released
code (ltpwy/MSCI). Two variants, chosen by the config value `variant`:

* ``"released"`` (what `reproduce` and every training recipe train): the released architecture.
  Static per-channel λ1, λ2 (`lamda`, `lamda_2`, initialised to `init_scale` = the configs'
  `init_lamda` = 0.1) scale the *whole* stage outputs, `t' = normalize(t + λ1⊙q1 + λ2⊙q2)`; the
  state and object image features are the released `Disentangler` D(v) = Dropout0.5(ReLU(BN(Linear v))).
  Untrained, it is not the `clip` baseline (λ = 0.1 already adds both stages): `untrained_equals_baseline`
  is False and the app says the model is untrained.
* ``"gated"`` (an extension, the default of an untrained model built without a recipe, and of
  checkpoints saved before variants existed), described below.

The logit of either splits exactly into the prompt's own match and each stage's contribution
(`logit_parts`): with u = u1 + u2 what the two stages add (released: u1 = λ1⊙q1, u2 = λ2⊙q2),
`100·cos(v, t') = 100·v̂·t/‖t+u‖ + 100·v̂·u1/‖t+u‖ + 100·v̂·u2/‖t+u‖`.

The gated extension, point by point:

* Fusion is a **reconstruction**. The paper's abstract says the model "dynamically adjusts" the
  weights of global and local information; its equations are not public, and the released code
  builds a gated fusion module (`GatedFusion`: Linear 2D→D → LN → ReLU → Dropout, which outputs a
  fused feature, not two weights) but never calls it: it adds whole stage outputs with static
  per-channel weights, `t' = normalize(t + λ1⊙q1 + λ2⊙q2)`. Here a small gate per text row on
  [Δ1; Δ2] gives softmax weights (w_local, w_global) and the *increments* are added,
  `t' = normalize(t + w_local·λ1⊙Δ1 + w_global·λ2⊙Δ2)` (Δ1 = q1 − t, Δ2 = q2 − q1).
* What the explanation shows first is each stage's contribution to the logit, not the gate
  weight: the per-channel λ absorbs any magnitude, so a gate weight says little about what moved
  a score. With u = local + global update, `100·cos(v, t') = 100·v̂·t/‖t+u‖ + 100·v̂·(w_local·λ1⊙Δ1)/‖t+u‖
  + 100·v̂·(w_global·λ2⊙Δ2)/‖t+u‖` splits the logit exactly into the prompt's own match and what each
  stage added; the gate weights are reported beside it as a secondary number.
* λ1 and λ2 start at zero (the code: 0.1), so an untrained model scores exactly as the `clip`
  baseline does, and training starts from it.
* The state and object image features are residual, `v + D(v)` with the last layer of D
  zero-initialised (the code uses the non-residual D(v), one Linear + BatchNorm; the extra
  zero-initialised Linear makes the disentanglers 2.4 M parameters on ViT-L/14, not 1.2 M).
* The inference score composes the full state and object softmaxes. The released test script
  encodes pairs in chunks of 1024 and repeats the state/object rows per chunk, which shrinks the
  state x object term by 1/n²; that is not reproduced. Here chunking only bounds memory: every
  text row is computed independently, so the chunk size changes scores by float rounding only.
* Words get zero-initialised offsets on their own token embeddings (the shared PromptEncoder),
  not one soft token per word.
* 12 attention heads when the joint width allows; otherwise the largest divisor of the width
  below 12 (the tiny test backbone has width 32, hence 8 heads).
* At inference the two stages and the gate run under bfloat16 autocast where the hardware has
  native bfloat16 (`head_precision`, czsl_models/backbones/precision.py): their D→4D MLPs over every
  candidate pair cost about a third of a ViT-L/14 pass in float32. Rows, updates, weights and
  scores stay float32; `head_precision = "float32"` gives the reference arithmetic everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import DEFAULT_BACKBONE, VisualOutput, tensor_fingerprint
from .registry import register_model
from ..inputs.vocab import Vocabulary
from .base import LOGIT_SCALE, BranchLogits, CompositionModel, VisualRequest, cosine_logits
from .layers import CrossAttentionLayer, Disentangler, ResidualDisentangler, fit_heads, vision_adapters
from .prompts import BRANCHES

KeysValues = tuple[torch.Tensor, torch.Tensor]
NORM_EPS = 1e-12  # F.normalize's
# The exact split of each explained row's logit (MSCI.explain, logit_parts).
LOGIT_PARTS = ("prompt", "local stage", "global stage")
VARIANTS = ("released", "gated")  # the released architecture; the project's gated extension
RELEASED_INIT_SCALE = 0.1  # the released configs' init_lamda
GATE_NOTE = ("The local/global gate is a reconstruction: the paper gives no equations for it and the released code "
             "never uses its gate. Its weights are shown for reference; the logit parts are what moved the score.")


@dataclass(frozen=True)
class MsciPreset:
    """Per-dataset hyper-parameters of the published recipe (ViT-L/14)."""

    aggregated_layers: int  # L: blocks in each of the low and high aggregators
    loss_weights: tuple[float, float, float]  # composition, state, object
    optimizer: str
    learning_rate: float
    weight_decay: float
    epochs: int
    batch_size: int
    word_dropout: float  # the released attr_dropout, on the state/object word embeddings
    open_world_score_weights: tuple[float, float, float]  # the released *-ow configs' inference weights
    # The closed-world test weights: the configs' comment "inference_weight set as 0.1,0.9,0.9 for testing in
    # close-world setting" (MIT-States, C-GQA); UT-Zappos tests with its config's 1/1/1.
    closed_world_test_score_weights: tuple[float, float, float]
    lr_step_epochs: int = 5
    lr_gamma: float = 0.5


# From the released configs (config/msci/<dataset>.yml and <dataset>-ow.yml).
PRESETS: dict[str, MsciPreset] = {
    "mit-states": MsciPreset(4, (1.0, 1.0, 1.0), "adam", 1e-4, 1e-5, 20, 64, 0.3, (0.3, 0.7, 0.7), (0.1, 0.9, 0.9)),
    "ut-zappos": MsciPreset(3, (1.0, 1.0, 1.0), "adamw", 2.5e-4, 1e-5, 15, 48, 0.3, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
    "cgqa": MsciPreset(4, (1.0, 0.1, 0.1), "adam", 1.25e-5, 1e-5, 15, 48, 0.0, (0.3, 0.7, 0.7), (0.1, 0.9, 0.9)),
}
_PRESET_ALIASES = {"mitstates": "mit-states", "mit": "mit-states", "utzappos": "ut-zappos", "zappos": "ut-zappos",
                   "c-gqa": "cgqa"}


def resolve_preset(name: str) -> tuple[str, MsciPreset]:
    """Canonical preset name and its values ('mit-states', 'ut-zappos' or 'cgqa'; aliases accepted)."""
    key = str(name).strip().lower().replace("_", "-")
    key = _PRESET_ALIASES.get(key, _PRESET_ALIASES.get(key.replace("-", ""), key))
    if key not in PRESETS:
        raise ValueError(f"Unknown MSCI preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return key, PRESETS[key]


class LayerAggregator(nn.Module):
    """Tokens of L blocks concatenated along channels, then Linear(L·D→D) → LayerNorm → ReLU → Dropout."""

    def __init__(self, num_layers: int, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(num_layers * dim, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, layer_tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """[B, N, D] aggregated tokens from L tensors [B, N, D]."""
        return self.project(torch.cat(list(layer_tokens), dim=-1))


class LocalGlobalGate(nn.Module):
    """Per-row softmax weights (w_local, w_global) from what each stage added, [Δ1; Δ2].

    A reconstruction of the abstract's "dynamic" weighting: the paper gives no equations and the
    released code never calls its gated fusion module (see the module docstring)."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        # Default (not zero) init: a zero last layer would also block the first layer's gradient.
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, local_delta: torch.Tensor, global_delta: torch.Tensor) -> torch.Tensor:
        """[..., 2] weights summing to 1: column 0 local, column 1 global."""
        # float32 softmax: the weights are shown and must sum to 1 under autocast too
        return self.mlp(torch.cat([local_delta, global_delta], dim=-1)).float().softmax(dim=-1)


def _as_float(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.float()


@dataclass
class ImageKeys:
    """Per-head keys and values of both stages for a batch of images, projected once per image."""

    local: KeysValues  # each [B, H, N, d], from LN(F_low)
    global_: KeysValues  # from LN(F_high)

    def select(self, index: int) -> "ImageKeys":
        """The keys of one image (batch of 1)."""
        pick = slice(index, index + 1)
        return ImageKeys((self.local[0][pick], self.local[1][pick]), (self.global_[0][pick], self.global_[1][pick]))


@dataclass
class RefinedRows:
    """Text rows after both stages and the gated fusion: t' = normalize(text + update)."""

    text: torch.Tensor  # [T, D] the unit text rows t, shared by the batch
    local_update: torch.Tensor  # [B, T, D] what stage 1 adds: released λ1⊙q1, gated w_local·λ1⊙Δ1
    global_update: torch.Tensor  # [B, T, D] what stage 2 adds: released λ2⊙q2, gated w_global·λ2⊙Δ2
    gate: torch.Tensor | None  # [B, T, 2] (w_local, w_global) of the gated variant; None for the released one
    local_attention: torch.Tensor | None = None  # [B, T, N] head mean, stage 1
    global_attention: torch.Tensor | None = None  # [B, T, N] head mean, stage 2

    @property
    def update(self) -> torch.Tensor:
        """[B, T, D] the whole update u = local_update + global_update."""
        return self.local_update + self.global_update

    @property
    def features(self) -> torch.Tensor:
        """[B, T, D] fused rows t + update, before normalisation."""
        return self.text + self.update


@register_model
class MSCI(CompositionModel):
    """Multi-stage cross-modal interaction (docs/models.md, "MSCI"; differences from the released code in
    the module docstring).

    Image side: the CLS feature v scores the composition branch, `v + D_s(v)` and `v + D_o(v)` the
    state and object branches. Text side: every prompt row t of each branch (pairs, states,
    objects; the two stages and the gate are shared by the branches) attends to LN(F_low), the
    aggregate of the first L blocks' tokens (stage 1, q1), then q1 attends to LN(F_high), the
    aggregate of the last L blocks (stage 2, q2), and the gated fusion of Δ1 = q1 − t and
    Δ2 = q2 − q1 moves t toward the image. Optional AdaptFormer adapters in every vision block
    (`use_adapters`, the "paper" preset); without them (the "fast" preset) the trainer can cache
    the vision pass that `visual_request()` describes.

    Explanations per image: `logit_parts_composition`, `logit_parts_state`, `logit_parts_object`
    [k, 3] — for the k top pairs' composition rows and their state and object rows, in ranking order,
    the exact split of each row's logit into the prompt's own match, what stage 1 (local) added and
    what stage 2 (global) added (`logit_parts` names the columns; they sum to the logit the score
    used); `gate_composition`, `gate_state`, `gate_object` [k, 2] — the reconstructed gate's
    (w_local, w_global) weights of the same rows, a secondary number (`gate_note`);
    `stage1_attention`, `stage2_attention` [grid_h, grid_w] — the head-mean attention of the top pair's composition row over the patches in each stage (the share the CLS
    token gets is left out, so a map sums to at most 1).

    Config (config.json): `variant` ('released': the released architecture that the training recipes and
    `reproduce` train; 'gated': the project's extension, the default, so untrained it scores as `clip`),
    `init_scale` (the released λ start, 0.1), `preset` ('mit-states', 'ut-zappos', 'cgqa': L = 4/3/4, loss weights, and
    `training_recipe()`), `aggregated_layers` (overrides L), `heads`, `dropout`, `mlp_ratio` (4 as
    published; `dropout` also acts on each stage's attention and MLP outputs, as released),
    `disentangler_dropout`, `gate_hidden`, `use_adapters`, `adapter_bottleneck`, `chunk_size`
    (image-row pairs refined at once: bounds memory, never changes a score), `word_dropout` (the
    released attr_dropout on the word embeddings while training; default: the preset's, 0.3/0.3/0)
    and `open_world_score_weights` (inference weights for open-world vocabularies; the "paper"
    recipe sets the released 0.3/0.7/0.7 on MIT-States and C-GQA; default: score_weights).

    Cost per image beyond the vision pass: about (P+A+O)·((4·mlp_ratio + 3)·D² + 4·N·D)
    multiply-adds for the two stages (the MLPs dominate; stage-1 query projections are cached with
    the text features), plus the aggregators and key/value projections; with ViT-L/14 at P = 2,000
    that is ~28 G against ~81 G for the vision pass itself, so about 1.35× the `clip` model in
    float32 and 1.2× with the head in bfloat16 (benchmarks/msci_speed.py).
    """

    name = "msci"
    refines_text_rows = True
    display_name = "MSCI"
    summary = ("Each description ('a photo of a wet dog') looks first at small details of the photo and then at the "
               "whole scene; each look moves the description toward what it saw before it is compared with the photo.")

    def __init__(self, backbone: str = DEFAULT_BACKBONE, train_states: list[str] | None = None,
                 train_objects: list[str] | None = None, train_pairs: list[list[str]] | None = None,
                 score_weights: list[float] | None = None, loss_weights: list[float] | None = None,
                 preset: str = "mit-states", aggregated_layers: int | None = None, heads: int = 12,
                 dropout: float = 0.1, mlp_ratio: int = 4, disentangler_dropout: float = 0.5, gate_hidden: int = 64,
                 use_adapters: bool = False, adapter_bottleneck: int = 64, chunk_size: int = 1024,
                 word_dropout: float | None = None, open_world_score_weights: list[float] | None = None,
                 variant: str = "gated", init_scale: float = RELEASED_INIT_SCALE) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"Unknown MSCI variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
        preset_name, preset_values = resolve_preset(preset)
        super().__init__(backbone, train_states, train_objects, train_pairs, score_weights,
                         list(loss_weights) if loss_weights is not None else list(preset_values.loss_weights))
        self.preset = preset_name
        self.prompts.word_dropout = float(preset_values.word_dropout if word_dropout is None else word_dropout)
        if not 0.0 <= self.prompts.word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
        if open_world_score_weights is not None:
            if len(open_world_score_weights) != 3:
                raise ValueError("open_world_score_weights needs three numbers: pair, state, object")
            self.open_world_score_weights = tuple(float(w) for w in open_world_score_weights)
        depth = self.backbone.num_layers
        layers = int(preset_values.aggregated_layers if aggregated_layers is None else aggregated_layers)
        if not 1 <= layers <= depth:
            raise ValueError(f"aggregated_layers must be within 1..{depth} (the backbone's blocks), not {layers}")
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        dim = self.backbone.embed_dim
        self.low_layers = tuple(range(1, layers + 1))
        self.high_layers = tuple(range(depth - layers + 1, depth + 1))
        self.heads = fit_heads(dim, heads)
        self.chunk_size = int(chunk_size)
        self.use_adapters = bool(use_adapters)
        self.low_aggregator = LayerAggregator(layers, dim, dropout)
        self.high_aggregator = LayerAggregator(layers, dim, dropout)
        self.local_norm = nn.LayerNorm(dim)
        self.global_norm = nn.LayerNorm(dim)
        # As released: the stages also drop their attention and MLP outputs (stage_1/2_dropout, 0.1).
        self.local_stage = CrossAttentionLayer(dim, self.heads, dropout, mlp_ratio, output_dropout=dropout)
        self.global_stage = CrossAttentionLayer(dim, self.heads, dropout, mlp_ratio, output_dropout=dropout)
        self.variant = variant
        released = variant == "released"
        self.gate = None if released else LocalGlobalGate(dim, gate_hidden)
        start = float(init_scale) if released else 0.0  # the gated extension starts as the clip baseline
        self.local_scale = nn.Parameter(torch.full((dim,), start))  # λ1 (released: lamda)
        self.global_scale = nn.Parameter(torch.full((dim,), start))  # λ2 (released: lamda_2)
        disentangler = Disentangler if released else ResidualDisentangler
        self.state_disentangler = disentangler(dim, dropout=disentangler_dropout)
        self.object_disentangler = disentangler(dim, dropout=disentangler_dropout)
        self.adapters = vision_adapters(self.backbone.width, depth, adapter_bottleneck) if self.use_adapters else None

    @property
    def untrained_equals_baseline(self) -> bool:
        """Only the gated extension starts as the clip baseline; the released variant starts at λ = 0.1."""
        return self.variant == "gated"

    # ------------------------------------------------------------ vision pass
    def training_recipe(self) -> dict[str, Any]:
        """The published optimiser settings of this model's preset (lr, epochs, batch size, ...)."""
        recipe = asdict(PRESETS[self.preset])
        for key in ("aggregated_layers", "word_dropout", "open_world_score_weights", "closed_world_test_score_weights"):
            recipe.pop(key)
        recipe["loss_weights"] = list(self.loss_weights)
        return recipe

    @property
    def shares_vision_pass(self) -> bool:
        """False with adapters: the backbone pass is this model's own and cannot be cached or shared."""
        return not self.use_adapters

    def visual_request(self, explain: bool = False) -> VisualRequest:
        """The projected tokens of the first and last L blocks (explanations need nothing more)."""
        return VisualRequest(layers=tuple(sorted(set(self.low_layers) | set(self.high_layers))))

    def encode_images(self, pixels: torch.Tensor, explain: bool = False) -> VisualOutput:
        """The vision pass, through the adapters when they are on."""
        return self.backbone.encode_image(pixels, layers=self.visual_request(explain).layers, adapters=self.adapters)

    def image_keys(self, visual: VisualOutput) -> ImageKeys:
        """Aggregate the low and high blocks and project both stages' keys/values (once per image)."""
        missing = [i for i in self.visual_request().layers if i not in visual.layer_tokens]
        if missing:
            raise ValueError(f"The vision pass lacks the tokens of block(s) {missing}; encode images with "
                             f"model.visual_request() (or model.encode_images).")
        low = self.low_aggregator([visual.layer_tokens[i] for i in self.low_layers])
        high = self.high_aggregator([visual.layer_tokens[i] for i in self.high_layers])
        return ImageKeys(self.local_stage.attention.project_keys(self.local_norm(low)),
                         self.global_stage.attention.project_keys(self.global_norm(high)))

    # --------------------------------------------------------------- text side
    def stage1_queries(self, vocab: Vocabulary, branch: str, rows: torch.Tensor) -> torch.Tensor:
        """Stage-1 query projection [T, D] of a branch's unit text rows: text only, so it is computed
        once for the batch and, when no gradient is needed, cached like the text features (keyed by
        the prompts and the projection's weights)."""
        projection = self.local_stage.attention.q_proj
        if torch.is_grad_enabled() and projection.weight.requires_grad:
            return projection(F.normalize(rows.float(), dim=-1))
        key = f"msci-queries|{self.prompts.cache_key(vocab, branch)}|{tensor_fingerprint([projection.weight])}"
        queries = self.backbone.text_cache.get(key)
        if queries is None:
            queries = projection(F.normalize(rows.float(), dim=-1))
            self.backbone.text_cache.put(key, queries)
        return queries

    def refine(self, rows: torch.Tensor, keys: ImageKeys, need_attention: bool = False,
               queries: torch.Tensor | None = None) -> RefinedRows:
        """Both stages and the gated fusion for text rows [T, D] shared by the batch (rows are independent);
        `queries` is their stage-1 query projection when already computed (stage1_queries).

        At inference this runs under `head_autocast()` (czsl_models.precision): the stages' matrix
        products may be bfloat16 while the rows, the update and the weights stay float32."""
        text = F.normalize(rows.float(), dim=-1)  # idempotent for the PromptEncoder's unit rows
        with self.head_autocast():
            local, local_attention = self.local_stage(text, keys.local, need_attention, projected_queries=queries)
            global_, global_attention = self.global_stage(local, keys.global_, need_attention)
            if self.gate is None:  # released: whole stage outputs, static per-channel weights
                return RefinedRows(text, (self.local_scale * local.float()).float(),
                                   (self.global_scale * global_.float()).float(), None,
                                   _as_float(local_attention), _as_float(global_attention))
            local_delta = local.float() - text
            global_delta = global_.float() - local.float()
            gate = self.gate(local_delta, global_delta)
        local_update = (gate[..., :1] * self.local_scale * local_delta).float()
        global_update = (gate[..., 1:] * self.global_scale * global_delta).float()
        return RefinedRows(text, local_update, global_update, gate, _as_float(local_attention),
                           _as_float(global_attention))

    def refined_logits(self, image_features: torch.Tensor, rows: torch.Tensor, keys: ImageKeys,
                       queries: torch.Tensor | None = None) -> torch.Tensor:
        """100·cos(image, t') [B, T], refining chunks of rows so memory stays bounded for any vocabulary.

        Computed as (100·cos(v, t) + 100·v̂·update) / ‖t + update‖, the same quantity for unit rows t.
        The first term is the CLIP baseline's own product over all rows at once, so a zero update
        (untrained) gives the baseline's logits up to one rounding; the other two are row-wise
        reductions, which round the same whatever the chunk size."""
        baseline = cosine_logits(image_features, rows)
        image_unit = F.normalize(image_features.float(), dim=-1).unsqueeze(1)
        rows_per_chunk = max(1, self.chunk_size // max(1, image_features.shape[0]))
        shifts, norms = [], []
        for start in range(0, rows.shape[0], rows_per_chunk):
            stop = start + rows_per_chunk
            refined = self.refine(rows[start:stop], keys, queries=None if queries is None else queries[start:stop])
            update = refined.update
            shifts.append(LOGIT_SCALE * (image_unit * update).sum(dim=-1))
            norms.append((refined.text + update).norm(dim=-1).clamp_min(NORM_EPS))
        return (baseline + torch.cat(shifts, dim=1)) / torch.cat(norms, dim=1)

    # ------------------------------------------------------------ model API
    def branch_logits(self, visual: VisualOutput, vocab: Vocabulary, explain: bool = False,
                      pixels: torch.Tensor | None = None) -> BranchLogits:
        """Composition logits from the CLS feature, state/object logits from the disentangled features,
        each against its branch's refined text rows."""
        if self.use_adapters and self.training and pixels is None:
            raise ValueError("MSCI with adapters trains through the backbone: call model(pixels, vocab), not a cached pass.")
        text = self.prompts.encode_all(vocab)
        keys = self.image_keys(visual)
        cls = visual.cls
        image = {"pair": cls, "state": self.state_disentangler(cls), "object": self.object_disentangler(cls)}
        logits = {branch: self.refined_logits(image[branch], text[branch], keys,
                                              self.stage1_queries(vocab, branch, text[branch]))
                  for branch in BRANCHES}
        # Explanations are computed later, in explain(), for the shown rows only.
        extras = {"msci_keys": keys, "msci_text": text, "msci_image": image} if explain else {}
        return BranchLogits(pair=logits["pair"], state=logits["state"], object=logits["object"], extras=extras)

    def explain(self, logits: BranchLogits, vocab: Vocabulary, image_index: int, top_pairs: np.ndarray) -> dict[str, Any]:
        """What each stage added to the top pairs' composition, state and object logits (exact split),
        the reconstructed gate's weights beside it, and the top pair's stage-1 and stage-2 attention."""
        if "msci_keys" not in logits.extras:
            return {}
        keys: ImageKeys = logits.extras["msci_keys"].select(image_index)
        text: dict[str, torch.Tensor] = logits.extras["msci_text"]
        image: dict[str, torch.Tensor] = logits.extras["msci_image"]
        device = text["pair"].device
        top = np.asarray(top_pairs, dtype=np.int64)
        count = len(top)
        rows = torch.cat([text["pair"][torch.as_tensor(top, device=device)],
                          text["state"][torch.as_tensor(vocab.pair_states[top], device=device)],
                          text["object"][torch.as_tensor(vocab.pair_objects[top], device=device)]])
        # Each row is scored against its branch's image feature: CLS for compositions, the disentangled ones else.
        row_images = torch.cat([image[branch][image_index:image_index + 1].float().expand(count, -1)
                                for branch in BRANCHES])
        refined = self.refine(rows, keys, need_attention=True)
        parts = logit_parts(row_images, refined).cpu().numpy()
        grid = tuple(self.backbone.grid_size)

        def patch_map(attention: torch.Tensor) -> np.ndarray:
            # Row 0 is the top pair's composition row; token 0 is CLS.
            return attention[0, 0, 1:].reshape(grid).float().cpu().numpy()

        explanation: dict[str, Any] = {
            "variant": self.variant,
            "logit_parts": list(LOGIT_PARTS),
            "logit_parts_composition": parts[:count],  # [k, 3] prompt, local stage, global stage; sum = logit
            "logit_parts_state": parts[count:2 * count],
            "logit_parts_object": parts[2 * count:],
            "stage1_attention": patch_map(refined.local_attention),
            "stage2_attention": patch_map(refined.global_attention),
        }
        if refined.gate is not None:
            gate = refined.gate[0].float().cpu().numpy()
            explanation.update(gate_composition=gate[:count], gate_state=gate[count:2 * count],
                               gate_object=gate[2 * count:], gate_note=GATE_NOTE)
        return explanation


def logit_parts(image_features: torch.Tensor, refined: RefinedRows) -> torch.Tensor:
    """[T, 3] exact split of 100·cos(v, t') for rows refined for one image: the prompt's own match
    100·v̂·t/‖t+u‖, then 100·v̂·(w_local·λ1⊙Δ1)/‖t+u‖ and 100·v̂·(w_global·λ2⊙Δ2)/‖t+u‖ (u = both updates).
    image_features [T, D] is each row's image feature; refined holds one image (batch 1)."""
    image_unit = F.normalize(image_features.float(), dim=-1)
    local, global_ = refined.local_update[0], refined.global_update[0]
    norm = (refined.text + local + global_).norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
    pieces = torch.stack([refined.text, local, global_], dim=1)  # [T, 3, D]
    return LOGIT_SCALE * torch.einsum("td,tpd->tp", image_unit, pieces) / norm
