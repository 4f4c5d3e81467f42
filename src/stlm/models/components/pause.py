"""Pause tokens (Goyal et al., 2023, "Think before you speak: Training Language Models With Pause
Tokens", arXiv 2310.02226).

A pause is an input position with no text: one learnable vector instead of a token embedding,
so the model gets extra computation (one more position in every layer) before it must predict
the next real token. Pauses are input ids equal to `PAUSE_ID` (negative, so no tokenizer id and
no row of the head's vocabulary: the head never predicts a pause, and the output vocabulary stays
the tokenizer's). Training inserts them at random positions (`stlm.data.transforms.pauses`,
`model.pause_fraction`) with no loss on predicting them; the prediction of the next real token is
read at the last pause before it. At inference `model.pause_tokens` = K pauses are appended after
the prompt (`stlm.generate`) and before each scored continuation (`stlm.eval.scoring`).

The pause vector replaces the embedder's whole output at a pause position (the embedder runs on
id 0 there), so it works with every embedder; with absolute position embeddings a pause carries
no position vector (the real tokens after it keep theirs, counted with the pauses).
"""

from __future__ import annotations

import torch
from torch import nn

from stlm.config.schema import ModelConfig

PAUSE_ID = -1  # the input id of a pause


class PauseEmbedding(nn.Module):
    """One learnable d_model vector used at every pause position."""

    param_category = "embedding"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.vector = nn.Parameter(torch.empty(cfg.d_model))
        nn.init.normal_(self.vector, 0.0, cfg.init_std)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, embedder: nn.Module) -> torch.Tensor:
        """The embedder's output for ids (B, T), with the pause vector where ids == PAUSE_ID."""
        is_pause = ids == PAUSE_ID
        x = embedder(ids.masked_fill(is_pause, 0), positions)
        return torch.where(is_pause.unsqueeze(-1), self.vector.to(x.dtype), x)
