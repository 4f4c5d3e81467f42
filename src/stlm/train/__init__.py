"""Training: the loop (`trainer`), its machine setup (`setup`), optimizers (`optim`), budget and
schedule, checkpoints, metrics, resumption and the final report. `run_training(cfg)` runs all of
it. The names below load lazily, so importing a light submodule (e.g. `stlm.train.optim` from
config validation) does not import the whole trainer."""

from __future__ import annotations

import importlib

_EXPORTS = {"run_training": "stlm.train.run", "Trainer": "stlm.train.trainer",
            "TrainingDiverged": "stlm.train.trainer", "TrainState": "stlm.train.trainer"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stlm.train' has no attribute {name!r}")
