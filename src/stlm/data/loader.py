"""Batches of token windows from a prepared split (`stlm.batch.Batch`): targets are the ids
shifted by one token.

Training batches are a pure function of (seed, step, rank), so a resumed run sees exactly the
batches it would have seen. `random`: contiguous windows at uniformly random offsets, as in
nanoGPT, drawn from `np.random.default_rng([seed, step, rank])` (each rank its own stream).
`sequential`: a pass over non-overlapping windows in order, wrapping at the end; window j belongs
to rank j % world_size, so ranks are strictly disjoint. `eval_batches` is a deterministic
sequential pass for validation loss and bits-per-byte.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from stlm.batch import Batch
from stlm.data.prepare import PreparedData
from stlm.data.shards import ShardedTokens
from stlm.errors import UserError

MODES = ("random", "sequential")


def _windows(tokens: ShardedTokens, starts: Sequence[int], context: int) -> Batch:
    rows = torch.from_numpy(np.stack([tokens[s:s + context + 1] for s in starts]).astype(np.int64))
    return Batch(rows[:, :-1].contiguous(), rows[:, 1:].contiguous())


def _check_size(tokens: ShardedTokens, split: str, windows: int, context: int, need: int) -> None:
    if windows < need:
        raise UserError(f"the {split} split has {len(tokens):,} tokens: too few for {need} window(s) of "
                        f"context {context} (+1); lower the context length or prepare more data")


class TokenBatches:
    """Training batches of `batch_size` windows of `context` tokens for one rank."""

    def __init__(self, data: PreparedData, split: str, batch_size: int, context: int, seed: int,
                 mode: str = "random", rank: int = 0, world_size: int = 1):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.tokens = data.tokens(split)
        self.batch_size, self.context, self.seed = batch_size, context, seed
        self.mode, self.rank, self.world_size = mode, rank, world_size
        if mode == "random":
            _check_size(self.tokens, split, len(self.tokens) - context, context, 1)
        else:  # a multiple of world_size, so window j always belongs to rank j % world_size
            whole = (len(self.tokens) - 1) // context
            self.n_windows = whole // world_size * world_size
            _check_size(self.tokens, split, self.n_windows, context, world_size)

    def starts(self, step: int, rank: int | None = None) -> np.ndarray:
        """Token offsets of the windows of step `step` for `rank` (default: this one's)."""
        b, t = self.batch_size, self.context
        rank = self.rank if rank is None else rank
        if self.mode == "random":
            rng = np.random.default_rng([self.seed, step, rank])
            return rng.integers(0, len(self.tokens) - t, size=b)
        first = step * b * self.world_size + rank
        return (first + np.arange(b) * self.world_size) % self.n_windows * t

    def batch(self, step: int) -> Batch:
        """The batch of training step `step`: ids and targets of shape (batch_size, context)."""
        return _windows(self.tokens, self.starts(step).tolist(), self.context)


def eval_batches(data: PreparedData, split: str, batch_size: int, context: int,
                 max_batches: Optional[int] = None) -> Iterator[Batch]:
    """Non-overlapping windows of `split` in order (the last batch may be smaller), at most
    `max_batches` batches (None: the whole split)."""
    tokens = data.tokens(split)
    n_windows = (len(tokens) - 1) // context
    _check_size(tokens, split, n_windows, context, 1)
    for i, first in enumerate(range(0, n_windows, batch_size)):
        if max_batches is not None and i >= max_batches:
            return
        yield _windows(tokens, [j * context for j in range(first, min(first + batch_size, n_windows))], context)
