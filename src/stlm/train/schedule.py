"""Learning-rate schedules: linear warmup, then one of a small registry of decay shapes.

- `cosine`: half a cosine from `lr` down to `min_lr` (Loshchilov & Hutter, 2016, arXiv 1608.03983).
- `linear`: a straight line from `lr` down to `min_lr`.
- `wsd`: warmup-stable-decay (Hu et al., 2024, MiniCPM, arXiv 2404.06395; Hägele et al., 2024,
  arXiv 2405.18392): `lr` held flat, then a cool-down to `min_lr` over the last `cooldown_fraction`
  of the post-warmup run, shaped `linear`, `cosine` or `1-sqrt` (Hägele et al.'s best).
- `constant`: `lr` throughout.
- `inverse_sqrt`: `lr * sqrt(W / (step + 1))` with W = max(warmup_steps, 1) (Vaswani et al., 2017),
  continuous with the warmup's end and floored at `min_lr`; it needs no run length.

The rate is a pure function of (step, total_steps): resuming at step N gives the same rate as an
uninterrupted run, and the last step (total_steps - 1) of a decaying schedule gets exactly
`min_lr`. A run budgeted only in wall-clock minutes passes a time-based `progress` fraction
instead of a step count (`lr_at_time`).
"""

from __future__ import annotations

import math
from typing import Callable

from stlm.config.schema import TrainConfig
from stlm.registry import registrar

# A shape maps (post-warmup progress in [0, 1], 0-based step, config) to the rate.
Shape = Callable[[float, int, TrainConfig], float]
LR_SCHEDULES: dict[str, Shape] = {}
COOLDOWN_SHAPES: dict[str, Callable[[float], float]] = {
    # fraction of (lr - min_lr) left at cool-down progress q in [0, 1]
    "linear": lambda q: 1.0 - q,
    "cosine": lambda q: 0.5 * (1.0 + math.cos(math.pi * q)),
    "1-sqrt": lambda q: 1.0 - math.sqrt(q),
}


lr_schedule = registrar(LR_SCHEDULES)  # a post-warmup shape under `train.schedule=name`


def _between(cfg: TrainConfig, remaining: float) -> float:
    """`min_lr` plus the `remaining` fraction of (lr - min_lr)."""
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * remaining


@lr_schedule("cosine")
def _cosine(p: float, step: int, cfg: TrainConfig) -> float:
    return _between(cfg, COOLDOWN_SHAPES["cosine"](p))


@lr_schedule("linear")
def _linear(p: float, step: int, cfg: TrainConfig) -> float:
    return _between(cfg, 1.0 - p)


@lr_schedule("constant")
def _constant(p: float, step: int, cfg: TrainConfig) -> float:
    return cfg.lr


@lr_schedule("wsd")
def _warmup_stable_decay(p: float, step: int, cfg: TrainConfig) -> float:
    q = 1.0 - (1.0 - p) / cfg.cooldown_fraction  # cool-down progress: <= 0 while stable, 1 at the end
    if q <= 0.0:
        return cfg.lr
    return _between(cfg, COOLDOWN_SHAPES[cfg.cooldown_shape](q))


@lr_schedule("inverse_sqrt")
def _inverse_sqrt(p: float, step: int, cfg: TrainConfig) -> float:
    return max(cfg.min_lr, cfg.lr * math.sqrt(max(cfg.warmup_steps, 1) / (step + 1)))


def decayed_lr(progress: float, step: int, cfg: TrainConfig) -> float:
    """The post-warmup rate at `progress` in [0, 1] (0: start of decay, 1: the last step)."""
    return LR_SCHEDULES[cfg.schedule](min(max(progress, 0.0), 1.0), step, cfg)


def warmup_lr(step: int, warmup: int, cfg: TrainConfig) -> float:
    """Linear warmup: `lr * (step + 1) / warmup`, reaching `lr` at step `warmup - 1`."""
    return cfg.lr * (step + 1) / warmup


def lr_at(step: int, total_steps: float, cfg: TrainConfig) -> float:
    """Rate for the 0-based optimizer step `step` of `total_steps` (a float for a plan projected
    from a time budget; past the end: min_lr)."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    if step < warmup:
        return warmup_lr(step, warmup, cfg)
    span = total_steps - 1 - warmup
    return decayed_lr((step - warmup) / span if span > 0 else 1.0, step, cfg)


def lr_at_time(step: int, elapsed_fraction: float, cfg: TrainConfig) -> float:
    """Rate for a minutes-only budget: warmup in steps, then decay by elapsed wall-clock fraction."""
    if step < cfg.warmup_steps:
        return warmup_lr(step, cfg.warmup_steps, cfg)
    return decayed_lr(elapsed_fraction, step, cfg)
