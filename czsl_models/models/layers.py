"""Building blocks shared by the models: cross-attention, residual disentanglers, adapters."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    """CLIP's GELU approximation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class CrossAttention(nn.Module):
    """Multi-head attention of query rows over key/value tokens (q/k/v without bias, output with bias).

    Queries may be shared by the batch ([T, D]) or per image ([B, T, D]); keys are [B, N, D].
    Every query row is computed independently, so chunking rows never changes a result.
    """

    def __init__(self, dim: int, heads: int, key_dim: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        key_dim = key_dim or dim
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(key_dim, dim, bias=False)
        self.v_proj = nn.Linear(key_dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim)

    def project_keys(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head keys and values [B, H, N, d] (compute once, reuse for every chunk of queries)."""
        batch, tokens, _ = keys.shape
        k = self.k_proj(keys).view(batch, tokens, self.heads, -1).transpose(1, 2)
        v = self.v_proj(keys).view(batch, tokens, self.heads, -1).transpose(1, 2)
        return k, v

    def forward(self, queries: torch.Tensor, keys_values: tuple[torch.Tensor, torch.Tensor],
                need_weights: bool = False, projected_queries: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attended rows [B, T, D] and, on request, head-mean attention [B, T, N]; projected_queries,
        when given, is q_proj(queries) computed beforehand (e.g. cached for fixed text rows)."""
        k, v = keys_values
        batch = k.shape[0]
        q = self.q_proj(queries) if projected_queries is None else projected_queries
        if q.dim() == 2:
            q = q.unsqueeze(0).expand(batch, -1, -1)
        rows = q.shape[1]
        q = q.reshape(batch, rows, self.heads, -1).transpose(1, 2)
        # Under CPU autocast: the fused kernel gains nothing from bfloat16, the plain products run ~2x faster.
        if need_weights or (q.device.type == "cpu" and torch.is_autocast_enabled("cpu")):
            weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)).softmax(dim=-1)
            out = weights @ v
            mean_weights = weights.mean(dim=1) if need_weights else None
        else:
            out = F.scaled_dot_product_attention(q, k, v)
            mean_weights = None
        out = out.transpose(1, 2).reshape(batch, rows, -1)
        return self.out_proj(out), mean_weights


class CrossAttentionLayer(nn.Module):
    """Query rows attend to tokens (residual), then LN -> MLP(D->4D, QuickGELU, dropout) (residual).

    `output_dropout` also drops the attention output and the MLP output before each residual sum, as
    MSCI's released stage layers do (their attention projection has proj_drop and the MLP branch a
    dropout); 0 keeps only the dropout inside the MLP. Dropout acts in training only."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1, mlp_ratio: int = 4, key_dim: int | None = None,
                 output_dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = CrossAttention(dim, heads, key_dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), QuickGELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.output_dropout = nn.Dropout(output_dropout)

    def forward(self, queries: torch.Tensor, keys_values: tuple[torch.Tensor, torch.Tensor],
                need_weights: bool = False, projected_queries: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Updated rows [B, T, D] (queries broadcast over the batch when [T, D]) and attention [B, T, N]."""
        attended, weights = self.attention(queries, keys_values, need_weights, projected_queries)
        x = queries + self.output_dropout(attended)
        x = x + self.output_dropout(self.mlp(self.norm(x)))
        return x, weights


class Disentangler(nn.Module):
    """MSCI's released disentangler: D(v) = Dropout(ReLU(BatchNorm1d(Linear(v)))), not residual (dropout 0.5)."""

    def __init__(self, dim: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.norm = nn.BatchNorm1d(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training and features.shape[0] == 1:
            raise ValueError("BatchNorm cannot train on a batch of one image; train with at least two per process.")
        return self.dropout(F.relu(self.norm(self.linear(features))))


class ResidualDisentangler(nn.Module):
    """v + D(v), D = Linear -> BatchNorm -> ReLU -> Dropout -> zero-initialised Linear (identity at start)."""

    def __init__(self, dim: int, hidden: int | None = None, dropout: float = 0.5) -> None:
        super().__init__()
        hidden = hidden or dim
        self.block = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(hidden, dim))
        nn.init.zeros_(self.block[-1].weight)
        nn.init.zeros_(self.block[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training and features.shape[0] == 1:
            # BatchNorm cannot train on one sample; the zero-init output keeps this exact at start
            return features + self.block[-1](self.block[3](self.block[2](self.block[0](features))))
        return features + self.block(features)


class Adapter(nn.Module):
    """AdaptFormer bottleneck (W -> r -> W, ReLU, dropout, scale), up-projection zero-initialised."""

    def __init__(self, width: int, bottleneck: int = 64, dropout: float = 0.1, scale: float = 0.1) -> None:
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        self.dropout = nn.Dropout(dropout)
        self.scale = scale
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(self.dropout(F.relu(self.down(x))))


class BlockAdapters(nn.Module):
    """The two adapters of one vision block: parallel to attention and parallel to the MLP."""

    def __init__(self, width: int, bottleneck: int = 64, dropout: float = 0.1, scale: float = 0.1) -> None:
        super().__init__()
        self.attention = Adapter(width, bottleneck, dropout, scale)
        self.mlp = Adapter(width, bottleneck, dropout, scale)

    def attention_branch(self, x: torch.Tensor) -> torch.Tensor:
        """Added beside the block's attention."""
        return self.attention(x)

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        """Added beside the block's MLP."""
        return self.mlp(x)


def vision_adapters(width: int, layers: int, bottleneck: int = 64, dropout: float = 0.1, scale: float = 0.1) -> nn.ModuleList:
    """One BlockAdapters per vision block (the 'paper' preset)."""
    return nn.ModuleList(BlockAdapters(width, bottleneck, dropout, scale) for _ in range(layers))


def fit_heads(dim: int, requested: int) -> int:
    """The largest head count <= requested that divides dim (tiny test backbones have narrow widths)."""
    for heads in range(max(1, min(requested, dim)), 0, -1):
        if dim % heads == 0:
            return heads
    return 1
