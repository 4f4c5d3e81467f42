"""Data: sources, mixes and curricula, prepared token shards, and batches.

`prepare_data(cfg)` tokenizes a corpus into cached shards (`stlm.data.prepare`); `TokenBatches`
and `eval_batches` read them (`stlm.data.loader`). Exports load lazily, so a tokenizing worker
process that imports this package does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"PreparedData": "prepare", "prepare_data": "prepare", "TokenBatches": "loader",
            "eval_batches": "loader"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"stlm.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'stlm.data' has no attribute {name!r}")
