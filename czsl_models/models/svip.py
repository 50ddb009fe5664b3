"""SVIP (ICCV 2025) adapted to free-text states and objects, on OpenCLIP.

The patch grid is grouped into 2x2 super-patches. A teacher (attention rollout of the CLS token,
averaged over each true 2x2 block) marks the top-M super-patches as semantic; a small student
(PatchCls) learns to predict that mask from the super-patches' input embeddings, so a trained
model needs no attention maps at inference. The other super-patches are "contextualised": a
learned embedding e in [4, W], computed from the CLIP text features of the training words, is
added to their input embeddings, and the image is encoded again. States and objects are also
localised on the kept super-patches (max pooling), and that score enters the pair logits
through a zero-initialised beta. Every learned residual starts at zero, so an untrained model
is exactly the CLIP baseline (and then runs one vision pass, not two).

Costs and choices (see docs/models.md, "SVIP, adapted"):
- Untrained, or trained but with e = 0: one vision pass. With teacher selection that pass also
  returns attention maps (about +20% on ViT-L/14); with PatchCls selection it does not.
- Who selects: the teacher, until PatchCls's selection is shown to agree with it. The trainer
  measures the agreement on validation images after every epoch (`validation_checks`): the share
  of the super-patches PatchCls replaces that the teacher would also replace, averaged over images.
  PatchCls selects only once that share reaches `switch_agreement` (default 0.5: most of what the
  UI shows as "judged unrelated" is what the teacher judges unrelated; chance is (N−M)/N, 0.19 at
  12 of 64). The released code switches unconditionally after training; a student that has not
  learned the teacher's mask would replace arbitrary patches and the explanation would mislabel them.
- Trained with PatchCls: one contextualised pass; PatchCls runs inside the patch-embedding edit.
  The teacher map is then not computed unless `explain_teacher_map` is set on the model, since
  it needs an extra, unedited pass with attention maps (about 2.2x the CLIP cost in total).
- Trained with the teacher (PatchCls never trained): an unedited pass with attention, then the
  contextualised pass.
- `train_context=False` (the "fast" preset): e stays zero, so no pass backpropagates through the ViT
  and the model trains from cached backbone outputs, the teacher's scores cached beside them
  (VisualOutput.extras); prompts, PatchCls, localisation and beta still learn.
- Training: the unedited pass runs without gradients (frozen backbone, nothing learned before
  it) in chunks, so the per-block attention maps never all sit in memory for a large batch; the
  contextualised pass backpropagates through the ViT into e. The teacher's mask picks the
  contextualised super-patches during training (the student only imitates it).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import DEFAULT_BACKBONE, VisualOutput
from .registry import register_model
from ..inputs.vocab import Vocabulary
from .base import LOGIT_SCALE, BranchLogits, CompositionModel, VisualRequest, cosine_logits
from .prompts import PROMPT_PREFIX
from .svip_patches import (  # noqa: F401  (re-exported: the patch geometry and selection live there)
    ContextEmbedding,
    PatchClassifier,
    SUB_PATCHES,
    SUPER_PATCH_SIDE,
    SuperPatchGrid,
    add_context_to_patches,
    attention_rollout_cls,
    consistency_kl,
    kept_super_patch_count,
    replaced_agreement,
    teacher_super_patch_scores,
    top_mask,
)

DEFAULT_KEEP_RATIO = 0.82
TEACHER_CHUNK = 16  # images per unedited pass with attention maps (bounds their memory)
# PatchCls replaces super-patches only once most of those it replaces are ones the teacher replaces too.
DEFAULT_SWITCH_AGREEMENT = 0.5
# Teacher scores remembered per training image (N floats each, 64 on ViT-L/14: ~30 MB at this bound).
TEACHER_MEMO_IMAGES = 50_000


@dataclass
class SvipVisual(VisualOutput):
    """SVIP's vision result: the inherited fields are the pass that is scored (the contextualised
    one; the unedited one when e = 0), plus the selection and the passes' by-products."""

    kept: torch.Tensor | None = None  # [B, S] bool, super-patches not contextualised
    selection: str = "teacher"  # which one picked `kept`: "teacher" or "patchcls"
    teacher_scores: torch.Tensor | None = None  # [B, S] rollout per 2x2 block, when computed
    patchcls_logits: torch.Tensor | None = None  # [B, S], when computed
    original: VisualOutput | None = None  # the unedited pass, when it differs from the scored one


@dataclass
class Localisation:
    """Best kept super-patch of every state and object: similarity [B, A|O] and where [B, A|O]."""

    state_similarity: torch.Tensor
    state_patch: torch.Tensor
    object_similarity: torch.Tensor
    object_patch: torch.Tensor


@register_model
class SVIP(CompositionModel):
    """Semantic-unrelated patches contextualised with a learned embedding, plus patch localisation."""

    name = "svip"
    display_name = "SVIP"
    summary = ("Finds the parts of the photo that show no state or object, fills them with a learned hint of "
               "the known words, and looks for each state and object in the remaining parts.")
    needs_pixels_for_training: ClassVar[bool] = True
    # The teacher map of a model that selects with PatchCls costs an extra pass; off by default.
    explain_teacher_map: bool = False

    def __init__(self, backbone: str = DEFAULT_BACKBONE, train_states: list[str] | None = None,
                 train_objects: list[str] | None = None, train_pairs: list[list[str]] | None = None,
                 score_weights: list[float] | None = None, loss_weights: list[float] | None = None,
                 keep_ratio: float = DEFAULT_KEEP_RATIO, patchcls_hidden: int = 512, patchcls_weight: float = 3.0,
                 consistency_weight: float = 1.0, consistency_temperature: float = 20.0,
                 switch_agreement: float = DEFAULT_SWITCH_AGREEMENT, train_context: bool = True) -> None:
        super().__init__(backbone, train_states, train_objects, train_pairs, score_weights, loss_weights)
        if not 0.0 < float(keep_ratio) <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        if not 0.0 <= float(switch_agreement) <= 1.0:
            raise ValueError(f"switch_agreement must be in [0, 1], got {switch_agreement}")
        if not float(consistency_temperature) > 0:
            raise ValueError(f"consistency_temperature must be positive, got {consistency_temperature}")
        shared = self.backbone
        self.grid = SuperPatchGrid(shared.grid_size)
        self.keep_ratio = float(keep_ratio)
        self.num_kept = kept_super_patch_count(self.grid.num_super_patches, self.keep_ratio)
        self.patchcls_weight = float(patchcls_weight)
        self.consistency_weight = float(consistency_weight)
        self.consistency_temperature = float(consistency_temperature)
        self.switch_agreement = float(switch_agreement)
        self.patch_classifier = PatchClassifier(shared.width, patchcls_hidden)
        self.context_words = self.train_states + self.train_objects
        # Without train_context (the "fast" preset) e stays zero: no pass backpropagates through the ViT,
        # so the model trains from cached backbone outputs (with the teacher's scores cached beside them).
        self.train_context = bool(train_context)
        self.needs_pixels_for_training = self.train_context
        self.context_generator = (ContextEmbedding(len(self.context_words), shared.embed_dim, shared.width)
                                  if self.context_words and self.train_context else None)
        # The computed e, saved with the weights so inference never needs the training words.
        self.register_buffer("context_embedding", torch.zeros(SUB_PATCHES, shared.width))
        self.localisation = nn.Linear(shared.embed_dim, shared.embed_dim)
        nn.init.zeros_(self.localisation.weight)
        nn.init.zeros_(self.localisation.bias)
        # In logit units: the pair term is 100 * beta * (a_s + a_o) / sqrt(2), on the scale of 100 * cos.
        self.beta = nn.Parameter(torch.zeros(()))
        self.register_buffer("patchcls_steps", torch.zeros((), dtype=torch.long))
        # PatchCls's agreement with the teacher on validation images (replaced_agreement); -1: never measured.
        self.register_buffer("patchcls_agreement", torch.full((), -1.0))
        self._context_stale = False
        self._teacher_memo: OrderedDict[bytes, torch.Tensor] = OrderedDict()  # see _unedited_pass

    # ------------------------------------------------------------ state
    @property
    def selection_source(self) -> str:
        """Who picks the kept super-patches at inference: 'patchcls' once its measured agreement with the
        teacher on validation images reached `switch_agreement`, else 'teacher'."""
        agreement = float(self.patchcls_agreement.item())
        trained = int(self.patchcls_steps.item()) > 0
        return "patchcls" if trained and agreement >= 0 and agreement >= self.switch_agreement else "teacher"

    @property
    def measured_agreement(self) -> float | None:
        """PatchCls's last measured agreement with the teacher (share of replaced super-patches), or None."""
        agreement = float(self.patchcls_agreement.item())
        return None if agreement < 0 else agreement

    def _training_word_features(self) -> torch.Tensor:
        """Normalised CLIP features [K, D] of 'a photo of {word}' for the training states and objects."""
        with torch.no_grad():
            features = self.backbone.encode_prompts([f"{PROMPT_PREFIX} {word}" for word in self.context_words])
        return F.normalize(features, dim=-1).to(self.context_embedding.device)

    def refresh_context_embedding(self) -> None:
        """Recompute the stored e from the generator (after training steps)."""
        if self.context_generator is not None:
            with torch.no_grad():
                self.context_embedding.copy_(self.context_generator(self._training_word_features()))
        self._context_stale = False

    def _context_vector(self) -> torch.Tensor:
        """e [4, W]: live (with gradients) while training, the stored one otherwise."""
        if self.training and self.context_generator is not None:
            context = self.context_generator(self._training_word_features())
            with torch.no_grad():
                self.context_embedding.copy_(context)
            self._context_stale = True  # the optimiser step that follows changes the generator
            return context
        if self._context_stale:
            self.refresh_context_embedding()
        return self.context_embedding

    def train(self, mode: bool = True) -> "SVIP":
        """Switch mode; leaving training stores the final e."""
        if not mode and getattr(self, "_context_stale", False):
            self.refresh_context_embedding()
        return super().train(mode)

    def state_dict(self, *args, **kwargs):
        """The state dict, with e up to date."""
        if getattr(self, "_context_stale", False):
            self.refresh_context_embedding()
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load weights; the stored e is authoritative afterwards. A checkpoint from before agreement was
        measured selects with the teacher (its PatchCls was never validated)."""
        state_dict = dict(state_dict)
        state_dict.setdefault("patchcls_agreement", torch.full((), -1.0))
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._context_stale = False
        return result

    # ------------------------------------------------------------ vision
    def visual_request(self, explain: bool = False) -> VisualRequest:
        """What a shared vision pass must hold to be usable here (only while e = 0)."""
        if bool(self.context_embedding.any()):
            return VisualRequest()
        wants_attention = self.selection_source == "teacher" or (explain and self.explain_teacher_map)
        if not explain and not self.train_context:
            # A cacheable request: encode_images computes the teacher's scores itself and returns them in
            # VisualOutput.extras, which the feature cache keeps (the attention maps are never stored).
            wants_attention = False
        return VisualRequest(layers=(self.backbone.num_layers,), attention=wants_attention, patch_embeddings=True)

    def _unedited_pass(self, pixels: torch.Tensor, attention: bool,
                       memo: bool = False) -> tuple[VisualOutput, torch.Tensor | None]:
        """The plain vision pass (last block's tokens, patch embeddings) and, on request, the teacher's scores.

        With `memo` (training and validation checks), teacher scores are remembered per image: they depend
        only on the frozen backbone and the pixels, so when every image of the batch was seen before
        (the same unaugmented image in a later epoch) the pass runs without attention maps, which cost
        about as much again as the pass itself."""
        keys = None
        if attention and memo:
            keys = self._teacher_keys(pixels)
            known = [self._teacher_memo.get(key) for key in keys]
            if all(score is not None for score in known):
                visual, _ = self._unedited_pass(pixels, attention=False)
                return visual, torch.stack(known).to(visual.cls.device)
        visual, scores = self._plain_or_teacher_pass(pixels, attention)
        if keys is not None:
            for key, score in zip(keys, scores.detach().cpu()):
                self._teacher_memo[key] = score
                self._teacher_memo.move_to_end(key)
            while len(self._teacher_memo) > TEACHER_MEMO_IMAGES:
                self._teacher_memo.popitem(last=False)
        return visual, scores

    def _teacher_keys(self, pixels: torch.Tensor) -> list[bytes]:
        """One key per image: a digest of its pixels (the backbone is this model's, fixed and frozen)."""
        flat = pixels.detach().to("cpu", torch.float32).contiguous().numpy()
        return [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in flat]

    def _plain_or_teacher_pass(self, pixels: torch.Tensor, attention: bool) -> tuple[VisualOutput, torch.Tensor | None]:
        last = self.backbone.num_layers
        chunk = TEACHER_CHUNK if attention else max(1, pixels.shape[0])
        cls, tokens, patches, scores = [], [], [], []
        # Nothing learned comes before this pass and the backbone is frozen: no gradients needed.
        with torch.no_grad():
            for start in range(0, pixels.shape[0], chunk):
                out = self.backbone.encode_image(pixels[start:start + chunk], layers=(last,), attention=attention,
                                                 patch_embeddings=True)
                if attention:  # reduce each chunk's attention maps at once; they are not kept
                    scores.append(teacher_super_patch_scores(out.attentions, self.grid))
                cls.append(out.cls)
                tokens.append(out.layer_tokens[last])
                patches.append(out.patch_embeddings)
        visual = VisualOutput(cls=torch.cat(cls), layer_tokens={last: torch.cat(tokens)}, patch_embeddings=torch.cat(patches))
        return visual, (torch.cat(scores) if attention else None)

    def encode_images(self, pixels: torch.Tensor, explain: bool = False) -> SvipVisual:
        """Select the kept super-patches, contextualise the others and encode the image (see module notes)."""
        context = self._context_vector()
        selection = "teacher" if self.training else self.selection_source
        contextualise = (self.training and self.context_generator is not None) or bool(context.detach().any())
        wants_teacher = selection == "teacher" or (explain and self.explain_teacher_map)
        if not contextualise:
            # Without a trainable context the teacher's scores are BCE targets too (and cached as such).
            wants_teacher = wants_teacher or not self.train_context
            visual, teacher_scores = self._unedited_pass(pixels, attention=wants_teacher, memo=self.training)
            patchcls_logits = None
            if selection == "patchcls" or self.training:
                patchcls_logits = self.patch_classifier(self.grid.concat(visual.patch_embeddings))
            chooser = teacher_scores if selection == "teacher" else patchcls_logits
            return SvipVisual(cls=visual.cls, layer_tokens=visual.layer_tokens, patch_embeddings=visual.patch_embeddings,
                              kept=top_mask(chooser.detach(), self.num_kept), selection=selection,
                              teacher_scores=teacher_scores, patchcls_logits=patchcls_logits,
                              extras={} if teacher_scores is None else {"teacher_scores": teacher_scores})
        original, teacher_scores = None, None
        if wants_teacher:
            original, teacher_scores = self._unedited_pass(pixels, attention=True, memo=self.training)
        recorded: dict[str, torch.Tensor] = {}

        def contextualise_patches(patches: torch.Tensor) -> torch.Tensor:
            if selection == "teacher":
                kept = top_mask(teacher_scores, self.num_kept)
            else:
                # PatchCls sees exactly the embeddings it edits; no teacher pass needed
                recorded["patchcls_logits"] = self.patch_classifier(self.grid.concat(patches))
                kept = top_mask(recorded["patchcls_logits"].detach(), self.num_kept)
            recorded["kept"] = kept
            return add_context_to_patches(patches, ~kept, context, self.grid)

        contextual = self.backbone.encode_image(pixels, layers=(self.backbone.num_layers,),
                                                edit_patch_embeddings=contextualise_patches)
        patchcls_logits = recorded.get("patchcls_logits")
        if self.training:
            patchcls_logits = self.patch_classifier(self.grid.concat(original.patch_embeddings))
        return SvipVisual(cls=contextual.cls, layer_tokens=contextual.layer_tokens,
                          patch_embeddings=None if original is None else original.patch_embeddings,
                          kept=recorded["kept"], selection=selection, teacher_scores=teacher_scores,
                          patchcls_logits=patchcls_logits, original=original)

    def _from_shared_pass(self, visual: VisualOutput, pixels: torch.Tensor | None, explain: bool) -> SvipVisual:
        """SVIP's view of a pass made for several models (Compare), or a fresh one from the pixels."""
        last = self.backbone.num_layers
        selection = "teacher" if self.training else self.selection_source
        cached_teacher = visual.extras.get("teacher_scores")  # from the feature cache
        has_teacher = bool(visual.attentions) or cached_teacher is not None
        # Training from a cached pass is possible only without a trainable context (nothing edits the input).
        context_free = not bool(self._context_vector().any()) and not (self.training and self.context_generator)
        usable = (context_free and last in visual.layer_tokens
                  and (has_teacher if selection == "teacher" else visual.patch_embeddings is not None)
                  and (not self.training or (cached_teacher is not None and visual.patch_embeddings is not None)))
        if usable:
            teacher_scores = (cached_teacher if cached_teacher is not None
                              else teacher_super_patch_scores(visual.attentions, self.grid) if visual.attentions else None)
            patchcls_logits = (self.patch_classifier(self.grid.concat(visual.patch_embeddings))
                               if visual.patch_embeddings is not None and (selection == "patchcls" or self.training)
                               else None)
            chooser = teacher_scores if selection == "teacher" else patchcls_logits
            return SvipVisual(cls=visual.cls, layer_tokens=visual.layer_tokens, patch_embeddings=visual.patch_embeddings,
                              kept=top_mask(chooser, self.num_kept), selection=selection,
                              teacher_scores=teacher_scores, patchcls_logits=patchcls_logits)
        if pixels is None:
            raise ValueError("SVIP needs the photo's pixels here: its second pass edits the patch embeddings, "
                             "which a shared or cached vision pass cannot provide.")
        return self.encode_images(pixels, explain)

    # ------------------------------------------------------------ PatchCls vs teacher
    @torch.no_grad()
    def patchcls_agreement_of(self, pixels: torch.Tensor) -> torch.Tensor:
        """Per image [B]: the share of the super-patches PatchCls would replace that the teacher replaces too
        (on the unedited pass, where both look)."""
        visual, teacher_scores = self._unedited_pass(pixels, attention=True, memo=True)
        student_scores = self.patch_classifier(self.grid.concat(visual.patch_embeddings))
        return replaced_agreement(student_scores, teacher_scores, self.num_kept)

    def validation_checks(self, pixel_batches: Iterable[torch.Tensor]) -> dict[str, Any]:
        """Measure PatchCls's agreement with the teacher on validation images and record it (it decides
        who selects at inference); returns {'patchcls_agreement': mean, 'selection': who selects now}."""
        was_training = self.training
        self.eval()
        values = [self.patchcls_agreement_of(pixels.to(self.patchcls_agreement.device)) for pixels in pixel_batches]
        self.train(was_training)
        if not values:
            return {}
        agreement = float(torch.cat(values).mean())
        self.patchcls_agreement.fill_(agreement)
        return {"patchcls_agreement": agreement, "selection": self.selection_source}

    # ------------------------------------------------------------ scores
    def _localise(self, visual: VisualOutput, kept: torch.Tensor | None, text: dict[str, torch.Tensor]) -> Localisation:
        """Cosine of each super-patch with each state / object text feature, max over the kept super-patches."""
        tokens = visual.layer_tokens[self.backbone.num_layers][:, 1:].float()
        super_patches = self.grid.mean(tokens)
        super_patches = F.normalize(super_patches + self.localisation(super_patches), dim=-1)
        state = torch.einsum("bsd,ad->bsa", super_patches, text["state"].float())
        obj = torch.einsum("bsd,od->bso", super_patches, text["object"].float())
        if kept is not None:
            replaced = ~kept.unsqueeze(-1)
            state = state.masked_fill(replaced, float("-inf"))
            obj = obj.masked_fill(replaced, float("-inf"))
        state_similarity, state_patch = state.max(dim=1)
        object_similarity, object_patch = obj.max(dim=1)
        return Localisation(state_similarity, state_patch, object_similarity, object_patch)

    def _score(self, visual: VisualOutput, kept: torch.Tensor | None, text: dict[str, torch.Tensor],
               vocab: Vocabulary) -> tuple[BranchLogits, Localisation]:
        """Three-branch logits of one pass, with beta * localisation added to the pair logits."""
        located = self._localise(visual, kept, text)
        device = visual.cls.device
        state_index = torch.as_tensor(vocab.pair_states, device=device)
        object_index = torch.as_tensor(vocab.pair_objects, device=device)
        compatibility = (located.state_similarity[:, state_index] + located.object_similarity[:, object_index]) / math.sqrt(2.0)
        pair = cosine_logits(visual.cls, text["pair"]) + LOGIT_SCALE * self.beta * compatibility
        logits = BranchLogits(pair=pair, state=cosine_logits(visual.cls, text["state"]),
                              object=cosine_logits(visual.cls, text["object"]))
        return logits, located

    def branch_logits(self, visual: VisualOutput, vocab: Vocabulary, explain: bool = False,
                      pixels: torch.Tensor | None = None) -> BranchLogits:
        """Logits of the contextualised pass; in training also the unedited pass's, PatchCls's and the teacher's mask."""
        if not isinstance(visual, SvipVisual):
            visual = self._from_shared_pass(visual, pixels, explain)
        text = self.prompts.encode_all(vocab)
        logits, located = self._score(visual, visual.kept, text, vocab)
        logits.extras["selection"] = visual.selection
        if self.training:
            # CE "on both passes": the unedited pass localises over every super-patch (nothing was replaced)
            logits.extras["original"] = None if visual.original is None else self._score(visual.original, None, text, vocab)[0]
            logits.extras["patchcls_logits"] = visual.patchcls_logits
            logits.extras["teacher_kept"] = (None if visual.teacher_scores is None
                                             else top_mask(visual.teacher_scores, self.num_kept))
        if explain:
            logits.explanations.update({
                "kept": visual.kept,
                "state_evidence_patch": located.state_patch, "state_evidence_similarity": located.state_similarity,
                "object_evidence_patch": located.object_patch, "object_evidence_similarity": located.object_similarity,
            })
            if visual.teacher_scores is not None:
                logits.explanations["teacher_map"] = visual.teacher_scores
            if visual.patchcls_logits is not None:
                logits.explanations["patchcls_map"] = visual.patchcls_logits.sigmoid()
        return logits

    @staticmethod
    def patchcls_bce(patchcls_logits: torch.Tensor, teacher_kept: torch.Tensor) -> torch.Tensor:
        """PatchCls's binary cross-entropy against the teacher's kept mask (unweighted)."""
        return F.binary_cross_entropy_with_logits(patchcls_logits.float(), teacher_kept.float())

    def loss(self, logits: BranchLogits, pair_targets: torch.Tensor, state_targets: torch.Tensor,
             object_targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """CE on the contextualised and the unedited pass, the released consistency term between their pair
        predictions (consistency_kl on the unscaled cosines, T = consistency_temperature) and the weighted
        BCE of PatchCls against the teacher's mask."""
        total, parts = super().loss(logits, pair_targets, state_targets, object_targets)
        original = logits.extras.get("original")
        if original is not None:
            original_total, original_parts = super().loss(original, pair_targets, state_targets, object_targets)
            # The pair logits are 100 * cos (plus the localisation term): back to cosine units first.
            divergence = consistency_kl(logits.pair / LOGIT_SCALE, original.pair / LOGIT_SCALE,
                                        self.consistency_temperature)
            total = total + original_total + self.consistency_weight * divergence
            parts.update({f"original_{key}": value for key, value in original_parts.items()})
            parts["consistency"] = float(divergence.detach())
        patchcls_logits = logits.extras.get("patchcls_logits")
        teacher_kept = logits.extras.get("teacher_kept")
        if patchcls_logits is not None and teacher_kept is not None:
            bce = self.patchcls_bce(patchcls_logits, teacher_kept)
            total = total + self.patchcls_weight * bce
            parts["patchcls_bce"] = float(bce.detach())
            if self.training and torch.is_grad_enabled():
                self.patchcls_steps += 1  # counts PatchCls's training; selection waits for validation_checks
        return total, parts

    # ------------------------------------------------------------ explanations
    def explain(self, logits: BranchLogits, vocab: Vocabulary, image_index: int, top_pairs: np.ndarray) -> dict[str, Any]:
        """Kept / replaced super-patch grid and who chose it, the teacher map (when computed), the
        PatchCls probabilities (when computed) and each top pair's evidence super-patch for its state and object."""
        found = logits.explanations
        rows, cols = self.grid.shape
        top_pairs = np.asarray(top_pairs)
        states = vocab.pair_states[top_pairs]
        objects = vocab.pair_objects[top_pairs]
        kept = found["kept"][image_index].cpu().numpy().reshape(rows, cols)

        def cells(patch_index: torch.Tensor, words: np.ndarray) -> np.ndarray:
            where = patch_index[image_index].cpu().numpy()[words]
            return np.stack([where // cols, where % cols], axis=1)

        agreement = self.measured_agreement
        result: dict[str, Any] = {
            "selection": logits.extras.get("selection", self.selection_source),
            # PatchCls's measured agreement with the teacher on validation images (None: never measured)
            "patchcls_agreement": agreement,
            "switch_agreement": self.switch_agreement,
            "context_active": bool(self.context_embedding.any()),  # False: nothing is actually replaced
            "kept_mask": kept,  # [rows, cols] True = kept, False = replaced by the learned context
            "kept_count": int(kept.sum()),
            "super_patch_grid": np.array([rows, cols]),
            "patch_grid": np.array(self.grid.patch_grid),
            "super_patch_side": SUPER_PATCH_SIDE,
            "evidence_state_patch": cells(found["state_evidence_patch"], states),  # [k, 2] (row, col)
            "evidence_object_patch": cells(found["object_evidence_patch"], objects),
            "evidence_state_similarity": found["state_evidence_similarity"][image_index].cpu().numpy()[states],
            "evidence_object_similarity": found["object_evidence_similarity"][image_index].cpu().numpy()[objects],
        }
        if "teacher_map" in found:
            result["teacher_map"] = found["teacher_map"][image_index].cpu().numpy().reshape(rows, cols)
        if "patchcls_map" in found:
            result["patchcls_map"] = found["patchcls_map"][image_index].detach().cpu().numpy().reshape(rows, cols)
        return result
