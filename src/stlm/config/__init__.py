"""Configuration: typed schema (`schema`) and Hydra composition (`loader`).

The names below load on first use, so a component importing `stlm.config.schema` does not import
the loader, which itself imports the components to validate choices.
"""

from importlib import import_module

_EXPORTS = {**{name: "stlm.config.loader" for name in (
    "ConfigError", "compose_config", "config_from_dict", "list_choices", "to_yaml")},
    **{name: "stlm.config.schema" for name in (
        "DataConfig", "EvalConfig", "ModelConfig", "RunConfig", "TrainConfig")}}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stlm.config' has no attribute {name!r}")
