"""The token head: a final norm, then a linear map to vocabulary logits, optionally tied to the
input embedding (Press & Wolf, 2017, arXiv 1608.05859), and optionally soft-capped:
cap * tanh(logits / cap) (`model.logit_softcap`; Gemma 2, arXiv 2408.00118, and the modded-nanogpt
speed-run), which bounds every logit smoothly to (-cap, cap).

A head turns the core's final hidden states into three things the rest of stlm uses: logits
(`forward`), the training loss (`loss`), and the log-probability of given targets
(`target_logprobs`, the scoring rule behind bits per byte and zero-shot tasks). Another head (a
byte decoder, multi-token prediction, early exit) is a class registered under kind "head" that
provides the same three calls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stlm.batch import IGNORE_INDEX
from stlm.config.schema import ModelConfig
from stlm.models.components.norms import build_norm
from stlm.models.output import HeadLoss
from stlm.models.registry import register

LOGITS_PER_CHUNK = 1 << 25  # rows x vocab computed at once when scoring (~128 MiB in float32)


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor,
                    loss_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy (float32) over the scored targets: those in `loss_mask` (all when None)
    that are not IGNORE_INDEX."""
    flat_logits = logits.float().reshape(-1, logits.shape[-1])
    flat_targets = targets.reshape(-1)
    if loss_mask is None:
        return F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE_INDEX)
    flat_targets = flat_targets.masked_fill(~loss_mask.reshape(-1), IGNORE_INDEX)
    return F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE_INDEX)


@register("head", "token")
class TokenHead(nn.Module):
    """norm -> linear to the vocabulary; `tie_target` is the matrix tying shares."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.norm = build_norm(cfg)
        self.linear = nn.Linear(cfg.d_model, vocab_size, bias=False)
        self.softcap = cfg.logit_softcap

    @property
    def tie_target(self) -> nn.Linear:
        """The vocab x d_model linear map whose weight may be the input embedding's."""
        return self.linear

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits for hidden states (..., d_model)."""
        logits = self.linear(self.norm(h))
        if self.softcap:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits

    def loss(self, h: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor | None = None,
             logits: torch.Tensor | None = None) -> HeadLoss:
        """The next-token loss; `logits` when the caller already computed them from `h`."""
        return HeadLoss(next_token_loss(self(h) if logits is None else logits, targets, loss_mask))

    def target_logprobs(self, h: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(targets | h) in float32 and whether each target is the argmax, for hidden states
        (N, d_model) and targets (N,). Computed in chunks of rows so memory stays bounded."""
        logp = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
        greedy = torch.empty(h.shape[0], dtype=torch.bool, device=h.device)
        step = max(1, LOGITS_PER_CHUNK // self.vocab_size)
        for start in range(0, h.shape[0], step):
            logits = self(h[start : start + step]).float()
            t = targets[start : start + step].clamp(min=0)
            chosen = logits.gather(-1, t[:, None])[:, 0]
            top, argmax = logits.max(-1)  # one pass gives the argmax and logsumexp's shift
            log_total = logits.sub_(top[:, None]).exp_().sum(-1).log_()  # in place: no second copy
            logp[start : start + step] = chosen - top - log_total
            greedy[start : start + step] = argmax == t
        return logp, greedy
