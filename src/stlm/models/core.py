"""The core: a stack of pre-norm transformer blocks, x + attn(norm(x)) then x + ffn(norm(x)).

Which attention and FFN each block uses comes from the registry; `stlm.models.sharing` decides
which blocks share one module (the same Python object, hence the same parameters). Norms are
always per layer. Positions are explicit: a (T,) tensor of absolute positions shared by the
batch, from which rotary tables are built.
"""

from __future__ import annotations

import torch
from torch import nn

from stlm.config.schema import ModelConfig
from stlm.models.components.norms import build_norm
from stlm.models.components.rope import RotaryEmbedding
from stlm.models.kv_cache import KVCache


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, attn: nn.Module, ffn: nn.Module):
        super().__init__()
        self.attn_norm = build_norm(cfg)
        self.attn = attn
        self.ffn_norm = build_norm(cfg)
        self.ffn = ffn

    def forward(self, x: torch.Tensor, rope, cache: KVCache | None, layer_idx: int) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope, cache=cache, layer_idx=layer_idx)
        return x + self.ffn(self.ffn_norm(x))


class TransformerCore(nn.Module):
    def __init__(self, cfg: ModelConfig, blocks: list[Block]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        head_dim = cfg.d_model // cfg.n_heads
        self.rope = (RotaryEmbedding(head_dim, cfg.context_length, cfg.rope_theta)
                     if cfg.positions == "rope" else None)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, cache: KVCache | None = None,
                keep_states: bool = False) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """The final hidden states, and with `keep_states` every block's output (input first)."""
        rope = self.rope(positions) if self.rope is not None else None
        states = [x] if keep_states else None
        for i, block in enumerate(self.blocks):
            x = block(x, rope, cache, i)
            if states is not None:
                states.append(x)
        return x, states
