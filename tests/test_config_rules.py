"""Every numeric config value is checked before any work, one line each (stlm.config.rules):
degenerate sizes that once trained a 0-parameter model, silently became 128, or crashed with
ZeroDivisionError after data preparation."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf

from stlm.cli import main
from stlm.config.loader import ConfigError, compose_config, config_from_dict, to_yaml

BAD = [
    ("model.d_model=0", "model.d_model must be >= 1, got 0"),
    ("model.n_layers=0", "model.n_layers must be >= 1, got 0"),
    ("model.n_heads=0", "model.n_heads must be >= 1, got 0"),
    ("model.d_ff=0", "model.d_ff must be >= 1, got 0"),
    ("model.context_length=0", "model.context_length must be >= 1, got 0"),
    ("train.context_length=0", "train.context_length must be >= 1, got 0"),
    ("train.context_length=4096", "train.context_length (4096) must be <= model.context_length (128)"),
    ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
    ("train.grad_accum=-1", "train.grad_accum must be >= 1, got -1"),
    ("train.eval_every=0", "train.eval_every must be >= 1, got 0"),
    ("train.log_every=0", "train.log_every must be >= 1, got 0"),
    ("train.checkpoint_every=0", "train.checkpoint_every must be >= 1, got 0"),
    ("train.eval_batches=0", "train.eval_batches must be >= 1, got 0"),
    ("train.max_steps=0", "train.max_steps must be >= 1, got 0"),
    ("train.max_minutes=0", "train.max_minutes must be > 0, got 0.0"),
    ("train.lr=0", "train.lr must be > 0, got 0.0"),
    ("train.min_lr=1", "train.min_lr (1.0) must be <= train.lr (0.006)"),
    ("train.warmup_steps=-5", "train.warmup_steps must be >= 0, got -5"),
    ("train.beta2=1.0", "train.beta2 must be in [0, 1), got 1.0"),
    ("train.diverge_factor=1", "train.diverge_factor must be > 1, got 1.0"),
    ("model.n_kv_heads=3", "model.n_heads (4) must be divisible by model.n_kv_heads (3)"),
    ("model.n_heads=3", "model.d_model (128) must be divisible by model.n_heads (3)"),
    ("model.dropout=1", "model.dropout must be in [0, 1), got 1.0"),
    ("model.dropout=-0.1", "model.dropout must be in [0, 1), got -0.1"),
    ("data.val_fraction=1", "data.val_fraction must be in [0, 1), got 1.0"),
    ("data.tokenizer.vocab_size=0", "data.tokenizer.vocab_size must be >= 1, got 0"),
    ("data.sources.0.weight=0", "data.sources.0.weight must be > 0, got 0.0"),
    ("eval.batch_size=0", "eval.batch_size must be >= 1, got 0"),
]


@pytest.fixture(scope="module")
def quickstart() -> str:
    return to_yaml(compose_config([]))  # composed once: Hydra is the slow part


@pytest.mark.parametrize("override, expected", BAD)
def test_a_bad_number_is_one_line_naming_the_key(quickstart, override, expected):
    """Through the loader that both composition and a saved run's config.yaml go through."""
    key, value = override.split("=", 1)
    cfg = OmegaConf.create(quickstart)
    OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
    with pytest.raises(ConfigError) as info:
        config_from_dict(OmegaConf.to_container(cfg))
    assert str(info.value) == expected


def test_several_bad_numbers_are_all_named_on_one_line():
    with pytest.raises(ConfigError) as info:
        compose_config(["model.d_model=0", "train.eval_every=0"])
    assert str(info.value) == "model.d_model must be >= 1, got 0; train.eval_every must be >= 1, got 0"


def test_the_cli_refuses_before_making_a_run_folder_or_preparing_data(tmp_path, capsys):
    args = ["train", f"runs_dir={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'cache'}", "model.d_model=0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == "stlm train: error: model.d_model must be >= 1, got 0\n"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()

