"""Log-likelihood of continuations given contexts, batched: the one scoring rule behind
minimal pairs, multiple-choice tasks and the lm-evaluation-harness adapter.

A request is (context ids, continuation ids). The model reads context + continuation[:-1] and we
sum the log-probabilities it gives each continuation token, as lm-evaluation-harness does. Inputs
longer than the model's context are cut from the left; the continuation is always kept whole.
Requests are sorted by length so each batch pads little; padding goes on the right, where causal
attention cannot see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Score:
    logprob: float  # summed log-probability of the continuation, in nats
    is_greedy: bool  # every continuation token was the model's argmax
    n_tokens: int


@torch.no_grad()
def score_continuations(model: torch.nn.Module, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                        batch_size: int = 64, device: torch.device | str | None = None) -> list[Score]:
    if device is None:
        device = next(model.parameters()).device
    max_len = model.cfg.context_length + 1
    seqs: list[tuple[list[int], int]] = []  # (tokens, number of continuation tokens)
    for ctx, cont in requests:
        if len(cont) == 0:
            raise ValueError("a continuation must have at least one token")
        if len(ctx) == 0:
            raise ValueError("a context must have at least one token (use the end-of-text id)")
        full = (list(ctx) + list(cont))[-max_len:]
        seqs.append((full, min(len(cont), len(full) - 1)))
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0]))
    results: list[Score | None] = [None] * len(seqs)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(seqs[i][0]) for i in idx) - 1
            inp = torch.zeros(len(idx), width, dtype=torch.long)
            for row, i in enumerate(idx):
                toks = seqs[i][0][:-1]
                inp[row, : len(toks)] = torch.tensor(toks)
            logp = F.log_softmax(model(inp.to(device)).float(), dim=-1)
            for row, i in enumerate(idx):
                toks, n_cont = seqs[i]
                n_in = len(toks) - 1
                target = torch.tensor(toks[-n_cont:], device=device)
                lp = logp[row, n_in - n_cont : n_in]
                picked = lp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
                greedy = bool((lp.argmax(-1) == target).all())
                results[i] = Score(float(picked.sum()), greedy, n_cont)
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]
