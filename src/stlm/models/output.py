"""What a model's forward pass returns: the one output type every head, loss and caller shares.

`loss` is what training minimises: the next-token loss plus each auxiliary loss times its weight.
`lm_loss` is the next-token cross-entropy alone, the number that is comparable across models
(logged as the training loss). Auxiliary losses are reported by name, unweighted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    logits: torch.Tensor | None = None  # (B, T, vocab); None when the head skipped them
    loss: torch.Tensor | None = None  # the training objective (targets given)
    lm_loss: torch.Tensor | None = None  # mean next-token cross-entropy (targets given)
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    hidden_states: list[torch.Tensor] | None = None  # embedder output, then each block's output


@dataclass
class HeadLoss:
    """A head's loss on one batch: the next-token loss and named auxiliary terms."""

    lm_loss: torch.Tensor
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    aux_weights: dict[str, float] = field(default_factory=dict)

    def total(self) -> torch.Tensor:
        loss = self.lm_loss
        for name, value in self.aux_losses.items():
            loss = loss + self.aux_weights.get(name, 1.0) * value
        return loss
