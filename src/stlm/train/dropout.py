"""Progress schedules: a value that follows training progress, shaped by a registered shape. They
set the rate of every dropout in the model (`train.dropout_schedule`, below) and the distillation
weight (`train.distill.schedule`, peak `train.distill.weight`; stlm.train.losses).

The peak rate is `model.dropout`; `train.dropout_schedule` shapes it over the run, with `start`
and `end` given as fractions of the training budget (step / total steps, or the elapsed
fraction of a minutes-only budget):

- `constant`: the peak throughout (the default, and plain dropout).
- `early`: the peak until `end`, then 0 (early dropout, Liu et al., 2023, arXiv 2303.01500: it
  counters underfitting by lowering gradient variance early in training).
- `late`: 0 until `start`, then the peak (Liu et al.'s late dropout, for overfitting models).
- `linear_up` / `linear_down`: a linear ramp from 0 to the peak (or back) between `start` and
  `end`, flat outside it (the STLM repository's "linear" scheduler).
- `triangular`: 0 at `start`, the peak halfway, 0 again at `end`, 0 outside (the STLM
  repository's "triangle").
- `cosine_down`: the peak until `start`, half a cosine down to 0 at `end`, 0 after (the
  learning-rate schedule's cosine shape, stlm.train.schedule).

The rate is a pure function of progress, so a resumed run follows the same curve.
"""

from __future__ import annotations

from typing import Callable

from stlm.config.schema import ProgressScheduleConfig
from stlm.registry import registrar
from stlm.train.schedule import COOLDOWN_SHAPES

# A shape maps (progress in [0, 1], the schedule's config) to a fraction of the peak rate.
DropoutShape = Callable[[float, ProgressScheduleConfig], float]
DROPOUT_SCHEDULES: dict[str, DropoutShape] = {}


dropout_schedule = registrar(DROPOUT_SCHEDULES)  # a shape under `train.dropout_schedule.shape=name`


def _ramp(p: float, c: ProgressScheduleConfig) -> float:
    """0 before `start`, 1 after `end`, linear in between."""
    if p <= c.start:
        return 0.0
    if p >= c.end:
        return 1.0
    return (p - c.start) / (c.end - c.start)


@dropout_schedule("constant")
def _constant(p: float, c: ProgressScheduleConfig) -> float:
    return 1.0


@dropout_schedule("early")
def _early(p: float, c: ProgressScheduleConfig) -> float:
    return 1.0 if p < c.end else 0.0


@dropout_schedule("late")
def _late(p: float, c: ProgressScheduleConfig) -> float:
    return 1.0 if p >= c.start else 0.0


@dropout_schedule("linear_up")
def _linear_up(p: float, c: ProgressScheduleConfig) -> float:
    return _ramp(p, c)


@dropout_schedule("linear_down")
def _linear_down(p: float, c: ProgressScheduleConfig) -> float:
    return 1.0 - _ramp(p, c)


@dropout_schedule("triangular")
def _triangular(p: float, c: ProgressScheduleConfig) -> float:
    if p <= c.start or p >= c.end:
        return 0.0
    return 1.0 - abs(2.0 * _ramp(p, c) - 1.0)


@dropout_schedule("cosine_down")
def _cosine_down(p: float, c: ProgressScheduleConfig) -> float:
    return COOLDOWN_SHAPES["cosine"](_ramp(p, c))


def scheduled(progress: float, peak: float, cfg: ProgressScheduleConfig) -> float:
    """The scheduled value (a dropout rate, a distillation weight) at `progress` in [0, 1] of
    training, for the peak `peak`."""
    return peak * DROPOUT_SCHEDULES[cfg.shape](min(max(progress, 0.0), 1.0), cfg)
