"""LayerSkip's early-exit curriculum (Elhoushi et al., 2024, section 4.2): which exits are
trained at a step, at its boundaries; the trainer drives it by step; a resumed run repeats it."""

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from stlm.config import compose_config
from stlm.config.loader import ConfigError
from stlm.config.schema import ModelConfig
from stlm.models import build_model
from stlm.models.components.early_exit import enabled_exits
from tiny_runs import grammar_overrides, resume_from_step_20

L4 = ModelConfig(d_model=32, n_layers=4, n_heads=4, d_ff=64, context_length=32, head="early_exit")


def _cfg(**kw) -> ModelConfig:
    return dataclasses.replace(L4, **kw)


def test_rotational_enables_every_rth_layer_rotating_each_step():
    rot2 = _cfg(early_exit_curriculum="rotational", early_exit_rotation=2)
    assert enabled_exits(rot2, 0, 0.0) == [True, False, True]
    assert enabled_exits(rot2, 1, 0.0) == [False, True, False]
    assert enabled_exits(rot2, 2, 0.9) == [True, False, True]  # progress plays no part
    assert enabled_exits(_cfg(early_exit_curriculum="rotational", early_exit_rotation=1), 7, 0.0) == [True] * 3
    rot5 = _cfg(early_exit_curriculum="rotational", early_exit_rotation=5)  # R beyond the exits
    assert [enabled_exits(rot5, t, 0.0) for t in (0, 2, 3, 5)] == [
        [True, False, False], [False, False, True], [False, False, False], [True, False, False]]


def test_gradual_adds_exits_from_the_last_layer_down_until_the_ramp_ends():
    grad = _cfg(early_exit_curriculum="gradual", early_exit_ramp=0.5)
    # paper: exit l on once l > ceil(L - 1 - t / (T / 2L)); here L = 4, T / 2L = progress 1/8
    assert enabled_exits(grad, 0, 0.0) == [False, False, False]
    assert enabled_exits(grad, 0, 0.25 - 1e-9) == [False, False, False]
    assert enabled_exits(grad, 0, 0.25) == [False, False, True]  # ceil(3 - 2) = 1: layer 2 > 1
    assert enabled_exits(grad, 0, 0.375 - 1e-9) == [False, False, True]
    assert enabled_exits(grad, 0, 0.375) == [False, True, True]
    assert enabled_exits(grad, 0, 0.5 - 1e-9) == [False, True, True]
    assert enabled_exits(grad, 0, 0.5) == [True, True, True]
    assert enabled_exits(grad, 0, 1.0) == [True, True, True]
    whole_run = _cfg(early_exit_curriculum="gradual", early_exit_ramp=1.0)
    assert enabled_exits(whole_run, 0, 0.999) == [False, True, True]
    assert enabled_exits(whole_run, 0, 1.0) == [True, True, True]
    assert enabled_exits(_cfg(), 0, 0.0) == [True] * 3  # none: every exit, every step


def test_disabled_exits_are_not_computed_and_the_model_passes_progress_on(one_thread):
    torch.manual_seed(0)
    model = build_model(_cfg(early_exit_curriculum="rotational", early_exit_rotation=2), 50).eval()
    seq = torch.randint(0, 50, (2, 9))
    model.set_training_progress(1, 0.0)
    out = model(seq[:, :-1], seq[:, 1:])
    assert set(out.aux_losses) == {"exit_2"}
    model.set_training_progress(4, 0.0)
    out = model(seq[:, :-1], seq[:, 1:])
    assert set(out.aux_losses) == {"exit_1", "exit_3"}
    torch.testing.assert_close(out.loss, out.lm_loss + sum(model.head.weights[i - 1] * out.aux_losses[f"exit_{i}"]
                                                            for i in (1, 3)))


@pytest.mark.parametrize("override, message", [
    ("model.early_exit_curriculum=linear", "valid choices: gradual, none, rotational"),
    ("model.early_exit_rotation=0", "model.early_exit_rotation must be >= 1"),
    ("model.early_exit_ramp=0", "model.early_exit_ramp must be in (0, 1]"),
    ("model.early_exit_ramp=1.5", "model.early_exit_ramp must be in (0, 1]"),
])
def test_bad_curriculum_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        compose_config(["model=tiny-1m-layerskip", override])


@pytest.mark.slow
def test_trainer_drives_the_rotation_by_step_and_resume_repeats_it(tmp_path):
    from stlm.train import run_training
    from stlm.train.metrics import read_metrics

    overrides = grammar_overrides(tmp_path, "whole", "tiny-1m-layerskip", "model.early_exit_curriculum=rotational",
                                  "model.early_exit_rotation=2", "train.log_every=1", "eval.minimal_pairs=false")
    whole = run_training(compose_config(overrides), echo=lambda s: None)
    train = [r for r in read_metrics(Path(whole["run_dir"]) / "metrics.jsonl") if "lr" in r]
    assert len(train) == 40
    for r in train:  # record `step` s is 0-based step s - 1: the one early exit (layer 0) on even steps
        assert ("aux.exit_1" in r) == ((r["step"] - 1) % 2 == 0), r
    resumed = resume_from_step_20(whole["run_dir"], tmp_path / "runs" / "copy")
    for r in train[20:]:
        assert resumed[r["step"]] == {**r, "tok_per_s": resumed[r["step"]]["tok_per_s"],
                                      "elapsed_s": resumed[r["step"]]["elapsed_s"]}


def test_logging_every_few_steps_reads_back_terms_that_only_some_steps_report(tmp_path):
    """The trainer reads losses back once per log window; under a rotation the steps of a window
    report different exit terms, and each logged record keeps its own step's terms."""
    from stlm.train import run_training
    from stlm.train.metrics import read_metrics

    overrides = grammar_overrides(tmp_path, "sparse", "tiny-1m-layerskip", "model.early_exit_curriculum=rotational",
                                  "model.early_exit_rotation=2", "train.max_steps=10", "train.log_every=5",
                                  "train.eval_every=10", "train.checkpoint_every=10", "eval.minimal_pairs=false")
    summary = run_training(compose_config(overrides), echo=lambda s: None)
    train = {r["step"]: r for r in read_metrics(Path(summary["run_dir"]) / "metrics.jsonl") if "lr" in r}
    assert sorted(train) == [5, 10]
    assert "aux.exit_1" in train[5] and "aux.exit_1" not in train[10]  # 0-based steps 4 (even) and 9
