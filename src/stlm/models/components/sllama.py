"""SLlama's parameter-efficient components (Omolaoye, Owoyele & de Melo, EMNLP 2025, "SLlama:
Parameter-Efficient Language Model Architecture for Enhanced Linguistic Competence Under Strict
Data Constraints", doi 10.18653/v1/2025.emnlp-main.1198; code: github.com/ovasoft/sllama).

- RRHP (`embedder=rrhp`): a d_model/f wide embedding tiled f times to d_model, untied head.
- PWA (`attention=pwa`): Q, K and V built from one 6 x d_model table, no output projection.
- SPMLP (`ffn=spmlp`): a SwiGLU whose up projection is the down projection transposed.
SLlama's fourth idea, whole-layer sharing in groups, is `model.sharing` (`stlm.models.sharing`).
"""

from __future__ import annotations

from itertools import permutations

import torch
import torch.nn.functional as F
from torch import nn

from stlm.errors import ConfigError
from stlm.config.schema import ModelConfig
from stlm.models.components.embedders import AbsolutePositions
from stlm.models.components.attention import attend, build_qk_norm, position_qk
from stlm.models.kv_cache import KVCache
from stlm.models.registry import register

PWA_ROWS = 6  # rows of the PWA table
PWA_PERM = 4  # length of the permutations that index it


@register("embedder", "rrhp")
class RepeatedReducedEmbedder(nn.Module):
    """RRHP: a vocab x (d_model / f) table whose rows are tiled [e, e, ..., e] to d_model without
    parameters. The head stays a separate full-width matrix, so tying is refused: with f=4 this
    costs V*d/4 + V*d instead of 2*V*d (untied) while keeping input and output matrices apart."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        if cfg.tie_embeddings:
            raise ConfigError("model.embedder=rrhp has no vocab x d_model matrix to tie to the head "
                              "(its head is untied by design); set model.tie_embeddings=false")
        if cfg.rrhp_factor < 1 or cfg.d_model % cfg.rrhp_factor:
            raise ConfigError(f"model.rrhp_factor ({cfg.rrhp_factor}) must be >= 1 and divide "
                              f"model.d_model ({cfg.d_model})")
        self.factor = cfg.rrhp_factor
        self.token = nn.Embedding(vocab_size, cfg.d_model // cfg.rrhp_factor)
        self.positions = (AbsolutePositions(cfg) if cfg.positions in ("learned", "sincos") else None)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.token(ids).repeat(1, 1, self.factor)  # block tiling: [e, e, e, e]
        if self.positions is not None:
            x = self.positions(x, positions)
        return self.dropout(x)


def pwa_indices(d_model: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row of the PWA table behind each coordinate of q, k and v: all ordered 4-permutations of
    {0..5} in lexicographic order, flattened; Q takes entries [0, d), K [d, 2d), V [2d, 3d)."""
    flat = [i for perm in permutations(range(PWA_ROWS), PWA_PERM) for i in perm]
    if 3 * d_model > len(flat):
        raise ConfigError(f"attention=pwa supports model.d_model <= {len(flat) // 3} (its index "
                          f"pattern has {len(flat)} entries), got {d_model}")
    idx = torch.tensor(flat[: 3 * d_model])
    return idx[:d_model], idx[d_model : 2 * d_model], idx[2 * d_model :]


@register("attention", "pwa")
class PermutedWeightAttention(nn.Module):
    """PWA: one 6 x d_model table S; row i of W_Q (W_K, W_V) is row idx_Q[i] (idx_K, idx_V) of S,
    so every coordinate of q, k and v is one of six dot products <x, s_j>. Heads are concatenated
    straight into the residual stream (no output projection). 6*d parameters instead of 4*d^2."""

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0):
        super().__init__()
        if cfg.kv_heads != cfg.n_heads:
            raise ConfigError("attention=pwa makes keys and values d_model wide; set "
                              "model.n_kv_heads=null (or equal to model.n_heads)")
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.table = nn.Embedding(PWA_ROWS, cfg.d_model)  # an Embedding, as in SLlama's code
        for name, idx in zip(("q_idx", "k_idx", "v_idx"), pwa_indices(cfg.d_model)):
            self.register_buffer(name, idx, persistent=False)
        self.extra_matmul_params = PWA_ROWS * cfg.d_model  # z = x S^T; q, k, v are gathers of z
        self.qk_norm = build_qk_norm(cfg, self.head_dim)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None = None, layer_idx: int = 0) -> torch.Tensor:
        z = F.linear(x, self.table.weight)  # (B, T, 6): the only numbers q, k and v are made of
        q, k, v = (self._heads(z.index_select(-1, idx)) for idx in (self.q_idx, self.k_idx, self.v_idx))
        q, k = position_qk(q, k, self.qk_norm, rope)
        return self.resid_dropout(attend(q, k, v, cache, layer_idx,
                                         self.dropout if self.training else 0.0))


@register("ffn", "spmlp")
class SharedProjectionMLP(nn.Module):
    """SPMLP: W_d(silu(W_g x) * (W_d^T x)); the up projection is the down weight transposed, so
    two d_model x d_ff matrices instead of three. The transpose is explicit, so d_model == d_ff
    cannot silently drop it (SLlama's code transposed only when the shapes did not match). W_d
    keeps the plain init (not the scaled residual one), since it is also the up projection."""

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.extra_matmul_params = cfg.d_model * cfg.d_ff  # the up matmul reuses W_d
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.linear(x, self.down_proj.weight.t())  # W_d^T x; no bias (down's bias is d_model wide)
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * up))
