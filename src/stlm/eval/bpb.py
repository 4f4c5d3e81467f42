"""Bits per byte: a tokenizer-independent measure of how well a model predicts text.

bpb = (total negative log-likelihood of the target tokens, in bits) / (UTF-8 bytes of the text
those targets spell). The byte count of a target id is `tokenizer.byte_lengths()[id]`: special
tokens (end-of-text) are 0 bytes, so document separators never inflate the denominator (the STLM
code counted pad symbols' text as characters, which flattered byte-level models). Their
prediction cost still counts in the numerator, identically for every tokenizer, since each must
predict where a document ends. Targets equal to IGNORE_INDEX (padding), or outside a batch's
`loss_mask`, count in neither. A model uniform over the 257 ids of the byte tokenizer scores
log2(257) bits per byte. Log-probabilities come from the model's public `logprobs` call.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
from torch import nn

from stlm.batch import IGNORE_INDEX, Batch


@torch.no_grad()
def bits_per_byte(model: nn.Module, batches: Iterable[Batch], byte_lengths: np.ndarray | torch.Tensor, *,
                  autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Evaluate `model` on batches: mean loss (nats per token), bpb, and the numbers of scored
    tokens and bytes. `autocast_dtype`: e.g. torch.bfloat16 on GPU."""
    device = next(model.parameters()).device
    lengths = torch.as_tensor(np.asarray(byte_lengths), dtype=torch.long, device=device)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    n_tokens = torch.zeros((), dtype=torch.long, device=device)
    n_bytes = torch.zeros((), dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            batch = batch.to(device)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logp, _ = model.logprobs(batch.ids, batch.targets, **batch.extras)
            scored = batch.targets != IGNORE_INDEX
            if batch.loss_mask is not None:
                scored &= batch.loss_mask
            nll -= logp[scored].sum(dtype=torch.float64)
            n_tokens += scored.sum()
            n_bytes += lengths[batch.targets[scored]].sum()
    finally:
        model.train(was_training)
    tokens, nbytes = int(n_tokens), int(n_bytes)
    if tokens == 0:
        raise ValueError("bits_per_byte got no target tokens to score")
    total = float(nll)
    return {"loss": total / tokens, "bpb": total / math.log(2) / nbytes if nbytes else float("nan"),
            "tokens": tokens, "bytes": nbytes}
