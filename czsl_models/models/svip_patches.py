"""SVIP's patch geometry and selection: 2x2 super-patches, the attention-rollout teacher, the PatchCls student,
top-M masks, the context embedding added to replaced super-patches, the consistency term and the student/teacher
agreement."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

SUPER_PATCH_SIDE = 2
SUB_PATCHES = SUPER_PATCH_SIDE * SUPER_PATCH_SIDE

class SuperPatchGrid:
    """The 2x2 grouping of a row-major patch grid; on odd grids the edge blocks hold fewer patches."""

    def __init__(self, patch_grid: Sequence[int]) -> None:
        rows, cols = int(patch_grid[0]), int(patch_grid[1])
        self.patch_grid = (rows, cols)
        self.shape = (math.ceil(rows / SUPER_PATCH_SIDE), math.ceil(cols / SUPER_PATCH_SIDE))
        self.num_patches = rows * cols
        self.num_super_patches = self.shape[0] * self.shape[1]
        row = torch.arange(rows).unsqueeze(1)
        col = torch.arange(cols).unsqueeze(0)
        super_of_patch = ((row // SUPER_PATCH_SIDE) * self.shape[1] + col // SUPER_PATCH_SIDE).flatten()
        slot_of_patch = ((row % SUPER_PATCH_SIDE) * SUPER_PATCH_SIDE + col % SUPER_PATCH_SIDE).flatten()
        # members[s, j] = patch at slot j of super-patch s; missing slots point to an appended zero row
        members = torch.full((self.num_super_patches, SUB_PATCHES), self.num_patches, dtype=torch.long)
        members[super_of_patch, slot_of_patch] = torch.arange(self.num_patches)
        self._cpu = {
            "super_of_patch": super_of_patch,
            "slot_of_patch": slot_of_patch,
            "members": members,
            "counts": torch.bincount(super_of_patch, minlength=self.num_super_patches).float(),
        }
        self._by_device: dict[torch.device, dict[str, torch.Tensor]] = {}

    def index(self, name: str, device: torch.device) -> torch.Tensor:
        """One of the index tensors on a device (cached)."""
        tensors = self._by_device.get(device)
        if tensors is None:
            tensors = {key: value.to(device) for key, value in self._cpu.items()}
            self._by_device[device] = tensors
        return tensors[name]

    def _gather(self, patches: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([patches, patches.new_zeros(patches.shape[0], 1, *patches.shape[2:])], dim=1)
        return padded[:, self.index("members", patches.device)]  # [B, S, 4, ...]

    def mean(self, patches: torch.Tensor) -> torch.Tensor:
        """Per-patch values [B, N, ...] -> their mean over each 2x2 block [B, S, ...]."""
        counts = self.index("counts", patches.device).to(patches.dtype)
        summed = self._gather(patches).sum(dim=2)
        return summed / counts.view(1, -1, *([1] * (patches.dim() - 2)))

    def concat(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch embeddings [B, N, W] -> super-patch input embeddings [B, S, 4W] (4 sub-patches concatenated)."""
        return self._gather(patches).flatten(2)

    def to_patches(self, values: torch.Tensor) -> torch.Tensor:
        """Per-super-patch values [B, S, ...] -> the value of each patch's super-patch [B, N, ...]."""
        return values[:, self.index("super_of_patch", values.device)]


def kept_super_patch_count(num_super_patches: int, keep_ratio: float) -> int:
    """M = round(ratio * N), at least 1 and at most N (52 of 64 and 40 of 49 at the default 0.82)."""
    return max(1, min(num_super_patches, round(keep_ratio * num_super_patches)))


def attention_rollout_cls(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout of the CLS token over the patch tokens [B, N]: per block M = rownorm(mean_heads(A) + I),
    R = M_L ... M_1, and R's CLS row. Only that row is carried (a vector times each M), and M is never
    materialised: row @ M = (row / d) @ mean_heads(A) + row / d, with d the row sums of mean_heads(A) + I."""
    if not attentions:
        raise ValueError("attention rollout needs the attention maps of at least one block")
    row = None
    for attention in reversed(attentions):
        attention = attention.float()
        degree = 1.0 + attention.sum(dim=-1).mean(dim=1)  # [B, T]
        if row is None:
            row = attention[:, :, 0].mean(dim=1)
            row[:, 0] += 1.0
            row = row / degree[:, :1]
        else:
            scaled = row / degree
            row = torch.einsum("bt,bhts->bs", scaled, attention) / attention.shape[1] + scaled
    return row[:, 1:]


def teacher_super_patch_scores(attentions: Sequence[torch.Tensor], grid: SuperPatchGrid) -> torch.Tensor:
    """The teacher's score of each super-patch [B, S]: CLS rollout averaged over each true 2x2 block."""
    return grid.mean(attention_rollout_cls(attentions).unsqueeze(-1)).squeeze(-1)


def top_mask(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask [B, S] of the `count` highest scores of each row."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    return mask.scatter(1, scores.topk(count, dim=-1).indices, True)


def add_context_to_patches(patches: torch.Tensor, replaced: torch.Tensor, context: torch.Tensor,
                           grid: SuperPatchGrid) -> torch.Tensor:
    """Add e[j] to sub-patch j of every replaced super-patch: patches [B, N, W], replaced [B, S], e [4, W]."""
    per_patch = context[grid.index("slot_of_patch", patches.device)].to(patches.dtype)  # [N, W]
    flags = grid.to_patches(replaced).to(patches.dtype).unsqueeze(-1)  # [B, N, 1]
    return patches + flags * per_patch


def consistency_kl(contextual_cosines: torch.Tensor, original_cosines: torch.Tensor, temperature: float) -> torch.Tensor:
    """The released consistency term (SVIP `main.py`): `nn.KLDivLoss()` with its default reduction, the mean
    over all B·C elements, of input log_softmax(original / T) and target softmax(contextual / T), times T²;
    both sides keep their gradients. That is KL(softmax(contextual/T) ‖ softmax(original/T)) / (B·C) · T².
    The mean is written out: torch warns that KLDivLoss's 'mean' will change meaning."""
    # float64: the per-element terms are tiny (T = 20 flattens both distributions), so float32 sums round to noise
    log_input = (original_cosines.double() / temperature).log_softmax(dim=-1)
    log_target = (contextual_cosines.double() / temperature).log_softmax(dim=-1)
    elementwise = log_target.exp() * (log_target - log_input)
    return (elementwise.sum() / elementwise.numel() * temperature ** 2).float()


def replaced_agreement(student_scores: torch.Tensor, teacher_scores: torch.Tensor, kept: int) -> torch.Tensor:
    """Per image [B]: the share of the super-patches the student replaces (its lowest N − kept scores)
    that the teacher also replaces; 1 when nothing is replaced."""
    replaced = student_scores.shape[-1] - kept
    if replaced <= 0:
        return torch.ones(student_scores.shape[0], device=student_scores.device)
    student = ~top_mask(student_scores, kept)
    teacher = ~top_mask(teacher_scores, kept)
    return (student & teacher).sum(dim=-1).float() / replaced


class PatchClassifier(nn.Module):
    """PatchCls: MLP(4W -> hidden -> 1) on super-patch input embeddings; a logit per super-patch."""

    def __init__(self, width: int, hidden: int = 512) -> None:
        super().__init__()
        # The inputs come before ln_pre, so their scale is the conv's; normalising makes the
        # student's learning rate independent of the backbone.
        self.mlp = nn.Sequential(nn.LayerNorm(SUB_PATCHES * width), nn.Linear(SUB_PATCHES * width, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, super_patch_inputs: torch.Tensor) -> torch.Tensor:
        """Logits [B, S] from [B, S, 4W]."""
        return self.mlp(super_patch_inputs.float()).squeeze(-1)


class ContextEmbedding(nn.Module):
    """e in [4, W] from K word features [K, D]: Linear D -> W per word, then a zero-initialised Linear K -> 4."""

    def __init__(self, num_words: int, embed_dim: int, width: int) -> None:
        super().__init__()
        self.project = nn.Linear(embed_dim, width)
        self.mix = nn.Linear(num_words, SUB_PATCHES)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, word_features: torch.Tensor) -> torch.Tensor:
        """The embedding added to the 4 sub-patches of a replaced super-patch [4, W]."""
        return self.mix(self.project(word_features).t()).t()
