"""Training: the loop (`trainer`), its machine setup (`setup`), budget and schedule, checkpoints,
metrics, resumption and the final report. `run_training(cfg)` runs all of it."""

from stlm.train.run import run_training
from stlm.train.trainer import Trainer, TrainingDiverged, TrainState

__all__ = ["Trainer", "TrainingDiverged", "TrainState", "run_training"]
