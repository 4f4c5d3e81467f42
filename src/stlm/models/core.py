"""The core: a stack of pre-norm transformer blocks, x + attn(norm(x)) then x + ffn(norm(x)).

Which attention and FFN each block uses comes from the registry; `stlm.models.sharing` decides
which blocks share one module (the same Python object, hence the same parameters). Norms are
always per layer. Positions are explicit: a (T,) tensor of absolute positions shared by the
batch, from which rotary tables are built.

Layer dropout (LayerSkip, Elhoushi et al., 2024, arXiv 2404.16710): in training, each sample
skips layer l with probability `layer_dropout * (exp(l ln 2 / (L - 1)) - 1)`, rising from 0 at
the first layer to `layer_dropout` at the last. Skipping is per sample (every layer still runs,
so data-parallel ranks always produce every gradient) and draws from torch's RNG, whose state is
checkpointed, so a resumed run drops the same layers.
"""

from __future__ import annotations

import math

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

    def forward(self, x: torch.Tensor, rope, cache: KVCache | None, layer_idx: int,
                positions: torch.Tensor | None = None, aux: dict | None = None) -> torch.Tensor:
        """x (B, T, d_model) -> the block's output. `positions` (T,) and `aux` (a dict collecting
        auxiliary losses as name -> (loss, weight)) serve blocks that route tokens
        (`components.mixture_of_depths`); a plain block ignores them."""
        x = x + self.attn(self.attn_norm(x), rope, cache=cache, layer_idx=layer_idx)
        return x + self.ffn(self.ffn_norm(x))


def layer_dropout_rates(max_rate: float, n_layers: int) -> list[float]:
    """LayerSkip's rate per layer: 0 at the first, `max_rate` at the last, exponential between."""
    if n_layers == 1:
        return [max_rate]
    return [max_rate * (math.exp(i * math.log(2) / (n_layers - 1)) - 1) for i in range(n_layers)]


class TransformerCore(nn.Module):
    def __init__(self, cfg: ModelConfig, blocks: list[Block]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.drop_rates = layer_dropout_rates(cfg.layer_dropout, len(blocks))
        head_dim = cfg.d_model // cfg.n_heads
        self.rope = (RotaryEmbedding(head_dim, cfg.context_length, cfg.rope_theta)
                     if cfg.positions == "rope" else None)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, cache: KVCache | None = None,
                keep_states: bool = False, start: int = 0, stop: int | None = None,
                aux: dict | None = None) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """The hidden states after blocks [start, stop) (default: all), and with `keep_states`
        every block's output (the input first). Blocks add auxiliary losses to `aux`, if given."""
        rope = self.rope(positions) if self.rope is not None else None
        states = [x] if keep_states else None
        for i in range(start, len(self.blocks) if stop is None else stop):
            out = self.blocks[i](x, rope, cache, i, positions=positions, aux=aux)
            rate = self.drop_rates[i]
            if self.training and rate > 0:
                keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= rate
                out = torch.where(keep, out, x)
            x = out
            if states is not None:
                states.append(x)
        return x, states
