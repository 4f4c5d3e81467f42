"""Key/value cache for incremental decoding: each layer keeps the keys and values it has seen.

The cache is indexed by layer position, not by module, so layers that share one attention module
(ALBERT-style sharing) still keep separate caches.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.length = 0  # tokens already cached (the position of the next token)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's (B, H, T, D) keys and values; return everything cached so far."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def layer_length(self, layer: int) -> int:
        """Tokens cached in `layer`: the position count, except where early exit skipped layers."""
        return 0 if self.keys[layer] is None else self.keys[layer].shape[2]

    def advance(self, n: int) -> None:
        self.length += n

    def crop(self, length: int) -> None:
        """Forget positions >= length (e.g. to roll back a speculative step)."""
        for i, (k, v) in enumerate(zip(self.keys, self.values)):
            if k is not None:
                self.keys[i], self.values[i] = k[:, :, :length], v[:, :, :length]
        self.length = min(self.length, length)
