"""Early-exit losses (LayerSkip: Elhoushi et al., 2024, "LayerSkip: Enabling Early Exit
Inference and Self-Speculative Decoding", arXiv 2404.16710).

The token head applied, besides the last layer, to every earlier layer's output, so that exiting
after any layer predicts the next token: with the layer dropout of `model.layer_dropout` this
trains the model for early exit and self-speculative decoding (`stlm.speculative`). Layer l
(1-based, of L) gets the paper's weight scale * sum_{i<=l} i, normalised over l = 1..L so the
early exits' weights add up to `early_exit_scale` times the share they have in the paper; the
last layer's exit is the ordinary next-token loss. Each exit's loss is reported as `exit_<l>`.

The curriculum (`model.early_exit_curriculum`, the paper's section 4.2) decides which early exits
are trained at a step; a disabled exit is not computed (that is the compute it saves) and keeps
its weight when enabled (weights are not renormalised over the enabled exits):

- `none`: every exit at every step.
- `rotational` (C_rot,R): the exit after 0-based layer i at step t when i mod R == t mod R
  (R = `model.early_exit_rotation`), so each exit trains every R-th step.
- `gradual` (C_grad): exits are switched on one at a time from the last layer down; the exit
  after 0-based layer i is on once i > ceil(L - 1 - progress * L / ramp), so none is on at the
  start and all are on after `early_exit_ramp` of training (the paper's T/(2L) per layer: 0.5).

The model learns where training is from `LanguageModel.set_training_progress(step, progress)`,
which the trainer calls before every step (a pure function of the step and the planned run, so a
resumed run trains the same exits).
"""

from __future__ import annotations

import math

import torch

from stlm.config.schema import ModelConfig
from stlm.models.components.heads import TokenHead, next_token_loss
from stlm.models.output import HeadLoss
from stlm.models.registry import register

CURRICULA = ("none", "rotational", "gradual")


def exit_weights(n_layers: int, scale: float) -> list[float]:
    """Weights of the exits after layers 1 .. L-1 (the last layer's loss has weight 1)."""
    raw = [sum(range(1, l + 1)) for l in range(1, n_layers + 1)]
    total = sum(raw)
    return [scale * r / total for r in raw[:-1]]


def enabled_exits(cfg: ModelConfig, step: int, progress: float) -> list[bool]:
    """Whether the exit after each of the first L - 1 layers is trained at `step`, at `progress`
    (the fraction of the planned run done), under `cfg.early_exit_curriculum`."""
    n, kind = cfg.n_layers, cfg.early_exit_curriculum
    if kind == "none":
        return [True] * (n - 1)
    if kind == "rotational":
        r = cfg.early_exit_rotation
        return [i % r == step % r for i in range(n - 1)]
    if kind == "gradual":
        lowest = math.ceil(n - 1 - min(max(progress, 0.0), 1.0) * n / cfg.early_exit_ramp)
        return [i > lowest for i in range(n - 1)]
    raise ValueError(f"unknown early-exit curriculum {kind!r}; valid choices: {', '.join(CURRICULA)}")


@register("head", "early_exit")
class EarlyExitHead(TokenHead):
    """The token head plus a next-token loss at every earlier layer's exit that the curriculum
    enables at this step."""

    wants_hidden_states = True  # the model passes every block's output to `loss`

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__(cfg, vocab_size)
        self.cfg = cfg
        self.weights = exit_weights(cfg.n_layers, cfg.early_exit_scale)
        self.set_training_progress(0, 0.0)

    def set_training_progress(self, step: int, progress: float) -> None:
        """Choose the exits trained at the 0-based optimizer step `step` (the curriculum)."""
        self.enabled = enabled_exits(self.cfg, step, progress)

    def loss(self, h, targets, loss_mask=None, logits=None,
             hidden_states: list[torch.Tensor] | None = None) -> HeadLoss:
        out = super().loss(h, targets, loss_mask, logits)
        for layer, (weight, on) in enumerate(zip(self.weights, self.enabled), start=1):
            if not on:
                continue
            name = f"exit_{layer}"  # hidden_states[0] is the embedding
            out.aux_losses[name] = next_token_loss(self(hidden_states[layer]), targets, loss_mask)
            out.aux_weights[name] = weight
        return out
