"""How long a run trains: a budget in optimizer steps, tokens or wall-clock minutes.

The smallest budget wins. Steps and tokens fix the number of optimizer steps up front, and the
learning-rate schedule is a function of (step, total_steps). With minutes alone, the schedule
follows the elapsed fraction of the time budget instead. With both, a safety cap in minutes on a
step budget, the schedule follows whichever fraction of its budget is larger, steps done or time
spent: while the steps are ahead it is the step schedule exactly (so a machine fast enough for
the cap trains bit for bit as without it); once time is ahead, the schedule is planned over the
steps the time allows at the pace so far (steps done / fraction of time spent), so a run the cap
cuts short still anneals to min_lr at its end (the summary then says how many of the planned
steps it did). The elapsed time is saved in checkpoints so a resumed run continues the same
schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from stlm.config.schema import TrainConfig
from stlm.errors import UserError
from stlm.train.dropout import scheduled
from stlm.train.schedule import lr_at, lr_at_time


@dataclass(frozen=True)
class Budget:
    total_steps: int | None  # None: a minutes-only budget
    max_seconds: float | None
    tokens_per_step: int
    cfg: TrainConfig
    schedule_steps: int | None = None  # steps the schedule is planned over (None: total_steps)

    def lr(self, step: int, elapsed_s: float) -> float:
        """Learning rate of the 0-based optimizer step `step`."""
        if self.total_steps is None:
            return lr_at_time(step, elapsed_s / self.max_seconds, self.cfg)
        return lr_at(step, self._plan(step, elapsed_s), self.cfg)

    def _plan(self, step: int, elapsed_s: float) -> float:
        """Steps the schedules are planned over (a step budget; fewer when time runs out first)."""
        plan: float = self.schedule_steps or self.total_steps
        if self.max_seconds is not None and step > 0:
            time_spent = elapsed_s / self.max_seconds
            if time_spent * plan > step:  # time runs out first: plan over the steps it allows
                plan = step / time_spent
        return plan

    def progress(self, step: int, elapsed_s: float) -> float:
        """Fraction of the planned run before the 0-based step `step` (by time for minutes only)."""
        if self.total_steps is None:
            return elapsed_s / self.max_seconds
        return step / self._plan(step, elapsed_s)

    def dropout(self, step: int, elapsed_s: float, peak: float) -> float:
        """Dropout rate of step `step` under `train.dropout_schedule`, for the peak `model.dropout`."""
        return scheduled(self.progress(step, elapsed_s), peak, self.cfg.dropout_schedule)

    def done(self, steps_done: int, elapsed_s: float) -> bool:
        if self.total_steps is not None and steps_done >= self.total_steps:
            return True
        return self.max_seconds is not None and elapsed_s >= self.max_seconds

    def cut_short(self, steps_done: int) -> str | None:
        """Why a step budget ended before its planned steps (the minutes cap), or None."""
        if self.total_steps is None or steps_done >= self.total_steps:
            return None
        return (f"train.max_minutes={self.cfg.max_minutes:g} stopped the run after {steps_done:,} of "
                f"{self.total_steps:,} planned steps (the schedule annealed by elapsed time)")

    def describe(self) -> str:
        parts = []
        if self.total_steps is not None:
            parts.append(f"{self.total_steps:,} steps ({self.total_steps * self.tokens_per_step:,} tokens)")
        if self.max_seconds is not None:
            parts.append(f"at most {self.max_seconds / 60:g} min")
        return ", ".join(parts)


def continue_plan(budget: Budget, saved_plan: int | None, step: int, elapsed_s: float) -> tuple[Budget, str | None]:
    """The budget of a run resumed at `step` whose checkpoint planned its schedule over
    `saved_plan` steps, and a warning when a larger budget changes the learning rate's course.
    `train.continue_schedule`: restart (plan over the new total: the rate rises again) or extend
    (keep the saved plan; min_lr beyond its end)."""
    cfg = budget.cfg
    if budget.total_steps is None or saved_plan is None or budget.total_steps <= saved_plan:
        return budget, None
    if cfg.continue_schedule == "extend":
        extended = replace(budget, schedule_steps=saved_plan)
        return extended, (f"the budget grew from {saved_plan:,} to {budget.total_steps:,} steps; the "
                          f"learning-rate schedule keeps its {saved_plan:,}-step plan and holds "
                          f"min_lr={cfg.min_lr:g} beyond it (train.continue_schedule=extend)")
    before = lr_at(max(step - 1, 0), saved_plan, cfg)
    after = budget.lr(step, elapsed_s)
    course = "rises again" if after > before else "changes"
    return budget, (f"the budget grew from {saved_plan:,} to {budget.total_steps:,} steps, so the "
                    f"learning-rate schedule is planned again over {budget.total_steps:,} steps and the "
                    f"rate {course}: {before:.3g} at step {step}, {after:.3g} next "
                    "(train.continue_schedule=restart); pass train.continue_schedule=extend to keep "
                    f"the saved plan and continue at min_lr={cfg.min_lr:g}")


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
