"""The byte-pooled embedder of STLM's tokenizer-free model (Hillier, Guertler et al., 2024,
"Super Tiny Language Models", section 5.2): each token's chunk of bytes is embedded at a small
width, run through a small bidirectional transformer and pooled into one vector of the core's
width, replacing the vocabulary x d_model embedding table.

Done right where the public code was not: chunks are the token's exact bytes (`stlm.data.chunks`),
padding is masked in attention and excluded from pooling (the public code attended to and averaged
12-byte padded chunks), and in-chunk positions are added once.
"""

from __future__ import annotations

import torch
from torch import nn

from stlm.config.schema import ModelConfig
from stlm.data.chunks import N_INPUT_SYMBOLS
from stlm.models.components.byte_transformer import ByteTransformer, ChunkTable, length_groups
from stlm.models.components.embedders import AbsolutePositions
from stlm.models.registry import register

POOLS = ("mean", "query")


@register("embedder", "byte_pooled")
class BytePooledEmbedder(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        if cfg.byte_pool not in POOLS:
            raise ValueError(f"model.byte_pool={cfg.byte_pool!r} is unknown; choose one of {', '.join(POOLS)}")
        self.pool = cfg.byte_pool
        self.chunks = ChunkTable(vocab_size, cfg.byte_chunk_max)
        self.byte = nn.Embedding(N_INPUT_SYMBOLS, cfg.byte_dim)
        self.byte_position = nn.Embedding(cfg.byte_chunk_max, cfg.byte_dim)
        self.encoder = ByteTransformer(cfg.byte_dim, cfg.byte_layers, cfg.byte_heads, causal=False)
        self.query = nn.Parameter(torch.zeros(cfg.byte_dim)) if self.pool == "query" else None
        self.proj = nn.Linear(cfg.byte_dim, cfg.d_model, bias=False)
        self.positions = (AbsolutePositions(cfg.positions, cfg.context_length, cfg.d_model)
                          if cfg.positions in ("learned", "sincos") else None)
        self.dropout = nn.Dropout(cfg.dropout)

    def pool_chunks(self, ids: torch.Tensor) -> torch.Tensor:
        """One byte_dim vector per id of ids (N,)."""
        symbols, lengths = self.chunks(ids)  # (N, W), (N,)
        width = symbols.shape[-1]
        real = torch.arange(width, device=ids.device) < lengths.clamp(min=1)[:, None]
        x = self.encoder(self.byte(symbols) + self.byte_position.weight[:width], real)
        if self.pool == "mean":
            w = real.to(x.dtype)[..., None]
            return (x * w).sum(-2) / w.sum(-2)
        scores = (x @ self.query.to(x.dtype)).masked_fill(~real, float("-inf"))
        return (scores.softmax(-1)[..., None] * x).sum(-2)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # a chunk's vector depends on its id alone: compute each distinct id once, grouped by length
        unique, where = torch.unique(ids, return_inverse=True)
        pooled = self.byte.weight.new_zeros(unique.shape[0], self.byte.weight.shape[1])
        for rows in length_groups(self.chunks.lengths[unique]):
            pooled = pooled.index_copy(0, rows, self.pool_chunks(unique[rows]).to(pooled.dtype))
        out = self.proj(pooled)[where]
        if self.positions is not None:
            out = self.positions(out, positions)
        return self.dropout(out)
