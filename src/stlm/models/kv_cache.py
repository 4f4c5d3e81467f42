"""Key/value cache for incremental decoding: each layer keeps the keys and values it has seen.

The cache is indexed by layer position, not by module, so layers that share one attention module
(ALBERT-style sharing) still keep separate caches.

A layer that processes only some tokens (a mixture-of-depths routed block) holds, per row, the
keys and values of its routed tokens only; rows of a batch route different numbers of tokens, so
such a layer also records each slot's absolute position (`slot_positions`, -1 for a padding
slot), and attention masks the padding slots out (`past_mask`).
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        # (B, slots) absolute position of each cached slot, for layers that record them (-1: padding)
        self.slot_positions: list[torch.Tensor | None] = [None] * n_layers
        self.length = 0  # tokens already cached (the position of the next token)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's (B, H, T, D) keys and values; return everything cached so far."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def layer_length(self, layer: int) -> int:
        """Slots cached in `layer`: the position count, except where early exit skipped layers or
        a routed layer holds only its routed tokens (plus padding)."""
        return 0 if self.keys[layer] is None else self.keys[layer].shape[2]

    def record_positions(self, layer: int, positions: torch.Tensor) -> None:
        """The absolute positions (B, T) of the slots the last `update` of `layer` appended
        (-1: a padding slot that no query may attend to)."""
        old = self.slot_positions[layer]
        self.slot_positions[layer] = positions if old is None else torch.cat([old, positions], dim=1)

    def past_mask(self, layer: int) -> torch.Tensor | None:
        """(B, slots) True where a cached slot of `layer` is a real token; None: all are."""
        pos = self.slot_positions[layer]
        return None if pos is None else pos >= 0

    def advance(self, n: int) -> None:
        self.length += n

    def crop(self, length: int) -> None:
        """Forget positions >= length (e.g. to roll back a speculative step)."""
        for i, (k, v) in enumerate(zip(self.keys, self.values)):
            if k is None:
                continue
            pos = self.slot_positions[i]
            if pos is None:
                self.keys[i], self.values[i] = k[:, :, :length], v[:, :, :length]
                continue
            pos = torch.where(pos < length, pos, -1)  # later slots become padding ...
            valid = (pos >= 0).any(dim=0).nonzero()
            keep = int(valid[-1]) + 1 if len(valid) else 0  # ... and trailing padding is dropped
            self.keys[i], self.values[i], self.slot_positions[i] = k[:, :, :keep], v[:, :, :keep], pos[:, :keep]
        self.length = min(self.length, length)

    def select(self, index: torch.Tensor) -> KVCache:
        """A cache whose row i is row `index[i]` of this one (one prefix under several remainders)."""
        sub = KVCache(len(self.keys))
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        sub.keys = [pick(k) for k in self.keys]
        sub.values = [pick(v) for v in self.values]
        sub.slot_positions = [pick(p) for p in self.slot_positions]
        sub.length = self.length
        return sub
