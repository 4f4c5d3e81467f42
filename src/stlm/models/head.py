"""The LM head: final norm, then a linear map to vocabulary logits (optionally tied to the
input embedding, Press & Wolf, 2017, arXiv 1608.05859)."""

from __future__ import annotations

import torch
from torch import nn

from stlm.config.schema import ModelConfig
from stlm.models.components.norms import build_norm


class LMHead(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.norm = build_norm(cfg)
        self.linear = nn.Linear(cfg.d_model, vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))
