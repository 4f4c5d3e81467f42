"""Multi-token prediction (Gloeckle et al., 2024, "Better & Faster Large Language Models via
Multi-token Prediction", arXiv 2404.19737).

Besides the next token, k - 1 extra heads predict the tokens at t+2 .. t+k from the same trunk
state, sharing the final norm and the unembedding with the next-token head. Their losses are
auxiliary (`mtp_t+2`, ... each weighted by `model.mtp_weight`); inference, scoring and
generation use the next-token head only, so a multi-token model evaluates like any other.
Simplification for tiny models: each extra head is a residual feed-forward block of the model's
FFN kind (the paper uses a transformer layer), so the heads need no attention, positions or cache.
"""

from __future__ import annotations

import torch
from torch import nn

from stlm.config.schema import ModelConfig
from stlm.models.components.heads import TokenHead, next_token_loss
from stlm.models.components.norms import build_norm
from stlm.models.output import HeadLoss
from stlm.models.registry import lookup, register


class ResidualFFN(nn.Module):
    """h + ffn(norm(h)): one extra prediction head's own computation."""

    param_category = "head"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = build_norm(cfg)
        self.ffn = lookup("ffn", cfg.ffn)(cfg, 0)
        self.norm.param_category = self.ffn.param_category = "head"

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.ffn(self.norm(h))


@register("head", "multi_token")
class MultiTokenHead(TokenHead):
    """The token head plus `mtp_tokens - 1` heads for the tokens after the next."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__(cfg, vocab_size)
        if cfg.mtp_tokens < 2:
            raise ValueError(f"head=multi_token predicts model.mtp_tokens >= 2 tokens per position, "
                             f"got {cfg.mtp_tokens}; use head=token for next-token prediction only")
        self.weight = cfg.mtp_weight
        self.extra = nn.ModuleList(ResidualFFN(cfg) for _ in range(cfg.mtp_tokens - 1))

    def loss(self, h, targets, loss_mask=None, logits=None) -> HeadLoss:
        out = super().loss(h, targets, loss_mask, logits)
        for offset, block in enumerate(self.extra, start=1):
            if h.shape[1] <= offset:  # too short a window to have a token that far ahead
                continue
            name = f"mtp_t+{offset + 1}"  # position t predicts targets[t + offset] = token t+offset+1
            mask = None if loss_mask is None else loss_mask[:, offset:]
            out.aux_losses[name] = next_token_loss(self(block(h[:, :-offset])), targets[:, offset:], mask)
            out.aux_weights[name] = self.weight
        return out
