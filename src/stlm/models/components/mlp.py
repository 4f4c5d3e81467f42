"""Feed-forward blocks: SwiGLU (Shazeer, 2020, arXiv 2002.05202) as in Llama, the GPT-2 GELU MLP,
and the ReLU-squared MLP (So et al., 2021, Primer, arXiv 2109.08668)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stlm.config.schema import ModelConfig
from stlm.models.registry import register


@register("ffn", "swiglu")
class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)); three d_model x d_ff matrices."""

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.down_proj.is_residual_projection = True
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class TwoLayerMLP(nn.Module):
    """down(act(up(x))); two d_model x d_ff matrices. Subclasses choose `act`."""

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0):
        super().__init__()
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.down_proj.is_residual_projection = True
        self.dropout = nn.Dropout(cfg.dropout)

    def act(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(self.act(self.up_proj(x))))


@register("ffn", "gelu")
class GeluMLP(TwoLayerMLP):
    """GPT-2's MLP: down(gelu(up(x)))."""

    def act(self, h: torch.Tensor) -> torch.Tensor:
        return F.gelu(h, approximate="tanh")


@register("ffn", "relu2")
class ReluSquaredMLP(TwoLayerMLP):
    """down(relu(up(x))^2): Primer's squared ReLU, used by the modded-nanogpt speed-run."""

    def act(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h).square()
