"""Optimizers as registered builders (`base`: the registry, the optimizer set the trainer drives,
AdamW) and the built-in ones beyond AdamW (`muon`). Importing this package registers them all."""

from stlm.train.optim import muon  # noqa: F401  (registers "muon")
from stlm.train.optim.base import (OPTIMIZERS, OptimizerSet, adamw, build_optimizer, decay_groups,
                                   register_optimizer)

__all__ = ["OPTIMIZERS", "OptimizerSet", "adamw", "build_optimizer", "decay_groups", "register_optimizer"]
