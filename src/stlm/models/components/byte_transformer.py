"""The small transformer that runs inside a chunk of bytes, and the chunk table it reads.

Used twice by STLM's byte-level model (Hillier, Guertler et al., 2024, section 5.2): bidirectional
over a chunk's real bytes in the byte embedder (padding masked as keys, so pads never change a
real byte's state), causal over the next chunk's bytes in the byte decoder. Pre-norm blocks
(Xiong et al., 2020): x + attn(norm(x)), x + mlp(norm(x)), a GELU MLP of 4x the width. Its norms
are plain `nn.RMSNorm`, so their parameters count under the owning component (embedding / head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stlm.data.chunks import chunk_table, default_table


class ChunkTable(nn.Module):
    """id -> (symbols, length) of its chunk; buffers rebuilt from the tokenizer, not saved."""

    def __init__(self, vocab_size: int, width: int):
        super().__init__()
        self.vocab_size, self.width = vocab_size, width
        table, lengths = default_table(vocab_size, width)
        self.register_buffer("table", table, persistent=False)
        self.register_buffer("lengths", lengths, persistent=False)

    def attach(self, tokenizer) -> None:
        table, lengths = chunk_table(tokenizer, self.width)
        if table.shape[0] > self.vocab_size:
            raise ValueError(f"the tokenizer has {table.shape[0]} ids, the model {self.vocab_size}")
        self.table[: table.shape[0]] = table.to(self.table.device)
        self.table[table.shape[0]:] = 0
        self.lengths[: table.shape[0]] = lengths.to(self.lengths.device)
        self.lengths[table.shape[0]:] = 0

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Symbols (..., W) and lengths (...) of ids, W the longest chunk among them (>= 1)."""
        lengths = self.lengths[ids]
        width = max(1, int(lengths.max())) if lengths.numel() else 1
        return self.table[ids][..., :width], lengths


def length_groups(lengths: torch.Tensor) -> list[torch.Tensor]:
    """Indices of `lengths` (N,) grouped by ceil(log2(length)): chunks of similar length run
    together, so a batch pads each chunk to at most twice its length, not to the longest chunk."""
    group = torch.ceil(torch.log2(lengths.clamp(min=1).float())).long()
    return [torch.nonzero(group == g)[:, 0] for g in torch.unique(group).tolist()]


class ByteBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"model.byte_dim={dim} must be divisible by model.byte_heads={n_heads}")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.attn_norm = nn.RMSNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.mlp_norm = nn.RMSNorm(dim, eps=1e-6)
        self.up = nn.Linear(dim, 4 * dim, bias=False)
        self.down = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        n, w, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(n, w, 3, self.n_heads, self.head_dim).unbind(2)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask, is_causal=causal)
        x = x + self.proj(a.transpose(1, 2).reshape(n, w, d))
        return x + self.down(F.gelu(self.up(self.mlp_norm(x))))


class ByteTransformer(nn.Module):
    def __init__(self, dim: int, n_layers: int, n_heads: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.blocks = nn.ModuleList(ByteBlock(dim, n_heads) for _ in range(n_layers))
        self.norm = nn.RMSNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, W, dim); `key_mask` (N, W) True where a position may be attended to."""
        for block in self.blocks:
            x = block(x, key_mask, self.causal)
        return self.norm(x)
