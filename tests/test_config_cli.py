"""Configuration composition, one-line errors, and the CLI surface."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stlm.cli import COMMANDS, main
from stlm.config.loader import ConfigError, compose_config, config_from_dict, list_choices, to_yaml


def test_defaults_compose_to_the_quickstart_run():
    cfg = compose_config([])
    assert cfg.model.name == "tiny-1m" and cfg.data.name == "grammar"


def test_overrides_and_presets_apply():
    cfg = compose_config(["model=tiny-3m", "train.lr=1e-3", "model.dropout=0.2"])
    assert cfg.model.name == "tiny-3m" and cfg.train.lr == 1e-3 and cfg.model.dropout == 0.2


def test_preset_inherits_from_baseline():
    cfg = compose_config(["model=simple_ffn"])
    assert (cfg.model.ffn, cfg.model.d_ff, cfg.model.d_model, cfg.model.n_layers) == ("gelu", 2304, 512, 8)


@pytest.mark.parametrize("override, expected", [
    ("model=tiny-4m", "unknown model 'tiny-4m'; valid choices: "),
    ("train.lrr=1", "unknown config key 'train.lrr'; valid keys in train: "),
    ("nonsense=1", "unknown config key 'nonsense'"),
    ("train.lr=fast", "bad value 'fast' for 'train.lr'"),
    ("model.ffn=relu3", "bad value 'relu3' for 'model.ffn'; valid choices: gelu, relu2, spmlp, swiglu"),
])
def test_bad_overrides_give_one_line(override, expected):
    with pytest.raises(ConfigError) as info:
        compose_config([override])
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_saved_config_round_trips():
    import yaml

    cfg = compose_config(["model=tiny-3m", "train.max_steps=7"])
    assert config_from_dict(yaml.safe_load(to_yaml(cfg))) == cfg


def test_every_model_preset_composes():
    for name in list_choices("model"):
        assert compose_config([f"model={name}"]).model.name == name


def test_every_experiment_composes_and_overrides_several_groups():
    names = list_choices("experiment")
    assert names  # the group ships at least one experiment
    for name in names:
        cfg = compose_config([f"experiment={name}"])
        assert cfg != compose_config([])
    cfg = compose_config(["experiment=stlm_baseline"])
    assert (cfg.model.name, cfg.data.tokenizer.kind, cfg.train.grad_accum) == ("baseline", "gpt2", 20)


def test_cli_help_for_every_subcommand(capsys):
    for command in [[]] + [[c] for c in COMMANDS]:
        with pytest.raises(SystemExit) as info:
            main(command + ["--help"])
        assert info.value.code == 0
        assert "usage: stlm" in capsys.readouterr().out


def test_installed_console_script_reports_bad_override_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "stlm.cli", "params", "model=nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'nope'" in lines[0], proc.stderr


def test_params_command_prints_components(capsys):
    assert main(["params", "model=baseline"]) == 0
    out = capsys.readouterr().out
    for word in ("embedding", "attention", "mlp", "norms", "head", "total", "non-embed", "FLOPs"):
        assert word in out
    assert "49,857,536" in out
