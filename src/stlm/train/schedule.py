"""Learning-rate schedules: linear warmup, then cosine (Loshchilov & Hutter, 2016, arXiv
1608.03983), linear or constant down to `min_lr`.

The rate is a pure function of (step, total_steps): resuming at step N gives the same rate as an
uninterrupted run, and the last step (total_steps - 1) gets exactly `min_lr`. A run budgeted only
in wall-clock minutes passes a time-based `progress` fraction instead of a step count.
"""

from __future__ import annotations

import math

from stlm.config.schema import TrainConfig


def decayed_lr(progress: float, cfg: TrainConfig) -> float:
    """The post-warmup rate at `progress` in [0, 1] (0: `lr`, 1: `min_lr`)."""
    p = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "linear":
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1.0 - p)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * p))


def lr_at(step: int, total_steps: float, cfg: TrainConfig) -> float:
    """Rate for the 0-based optimizer step `step` of `total_steps` (a float for a plan projected
    from a time budget; past the end: min_lr)."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    span = total_steps - 1 - warmup
    return decayed_lr((step - warmup) / span if span > 0 else 1.0, cfg)


def lr_at_time(step: int, elapsed_fraction: float, cfg: TrainConfig) -> float:
    """Rate for a minutes-only budget: warmup in steps, then decay by elapsed wall-clock fraction."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return decayed_lr(elapsed_fraction, cfg)
