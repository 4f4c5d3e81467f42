"""How long a run trains: a budget in optimizer steps, tokens or wall-clock minutes.

The smallest budget wins. Steps and tokens fix the number of optimizer steps up front, and the
learning-rate schedule is a function of (step, total_steps). A minutes budget on top of those
only ends the run early (the schedule stays step-based, so it stops before reaching min_lr).
With minutes alone, the schedule follows the elapsed fraction of the time budget instead; the
elapsed time is saved in checkpoints so a resumed run continues the same schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stlm.config.schema import TrainConfig
from stlm.errors import UserError
from stlm.train.schedule import lr_at, lr_at_time


@dataclass(frozen=True)
class Budget:
    total_steps: int | None  # None: a minutes-only budget
    max_seconds: float | None
    tokens_per_step: int
    cfg: TrainConfig

    def lr(self, step: int, elapsed_s: float) -> float:
        """Learning rate of the 0-based optimizer step `step`."""
        if self.total_steps is not None:
            return lr_at(step, self.total_steps, self.cfg)
        return lr_at_time(step, elapsed_s / self.max_seconds, self.cfg)

    def done(self, steps_done: int, elapsed_s: float) -> bool:
        if self.total_steps is not None and steps_done >= self.total_steps:
            return True
        return self.max_seconds is not None and elapsed_s >= self.max_seconds

    def describe(self) -> str:
        parts = []
        if self.total_steps is not None:
            parts.append(f"{self.total_steps:,} steps ({self.total_steps * self.tokens_per_step:,} tokens)")
        if self.max_seconds is not None:
            parts.append(f"at most {self.max_seconds / 60:g} min")
        return ", ".join(parts)


def plan_budget(cfg: TrainConfig, tokens_per_step: int) -> Budget:
    """Resolve `max_steps` / `max_tokens` / `max_minutes` into a `Budget`."""
    limits = []
    if cfg.max_steps is not None:
        limits.append(cfg.max_steps)
    if cfg.max_tokens is not None:
        limits.append(math.ceil(cfg.max_tokens / tokens_per_step))
    if not limits and cfg.max_minutes is None:
        raise UserError("no training budget: set train.max_steps, train.max_tokens or train.max_minutes")
    total = min(limits) if limits else None
    if total is not None and total < 1:
        raise UserError(f"the training budget is {total} steps; raise train.max_steps or train.max_tokens")
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        raise UserError(f"train.max_minutes must be > 0, got {cfg.max_minutes}")
    seconds = cfg.max_minutes * 60.0 if cfg.max_minutes is not None else None
    return Budget(total, seconds, tokens_per_step, cfg)
