"""Compose a run configuration with Hydra and turn its errors into one clear line.

`compose_config(["model=tiny-3m", "train.lr=1e-3"])` returns a typed `RunConfig`. Group files live
in the package (`stlm/config/conf`) so an installed `stlm` finds them; each is validated against
the dataclasses in `stlm.config.schema`.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from importlib import resources
from typing import Any, List, Sequence, get_args, get_origin, get_type_hints

from omegaconf import OmegaConf

from stlm.config.schema import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig
from stlm.errors import ConfigError

__all__ = ["ConfigError", "compose_config", "config_from_dict", "list_choices", "to_yaml", "validate"]

CONFIG_MODULE = "stlm.config.conf"
GROUPS = ("model", "data", "train", "eval", "experiment")
_GROUP_SCHEMAS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig}


def list_choices(group: str) -> list[str]:
    """The preset names available in a config group (the YAML files shipped in the package)."""
    folder = resources.files(CONFIG_MODULE).joinpath(group)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _register_schemas() -> None:
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for group, schema in _GROUP_SCHEMAS.items():
        cs.store(group=group, name=f"{group}_schema", node=schema)


def _one_line(exc: Exception, overrides: Sequence[str]) -> str:
    parts, e = [], exc
    while e is not None:  # Hydra wraps the informative OmegaConf error as the cause
        parts.append(str(e))
        e = e.__cause__
    msg = "\n".join(parts)
    missing = re.search(r"Could not find '([\w-]+)/([^']+)'", msg)
    if missing:
        group, name = missing.groups()
        if group in GROUPS:
            return (f"unknown {group} '{name}'; valid choices: {', '.join(list_choices(group))}")
    key = re.search(r"Key '([^']+)' (?:is )?not in struct", msg) or re.search(
        r"Could not override '([^']+)'", msg) or re.search(r"Key '([^']+)' not in '(\w+)'", msg)
    if key:
        name = key.group(1)
        full = re.search(r"full_key: ([\w.\[\]]+)", msg)
        where = full.group(1) if full else name
        parent = where.rsplit(".", 1)[0] if "." in where else ""
        valid = _valid_keys(parent)
        hint = f"; valid keys{' in ' + parent if parent else ''}: {', '.join(valid)}" if valid else ""
        return f"unknown config key '{where}'{hint}"
    val = re.search(r"Value '([^']*)' (?:of type '[^']*' )?could not be converted to (\w+)", msg)
    if val:
        full = re.search(r"full_key: ([\w.\[\]]+)", msg)
        return (f"bad value '{val.group(1)}' for '{full.group(1) if full else '?'}': "
                f"expected {val.group(2)}")
    first = next((line.strip() for line in msg.splitlines() if line.strip()), repr(exc))
    return f"invalid configuration ({' '.join(overrides)}): {first}"


def _valid_keys(dotted_parent: str) -> list[str]:
    node = OmegaConf.structured(RunConfig)
    try:
        for part in [p for p in dotted_parent.split(".") if p]:
            node = node[part]
        return sorted(node.keys())
    except Exception:
        return []


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> RunConfig:
    """Compose `config.yaml` plus Hydra overrides into a validated, typed `RunConfig`."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    _register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        typed = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
        run = OmegaConf.to_object(typed)
    except Exception as exc:  # Hydra and OmegaConf raise many types; all become one line
        raise ConfigError(_one_line(exc, overrides)) from exc
    finally:
        GlobalHydra.instance().clear()
    validate(run)
    return run


def _check_choice(where: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"bad value '{value}' for '{where}'; valid choices: {', '.join(choices)}")


def validate(run: RunConfig) -> None:
    """Check values the type system cannot: choices from a fixed set, and the value rules of
    `stlm.config.rules` (ranges and relations of the numbers)."""
    from stlm.config import schema as s
    from stlm.config.rules import range_problems

    m = run.model
    import stlm.models.components  # noqa: F401  (fills the registries: the one list of components)
    from stlm.models.registry import REGISTRIES

    for kind in ("embedder", "norm", "attention", "ffn", "head"):
        _check_choice(f"model.{kind}", getattr(m, kind), sorted(REGISTRIES[kind]))
    _check_choice("model.positions", m.positions, s.POSITIONS)
    from stlm.models.components.early_exit import CURRICULA

    _check_choice("model.early_exit_curriculum", m.early_exit_curriculum, sorted(CURRICULA))
    _check_choice("model.sharing.ffn", m.sharing.ffn, s.FFN_SHARING)
    _check_choice("model.sharing.layers", m.sharing.layers, s.LAYER_SHARING)
    _check_choice("model.mod.router", m.mod.router, s.ROUTERS)
    from stlm.tokenizers import KINDS

    _check_choice("data.tokenizer.kind", run.data.tokenizer.kind, KINDS)
    _check_choice("data.invalid_utf8", run.data.invalid_utf8, ("replace", "fail"))
    _check_choice("data.sampling", run.data.sampling, ("random", "sequential"))
    _validate_training_knobs(run)
    _check_choice("train.precision", run.train.precision, ("auto", "fp32", "bf16"))
    _check_choice("train.parallel", run.train.parallel, ("ddp", "fsdp"))
    from stlm.train.optim import OPTIMIZERS

    _check_choice("train.optimizer", run.train.optimizer, sorted(OPTIMIZERS))
    from stlm.train.tracking import TRACKERS

    _check_choice("train.tracker", run.train.tracker, ["none", *TRACKERS])
    _check_choice("train.continue_schedule", run.train.continue_schedule, ("restart", "extend"))
    problems = range_problems(run)
    if problems:
        raise ConfigError("; ".join(problems))


# Keys added to the schema after run directories were first written: a saved config.yaml from
# before lacks them and gets the schema default (which keeps the old behaviour). Every other key
# must be present, so a damaged file is never silently completed from defaults.
LATER_KEYS = frozenset({"model.head", "model.mtp_tokens", "model.mtp_weight", "train.optimizer",
                        "train.continue_schedule", "train.diverge_factor", "train.tracker",
                        "train.tracker_project", "train.babylm_checkpoints", "train.babylm_words_per_m",
                        "init_from", "model.layer_dropout", "model.early_exit_scale",
                        "model.qk_norm", "model.zero_init_projections", "model.logit_softcap",
                        "train.cooldown_fraction", "train.cooldown_shape", "train.dropout_schedule",
                        "train.muon", "train.loss", "train.distill", "model.compression", "data.path",
                        "data.tokenizer.max_chunk_bytes", "model.byte_chunk_max", "model.byte_decoder_layers",
                        "model.byte_dim", "model.byte_heads", "model.byte_layers", "model.byte_pool",
                        "train.distill.schedule", "train.distill.top_k", "train.distill.cache",
                        "model.mod", "train.parallel", "model.early_exit_curriculum",
                        "model.early_exit_rotation", "model.early_exit_ramp",
                        "model.pause_tokens", "model.pause_fraction"})


def incomplete_keys(data: Any, schema: type = RunConfig, prefix: str = "") -> list[str]:
    """The keys of `schema` that a saved config dictionary lacks (or holds a non-mapping for),
    recursively, as dotted names with a note; empty when it is complete."""
    if not isinstance(data, dict):
        return [f"{prefix.rstrip('.') or 'the file'} (not a mapping)"]
    problems = []
    hints = get_type_hints(schema)
    for f in fields(schema):
        key = prefix + f.name
        if f.name not in data:
            if key not in LATER_KEYS:
                problems.append(f"{key} (missing)")
            continue
        kind, value = hints[f.name], data[f.name]
        if is_dataclass(kind):
            problems += incomplete_keys(value, kind, key + ".") if value is not None else [f"{key} (empty)"]
        elif get_origin(kind) in (list, List) and is_dataclass(get_args(kind)[0]):
            if not isinstance(value, list):
                problems.append(f"{key} (not a list)")
                continue
            for i, item in enumerate(value):
                problems += incomplete_keys(item, get_args(kind)[0], f"{key}.{i}.")
    return problems


def _validate_training_knobs(run: RunConfig) -> None:
    """Schedules, dropout, soft-capping, distillation and Muon settings (docs/training_knobs.md)."""
    from stlm.train.distill import DIRECTIONS
    from stlm.train.dropout import DROPOUT_SCHEDULES
    from stlm.train.losses import LOSSES
    from stlm.train.schedule import COOLDOWN_SHAPES, LR_SCHEDULES

    m, t = run.model, run.train
    _check_choice("train.schedule", t.schedule, sorted(LR_SCHEDULES))
    _check_choice("train.cooldown_shape", t.cooldown_shape, sorted(COOLDOWN_SHAPES))
    if not 0.0 < t.cooldown_fraction <= 1.0:
        raise ConfigError(f"train.cooldown_fraction must be in (0, 1], got {t.cooldown_fraction}")
    for name, ds in (("train.dropout_schedule", t.dropout_schedule), ("train.distill.schedule", t.distill.schedule)):
        _check_choice(f"{name}.shape", ds.shape, sorted(DROPOUT_SCHEDULES))
        if not 0.0 <= ds.start <= ds.end <= 1.0:
            raise ConfigError(f"need 0 <= {name}.start <= {name}.end <= 1, got start={ds.start}, end={ds.end}")
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
    if m.logit_softcap is not None and not m.logit_softcap > 0:
        raise ConfigError(f"model.logit_softcap must be > 0 (or null: off), got {m.logit_softcap}")
    _check_choice("train.loss", t.loss, sorted(LOSSES))
    d = t.distill
    _check_choice("train.distill.direction", d.direction, DIRECTIONS)
    if not (0.0 <= d.weight <= 1.0 and d.temperature > 0):
        raise ConfigError(f"need 0 <= train.distill.weight <= 1 and train.distill.temperature > 0, got "
                          f"weight={d.weight}, temperature={d.temperature}")
    if d.cache and d.top_k is None:
        raise ConfigError("train.distill.cache stores the teacher's top-k log-probs: set train.distill.top_k "
                          "too (e.g. train.distill.top_k=32)")
    mu = t.muon
    if not (mu.lr > 0 and 0.0 <= mu.momentum < 1.0 and mu.ns_steps >= 1 and mu.weight_decay >= 0):
        raise ConfigError(f"need train.muon.lr > 0, 0 <= train.muon.momentum < 1, train.muon.ns_steps >= 1 "
                          f"and train.muon.weight_decay >= 0; got {mu}")


def config_from_dict(data: dict) -> RunConfig:
    """Rebuild a `RunConfig` from its saved dictionary (e.g. a run's config.yaml)."""
    try:
        run = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), data))
    except Exception as exc:
        raise ConfigError(_one_line(exc, ())) from exc
    validate(run)
    return run


def to_yaml(run: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(run))
