"""Batch transforms: registered functions that rewrite a training batch before the model sees it
(pause tokens inserted at random positions, ...), so a capability that changes what the model is
trained on is a new file plus a registration, not an edit of the trainer.

A builder (`@batch_transform(name)`) takes the run configuration and returns a transform, or None
when the run does not use it (the model asks for no pauses). A transform maps (batch, rng) to a
new `Batch`; `rng` is a numpy generator seeded by (seed, batch index, rank), so a transformed
batch is as much a pure function of the step as the batch itself and a resumed run sees the same
batches.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from stlm.batch import Batch
from stlm.registry import registrar

Transform = Callable[[Batch, np.random.Generator], Batch]
BATCH_TRANSFORMS: dict[str, Callable[..., Transform | None]] = {}

batch_transform = registrar(BATCH_TRANSFORMS)

SALT = 0x5EED  # keeps the transforms' random stream apart from the batch sampler's


def build_batch_transforms(cfg) -> list[Transform]:
    """The transforms the run configuration `cfg` asks for, in registration order."""
    return [t for builder in BATCH_TRANSFORMS.values() if (t := builder(cfg)) is not None]


class TransformedBatches:
    """A batch source (`batch(index)`) whose batches pass through `transforms`; unchanged (the
    source itself is returned by `with_transforms`) when there are none."""

    def __init__(self, source, transforms: list[Transform], seed: int, rank: int = 0):
        self.source, self.transforms, self.seed, self.rank = source, transforms, seed, rank

    def __getattr__(self, name: str):
        return getattr(self.source, name)

    def batch(self, index: int) -> Batch:
        return self.apply(self.source.batch(index), index)

    def apply(self, batch: Batch, index: int) -> Batch:
        rng = np.random.default_rng([self.seed, index, self.rank, SALT])
        for transform in self.transforms:
            batch = transform(batch, rng)
        return batch


def with_transforms(source, cfg, rank: int = 0):
    """`source` with the batch transforms of run configuration `cfg` applied (seeded by cfg.seed)."""
    transforms = build_batch_transforms(cfg)
    return TransformedBatches(source, transforms, cfg.seed, rank) if transforms else source
