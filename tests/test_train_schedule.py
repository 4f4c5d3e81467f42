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


def test_mid_run_value_and_time_based_variant():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, warmup_steps=3)
    # step 42 of 80: post-warmup progress (42 - 3) / (80 - 1 - 3) on the cosine
    assert lr_at(42, 80, cfg) == pytest.approx(1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * 39 / 76)) / 2,
                                               rel=1e-12)
    assert lr_at(1, 1, cfg) == 1e-5  # a one-step run is its own last step
    assert lr_at_time(1, 0.0, cfg) == pytest.approx(2e-3 / 3)
    assert lr_at_time(10, 1.0, cfg) == 1e-5
    assert lr_at_time(10, 0.5, cfg) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))


# Boundaries of every schedule: lr 1e-3, min_lr 1e-4, 20 warmup steps, 101 steps (steps 20..100
# decay, 80 steps of post-warmup progress). Expected values are written out from the definitions.
LR, MIN, W, N = 1e-3, 1e-4, 20, 101
WSD_COOL = 0.25  # the cool-down is steps 80..100 (the last quarter of the 80 post-warmup steps)


def sched(name: str, **kw) -> TrainConfig:
    return TrainConfig(lr=LR, min_lr=MIN, warmup_steps=W, schedule=name, **kw)


def cool(q: float, shape: str) -> float:
    """Independent cool-down values: the fraction of (LR - MIN) left at cool-down progress q."""
    return {"linear": 1 - q, "cosine": (1 + math.cos(math.pi * q)) / 2, "1-sqrt": 1 - q ** 0.5}[shape]


@pytest.mark.parametrize("name, cfg_kw, expected", [
    # step: expected rate; 0 first step, 19 end of warmup, 20 start of decay, 100 last step
    ("cosine", {}, {20: LR, 60: MIN + (LR - MIN) / 2, 100: MIN}),
    ("linear", {}, {20: LR, 40: MIN + (LR - MIN) * 0.75, 100: MIN}),
    ("constant", {}, {20: LR, 60: LR, 100: LR}),
    ("inverse_sqrt", {}, {20: LR * math.sqrt(20 / 21), 79: LR * math.sqrt(20 / 80),
                          100: LR * math.sqrt(20 / 101)}),
    *[("wsd", {"cooldown_fraction": WSD_COOL, "cooldown_shape": shape},
       {20: LR, 79: LR, 80: LR, 85: MIN + (LR - MIN) * cool(0.25, shape),
        90: MIN + (LR - MIN) * cool(0.5, shape), 100: MIN})
      for shape in ("linear", "cosine", "1-sqrt")],
])
def test_schedule_boundaries(name, cfg_kw, expected):
    cfg = sched(name, **cfg_kw)
    assert lr_at(0, N, cfg) == pytest.approx(LR / W, rel=1e-12)  # first step: 1/W of the peak
    assert lr_at(W - 1, N, cfg) == LR  # end of warmup: exactly the peak
    for step, want in expected.items():
        assert lr_at(step, N, cfg) == pytest.approx(want, rel=1e-12), step
    if name not in ("constant", "inverse_sqrt"):
        assert lr_at(N - 1, N, cfg) == MIN  # exactly min_lr at the last step
    lrs = [lr_at(s, N, cfg) for s in range(W, N)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # never rising after warmup


def test_wsd_cooldown_shapes_differ_and_inverse_sqrt_floors_at_min_lr():
    mid = {s: lr_at(90, N, sched("wsd", cooldown_fraction=WSD_COOL, cooldown_shape=s))
           for s in ("linear", "cosine", "1-sqrt")}
    assert mid["1-sqrt"] < mid["linear"] == pytest.approx(mid["cosine"])
    assert lr_at(85, N, sched("wsd", cooldown_fraction=WSD_COOL, cooldown_shape="cosine")) > \
        lr_at(85, N, sched("wsd", cooldown_fraction=WSD_COOL, cooldown_shape="linear"))
    floored = TrainConfig(lr=LR, min_lr=5e-4, warmup_steps=W, schedule="inverse_sqrt")
    assert lr_at(60, N, floored) == pytest.approx(LR * math.sqrt(20 / 61))  # 5.7e-4, above the floor
    assert lr_at(100, N, floored) == 5e-4  # 1e-3 * sqrt(20 / 101) = 4.45e-4 is below it


def test_minutes_only_variant_follows_elapsed_fraction_for_every_schedule():
    wsd = sched("wsd", cooldown_fraction=WSD_COOL, cooldown_shape="1-sqrt")
    assert lr_at_time(5, 0.0, wsd) == pytest.approx(LR * 6 / W)  # still warming up, by steps
    assert lr_at_time(30, 0.75, wsd) == LR  # cool-down starts at 3/4 of the time budget
    assert lr_at_time(30, 0.875, wsd) == pytest.approx(MIN + (LR - MIN) * (1 - 0.5 ** 0.5))
    assert lr_at_time(30, 1.0, wsd) == MIN
    assert lr_at_time(79, 0.3, sched("inverse_sqrt")) == pytest.approx(LR * 0.5)  # by step, not time
    assert lr_at_time(30, 0.5, sched("linear")) == pytest.approx(MIN + (LR - MIN) * 0.5)


@pytest.mark.parametrize("override, message", [
    ("train.schedule=step", "bad value 'step' for 'train.schedule'; valid choices: constant, cosine, "
                            "inverse_sqrt, linear, wsd"),
    ("train.cooldown_shape=exp", "bad value 'exp' for 'train.cooldown_shape'; valid choices: 1-sqrt, "
                                 "cosine, linear"),
    ("train.cooldown_fraction=0", "train.cooldown_fraction must be in (0, 1], got 0.0"),
])
def test_bad_schedule_settings_are_refused(override, message):
    from stlm.config.loader import ConfigError, compose_config

    with pytest.raises(ConfigError) as info:
        compose_config([override])
    assert str(info.value) == message


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
