"""Run calibration text through a model while hooks gather statistics."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


@contextmanager
def hooks(pairs: list[tuple[nn.Module, Callable]], pre: bool = False) -> Iterator[None]:
    """Register forward (or forward-pre) hooks for the duration of the block."""
    handles = [(m.register_forward_pre_hook(fn) if pre else m.register_forward_hook(fn)) for m, fn in pairs]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def run_calibration(model: nn.Module, batches: Iterator[torch.Tensor]) -> int:
    """Run every batch of token ids through the model (hidden states only; hooks watch); returns
    the number of batches."""
    device = next(model.parameters()).device
    model.eval()
    n = 0
    for ids in batches:
        model.encode(ids.to(device))
        n += 1
    if n == 0:
        raise ValueError("no calibration batches")
    return n
