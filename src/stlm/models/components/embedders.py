"""Embedders: token ids -> hidden states, with optional absolute positions.

- learned absolute positions (GPT-2; Radford et al., 2019)
- fixed sinusoidal positions (Vaswani et al., 2017)
- none, when the core applies rotary embeddings (RoPE) inside attention
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stlm.config.schema import ModelConfig
from stlm.models.registry import register


def sincos_table(n_positions: int, dim: int) -> torch.Tensor:
    pos = torch.arange(n_positions, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return table


class AbsolutePositions(nn.Module):
    """Adds a learned or sinusoidal vector per position (`cfg.positions`) for `cfg.context_length`
    positions. Learned vectors start N(0, cfg.init_std), as in
    GPT-2 and nanoGPT (0.02 by default)."""

    param_category = "positions"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind, self.n_positions = cfg.positions, cfg.context_length
        if self.kind == "learned":
            self.weight = nn.Parameter(torch.empty(self.n_positions, cfg.d_model))
            nn.init.normal_(self.weight, 0.0, cfg.init_std)
        else:
            self.register_buffer("weight", sincos_table(self.n_positions, cfg.d_model), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, T, dim) plus the vectors of the (T,) `positions` (the model checks they are
        inside the context: absolute positions cannot extrapolate)."""
        return x + self.weight[positions].to(x.dtype)


@register("embedder", "token")
class TokenEmbedder(nn.Module):
    """A vocabulary x d_model table; `weight` is what embedding-head tying shares."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.token = nn.Embedding(vocab_size, cfg.d_model)
        self.positions = (AbsolutePositions(cfg) if cfg.positions in ("learned", "sincos") else None)
        self.dropout = nn.Dropout(cfg.dropout)

    @property
    def tie_weight(self) -> nn.Parameter:
        """The matrix an LM head may share (vocab x d_model)."""
        return self.token.weight

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.token(ids)
        if self.positions is not None:
            x = self.positions(x, positions)
        return self.dropout(x)
