"""Dropout schedules: every shape at its boundaries, every dropout of the model follows the rate,
p=0 is deterministic in train mode, and the trainer applies the schedule step by step."""

from __future__ import annotations

import pytest
import torch

from stlm.config.loader import ConfigError, compose_config
from stlm.config.schema import ProgressScheduleConfig, ModelConfig
from stlm.models import build_model, dropout_rates, set_dropout
from stlm.train.dropout import scheduled

PEAK = 0.4


@pytest.mark.parametrize("shape, start, end, expected", [
    # progress: expected rate (written out from each shape's definition)
    ("constant", 0.0, 1.0, {0.0: PEAK, 0.5: PEAK, 0.99: PEAK}),
    ("early", 0.0, 0.25, {0.0: PEAK, 0.24: PEAK, 0.25: 0.0, 0.99: 0.0}),
    ("late", 0.6, 1.0, {0.0: 0.0, 0.59: 0.0, 0.6: PEAK, 0.99: PEAK}),
    ("linear_up", 0.2, 0.6, {0.0: 0.0, 0.2: 0.0, 0.3: PEAK / 4, 0.4: PEAK / 2, 0.6: PEAK, 0.99: PEAK}),
    ("linear_down", 0.2, 0.6, {0.0: PEAK, 0.2: PEAK, 0.5: PEAK / 4, 0.6: 0.0, 0.99: 0.0}),
    ("triangular", 0.2, 0.6, {0.0: 0.0, 0.2: 0.0, 0.3: PEAK / 2, 0.4: PEAK, 0.5: PEAK / 2, 0.6: 0.0,
                              0.99: 0.0}),
    ("cosine_down", 0.2, 0.6, {0.0: PEAK, 0.2: PEAK, 0.4: PEAK / 2, 0.6: 0.0, 0.99: 0.0}),
])
def test_dropout_schedule_boundaries(shape, start, end, expected):
    cfg = ProgressScheduleConfig(shape=shape, start=start, end=end)
    for progress, want in expected.items():
        assert scheduled(progress, PEAK, cfg) == pytest.approx(want, abs=1e-12), progress


def tiny_model(dropout: float):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, context_length=16, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                      dropout=dropout)
    return build_model(cfg).train()


def test_set_dropout_reaches_every_dropout_and_changes_the_forward():
    model = tiny_model(0.1)
    attn = model.core.blocks[0].attn
    assert dropout_rates(model) == {0.1}
    set_dropout(model, 0.3)
    assert dropout_rates(model) == {0.3} and attn.dropout == 0.3  # SDPA's dropout_p too
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    x = torch.randint(0, 50, (2, 16))
    logits = lambda: model(x).logits  # noqa: E731
    assert not torch.equal(logits(), logits())  # dropout active in train mode
    set_dropout(model, 0.0)
    assert torch.equal(logits(), logits())  # p=0 in train mode: deterministic
    train_mode = logits()
    assert torch.equal(train_mode, model.eval()(x).logits)  # ... and equal to eval mode
    with pytest.raises(ValueError, match="dropout rate must be in"):
        set_dropout(model, 1.5)


def test_attention_dropout_alone_changes_the_output():
    """The SDPA attention dropout is reached, not only the nn.Dropout modules."""
    model = tiny_model(0.0)
    for block in model.core.blocks:
        block.attn.dropout = 0.5
    x = torch.randint(0, 50, (2, 16))
    assert not torch.equal(model(x).logits, model(x).logits)
    set_dropout(model, 0.0)
    assert torch.equal(model(x).logits, model(x).logits)


def test_a_model_built_with_zero_dropout_is_deterministic_in_train_mode():
    model = tiny_model(0.0)
    x = torch.randint(0, 50, (2, 16))
    torch.testing.assert_close(model(x).logits, model(x).logits, rtol=0, atol=0)


@pytest.mark.parametrize("override, message", [
    ("train.dropout_schedule.shape=cyclic", "bad value 'cyclic' for 'train.dropout_schedule.shape'; valid "
     "choices: constant, cosine_down, early, late, linear_down, linear_up, triangular"),
    ("train.dropout_schedule.end=1.5", "need 0 <= train.dropout_schedule.start <= "
     "train.dropout_schedule.end <= 1, got start=0.0, end=1.5"),
    ("model.dropout=1.0", "model.dropout must be in [0, 1), got 1.0"),
])
def test_bad_dropout_schedule_is_refused(override, message):
    with pytest.raises(ConfigError) as info:
        compose_config([override])
    assert str(info.value) == message


@pytest.mark.slow
def test_trainer_applies_the_schedule_at_every_step(tmp_path):
    from test_train_loop import tiny_overrides

    from stlm.data import prepare_data
    from stlm.runs import create_run_dir
    from stlm.train import Trainer

    cfg = compose_config(tiny_overrides(tmp_path, "dropout", "train.max_steps=10", "train.eval_every=100",
                                        "train.checkpoint_every=100", "model.dropout=0.5",
                                        "train.dropout_schedule.shape=linear_up",
                                        "train.dropout_schedule.end=0.5"))
    trainer = Trainer(cfg, create_run_dir(cfg), prepare_data(cfg.data, progress=False))
    seen = []
    trainer.model.register_forward_pre_hook(
        lambda module, args: seen.append(dropout_rates(module)) if module.training else None)
    trainer.fit()
    # step s of 10: progress s / 10, ramp 0 -> 0.5 over progress [0, 0.5]
    assert all(len(rates) == 1 for rates in seen) and len(seen) == 10
    assert [rates.pop() for rates in seen] == pytest.approx([min(s / 10 / 0.5, 1.0) * 0.5 for s in range(10)])
