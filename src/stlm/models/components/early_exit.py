"""Early-exit losses (LayerSkip: Elhoushi et al., 2024, "LayerSkip: Enabling Early Exit
Inference and Self-Speculative Decoding", arXiv 2404.16710).

The token head applied, besides the last layer, to every earlier layer's output, so that exiting
after any layer predicts the next token: with the layer dropout of `model.layer_dropout` this
trains the model for early exit and self-speculative decoding (`stlm.speculative`). Layer l
(1-based, of L) gets the paper's weight scale * sum_{i<=l} i, normalised over l = 1..L so the
early exits' weights add up to `early_exit_scale` times the share they have in the paper; the
last layer's exit is the ordinary next-token loss. Each exit's loss is reported as `exit_<l>`.
The curriculum (enabling exits on a schedule over training) is not implemented: every exit is
trained at every step.
"""

from __future__ import annotations

import torch

from stlm.config.schema import ModelConfig
from stlm.models.components.heads import TokenHead, next_token_loss
from stlm.models.output import HeadLoss
from stlm.models.registry import register


def exit_weights(n_layers: int, scale: float) -> list[float]:
    """Weights of the exits after layers 1 .. L-1 (the last layer's loss has weight 1)."""
    raw = [sum(range(1, l + 1)) for l in range(1, n_layers + 1)]
    total = sum(raw)
    return [scale * r / total for r in raw[:-1]]


@register("head", "early_exit")
class EarlyExitHead(TokenHead):
    """The token head plus a next-token loss at every earlier layer's exit."""

    wants_hidden_states = True  # the model passes every block's output to `loss`

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__(cfg, vocab_size)
        self.weights = exit_weights(cfg.n_layers, cfg.early_exit_scale)

    def loss(self, h, targets, loss_mask=None, logits=None,
             hidden_states: list[torch.Tensor] | None = None) -> HeadLoss:
        out = super().loss(h, targets, loss_mask, logits)
        for layer, weight in enumerate(self.weights, start=1):  # states[0] is the embedding
            name = f"exit_{layer}"
            out.aux_losses[name] = next_token_loss(self(hidden_states[layer]), targets, loss_mask)
            out.aux_weights[name] = weight
        return out
