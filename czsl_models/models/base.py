"""The interface every composition model implements, the shared three-branch scorer, predictions,
and the checkpoint format (config.json + model.safetensors, PyTorchModelHubMixin style)."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from PIL import Image
from torch import nn

from ..backbones import DEFAULT_BACKBONE, Backbone, VisualOutput, get_backbone
from ..backbones.precision import head_autocast, head_dtype
from ..inputs.vocab import Vocabulary
from .card import render_model_card
from .checkpoints import load_model
from .prompts import PromptEncoder
from .registry import is_registered

LOGIT_SCALE = 100.0
PREDICT_BATCH_SIZE = 16  # images per backbone pass in predict(): bounds memory; on CPU batches of 4-8 gain ~1.3x
CHECKPOINT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class VisualRequest:
    """What a model needs from the vision pass."""

    layers: tuple[int, ...] = ()
    attention: bool = False
    patch_embeddings: bool = False

    def union(self, other: "VisualRequest") -> "VisualRequest":
        """A request that satisfies both (for one shared pass in Compare)."""
        return VisualRequest(tuple(sorted(set(self.layers) | set(other.layers))), self.attention or other.attention,
                             self.patch_embeddings or other.patch_embeddings)


@dataclass
class BranchLogits:
    """Per-branch logits (already scaled by 100) and model-specific tensors."""

    pair: torch.Tensor  # [B, P]
    state: torch.Tensor  # [B, A]
    object: torch.Tensor  # [B, O]
    explanations: dict[str, torch.Tensor] = field(default_factory=dict)  # batched, per image
    extras: dict[str, Any] = field(default_factory=dict)  # what a model's loss needs besides the logits


@dataclass
class RankedPair:
    """One composition of a ranking."""

    state: str
    object: str
    score: float
    seen: bool | None = None


@dataclass
class Prediction:
    """Ranked compositions of one image, marginals and the model's explanations (plain arrays)."""

    model: str
    backbone: str
    trained: bool
    ranking: list[RankedPair]
    states: list[tuple[str, float]]  # state branch probabilities, best first
    objects: list[tuple[str, float]]
    explanations: dict[str, Any]
    scores: np.ndarray  # [P] score of every candidate pair, in vocabulary order
    untrained_equals_baseline: bool = True  # False: an untrained model of this kind does not score as `clip`
    backbone_precision: str = "float32"  # what the image tower computed in (backbones.precision)

    def to_dict(self) -> dict:
        """JSON-ready dict (the CLI's --json output)."""
        return {
            "model": self.model,
            "backbone": self.backbone,
            "backbone_precision": self.backbone_precision,
            "trained": self.trained,
            "ranking": [{"state": r.state, "object": r.object, "score": r.score, **({} if r.seen is None else {"seen": r.seen})}
                        for r in self.ranking],
            "states": [{"state": name, "probability": p} for name, p in self.states],
            "objects": [{"object": name, "probability": p} for name, p in self.objects],
            "explanations": _jsonable(self.explanations),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return np.round(value.astype(np.float64), 6).tolist() if value.dtype.kind == "f" else value.tolist()
    if isinstance(value, (np.floating, float)):
        return round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def compose_pair_scores(logits: BranchLogits, vocab: Vocabulary, weights: Sequence[float]) -> torch.Tensor:
    """Inference score [B, P]: w_p*logit_pair + (w_a*softmax(state))[a] * (w_o*softmax(object))[o]."""
    w_pair, w_state, w_object = weights
    device = logits.pair.device
    state_index = torch.as_tensor(vocab.pair_states, device=device)
    object_index = torch.as_tensor(vocab.pair_objects, device=device)
    state_prob = w_state * logits.state.float().softmax(dim=-1)
    object_prob = w_object * logits.object.float().softmax(dim=-1)
    return w_pair * logits.pair.float() + state_prob[:, state_index] * object_prob[:, object_index]


def cosine_logits(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """100 * cos between image rows [B, D] and text rows [T, D] (or per-image text [B, T, D])."""
    image = F.normalize(image_features.float(), dim=-1)
    text = F.normalize(text_features.float(), dim=-1)
    if text.dim() == 3:
        return LOGIT_SCALE * torch.einsum("bd,btd->bt", image, text)
    return LOGIT_SCALE * image @ text.t()


class CompositionModel(nn.Module, PyTorchModelHubMixin, library_name="czsl-models",
                       tags=["compositional-zero-shot-learning", "open_clip"], license="mit"):
    """Base of the composition models: a shared frozen backbone (held by reference) plus a head."""

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    learnable_prompts: ClassVar[bool] = True
    # True for models whose head refines every text row per image and honours head_precision.
    refines_text_rows: ClassVar[bool] = False

    def __init__(self, backbone: str = DEFAULT_BACKBONE, train_states: list[str] | None = None,
                 train_objects: list[str] | None = None, train_pairs: list[list[str]] | None = None,
                 score_weights: list[float] | None = None, loss_weights: list[float] | None = None) -> None:
        super().__init__()
        shared = get_backbone(backbone)
        object.__setattr__(self, "backbone", shared)  # by reference: never in state_dict
        self.backbone_spec = shared.name
        self.train_states = list(train_states or [])
        self.train_objects = list(train_objects or [])
        self.train_pairs = [list(pair) for pair in (train_pairs or [])]
        self.score_weights = tuple(score_weights or (1.0, 1.0, 1.0))
        # Weights for open-world vocabularies (every state x object pair), when a recipe sets other ones.
        self.open_world_score_weights: tuple[float, ...] | None = None
        self.loss_weights = tuple(loss_weights or (1.0, 1.0, 1.0))
        self.prompts = PromptEncoder(shared, self.train_states, self.train_objects, learnable=self.learnable_prompts)
        self.register_buffer("training_steps", torch.zeros((), dtype=torch.long))
        # Inference precision of the row heads (czsl_models.precision); None: $CZSL_HEAD_PRECISION.
        self.head_precision: str | None = None

    backbone: Backbone

    # ------------------------------------------------------------ subclass API
    def visual_request(self, explain: bool = False) -> VisualRequest:
        """What the vision pass must return for this model."""
        return VisualRequest()

    def encode_images(self, pixels: torch.Tensor, explain: bool = False) -> VisualOutput:
        """The vision pass (models with adapters or input edits override)."""
        request = self.visual_request(explain)
        return self.backbone.encode_image(pixels, layers=request.layers, attention=request.attention,
                                          patch_embeddings=request.patch_embeddings)

    def branch_logits(self, visual: VisualOutput, vocab: Vocabulary, explain: bool = False,
                      pixels: torch.Tensor | None = None) -> BranchLogits:
        """Per-branch logits for a batch; explanations only when explain is set. This base version is
        the CLIP zero-shot scorer (CLS feature against each branch's prompts) the models refine."""
        text = self.prompts.encode_all(vocab)
        return BranchLogits(pair=cosine_logits(visual.cls, text["pair"]), state=cosine_logits(visual.cls, text["state"]),
                            object=cosine_logits(visual.cls, text["object"]))

    def explain(self, logits: BranchLogits, vocab: Vocabulary, image_index: int, top_pairs: np.ndarray) -> dict[str, Any]:
        """Model-specific explanation of one image as plain arrays; top_pairs are indices into vocab.pairs."""
        return {}

    def validation_checks(self, pixel_batches: Iterable[torch.Tensor]) -> dict[str, Any]:
        """Model-specific checks the trainer runs on the validation images after each epoch (preprocessed
        pixel batches); the returned numbers go into the epoch's record. Most models have none."""
        return {}

    # ---------------------------------------------------------------- shared
    @property
    def untrained_equals_baseline(self) -> bool:
        """True when the untrained model scores exactly as the `clip` baseline (zero-initialised residuals);
        variants that start where their released code starts (MSCI 'released') return False."""
        return True

    @property
    def is_trained(self) -> bool:
        """True once the heads have been optimised (the zero-initialised start is the CLIP baseline)."""
        return bool(self.training_steps.item() > 0)

    @property
    def config(self) -> dict:
        """The constructor arguments (what config.json holds besides model_type)."""
        return dict(self._hub_mixin_config or {})

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the trainer optimises."""
        return [p for p in self.parameters() if p.requires_grad]

    def num_trainable_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.trainable_parameters())

    def head_precision_in_use(self) -> str | None:
        """'float32' or 'bfloat16': what the row head computes in at inference (None without one)."""
        if not self.refines_text_rows:
            return None
        return str(head_dtype(self.backbone.device, self.head_precision)).removeprefix("torch.")

    def head_autocast(self) -> AbstractContextManager:
        """Autocast for the heads that refine every text row, at inference (czsl_models.precision)."""
        return head_autocast(self.backbone.device, self.head_precision)

    def _sync_device(self) -> None:
        first = next(itertools.chain(self.parameters(), self.buffers()), None)
        target = self.backbone.device
        # "cuda" (no index) and "cuda:0" are the same place; compare the index only when one is given
        if first is not None and (first.device.type != target.type
                                  or (target.index is not None and first.device.index != target.index)):
            self.to(target)

    def forward(self, pixels: torch.Tensor | None, vocab: Vocabulary, visual: VisualOutput | None = None) -> BranchLogits:
        """Training forward: per-branch logits from pixels or from a cached vision pass."""
        self._sync_device()
        if visual is None:
            if pixels is None:
                raise ValueError("forward needs pixels or a cached vision pass")
            visual = self.encode_images(pixels)
        return self.branch_logits(visual, vocab, explain=False, pixels=pixels)

    def pair_scores(self, logits: BranchLogits, vocab: Vocabulary) -> torch.Tensor:
        """Inference scores [B, P] with this model's branch weights."""
        return compose_pair_scores(logits, vocab, self.score_weights_for(vocab))

    def score_weights_for(self, vocab: Vocabulary) -> tuple[float, ...]:
        """The (pair, state, object) inference weights for a vocabulary: the open-world ones when set and
        the vocabulary holds every state x object pair, else score_weights."""
        if vocab.open_world and self.open_world_score_weights is not None:
            return self.open_world_score_weights
        return self.score_weights

    def loss(self, logits: BranchLogits, pair_targets: torch.Tensor, state_targets: torch.Tensor,
             object_targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """CE over the training pairs + w_a*CE(state) + w_o*CE(object); returns (loss, parts)."""
        w_pair, w_state, w_object = self.loss_weights
        pair_loss = F.cross_entropy(logits.pair, pair_targets)
        state_loss = F.cross_entropy(logits.state, state_targets)
        object_loss = F.cross_entropy(logits.object, object_targets)
        total = w_pair * pair_loss + w_state * state_loss + w_object * object_loss
        return total, {"pair": pair_loss.item(), "state": state_loss.item(), "object": object_loss.item()}

    @torch.no_grad()
    def predict(self, images: Sequence[Image.Image] | Image.Image, vocab: Vocabulary, top_k: int = 5,
                bias: float = 0.0, batch_size: int = PREDICT_BATCH_SIZE) -> list[Prediction]:
        """Rank the vocabulary's pairs for each image; bias is added to unseen pairs' scores. Images go through the
        backbone batch_size at a time, so a long list never becomes one huge tensor."""
        if isinstance(images, Image.Image):
            images = [images]
        self.prompts.check_lengths(vocab)
        self.eval()
        self._sync_device()
        step = max(1, int(batch_size))
        predictions: list[Prediction] = []
        for start in range(0, len(images), step):
            pixels = self.backbone.preprocess_images(images[start:start + step])
            visual = self.encode_images(pixels, explain=True)
            predictions += self.predict_from_visual(visual, vocab, top_k=top_k, bias=bias, pixels=pixels)
        return predictions

    @torch.no_grad()
    def predict_from_visual(self, visual: VisualOutput, vocab: Vocabulary, top_k: int = 5, bias: float = 0.0,
                            pixels: torch.Tensor | None = None) -> list[Prediction]:
        """Predictions from an existing vision pass (Compare shares one pass between models)."""
        self.eval()
        self._sync_device()
        logits = self.branch_logits(visual, vocab, explain=True, pixels=pixels)
        scores = self.pair_scores(logits, vocab)
        seen = vocab.seen_mask
        if bias and seen is not None:
            scores = scores + bias * torch.as_tensor(~seen, device=scores.device, dtype=scores.dtype)
        if vocab.feasibility is not None:
            feasible = torch.as_tensor(np.isfinite(vocab.feasibility), device=scores.device)
            scores = scores.masked_fill(~feasible, float("-inf"))
        k = max(1, min(int(top_k), vocab.num_pairs))
        top_scores, top_index = scores.topk(k, dim=-1)
        state_prob = logits.state.float().softmax(-1)
        object_prob = logits.object.float().softmax(-1)
        names = vocab.pair_names()
        predictions = []
        for b in range(scores.shape[0]):
            indices = top_index[b].cpu().numpy()
            ranking = [RankedPair(names[i][0], names[i][1], float(s), None if seen is None else bool(seen[i]))
                       for i, s in zip(indices, top_scores[b].cpu().tolist())]
            explanations = {"score_parts": self._score_parts(logits, vocab, b, indices)}
            explanations.update(self.explain(logits, vocab, b, indices))
            predictions.append(Prediction(
                model=self.name, backbone=self.backbone.name, trained=self.is_trained, ranking=ranking,
                states=_ranked(vocab.states, state_prob[b]), objects=_ranked(vocab.objects, object_prob[b]),
                explanations=explanations, scores=scores[b].float().cpu().numpy(),
                untrained_equals_baseline=self.untrained_equals_baseline,
                backbone_precision=self.backbone.precision,
            ))
        return predictions

    def _score_parts(self, logits: BranchLogits, vocab: Vocabulary, b: int, indices: np.ndarray) -> dict[str, np.ndarray]:
        """How each top pair's score splits into the composition term and the state x object term."""
        w_pair, w_state, w_object = self.score_weights_for(vocab)
        state_prob = (w_state * logits.state[b].float().softmax(-1)).cpu().numpy()
        object_prob = (w_object * logits.object[b].float().softmax(-1)).cpu().numpy()
        pair_logits = logits.pair[b].float().cpu().numpy()
        return {
            "composition": w_pair * pair_logits[indices],
            "state_times_object": state_prob[vocab.pair_states[indices]] * object_prob[vocab.pair_objects[indices]],
        }

    # ----------------------------------------------------------- checkpoints
    def save_pretrained(self, save_directory: str | Path, *, config: dict | None = None, repo_id: str | None = None,
                        push_to_hub: bool = False, model_card_kwargs: dict[str, Any] | None = None,
                        **push_to_hub_kwargs) -> str | None:
        """Write model.safetensors, config.json and README.md, each through a temporary file and a
        rename, so a failed save never leaves a damaged checkpoint (the mixin deletes config.json first)."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self._save_pretrained(save_directory)
        card_kwargs = model_card_kwargs or {}
        card = self.generate_model_card(**card_kwargs)
        _atomic_write(save_directory / "README.md", lambda path: Path(path).write_text(str(card)))
        if push_to_hub:
            return self.push_to_hub(repo_id=repo_id or save_directory.name, model_card_kwargs=card_kwargs, **push_to_hub_kwargs)
        return None

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write model.safetensors and config.json atomically (temporary file, then rename)."""
        from safetensors.torch import save_file

        save_directory = Path(save_directory)
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in self.state_dict().items()}
        _atomic_write(save_directory / "model.safetensors", lambda path: save_file(state, str(path), metadata={"format": "pt"}))
        _atomic_write(save_directory / "config.json",
                      lambda path: Path(path).write_text(json.dumps(self.checkpoint_config(), indent=2, sort_keys=True)))

    def checkpoint_config(self) -> dict[str, Any]:
        """What config.json holds: model_type, format version and the constructor arguments."""
        return {"model_type": self.name, "format_version": CHECKPOINT_FORMAT_VERSION, **self.config,
                "backbone": self.backbone_spec}

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """The README.md of a checkpoint: model, backbone, training vocabulary and metrics."""
        return ModelCard(render_model_card(self, metrics=kwargs.get("metrics")))

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None = None, cache_dir: str | Path | None = None,
                         force_download: bool = False, local_files_only: bool = False,
                         token: str | bool | None = None, **model_kwargs):
        """Load through the registry, honouring the Hub options (the config's own values arrive in model_kwargs)."""
        name = cls.name if is_registered(cls) else None  # the base class: the config decides
        return load_model(name, checkpoint=model_id, revision=revision, token=token, cache_dir=cache_dir,
                          local_files_only=local_files_only, force_download=force_download)


def _ranked(names: Sequence[str], probabilities: torch.Tensor) -> list[tuple[str, float]]:
    values = probabilities.cpu().tolist()
    order = sorted(range(len(names)), key=lambda i: -values[i])
    return [(names[i], float(values[i])) for i in order]


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; checkpoints are meant to be shared
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
