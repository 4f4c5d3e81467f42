"""Causal self-attention with grouped-query heads (Ainslie et al., 2023, arXiv 2305.13245).

`n_kv_heads == n_heads` is ordinary multi-head attention (Vaswani et al., 2017); `n_kv_heads == 1`
is multi-query attention. Attention runs through `F.scaled_dot_product_attention`, which picks a
flash or memory-efficient kernel where one applies.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stlm.config.schema import ModelConfig
from stlm.models.components.norms import RMSNorm
from stlm.models.components.rope import apply_rope
from stlm.models.kv_cache import KVCache
from stlm.models.registry import register


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, past: int,
                     dropout_p: float, past_mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA over (B, H, T, D) tensors; `past` tokens of k/v precede the T new queries.
    `past_mask` (B, past): False for cached padding slots no query may see (routed layers)."""
    if k.shape[1] != q.shape[1]:  # grouped-query: each kv head serves several query heads
        rep = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    t_new, t_all = q.shape[2], k.shape[2]
    if past and past_mask is not None and not bool(past_mask.all()):
        new = torch.ones(t_new, t_new, dtype=torch.bool, device=q.device).tril()
        mask = torch.cat([past_mask[:, None, None, :].expand(-1, 1, t_new, -1),
                          new.expand(past_mask.shape[0], 1, -1, -1)], dim=-1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    if past == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=t_new > 1, dropout_p=dropout_p)
    if t_new == 1:  # one new token sees every cached position
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    mask = torch.ones(t_new, t_all, dtype=torch.bool, device=q.device).tril(diagonal=t_all - t_new)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache | None, layer_idx: int,
           dropout_p: float) -> torch.Tensor:
    """Store this step's k, v in the cache (if any), attend causally, merge heads -> (B, T, H*D)."""
    past, past_mask = 0, None
    if cache is not None:
        past = cache.layer_length(layer_idx)  # layers may hold fewer tokens (early exit, routing)
        past_mask = cache.past_mask(layer_idx)
        k, v = cache.update(layer_idx, k, v)
    y = causal_attention(q, k, v, past=past, dropout_p=dropout_p, past_mask=past_mask)
    b, h, t, d = y.shape
    return y.transpose(1, 2).reshape(b, t, h * d)


class QKNorm(nn.Module):
    """QK-norm: RMSNorm over each head's queries and keys (one learned scale per head dimension,
    shared by the heads), applied before RoPE. It bounds attention logits and lets small models
    train at higher learning rates (Henry et al., 2020, arXiv 2010.04245; Dehghani et al., 2023,
    arXiv 2302.05442; the modded-nanogpt speed-run, Jordan et al., 2024)."""

    def __init__(self, head_dim: int, eps: float):
        super().__init__()
        self.q_norm = RMSNorm(head_dim, eps)
        self.k_norm = RMSNorm(head_dim, eps)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q_norm(q), self.k_norm(k)


def build_qk_norm(cfg: ModelConfig, head_dim: int) -> QKNorm | None:
    return QKNorm(head_dim, cfg.norm_eps) if cfg.qk_norm else None


def position_qk(q: torch.Tensor, k: torch.Tensor, qk_norm: QKNorm | None,
                rope: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """QK-norm (if any), then rotary positions (if any), on (B, H, T, D) queries and keys."""
    if qk_norm is not None:
        q, k = qk_norm(q, k)
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    return q, k


@register("attention", "gqa")
class GroupedQueryAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int = 0):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.kv_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        d, kv_dim = cfg.d_model, self.n_kv_heads * self.head_dim
        self.q_proj = nn.Linear(d, d, bias=cfg.bias)
        self.k_proj = nn.Linear(d, kv_dim, bias=cfg.bias)
        self.v_proj = nn.Linear(d, kv_dim, bias=cfg.bias)
        self.o_proj = nn.Linear(d, d, bias=cfg.bias)
        self.o_proj.is_residual_projection = True
        self.qk_norm = build_qk_norm(cfg, self.head_dim)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, n, self.head_dim).transpose(1, 2)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self._heads(self.q_proj(x), self.n_heads), self._heads(self.k_proj(x), self.n_kv_heads),
                self._heads(self.v_proj(x), self.n_kv_heads))

    def output(self, y: torch.Tensor) -> torch.Tensor:
        return self.resid_dropout(self.o_proj(y))

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None = None, layer_idx: int = 0) -> torch.Tensor:
        q, k, v = self.project_qkv(x)
        q, k = position_qk(q, k, self.qk_norm, rope)
        y = attend(q, k, v, cache, layer_idx, self.dropout if self.training else 0.0)
        return self.output(y)


def scaled_init_std(cfg: ModelConfig) -> float:
    """Init std of projections that write into the residual stream (`is_residual_projection`):
    GPT-2's init_std / sqrt(2 * n_layers), or 0 with `model.zero_init_projections` (each block
    starts as the identity, as in the modded-nanogpt speed-run and muP's zero readout)."""
    if cfg.zero_init_projections:
        return 0.0
    return cfg.init_std / math.sqrt(2 * cfg.n_layers)
