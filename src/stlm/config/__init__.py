"""Configuration: typed schema (`schema`) and Hydra composition (`loader`)."""

from stlm.config.loader import ConfigError, compose_config, config_from_dict, list_choices, to_yaml
from stlm.config.schema import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig

__all__ = [
    "ConfigError", "compose_config", "config_from_dict", "list_choices", "to_yaml",
    "DataConfig", "EvalConfig", "ModelConfig", "RunConfig", "TrainConfig",
]
