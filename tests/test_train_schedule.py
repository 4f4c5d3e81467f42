"""Learning-rate schedule and budget: warmup, min_lr exactly at the last step, smallest budget wins."""

import math

import pytest

from stlm.config.schema import TrainConfig
from stlm.errors import UserError
from stlm.train.budget import plan_budget
from stlm.train.schedule import lr_at, lr_at_time


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_warmup_then_decay_to_min_lr_at_last_step(schedule):
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, schedule=schedule)
    total = 100
    lrs = [lr_at(s, total, cfg) for s in range(total)]
    assert lrs[0] == pytest.approx(1e-4)  # (0 + 1) / 10 of the peak
    assert lrs[9] == pytest.approx(1e-3)  # warmup ends at the peak
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))  # rising during warmup
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # never rising after it
    assert lrs[-1] == 1e-4  # exactly min_lr at the last step
    assert min(lrs) == 1e-4


def test_cosine_midpoint_and_constant():
    cfg = TrainConfig(lr=1.0, min_lr=0.0, warmup_steps=0, schedule="cosine")
    assert lr_at(50, 101, cfg) == pytest.approx(0.5)
    const = TrainConfig(lr=2e-3, min_lr=1e-4, warmup_steps=5, schedule="constant")
    assert [lr_at(s, 20, const) for s in (5, 12, 19)] == [2e-3] * 3


def test_schedule_is_a_pure_function_and_time_based_variant():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, warmup_steps=3)
    assert lr_at(42, 80, cfg) == lr_at(42, 80, cfg)
    assert lr_at(1, 1, cfg) == 1e-5  # a one-step run is its own last step
    assert lr_at_time(1, 0.0, cfg) == pytest.approx(2e-3 / 3)
    assert lr_at_time(10, 1.0, cfg) == 1e-5
    assert lr_at_time(10, 0.5, cfg) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))


def test_budget_smallest_wins_and_requires_one():
    b = plan_budget(TrainConfig(max_steps=1000, max_tokens=10_000), tokens_per_step=512)
    assert b.total_steps == math.ceil(10_000 / 512)
    assert b.done(b.total_steps, 0.0) and not b.done(b.total_steps - 1, 0.0)
    timed = plan_budget(TrainConfig(max_steps=None, max_minutes=0.5), tokens_per_step=512)
    assert timed.total_steps is None and timed.done(3, 30.0) and not timed.done(3, 29.0)
    with pytest.raises(UserError, match="no training budget"):
        plan_budget(TrainConfig(max_steps=None), tokens_per_step=512)


def test_a_minutes_cap_on_a_step_budget_decays_by_the_larger_fraction():
    cfg = TrainConfig(max_steps=1000, max_minutes=1.0, lr=1e-2, min_lr=1e-3, warmup_steps=10)
    capped, steps_only = plan_budget(cfg, 512), plan_budget(TrainConfig(**{**cfg.__dict__, "max_minutes": None}), 512)
    # steps ahead of time (a fast machine): exactly the step schedule, whatever the clock says
    for step, elapsed in [(0, 0.0), (5, 0.2), (300, 17.9), (999, 59.0)]:
        assert capped.lr(step, elapsed) == steps_only.lr(step, elapsed)
    # time ahead (a slow machine): planned over the steps the time allows, min_lr when it runs out
    assert capped.lr(100, 30.0) == lr_at(100, 200, cfg) < steps_only.lr(100, 30.0)
    assert capped.lr(150, 59.99) == pytest.approx(1e-3, rel=1e-3)
    assert capped.cut_short(150) == ("train.max_minutes=1 stopped the run after 150 of 1,000 planned steps "
                                     "(the schedule annealed by elapsed time)")
    assert capped.cut_short(1000) is None
